package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/cluster"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/server"
)

// submitBody is a valid POST /v1/tasks body whose prompt tells tasks apart.
func submitBody(user, prompt string) []byte {
	b, _ := json.Marshal(api.SubmitRequest{ProjectID: "p1", UserID: user, Prompt: prompt, Repository: "github.com/acme/app"})
	return b
}

func decodeTask(t *testing.T, r server.TestResponse) *api.Task {
	t.Helper()
	var tr api.TaskResponse
	if err := json.Unmarshal(r.Body, &tr); err != nil || tr.Task == nil {
		t.Fatalf("task answer %d %s: decode = %v", r.Status, r.Body, err)
	}
	return tr.Task
}

func decodeError(t *testing.T, r server.TestResponse) api.ErrorDetail {
	t.Helper()
	var eb api.ErrorBody
	if err := json.Unmarshal(r.Body, &eb); err != nil || eb.Error.Code == "" || eb.Error.Message == "" {
		t.Fatalf("error answer %d %s: want {\"error\":{\"code\",\"message\"}}, decode = %v", r.Status, r.Body, err)
	}
	return eb.Error
}

// countPrompt counts the tasks in n's FSM with the given prompt.
func countPrompt(n *server.TestNode, prompt string) int {
	page, _ := n.FSM.ListTasks(fsm.TaskFilter{})
	c := 0
	for _, t := range page {
		if t.Prompt == prompt {
			c++
		}
	}
	return c
}

// A task submitted through one follower's API is forwarded to the leader,
// committed, and readable on the other follower once replicated.
func TestSubmitOnFollowerReadOnOtherFollower(t *testing.T) {
	c := server.NewTestCluster(t, server.TestOptions{})
	leader, followers := c.Followers()
	f1, f2 := followers[0], followers[1]

	r := c.Do(f1, "POST", "/v1/tasks", submitBody("u1", "follower submit"), nil)
	if r.Status != 202 {
		t.Fatalf("POST /v1/tasks on %s = %d %s, want 202", f1.ID, r.Status, r.Body)
	}
	task := decodeTask(t, r)
	if task.Status != fsm.StatusQueued || task.Prompt != "follower submit" || task.ID == "" {
		t.Fatalf("submitted task = %+v, want a queued task with the prompt", task)
	}
	if got := r.Header.Get("X-Tdf-Node"); got != f1.ID {
		t.Errorf("X-Tdf-Node = %q, want %s", got, f1.ID)
	}
	if now := c.Leader(); now == leader {
		if got := r.Header.Get("X-Tdf-Forwarded-To"); got != leader.ID {
			t.Errorf("X-Tdf-Forwarded-To = %q, want the leader %s", got, leader.ID)
		}
	} else {
		t.Logf("leadership moved from %s to %s during the test; not checking the forwarding header", leader.ID, now.ID)
	}

	var got *api.Task
	server.WaitFor(t, server.TestWait, "task replicated to "+f2.ID, func() error {
		r := c.Do(f2, "GET", "/v1/tasks/"+task.ID, nil, nil)
		if r.Status != 200 {
			return fmt.Errorf("GET on %s = %d %s", f2.ID, r.Status, r.Body)
		}
		if fwd := r.Header.Get("X-Tdf-Forwarded-To"); fwd != "" {
			return fmt.Errorf("a default read was forwarded to %s; it must be local", fwd)
		}
		got = decodeTask(t, r)
		return nil
	})
	if got.ID != task.ID || !got.CreatedAt.Equal(task.CreatedAt) || got.Prompt != task.Prompt || got.UserID != task.UserID {
		t.Errorf("task read on %s = %+v, want %+v", f2.ID, got, task)
	}
	c.WaitConverged()
}

// Partitioning the leader away: its pending apply reports an unknown
// outcome, the majority elects a new leader and takes writes, and after
// healing the old leader converges with the entry it proposed present at
// most once (a retry with the same request id makes it exactly once).
//
// Determinism: the apply is started right after the partition, long before
// the old leader's lease (500ms) can expire, so raft appends it to the old
// leader's log and answers ErrLeadershipLost when the leader steps down. If
// a stalled scheduler lets the leader step down first (the apply then finds
// a follower: ErrNotLeader, nothing appended), the setup is healed and
// repeated.
func TestPartitionedLeaderUnknownOutcomeAndConvergence(t *testing.T) {
	c := server.NewTestCluster(t, server.TestOptions{})
	const prompt = "proposed by a partitioned leader"

	var old *server.TestNode
	var cmd fsm.SubmitTask
	for attempt := 1; ; attempt++ {
		old = c.Leader()
		cmd = fsm.SubmitTask{
			RequestID:   fmt.Sprintf("partitioned-%d", attempt),
			Fingerprint: "fp",
			TaskID:      fmt.Sprintf("t-partitioned-%d", attempt),
			Spec:        fsm.TaskSpec{ProjectID: "p1", UserID: "u1", Prompt: prompt, Repository: "github.com/acme/app"},
			At:          time.Now().UTC(),
		}
		c.Partition(old)
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), server.TestWait)
		res, err := old.Node.Apply(ctx, cmd)
		cancel()
		if errors.Is(err, cluster.ErrUnknownOutcome) {
			t.Logf("attempt %d: apply on partitioned %s = %v after %s", attempt, old.ID, err, time.Since(start))
			break
		}
		if errors.Is(err, cluster.ErrNotLeader) && attempt < 5 {
			t.Logf("attempt %d: %s stepped down before the apply reached raft; healing and retrying", attempt, old.ID)
			c.Heal()
			c.WaitConverged()
			continue
		}
		t.Fatalf("Apply on partitioned leader %s = %+v, %v; want %v", old.ID, res, err, cluster.ErrUnknownOutcome)
	}
	if old.Node.IsLeader() {
		t.Fatalf("%s still leads after reporting an unknown outcome", old.ID)
	}

	// The majority elects a new leader and takes writes, submitted through
	// the majority node that does not lead.
	nl := c.WaitLeaderNot(old)
	var via *server.TestNode
	for _, n := range c.Others(old, nl) {
		via = n
	}
	r := c.Do(via, "POST", "/v1/tasks", submitBody("u1", "written by the majority"), nil)
	if r.Status != 202 {
		t.Fatalf("POST /v1/tasks on majority node %s = %d %s, want 202", via.ID, r.Status, r.Body)
	}
	majorityTask := decodeTask(t, r)
	if old.Node.IsLeader() {
		t.Fatalf("partitioned %s leads again", old.ID)
	}
	if _, ok := old.FSM.Task(majorityTask.ID); ok {
		t.Fatalf("partitioned %s already has the majority's task", old.ID)
	}

	c.Heal()
	c.Leader()
	_, hash := c.WaitConverged()
	for _, n := range c.Nodes {
		if _, ok := n.FSM.Task(majorityTask.ID); !ok {
			t.Errorf("%s lacks the majority's task %s after healing", n.ID, majorityTask.ID)
		}
		// The entry was appended only to the partitioned leader's log, so
		// raft must have truncated it; at most once is the contract.
		if got := countPrompt(n, prompt); got > 1 {
			t.Errorf("%s has %d tasks from the partitioned leader's entry, want at most 1", n.ID, got)
		} else {
			t.Logf("%s has %d copies of the partitioned leader's entry (hash %.12s)", n.ID, got, hash)
		}
	}

	// The caller's retry with the same request id, on whoever leads now,
	// leaves exactly one task.
	for i := 0; i < 2; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), server.TestWait)
		res, err := c.Leader().Node.ApplyIdempotent(ctx, cmd)
		cancel()
		if err != nil || res.Err != nil {
			t.Fatalf("retry %d of %s = %+v, %v", i, cmd.RequestID, res, err)
		}
		if i == 1 && !res.Replayed {
			t.Errorf("second retry of %s: Duplicate = false, want true", cmd.RequestID)
		}
	}
	c.WaitConverged()
	for _, n := range c.Nodes {
		if got := countPrompt(n, prompt); got != 1 {
			t.Errorf("%s has %d tasks from request %s after the retries, want 1", n.ID, got, cmd.RequestID)
		}
	}
}

// A retry with the same Idempotency-Key, through any node, returns the first
// task and creates nothing; the key with a different body is refused.
func TestIdempotencyKeyRetryAcrossNodes(t *testing.T) {
	c := server.NewTestCluster(t, server.TestOptions{})
	leader, followers := c.Followers()
	c.WaitConverged()
	before := leader.FSM.TaskCount()
	const key = "client-key-1"
	hdr := map[string]string{"Idempotency-Key": key}
	body := submitBody("u1", "exactly once")

	first := c.Do(followers[0], "POST", "/v1/tasks", body, hdr)
	if first.Status != 202 {
		t.Fatalf("first POST = %d %s, want 202", first.Status, first.Body)
	}
	if v := first.Header.Get("Idempotent-Replayed"); v != "" {
		t.Errorf("first POST: Idempotent-Replayed = %q, want none", v)
	}
	task := decodeTask(t, first)

	// The same body again through every node, and once with the same
	// fields formatted differently (the fingerprint is over the fields).
	reformatted := []byte(`{ "repository":"github.com/acme/app", "prompt":"exactly once",
		"user_id":"u1", "project_id":"p1" }`)
	retries := []struct {
		via  *server.TestNode
		body []byte
	}{
		{followers[0], body}, {followers[1], body}, {leader, body}, {followers[1], reformatted},
	}
	for _, rt := range retries {
		r := c.Do(rt.via, "POST", "/v1/tasks", rt.body, hdr)
		if r.Status != 202 {
			t.Fatalf("retry via %s = %d %s, want 202", rt.via.ID, r.Status, r.Body)
		}
		if got := decodeTask(t, r); got.ID != task.ID {
			t.Errorf("retry via %s: task id %s, want %s", rt.via.ID, got.ID, task.ID)
		}
		if v := r.Header.Get("Idempotent-Replayed"); v != "true" {
			t.Errorf("retry via %s: Idempotent-Replayed = %q, want true", rt.via.ID, v)
		}
	}
	c.WaitConverged()
	for _, n := range c.Nodes {
		if got := n.FSM.TaskCount(); got != before+1 {
			t.Errorf("%s: TaskCount() = %d, want %d", n.ID, got, before+1)
		}
	}

	// The key with a different body: 422, nothing created.
	for _, via := range c.Nodes {
		r := c.Do(via, "POST", "/v1/tasks", submitBody("u1", "something else"), hdr)
		if r.Status != 422 {
			t.Fatalf("reused key via %s = %d %s, want 422", via.ID, r.Status, r.Body)
		}
		if e := decodeError(t, r); e.Code != api.CodeIdempotencyKey {
			t.Errorf("reused key via %s: code %q, want %q", via.ID, e.Code, api.CodeIdempotencyKey)
		}
	}
	c.WaitConverged()
	for _, n := range c.Nodes {
		if got := n.FSM.TaskCount(); got != before+1 {
			t.Errorf("%s after the refused reuse: TaskCount() = %d, want %d", n.ID, got, before+1)
		}
	}
}

// A write that reaches a leader which has just lost its quorum is answered
// (503) within about the hold timeout, not held for the whole request
// timeout: on an unknown outcome the node waits for a new leader only a
// couple of election timeouts.
func TestPartitionedLeaderWriteAnswersWithinHold(t *testing.T) {
	const hold = time.Second
	c := server.NewTestCluster(t, server.TestOptions{API: func(a *api.Config) { a.HoldTimeout = hold }})
	old := c.Leader()
	c.Partition(old)
	start := time.Now()
	r := c.Do(old, "POST", "/v1/tasks", submitBody("u1", "to a leader without a quorum"), nil)
	took := time.Since(start)
	if r.Status != 503 || decodeError(t, r).Code != api.CodeNoLeader {
		t.Errorf("POST on the partitioned leader = %d %s, want 503 no_leader", r.Status, r.Body)
	}
	// Lease expiry (0.5s), a short wait for a new leader, then the hold.
	if bound := 8 * time.Second; took > bound {
		t.Errorf("POST on the partitioned leader answered after %s, want within %s (hold timeout %s)", took.Round(time.Millisecond), bound, hold)
	}
}
