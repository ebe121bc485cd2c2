package server_test

// Tests of the operations endpoints on a live in-process cluster: the error
// database (GET /v1/errors), the node list (GET /v1/nodes), the event
// stream (GET /v1/events), the JWKS, the cluster status and state hash,
// leadership transfer and idle-reset; and that a failing step shows up in
// the error database, the metrics and the logs.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/cluster"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/runner"
	"github.com/tdf-project/tdf/server"
	"github.com/tdf-project/tdf/tokens"
)

// ---------------------------------------------------------------------------
// helpers

// submitTask submits a task through via and returns it as answered.
func submitTask(t *testing.T, c *server.TestCluster, via *server.TestNode, user, prompt string) *fsm.Task {
	t.Helper()
	r := c.Do(via, http.MethodPost, "/v1/tasks", submitBody(user, prompt), nil)
	if r.Status != http.StatusAccepted {
		t.Fatalf("POST /v1/tasks (%s) on %s = %d %s, want 202", prompt, via.ID, r.Status, r.Body)
	}
	return asRecord(decodeTask(t, r))
}

// asRecord is the part of the FSM's record the API shows, for tests that
// go on with the FSM's types.
func asRecord(a *api.Task) *fsm.Task {
	t := &fsm.Task{ID: a.ID, TaskSpec: fsm.TaskSpec{ProjectID: a.ProjectID, UserID: a.UserID, Prompt: a.Prompt,
		Repository: a.Repository, Branch: a.Branch, VMSize: a.VMSize, VMLocation: a.VMLocation, PreferredNodeID: a.PreferredNodeID},
		Owner: a.Owner, Status: a.Status, Step: a.ExecutionStep, NodeID: a.NodeID, WorkspaceID: a.WorkspaceID,
		AgentSessionID: a.AgentSessionID, ErrorMessage: a.ErrorMessage, CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt,
		StartedAt: a.StartedAt, CompletedAt: a.CompletedAt, Attempts: a.Attempts, Cleanup: a.Cleanup == api.CleanupPending}
	for _, at := range a.Steps {
		t.Steps = append(t.Steps, fsm.StepAttempt{Step: at.Step, Attempt: at.Attempt, Leader: at.Leader, Started: at.Started,
			Finished: at.Finished, Outcome: at.Outcome, Error: at.Error, Note: at.Note})
	}
	// A claimed attempt is the newest one, not finished yet.
	t.InFlight = len(t.Steps) > 0 && t.Steps[len(t.Steps)-1].Finished == nil
	return t
}

// waitTask polls n's FSM until the task satisfies cond, and returns it.
func waitTask(t *testing.T, n *server.TestNode, id, what string, cond func(*fsm.Task) bool) *fsm.Task {
	t.Helper()
	var task *fsm.Task
	server.WaitFor(t, server.TestWait, fmt.Sprintf("task %s on %s: %s", id, n.ID, what), func() error {
		var ok bool
		if task, ok = n.FSM.Task(id); !ok {
			return errors.New("no such task yet")
		}
		if !cond(task) {
			return fmt.Errorf("status %s, step %q, attempt %d, in flight %v", task.Status, task.Step, task.Attempt, task.InFlight)
		}
		return nil
	})
	return task
}

// parkedAt: the task sits at step s after a "poll again later" result.
func parkedAt(tk *fsm.Task, s fsm.Step) bool {
	if tk == nil || tk.Step != s || tk.InFlight || len(tk.Steps) == 0 {
		return false
	}
	last := tk.Steps[len(tk.Steps)-1]
	return last.Step == s && last.Finished != nil && last.Outcome == string(fsm.OutcomePoll)
}

// getJSON GETs path on n, requires 200 and decodes the body into v.
func getJSON(t *testing.T, c *server.TestCluster, n *server.TestNode, path string, v any) server.TestResponse {
	t.Helper()
	r := c.Do(n, http.MethodGet, path, nil, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET %s on %s = %d %s, want 200", path, n.ID, r.Status, r.Body)
	}
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("GET %s on %s: decode %s: %v", path, n.ID, r.Body, err)
	}
	return r
}

// wantFieldError checks a 400 invalid_field answer whose message names
// the field first ("field: ...").
func wantFieldError(t *testing.T, r server.TestResponse, what, field string) {
	t.Helper()
	if r.Status != http.StatusBadRequest {
		t.Errorf("%s = %d %s, want 400", what, r.Status, r.Body)
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q, want JSON", what, ct)
	}
	e := decodeError(t, r)
	if e.Code != api.CodeInvalidField || !strings.HasPrefix(e.Message, field) {
		t.Errorf("%s = %s %q, want %s naming %q", what, e.Code, e.Message, api.CodeInvalidField, field)
	}
}

type errorsPage struct {
	Errors     []*fsm.ErrorRecord `json:"errors"`
	NextCursor string             `json:"next_cursor"`
}

type nodesPage struct {
	Nodes []api.NodeView `json:"nodes"`
}

func seqs(recs []*fsm.ErrorRecord) []uint64 {
	out := make([]uint64, len(recs))
	for i, e := range recs {
		out[i] = e.Seq
	}
	return out
}

func filterRecords(recs []*fsm.ErrorRecord, keep func(*fsm.ErrorRecord) bool) []*fsm.ErrorRecord {
	var out []*fsm.ErrorRecord
	for _, e := range recs {
		if keep(e) {
			out = append(out, e)
		}
	}
	return out
}

func nodeIDs(ns []api.NodeView) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.ID
	}
	return out
}

// callback POSTs an agent callback with a token of scope for id.
func callback(t *testing.T, c *server.TestCluster, via *server.TestNode, path string, scope tokens.Scope, id, body string) server.TestResponse {
	t.Helper()
	tok, err := via.Tokens.CallbackToken(scope, id)
	if err != nil {
		t.Fatalf("CallbackToken(%s, %s) = %v", scope, id, err)
	}
	return c.Do(via, http.MethodPost, path, []byte(body), map[string]string{"Authorization": "Bearer " + tok})
}

// sharedControlPlane gives every node the same control-plane URL, as in
// production (the issuer of every token), so that a token minted by one
// node verifies on the leader a callback is forwarded to. The helper's
// default is each node's own URL.
func sharedControlPlane(cfg *server.Config) { cfg.ControlPlaneURL = "http://control-plane.test" }

// waitKeys waits until every node has a signing key (the leader commits
// one when it takes over).
func waitKeys(t *testing.T, c *server.TestCluster) {
	t.Helper()
	server.WaitFor(t, server.TestWait, "a signing key on every node", func() error {
		for _, n := range c.Nodes {
			if len(n.FSM.SigningKeys()) == 0 {
				return fmt.Errorf("%s has no signing key yet", n.ID)
			}
		}
		return nil
	})
}

// ---------------------------------------------------------------------------
// GET /v1/errors

// TestErrorsEndpointFilters builds an error database with records of
// several kinds, steps, tasks and nodes (a permanent failure, a transient
// failure then a permanent one at a later step, a node's error report, a
// second permanent failure) and checks every filter of GET /v1/errors on a
// follower against the full list, paging with limit and cursor, the
// replicated list being the same on every node, and 400s for bad values.
func TestErrorsEndpointFilters(t *testing.T) {
	provisioning := runner.HandlerFunc(func(_ context.Context, tk *fsm.Task, _ string) runner.Result {
		switch tk.Prompt {
		case "perm-1", "perm-2":
			return runner.Failed(runner.Permanentf("quota exceeded for %s", tk.Prompt))
		case "flaky":
			if tk.Retries == 0 {
				return runner.Failed(runner.Transient(errors.New("cloud answered 503")))
			}
			return runner.Done(fsm.StepData{ServerID: 42, IPv4: "127.0.0.1"})
		}
		return runner.PollIn(5 * time.Minute)
	})
	agentReady := runner.HandlerFunc(func(_ context.Context, tk *fsm.Task, _ string) runner.Result {
		if tk.Prompt == "flaky" {
			return runner.Failed(runner.Permanentf("agent never came up"))
		}
		return runner.PollIn(5 * time.Minute)
	})
	hs := server.TestHandlers()
	hs[fsm.StepNodeProvisioning], hs[fsm.StepNodeAgentReady] = provisioning, agentReady
	c := server.NewTestCluster(t, server.TestOptions{
		Handlers: hs,
		Runner:   func(rc *runner.Config) { rc.RetryBase, rc.RetryMax = 20*time.Millisecond, 100*time.Millisecond },
		Server:   sharedControlPlane,
	})
	leader, followers := c.Followers()
	f := followers[0]

	failed := func(tk *fsm.Task) bool { return tk.Status == fsm.StatusFailed }
	perm1 := submitTask(t, c, f, "u1", "perm-1")
	perm1 = waitTask(t, f, perm1.ID, "failed", failed)
	flaky := submitTask(t, c, followers[1], "u2", "flaky")
	flaky = waitTask(t, f, flaky.ID, "failed", failed)
	parked := submitTask(t, c, leader, "u3", "parked")
	parked = waitTask(t, f, parked.ID, "parked at node_provisioning", func(tk *fsm.Task) bool { return parkedAt(tk, fsm.StepNodeProvisioning) })
	waitKeys(t, c)
	r := callback(t, c, f, "/v1/nodes/"+parked.NodeID+"/errors", tokens.ScopeNode, parked.NodeID,
		`{"errors":[{"incidentId":"inc-1","message":"disk full"}]}`)
	if r.Status/100 != 2 {
		t.Fatalf("node errors callback = %d %s", r.Status, r.Body)
	}
	perm2 := submitTask(t, c, f, "u4", "perm-2")
	perm2 = waitTask(t, f, perm2.ID, "failed", failed)
	for _, tk := range []*fsm.Task{perm1, flaky, parked, perm2} {
		if tk.NodeID == "" {
			t.Fatalf("task %s (%s) has no node", tk.ID, tk.Prompt)
		}
	}

	// The full list, read twice around the checks so that a record added
	// meanwhile (a fenced result after an election) cannot skew them.
	full := func() []*fsm.ErrorRecord {
		var p errorsPage
		getJSON(t, c, f, "/v1/errors?limit=500", &p)
		if p.NextCursor != "" {
			t.Fatalf("more than 500 error records: %s", p.NextCursor)
		}
		return p.Errors
	}
	var all []*fsm.ErrorRecord
	server.WaitFor(t, server.TestWait, "the five error records on "+f.ID, func() error {
		all = full()
		if n := len(filterRecords(all, func(e *fsm.ErrorRecord) bool { return e.Kind != fsm.ErrKindFenced })); n < 5 {
			return fmt.Errorf("%d records: %+v", n, all)
		}
		return nil
	})
	find := func(kind fsm.ErrorKind, taskID, nodeID string, step fsm.Step) *fsm.ErrorRecord {
		t.Helper()
		got := filterRecords(all, func(e *fsm.ErrorRecord) bool {
			return e.Kind == kind && e.TaskID == taskID && e.NodeID == nodeID && e.Step == step
		})
		if len(got) != 1 {
			t.Fatalf("records %s/%s/%s/%s = %d in %s, want 1", kind, taskID, nodeID, step, len(got), mustJSON(all))
		}
		return got[0]
	}
	recPerm1 := find(fsm.ErrKindFailed, perm1.ID, perm1.NodeID, fsm.StepNodeProvisioning)
	recFlakyStep := find(fsm.ErrKindStep, flaky.ID, flaky.NodeID, fsm.StepNodeProvisioning)
	recFlakyFail := find(fsm.ErrKindFailed, flaky.ID, flaky.NodeID, fsm.StepNodeAgentReady)
	recNode := find(fsm.ErrKindNode, "", parked.NodeID, "")
	recPerm2 := find(fsm.ErrKindFailed, perm2.ID, perm2.NodeID, fsm.StepNodeProvisioning)
	if recPerm1.Message != "quota exceeded for perm-1" || recPerm1.Class != fsm.ClassPermanent || recPerm1.Attempt != 1 || recPerm1.Leader == "" {
		t.Errorf("perm-1 record = %+v", recPerm1)
	}
	if recFlakyStep.Message != "cloud answered 503" || recFlakyStep.Class != fsm.ClassTransient {
		t.Errorf("flaky step_error record = %+v", recFlakyStep)
	}
	if recFlakyFail.Message != "agent never came up" {
		t.Errorf("flaky task_failed record = %+v", recFlakyFail)
	}
	if recNode.Message != "disk full" || recNode.IncidentID != "inc-1" {
		t.Errorf("node_error record = %+v", recNode)
	}
	ordered := []*fsm.ErrorRecord{recPerm1, recFlakyStep, recFlakyFail, recNode, recPerm2}
	for i := 1; i < len(ordered); i++ {
		if ordered[i].Seq <= ordered[i-1].Seq || ordered[i].At.Before(ordered[i-1].At) {
			t.Fatalf("records out of order: %s", mustJSON(ordered))
		}
	}

	query := func(q string) []*fsm.ErrorRecord {
		t.Helper()
		var p errorsPage
		getJSON(t, c, f, "/v1/errors?"+q, &p)
		if p.Errors == nil {
			t.Errorf("GET /v1/errors?%s: errors is null, want a list", q)
		}
		return p.Errors
	}
	check := func(q string, want []*fsm.ErrorRecord, mustHave ...*fsm.ErrorRecord) {
		t.Helper()
		got := query(q)
		if !slices.Equal(seqs(got), seqs(want)) {
			t.Errorf("GET /v1/errors?%s = seqs %v, want %v", q, seqs(got), seqs(want))
		}
		for _, m := range mustHave {
			if !slices.Contains(seqs(got), m.Seq) {
				t.Errorf("GET /v1/errors?%s lacks record %d (%s %s)", q, m.Seq, m.Kind, m.Message)
			}
		}
	}
	byTask := func(id string) func(*fsm.ErrorRecord) bool {
		return func(e *fsm.ErrorRecord) bool { return e.TaskID == id }
	}
	t.Run("task_id", func(t *testing.T) {
		check("task_id="+perm1.ID, filterRecords(all, byTask(perm1.ID)), recPerm1)
		check("task_id="+flaky.ID, filterRecords(all, byTask(flaky.ID)), recFlakyStep, recFlakyFail)
		check("task_id=t-no-such-task", nil)
	})
	t.Run("node_id", func(t *testing.T) {
		check("node_id="+parked.NodeID, filterRecords(all, func(e *fsm.ErrorRecord) bool { return e.NodeID == parked.NodeID }), recNode)
		check("node_id="+perm2.NodeID, filterRecords(all, func(e *fsm.ErrorRecord) bool { return e.NodeID == perm2.NodeID }), recPerm2)
	})
	t.Run("step", func(t *testing.T) {
		check("step=node_agent_ready", filterRecords(all, func(e *fsm.ErrorRecord) bool { return e.Step == fsm.StepNodeAgentReady }), recFlakyFail)
		check("step=node_provisioning", filterRecords(all, func(e *fsm.ErrorRecord) bool { return e.Step == fsm.StepNodeProvisioning }),
			recPerm1, recFlakyStep, recPerm2)
		check("step=cleanup", filterRecords(all, func(e *fsm.ErrorRecord) bool { return e.Step == fsm.StepCleanup }))
	})
	t.Run("kind", func(t *testing.T) {
		check("kind=task_failed", filterRecords(all, func(e *fsm.ErrorRecord) bool { return e.Kind == fsm.ErrKindFailed }), recPerm1, recFlakyFail, recPerm2)
		check("kind=step_error", filterRecords(all, func(e *fsm.ErrorRecord) bool { return e.Kind == fsm.ErrKindStep }), recFlakyStep)
		check("kind=node_error", filterRecords(all, func(e *fsm.ErrorRecord) bool { return e.Kind == fsm.ErrKindNode }), recNode)
		// Filters combine.
		check("kind=task_failed&task_id="+flaky.ID, []*fsm.ErrorRecord{recFlakyFail})
		check("kind=step_error&step=node_agent_ready", nil)
	})
	t.Run("since", func(t *testing.T) {
		since := recFlakyFail.At
		want := filterRecords(all, func(e *fsm.ErrorRecord) bool { return !e.At.Before(since) })
		if len(want) == 0 || len(want) == len(all) || slices.Contains(seqs(want), recPerm1.Seq) {
			t.Fatalf("since %s does not split the records: %s", since, mustJSON(all))
		}
		check("since="+url.QueryEscape(since.Format(time.RFC3339Nano)), want, recFlakyFail, recNode, recPerm2)
		// The same instant in another zone.
		check("since="+url.QueryEscape(since.In(time.FixedZone("x", 2*3600)).Format(time.RFC3339Nano)), want)
		check("since=2000-01-01T00:00:00Z", all)
		check("since="+url.QueryEscape(time.Now().Add(time.Hour).UTC().Format(time.RFC3339)), nil)
	})
	t.Run("limit and cursor", func(t *testing.T) {
		for _, limit := range []int{1, 2, 3} {
			var got []*fsm.ErrorRecord
			cursor, pages := "", 0
			for {
				q := "limit=" + strconv.Itoa(limit)
				if cursor != "" {
					q += "&cursor=" + cursor
				}
				var p errorsPage
				getJSON(t, c, f, "/v1/errors?"+q, &p)
				pages++
				if len(p.Errors) > limit || (p.NextCursor != "" && len(p.Errors) != limit) {
					t.Fatalf("page %s: %d records, next %q", q, len(p.Errors), p.NextCursor)
				}
				got = append(got, p.Errors...)
				if p.NextCursor == "" {
					break
				}
				if last := p.Errors[len(p.Errors)-1].Seq; p.NextCursor != strconv.FormatUint(last, 10) {
					t.Errorf("page %s: next_cursor %s, want the last seq %d", q, p.NextCursor, last)
				}
				cursor = p.NextCursor
				if pages > 100 {
					t.Fatalf("paging does not end")
				}
			}
			if !slices.Equal(seqs(got), seqs(all)) {
				t.Errorf("paging by %d = %v, want %v", limit, seqs(got), seqs(all))
			}
			if want := (len(all) + limit - 1) / limit; pages != want {
				t.Errorf("paging %d records by %d took %d pages, want %d", len(all), limit, pages, want)
			}
		}
		// Paging composes with a filter: the failures, one a page.
		failures := filterRecords(all, func(e *fsm.ErrorRecord) bool { return e.Kind == fsm.ErrKindFailed })
		var p errorsPage
		getJSON(t, c, f, "/v1/errors?kind=task_failed&limit=1", &p)
		if len(p.Errors) != 1 || p.Errors[0].Seq != failures[0].Seq || p.NextCursor == "" {
			t.Fatalf("first filtered page = %s", mustJSON(p))
		}
		var p2 errorsPage
		getJSON(t, c, f, "/v1/errors?kind=task_failed&limit=1&cursor="+p.NextCursor, &p2)
		if len(p2.Errors) != 1 || p2.Errors[0].Seq != failures[1].Seq {
			t.Fatalf("second filtered page = %s, want seq %d", mustJSON(p2), failures[1].Seq)
		}
		// A cursor past the end: an empty page without a next cursor.
		var p3 errorsPage
		getJSON(t, c, f, "/v1/errors?cursor="+strconv.FormatUint(all[len(all)-1].Seq, 10), &p3)
		if len(p3.Errors) != 0 || p3.NextCursor != "" || p3.Errors == nil {
			t.Fatalf("page after the last record = %s", mustJSON(p3))
		}
	})
	t.Run("bad values", func(t *testing.T) {
		for _, bc := range []struct{ query, field string }{
			{"task_id=bad%20id", "task_id"},
			{"task_id=" + strings.Repeat("x", 200), "task_id"},
			{"node_id=-n1", "node_id"},
			{"step=warp_drive", "step"},
			{"since=yesterday", "since"},
			{"since=2024-01-02", "since"},
			{"cursor=abc", "cursor"},
			{"cursor=-1", "cursor"},
			{"limit=0", "limit"},
			{"limit=501", "limit"},
			{"limit=ten", "limit"},
		} {
			wantFieldError(t, c.Do(f, http.MethodGet, "/v1/errors?"+bc.query, nil, nil), "GET /v1/errors?"+bc.query, bc.field)
		}
	})
	t.Run("bad kind", func(t *testing.T) {
		r := c.Do(f, http.MethodGet, "/v1/errors?kind=no_such_kind", nil, nil)
		wantFieldError(t, r, "GET /v1/errors?kind=no_such_kind", "kind")
	})

	if again := full(); !slices.Equal(seqs(again), seqs(all)) {
		t.Logf("records were added during the checks (%v, then %v); an election happened", seqs(all), seqs(again))
	}
	// The error database is replicated: every node serves the same list.
	c.WaitConverged()
	want := mustJSON(full())
	for _, n := range c.Nodes {
		var p errorsPage
		getJSON(t, c, n, "/v1/errors?limit=500", &p)
		if got := mustJSON(p.Errors); got != want {
			t.Errorf("GET /v1/errors on %s = %s, want %s as on %s", n.ID, got, want, f.ID)
		}
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("<%v>", err)
	}
	return string(b)
}

// ---------------------------------------------------------------------------
// GET /v1/nodes

// TestNodesEndpointFilters drives four users' tasks with handler doubles so
// that each leaves a node in one lifecycle status — active (provisioning
// parks), warm (the node became ready, then its task was cancelled),
// destroying (its task failed and deleting its server hangs) and deleted
// (its task failed and deleting succeeded) — and checks the status and
// user_id filters of GET /v1/nodes.
func TestNodesEndpointFilters(t *testing.T) {
	provisioning := runner.HandlerFunc(func(_ context.Context, tk *fsm.Task, _ string) runner.Result {
		switch tk.UserID {
		case "u-warm":
			return runner.Done(fsm.StepData{ServerID: 1, IPv4: "127.0.0.1"})
		case "u-destroying", "u-deleted":
			return runner.Failed(runner.Permanentf("no capacity"))
		}
		return runner.PollIn(5 * time.Minute)
	})
	hs := server.TestHandlers()
	hs[fsm.StepNodeProvisioning] = provisioning
	c := server.NewTestCluster(t, server.TestOptions{
		Handlers: hs,
		Server:   sharedControlPlane,
		Runner: func(rc *runner.Config) {
			rc.DestroyNode = func(ctx context.Context, n *fsm.Node) error {
				if n.UserID == "u-destroying" {
					<-ctx.Done() // the cloud never answers
					return ctx.Err()
				}
				return nil
			}
		},
	})
	leader, followers := c.Followers()
	f := followers[1]

	tasks := map[string]*fsm.Task{}
	for i, u := range []string{"u-active", "u-warm", "u-destroying", "u-deleted"} {
		tasks[u] = submitTask(t, c, c.Nodes[i%3], u, "nodes "+u)
	}
	warm := waitTask(t, leader, tasks["u-warm"].ID, "parked at node_agent_ready", func(tk *fsm.Task) bool { return parkedAt(tk, fsm.StepNodeAgentReady) })
	waitKeys(t, c)
	if r := callback(t, c, f, "/v1/nodes/"+warm.NodeID+"/ready", tokens.ScopeNode, warm.NodeID, `{"agentVersion":"t"}`); r.Status/100 != 2 {
		t.Fatalf("node ready callback = %d %s", r.Status, r.Body)
	}
	if r := c.Do(f, http.MethodPost, "/v1/tasks/"+warm.ID+"/cancel", []byte(`{"reason":"make the node warm"}`), nil); r.Status != http.StatusOK {
		t.Fatalf("cancel = %d %s", r.Status, r.Body)
	}

	wantStatus := map[string]fsm.NodeStatus{
		"u-active": fsm.NodeActive, "u-warm": fsm.NodeWarm, "u-destroying": fsm.NodeDestroying, "u-deleted": fsm.NodeDeleted,
	}
	nodeOf := map[string]string{} // user → node id
	server.WaitFor(t, server.TestWait, "one node per user in its status on "+f.ID, func() error {
		var p nodesPage
		getJSON(t, c, f, "/v1/nodes", &p)
		for u, st := range wantStatus {
			var mine []api.NodeView
			for _, n := range p.Nodes {
				if n.UserID == u {
					mine = append(mine, n)
				}
			}
			if len(mine) != 1 || mine[0].Status != st {
				return fmt.Errorf("%s's nodes = %s, want one %s", u, mustJSON(mine), st)
			}
			nodeOf[u] = mine[0].ID
		}
		if len(p.Nodes) != len(wantStatus) {
			return fmt.Errorf("%d nodes, want %d: %s", len(p.Nodes), len(wantStatus), mustJSON(p.Nodes))
		}
		return nil
	})
	for u, tk := range tasks {
		if got, _ := f.FSM.Task(tk.ID); got.NodeID != nodeOf[u] {
			t.Errorf("%s's task has node %q, the node list says %s", u, got.NodeID, nodeOf[u])
		}
	}

	list := func(q string) []api.NodeView {
		t.Helper()
		var p nodesPage
		r := getJSON(t, c, f, "/v1/nodes"+q, &p)
		if p.Nodes == nil {
			t.Errorf("GET /v1/nodes%s: nodes is %s, want a list", q, r.Body)
		}
		return p.Nodes
	}
	check := func(q string, want ...string) {
		t.Helper()
		got := list(q)
		if !slices.Equal(nodeIDs(got), want) && !(len(got) == 0 && len(want) == 0) {
			t.Errorf("GET /v1/nodes%s = %v, want %v", q, nodeIDs(got), want)
		}
	}
	t.Run("status", func(t *testing.T) {
		for u, st := range wantStatus {
			check("?status="+string(st), nodeOf[u])
		}
	})
	t.Run("user_id", func(t *testing.T) {
		for u := range wantStatus {
			check("?user_id="+u, nodeOf[u])
		}
		check("?user_id=nobody")
		check("?status=warm&user_id=u-warm", nodeOf["u-warm"])
		check("?status=active&user_id=u-warm")
		all := list("")
		ids := nodeIDs(all)
		if !slices.IsSorted(ids) || len(ids) != 4 {
			t.Errorf("GET /v1/nodes = %v, want the four nodes in id order", ids)
		}
		for _, n := range all {
			if n.Health == "" || n.UserID == "" || n.TaskID == "" || n.CreatedAt.IsZero() {
				t.Errorf("node view %s lacks fields", mustJSON(n))
			}
		}
		for _, n := range list("?user_id=u-warm") {
			if !n.Ready || n.WarmSince == nil {
				t.Errorf("warm node %s: ready %v, warm since %v", n.ID, n.Ready, n.WarmSince)
			}
		}
	})
	t.Run("bad values", func(t *testing.T) {
		wantFieldError(t, c.Do(f, http.MethodGet, "/v1/nodes?status=running", nil, nil), "GET /v1/nodes?status=running", "status")
		wantFieldError(t, c.Do(f, http.MethodGet, "/v1/nodes?status=ACTIVE", nil, nil), "GET /v1/nodes?status=ACTIVE", "status")
		wantFieldError(t, c.Do(f, http.MethodGet, "/v1/nodes?user_id=bad%20user", nil, nil), "GET /v1/nodes?user_id=bad user", "user_id")
	})
}

// ---------------------------------------------------------------------------
// GET /v1/events

type sseEvent struct {
	ID, Type string
	Event    api.EventMessage
}

// sseStream is a client of GET /v1/events.
type sseStream struct {
	t      *testing.T
	node   string
	Status int
	Body   []byte // the answer when Status is not 200
	events chan sseEvent
}

var streamClient = &http.Client{} // no timeout: streams last

// openEvents connects to n's event stream with the query (e.g.
// "?task_id=x") and Last-Event-ID (if not empty). It returns once the
// answer's headers are in: from then on every change is delivered.
func openEvents(t *testing.T, n *server.TestNode, query, lastID string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+"/v1/events"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := streamClient.Do(req)
	if err != nil {
		t.Fatalf("GET /v1/events%s on %s: %v", query, n.ID, err)
	}
	s := &sseStream{t: t, node: n.ID, Status: resp.StatusCode}
	if resp.StatusCode != http.StatusOK {
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		resp.Body.Close()
		s.Body = b.Bytes()
		return s
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("GET /v1/events on %s: Content-Type %q", n.ID, ct)
	}
	s.events = make(chan sseEvent, 1<<14)
	go func() {
		defer close(s.events)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		var ev sseEvent
		var data strings.Builder
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.Type != "" || data.Len() > 0 {
					if ev.Type == "task" || ev.Type == "node" {
						if err := json.Unmarshal([]byte(data.String()), &ev.Event); err != nil {
							ev.Type = "undecodable: " + err.Error()
						}
					}
					select {
					case s.events <- ev:
					case <-ctx.Done():
						return
					}
				}
				ev, data = sseEvent{}, strings.Builder{}
			case strings.HasPrefix(line, ":"): // a comment (keep-alive)
			default:
				field, value, _ := strings.Cut(line, ":")
				value = strings.TrimPrefix(value, " ")
				switch field {
				case "id":
					ev.ID = value
				case "event":
					ev.Type = value
				case "data":
					if data.Len() > 0 {
						data.WriteByte('\n')
					}
					data.WriteString(value)
				}
			}
		}
	}()
	return s
}

// until reads events until stop accepts one, and returns those read,
// that one included.
func (s *sseStream) until(what string, stop func(sseEvent) bool) []sseEvent {
	s.t.Helper()
	var got []sseEvent
	deadline := time.NewTimer(server.TestWait)
	defer deadline.Stop()
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				s.t.Fatalf("event stream on %s ended while waiting for %s; got %s", s.node, what, describe(got))
			}
			got = append(got, ev)
			if stop(ev) {
				return got
			}
		case <-deadline.C:
			s.t.Fatalf("waited %s on %s's event stream for %s; got %s", server.TestWait, s.node, what, describe(got))
		}
	}
}

// take reads exactly n events.
func (s *sseStream) take(n int) []sseEvent {
	s.t.Helper()
	i := 0
	return s.until(fmt.Sprintf("%d events", n), func(sseEvent) bool { i++; return i == n })
}

func describe(evs []sseEvent) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "[%s %s", e.ID, e.Type)
		if e.Event.Task != nil {
			fmt.Fprintf(&b, " task %s %s/%s", e.Event.Task.ID, e.Event.Task.Status, e.Event.Task.ExecutionStep)
		}
		if e.Event.Node != nil {
			fmt.Fprintf(&b, " node %s %s", e.Event.Node.ID, e.Event.Node.Status)
		}
		b.WriteString("] ")
	}
	return b.String()
}

func eventIDs(evs []sseEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

// taskEvent accepts the event of task id that is its newest change on n
// (events carry what changed, not the task: cond reads n's copy) when cond
// holds for it.
func taskEvent(n *server.TestNode, id string, cond func(*fsm.Task) bool) func(sseEvent) bool {
	return func(e sseEvent) bool {
		if e.Event.Task == nil || e.Event.Task.ID != id {
			return false
		}
		tk, ok := n.FSM.Task(id)
		return ok && tk.UpdatedAt.Equal(e.Event.Task.UpdatedAt) && cond(tk)
	}
}

// TestEventsStream: a client of GET /v1/events receives the changes of a
// submitted task; with task_id it receives that task's only, though other
// tasks changed in between; resuming with Last-Event-ID on another node
// continues right after that id, without repeating it (event ids are the
// same on every node); a malformed Last-Event-ID or task_id is refused.
func TestEventsStream(t *testing.T) {
	release := make(chan struct{})
	var releaseOnce sync.Once
	provisioning := runner.HandlerFunc(func(ctx context.Context, tk *fsm.Task, _ string) runner.Result {
		if tk.Prompt == "events A" {
			select {
			case <-release:
				return runner.Done(fsm.StepData{ServerID: 1, IPv4: "127.0.0.1"})
			case <-ctx.Done():
				return runner.Failed(ctx.Err())
			}
		}
		return runner.PollIn(5 * time.Minute)
	})
	hs := server.TestHandlers()
	hs[fsm.StepNodeProvisioning] = provisioning
	c := server.NewTestCluster(t, server.TestOptions{Handlers: hs})
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // before the nodes close
	leader, followers := c.Followers()
	f1, f2 := followers[0], followers[1]

	// Task A's provisioning blocks until released.
	a := submitTask(t, c, f1, "u1", "events A")
	waitTask(t, leader, a.ID, "provisioning in flight", func(tk *fsm.Task) bool { return tk.Step == fsm.StepNodeProvisioning && tk.InFlight })
	all := openEvents(t, f1, "", "")
	onlyA := openEvents(t, f2, "?task_id="+a.ID, "")
	if all.Status != http.StatusOK || onlyA.Status != http.StatusOK {
		t.Fatalf("GET /v1/events = %d %s / %d %s", all.Status, all.Body, onlyA.Status, onlyA.Body)
	}

	// Task B runs to its park while A waits: all of B's events.
	b := submitTask(t, c, f2, "u2", "events B")
	seen := all.until("B parked at node_provisioning", taskEvent(leader, b.ID, func(tk *fsm.Task) bool { return parkedAt(tk, fsm.StepNodeProvisioning) }))
	var bEvents []sseEvent
	for _, e := range seen {
		if e.Event.Task != nil && e.Event.Task.ID == b.ID {
			bEvents = append(bEvents, e)
		}
	}
	if len(bEvents) < 3 || bEvents[0].Event.Task.Status != fsm.StatusQueued || bEvents[0].Event.Task.ExecutionStep != fsm.StepNodeSelection {
		t.Fatalf("B's events = %s, want submitted (queued at node_selection), then its steps", describe(bEvents))
	}
	var bNode bool // node_selection made B's node: a node event at the same index
	for _, e := range seen {
		if e.Type == "node" && e.Event.Node != nil && e.Event.Node.TaskID == b.ID {
			bNode = true
		}
	}
	if !bNode {
		t.Errorf("no node event for B's new node in %s", describe(seen))
	}
	lastB := bEvents[len(bEvents)-1].Event.Index

	// A moves on and parks at node_agent_ready.
	releaseOnce.Do(func() { close(release) })
	aParked := taskEvent(leader, a.ID, func(tk *fsm.Task) bool { return parkedAt(tk, fsm.StepNodeAgentReady) })
	seen = append(seen, all.until("A parked at node_agent_ready", aParked)...)
	gotA := onlyA.until("A parked at node_agent_ready", aParked)

	t.Run("received", func(t *testing.T) {
		for i, e := range seen {
			if e.Type != "task" && e.Type != "node" {
				t.Errorf("event %d: type %q", i, e.Type)
			}
			if want := fmt.Sprintf("%d-", e.Event.Index); e.ID != e.Event.ID || !strings.HasPrefix(e.ID, want) {
				t.Errorf("event %d: SSE id %q, data id %q, index %d", i, e.ID, e.Event.ID, e.Event.Index)
			}
			if i > 0 && !eventAfter(e.ID, seen[i-1].ID) {
				t.Errorf("event ids not increasing: %s then %s", seen[i-1].ID, e.ID)
			}
		}
	})
	t.Run("task_id filter", func(t *testing.T) {
		var afterB []string
		for _, e := range gotA {
			if e.Type != "task" || e.Event.Task == nil || e.Event.Task.ID != a.ID {
				t.Errorf("the stream filtered by task %s delivered %s", a.ID, describe([]sseEvent{e}))
			}
			if e.Event.Index > lastB {
				afterB = append(afterB, e.ID)
			}
		}
		if len(afterB) == 0 {
			t.Fatalf("the filtered stream has no event after B's (index %d): %s", lastB, describe(gotA))
		}
		// The same events, by id, as the unfiltered stream of another node.
		var want []string
		for _, e := range seen {
			if e.Event.Task != nil && e.Event.Task.ID == a.ID && e.Event.Index > lastB {
				want = append(want, e.ID)
			}
		}
		if !slices.Equal(afterB, want) {
			t.Errorf("A's events after B on %s = %v, on %s = %v", f2.ID, afterB, f1.ID, want)
		}
	})
	t.Run("resume on another node", func(t *testing.T) {
		from := bEvents[0].ID // B's submission, seen on f1
		i := slices.Index(eventIDs(seen), from)
		want := seen[i+1:]
		resumed := openEvents(t, leader, "", from)
		if resumed.Status != http.StatusOK {
			t.Fatalf("resume on %s = %d %s", leader.ID, resumed.Status, resumed.Body)
		}
		got := resumed.take(len(want))
		if !slices.Equal(eventIDs(got), eventIDs(want)) {
			t.Fatalf("resumed on %s after %s: %v, want %v as on %s", leader.ID, from, eventIDs(got), eventIDs(want), f1.ID)
		}
		for j := range got {
			g, w := got[j].Event, want[j].Event
			if got[j].Type != want[j].Type || (g.Task == nil) != (w.Task == nil) || (g.Task != nil && (g.Task.ID != w.Task.ID || g.Task.UpdatedAt != w.Task.UpdatedAt)) ||
				(g.Node != nil && g.Node.ID != w.Node.ID) {
				t.Errorf("event %s on %s = %s, on %s = %s", got[j].ID, leader.ID, describe(got[j:j+1]), f1.ID, describe(want[j:j+1]))
			}
		}
		// With the task filter, on the third node: A's events after that id.
		resumedA := openEvents(t, f2, "?task_id="+a.ID, from)
		var wantA []string
		for _, e := range want {
			if e.Event.Task != nil && e.Event.Task.ID == a.ID {
				wantA = append(wantA, e.ID)
			}
		}
		if got := eventIDs(resumedA.take(len(wantA))); !slices.Equal(got, wantA) {
			t.Errorf("resumed A on %s after %s = %v, want %v", f2.ID, from, got, wantA)
		}
	})
	t.Run("bad Last-Event-ID", func(t *testing.T) {
		for _, id := range []string{"abc", "12", "12-", "-3", "12-x", "1-2-3", "0x10-0"} {
			s := openEvents(t, f1, "", id)
			r := server.TestResponse{Status: s.Status, Body: s.Body, Header: http.Header{"Content-Type": {"application/json"}}}
			if s.Status != http.StatusBadRequest {
				t.Errorf("Last-Event-ID %q = %d, want 400", id, s.Status)
				continue
			}
			if e := decodeError(t, r); e.Code != api.CodeInvalidField || !strings.Contains(e.Message, "Last-Event-ID") {
				t.Errorf("Last-Event-ID %q = %s %q", id, e.Code, e.Message)
			}
		}
		s := openEvents(t, f1, "?task_id=bad%20id", "")
		if s.Status != http.StatusBadRequest {
			t.Fatalf("task_id=bad id = %d, want 400", s.Status)
		}
		wantFieldError(t, server.TestResponse{Status: s.Status, Body: s.Body, Header: http.Header{"Content-Type": {"application/json"}}}, "GET /v1/events?task_id=bad id", "task_id")
	})
}

// eventAfter reports whether event id a comes after b ("<index>-<n>").
func eventAfter(a, b string) bool {
	ai, an := splitEventID(a)
	bi, bn := splitEventID(b)
	return ai > bi || (ai == bi && an > bn)
}

func splitEventID(s string) (uint64, int) {
	x, y, _ := strings.Cut(s, "-")
	i, _ := strconv.ParseUint(x, 10, 64)
	n, _ := strconv.Atoi(y)
	return i, n
}

// ---------------------------------------------------------------------------
// JWKS, cluster status, state hash

// TestJWKSAndClusterStatus: once the leader has made a signing key, every
// node serves it at /.well-known/jwks.json as an RS256 JWK; GET /v1/cluster
// on every node reports the same leader, term and members with their
// addresses; GET /v1/cluster/state-hash agrees on every node and moves
// with the state.
func TestJWKSAndClusterStatus(t *testing.T) {
	c := server.NewTestCluster(t, server.TestOptions{})
	c.Leader()
	waitKeys(t, c)

	t.Run("jwks", func(t *testing.T) {
		for _, n := range c.Nodes {
			keys := n.FSM.SigningKeys()
			var set tokens.JWKS
			r := getJSON(t, c, n, "/.well-known/jwks.json", &set)
			if cc := r.Header.Get("Cache-Control"); cc != "max-age=300" {
				t.Errorf("%s: Cache-Control %q", n.ID, cc)
			}
			if len(set.Keys) != len(keys) || len(keys) == 0 {
				t.Fatalf("%s: JWKS has %d keys, the state %d", n.ID, len(set.Keys), len(keys))
			}
			for i, k := range set.Keys {
				if k.Kty != "RSA" || k.Alg != "RS256" || k.Use != "sig" || k.Kid != keys[i].ID {
					t.Errorf("%s: key %d = %+v, want RSA RS256 sig %s", n.ID, i, k, keys[i].ID)
				}
				priv, err := tokens.ParsePEM(keys[i].PEM)
				if err != nil {
					t.Fatalf("%s: the state's key %s: %v", n.ID, keys[i].ID, err)
				}
				pub := publicKey(t, k)
				if pub.N.Cmp(priv.Private.N) != 0 || pub.E != priv.Private.E || pub.N.BitLen() < 2048 {
					t.Errorf("%s: JWK %s is not the public half of the state's key (%d bits)", n.ID, k.Kid, pub.N.BitLen())
				}
			}
		}
	})

	t.Run("cluster", func(t *testing.T) {
		// Polled: the status is checked whole, on a stable leader.
		server.WaitFor(t, server.TestWait, "every node's /v1/cluster to agree", func() error {
			leader := c.Leader()
			var term uint64
			for _, n := range c.Nodes {
				var st cluster.Status
				getJSON(t, c, n, "/v1/cluster", &st)
				wantState := "follower"
				if n == leader {
					wantState = "leader"
				}
				switch {
				case st.NodeID != n.ID || st.State != wantState:
					return fmt.Errorf("%s: node %q state %q, want %s %s", n.ID, st.NodeID, st.State, n.ID, wantState)
				case st.LeaderID != leader.ID || st.LeaderAPI != leader.URL:
					return fmt.Errorf("%s: leader %q at %q, want %s at %s", n.ID, st.LeaderID, st.LeaderAPI, leader.ID, leader.URL)
				case st.Term == 0 || (term != 0 && st.Term != term):
					return fmt.Errorf("%s: term %d, others %d", n.ID, st.Term, term)
				case st.CommitIndex == 0 || st.AppliedIndex == 0 || st.AppliedIndex > st.LastIndex || st.CommitIndex > st.LastIndex:
					return fmt.Errorf("%s: commit %d, applied %d, last %d", n.ID, st.CommitIndex, st.AppliedIndex, st.LastIndex)
				case len(st.Members) != len(c.Nodes):
					return fmt.Errorf("%s: %d members: %+v", n.ID, len(st.Members), st.Members)
				}
				term = st.Term
				for i, m := range st.Members {
					want := c.Nodes[i] // sorted by id: n1, n2, n3
					ms := "follower"
					if want == leader {
						ms = "leader"
					}
					if m.ID != want.ID || m.RaftAddr != string(want.Addr) || m.APIAddr != want.URL || !m.Voter || m.State != ms {
						return fmt.Errorf("%s: member %d = %+v, want %s raft %s api %s voter %s", n.ID, i, m, want.ID, want.Addr, want.URL, ms)
					}
				}
			}
			return nil
		})
	})

	t.Run("state-hash", func(t *testing.T) {
		agree := func(after uint64) (uint64, string) {
			t.Helper()
			var idx uint64
			var hash string
			server.WaitFor(t, server.TestWait, "every node's state hash to agree", func() error {
				idx, hash = 0, ""
				for _, n := range c.Nodes {
					var sh api.StateHash
					getJSON(t, c, n, "/v1/cluster/state-hash", &sh)
					if sh.NodeID != n.ID || sh.Hash == "" || sh.AppliedIndex == 0 {
						return fmt.Errorf("%s: %+v", n.ID, sh)
					}
					if sh.AppliedIndex <= after {
						return fmt.Errorf("%s: applied index %d, want past %d", n.ID, sh.AppliedIndex, after)
					}
					if hash == "" {
						idx, hash = sh.AppliedIndex, sh.Hash
					} else if sh.AppliedIndex != idx || sh.Hash != hash {
						return fmt.Errorf("%s at %d: %.12s; %s at %d: %.12s", n.ID, sh.AppliedIndex, sh.Hash, c.Nodes[0].ID, idx, hash)
					}
				}
				return nil
			})
			return idx, hash
		}
		idx, hash := agree(0)
		if _, fsmHash := c.WaitConverged(); fsmHash == "" {
			t.Fatal("no FSM hash")
		}
		submitTask(t, c, c.Nodes[0], "u1", "changes the hash")
		idx2, hash2 := agree(idx)
		if hash2 == hash {
			t.Errorf("state hash unchanged (%.12s) after a task was submitted (index %d → %d)", hash, idx, idx2)
		}
		// ?snapshot=true is each node's own state, whose SHA-256 is its
		// hash; replicas that agree have no record that differs.
		server.WaitFor(t, server.TestWait, "every node's own state to match the agreed hash", func() error {
			_, hash := agree(0)
			var first []byte
			for _, n := range c.Nodes {
				r := c.Do(n, http.MethodGet, "/v1/cluster/state-hash?snapshot=true", nil, nil)
				if r.Status != http.StatusOK {
					t.Fatalf("GET state-hash?snapshot=true on %s = %d %s", n.ID, r.Status, r.Body)
				}
				if sum := sha256.Sum256(r.Body); hex.EncodeToString(sum[:]) != hash {
					return fmt.Errorf("%s: its state's SHA-256 is not the agreed hash %.12s (a commit meanwhile?)", n.ID, hash)
				}
				if first == nil {
					first = r.Body
					continue
				}
				if d, err := fsm.SnapshotDifference(bytes.NewReader(first), bytes.NewReader(r.Body)); err != nil || d != "" {
					t.Fatalf("%s and %s agree on the hash, yet SnapshotDifference = %q, %v", c.Nodes[0].ID, n.ID, d, err)
				}
			}
			return nil
		})
	})
}

func publicKey(t *testing.T, k tokens.JWK) *rsa.PublicKey {
	t.Helper()
	n, err1 := base64.RawURLEncoding.DecodeString(k.N)
	e, err2 := base64.RawURLEncoding.DecodeString(k.E)
	if err1 != nil || err2 != nil || len(n) == 0 || len(e) == 0 {
		t.Fatalf("JWK %s: n %v, e %v", k.Kid, err1, err2)
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
}

// ---------------------------------------------------------------------------
// POST /v1/cluster/transfer-leadership

// TestTransferLeadership: the endpoint, called on a follower (and so
// forwarded), moves leadership off the leader; with {"to": id} it moves it
// to that member. Unknown and malformed targets are refused.
func TestTransferLeadership(t *testing.T) {
	c := server.NewTestCluster(t, server.TestOptions{})
	old, followers := c.Followers()
	c.WaitConverged()

	type answer struct {
		From string `json:"transferred_from"`
		To   string `json:"to"`
	}
	r := c.Do(followers[0], http.MethodPost, "/v1/cluster/transfer-leadership", nil, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("transfer-leadership on %s = %d %s, want 200", followers[0].ID, r.Status, r.Body)
	}
	var ans answer
	if err := json.Unmarshal(r.Body, &ans); err != nil || ans.From == "" || ans.To != "" {
		t.Fatalf("transfer answer %s: %v", r.Body, err)
	}
	if ans.From != old.ID {
		t.Logf("leadership moved from %s to %s before the transfer", old.ID, ans.From)
	}
	from := c.Node(ans.From)
	nl := c.WaitLeaderNot(from)
	t.Logf("transfer moved leadership from %s to %s", from.ID, nl.ID)

	// To a named member: the one that is neither the leader nor the first.
	var target *server.TestNode
	for _, n := range c.Others(nl) {
		if n != from {
			target = n
		}
	}
	body := []byte(fmt.Sprintf(`{"to":%q}`, target.ID))
	via := from // a follower now: forwarded
	r = c.Do(via, http.MethodPost, "/v1/cluster/transfer-leadership", body, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("transfer-leadership to %s via %s = %d %s, want 200", target.ID, via.ID, r.Status, r.Body)
	}
	if err := json.Unmarshal(r.Body, &ans); err != nil || ans.To != target.ID {
		t.Fatalf("transfer answer %s, want to %s: %v", r.Body, target.ID, err)
	}
	if got := c.Leader(); got != target {
		t.Fatalf("leader after the transfer to %s is %s", target.ID, got.ID)
	}
	if got := r.Header.Get("X-Tdf-Forwarded-To"); got != "" && got != ans.From {
		t.Errorf("X-Tdf-Forwarded-To = %q, answered by %s", got, ans.From)
	}

	// Refusals, answered as JSON errors, leadership untouched.
	r = c.Do(target, http.MethodPost, "/v1/cluster/transfer-leadership", []byte(`{"to":"n9"}`), nil)
	if r.Status != http.StatusNotFound || decodeError(t, r).Code != api.CodeNotFound {
		t.Errorf("transfer to unknown n9 = %d %s, want 404 not_found", r.Status, r.Body)
	}
	wantFieldError(t, c.Do(target, http.MethodPost, "/v1/cluster/transfer-leadership", []byte(`{"to":"bad id"}`), nil), "transfer to \"bad id\"", "to")
	r = c.Do(target, http.MethodPost, "/v1/cluster/transfer-leadership", []byte(`{"to":`), nil)
	if r.Status != http.StatusBadRequest || decodeError(t, r).Code != api.CodeInvalidJSON {
		t.Errorf("transfer with broken JSON = %d %s, want 400 invalid_json", r.Status, r.Body)
	}
	r = c.Do(target, http.MethodPost, "/v1/cluster/transfer-leadership", []byte(`{"to":"n1","now":true}`), nil)
	if r.Status != http.StatusBadRequest {
		t.Errorf("transfer with an unknown field = %d %s, want 400", r.Status, r.Body)
	}
	if got := c.Leader(); got != target {
		t.Errorf("a refused transfer moved leadership from %s to %s", target.ID, got.ID)
	}
	t.Run("to itself", func(t *testing.T) {
		leader := c.Leader()
		r := c.Do(leader, http.MethodPost, "/v1/cluster/transfer-leadership", []byte(fmt.Sprintf(`{"to":%q}`, leader.ID)), nil)
		decodeError(t, r)
		if r.Status != http.StatusConflict {
			t.Errorf("transfer to the leader itself = %d %s, want 409", r.Status, r.Body)
		}
	})
}

// ---------------------------------------------------------------------------
// POST /v1/tasks/{id}/idle-reset

// TestIdleReset: idle-reset is refused with 409 invalid_transition while a
// task is not awaiting follow-up (queued at provisioning, and after it was
// cancelled), accepted while it is (pushing the idle deadline out), and
// answers 404/400 for unknown and malformed ids.
func TestIdleReset(t *testing.T) {
	done := runner.HandlerFunc(func(context.Context, *fsm.Task, string) runner.Result { return runner.Done(fsm.StepData{}) })
	provisioning := runner.HandlerFunc(func(_ context.Context, tk *fsm.Task, _ string) runner.Result {
		if tk.Prompt == "idle parked" {
			return runner.PollIn(5 * time.Minute)
		}
		return runner.Done(fsm.StepData{ServerID: 3, IPv4: "127.0.0.1"})
	})
	c := server.NewTestCluster(t, server.TestOptions{Server: sharedControlPlane, Handlers: map[fsm.Step]runner.Handler{
		fsm.StepNodeProvisioning: provisioning, fsm.StepNodeAgentReady: done, fsm.StepWorkspaceCreate: done,
		fsm.StepAgentSession: done,
	}})
	leader, followers := c.Followers()
	f := followers[0]

	refused := func(via *server.TestNode, id, what string) {
		t.Helper()
		r := c.Do(via, http.MethodPost, "/v1/tasks/"+id+"/idle-reset", nil, nil)
		if r.Status != http.StatusConflict {
			t.Fatalf("idle-reset %s via %s = %d %s, want 409", what, via.ID, r.Status, r.Body)
		}
		if e := decodeError(t, r); e.Code != api.CodeInvalidTrans || !strings.Contains(e.Message, "not awaiting follow-up") {
			t.Errorf("idle-reset %s via %s = %s %q, want %s", what, via.ID, e.Code, e.Message, api.CodeInvalidTrans)
		}
	}

	parked := submitTask(t, c, f, "u1", "idle parked")
	parkedTask := waitTask(t, leader, parked.ID, "parked at node_provisioning", func(tk *fsm.Task) bool { return parkedAt(tk, fsm.StepNodeProvisioning) })
	refused(f, parked.ID, "of a task at node_provisioning")
	refused(leader, parked.ID, "of a task at node_provisioning")
	if now, _ := leader.FSM.Task(parked.ID); now.UpdatedAt != parkedTask.UpdatedAt || !now.Alarm.Due.Equal(parkedTask.Alarm.Due) {
		t.Errorf("a refused idle-reset changed the task: %+v → %+v", parkedTask.Alarm, now.Alarm)
	}

	r := c.Do(f, http.MethodPost, "/v1/tasks/t-no-such-task/idle-reset", nil, nil)
	if r.Status != http.StatusNotFound || decodeError(t, r).Code != api.CodeNotFound {
		t.Errorf("idle-reset of an unknown task = %d %s, want 404 not_found", r.Status, r.Body)
	}
	r = c.Do(f, http.MethodPost, "/v1/tasks/bad%20id/idle-reset", nil, nil)
	if r.Status != http.StatusBadRequest || decodeError(t, r).Code != api.CodeInvalidID {
		t.Errorf("idle-reset of a malformed id = %d %s, want 400 invalid_id", r.Status, r.Body)
	}

	// A task awaiting follow-up: the workspace and task callbacks move it
	// there.
	run := submitTask(t, c, f, "u2", "idle run")
	task := waitTask(t, leader, run.ID, "waiting for its workspace", func(tk *fsm.Task) bool { return tk.Step == fsm.StepWorkspaceReady })
	waitKeys(t, c)
	if r := callback(t, c, f, "/v1/workspaces/"+task.WorkspaceID+"/ready", tokens.ScopeWorkspace, task.WorkspaceID, `{"status":"running"}`); r.Status/100 != 2 {
		t.Fatalf("workspace ready callback = %d %s", r.Status, r.Body)
	}
	waitTask(t, leader, run.ID, "running", func(tk *fsm.Task) bool { return tk.Step == fsm.StepRunning })
	if r := callback(t, c, f, "/v1/tasks/"+run.ID+"/status", tokens.ScopeWorkspace, task.WorkspaceID, `{"executionStep":"awaiting_followup"}`); r.Status/100 != 2 {
		t.Fatalf("task status callback = %d %s", r.Status, r.Body)
	}
	task = waitTask(t, f, run.ID, "awaiting follow-up", func(tk *fsm.Task) bool { return tk.Step == fsm.StepAwaitingFollowup && tk.Alarm != nil })
	before := task.Alarm.Due
	r = c.Do(f, http.MethodPost, "/v1/tasks/"+run.ID+"/idle-reset", []byte(`{"user_id":"u2"}`), nil)
	if r.Status != http.StatusOK {
		t.Fatalf("idle-reset of a task awaiting follow-up = %d %s, want 200", r.Status, r.Body)
	}
	if got := decodeTask(t, r); got.ExecutionStep != fsm.StepAwaitingFollowup || got.StepDeadline == nil || !got.StepDeadline.After(before) {
		t.Errorf("after idle-reset: step %s deadline %v, want the deadline after %s", got.ExecutionStep, got.StepDeadline, before)
	}
	waitTask(t, f, run.ID, "idle deadline alarm moved on", func(tk *fsm.Task) bool {
		return tk.Alarm != nil && tk.Alarm.Kind == fsm.AlarmDeadline && tk.Alarm.Due.After(before)
	})

	// Cancelled: no longer awaiting follow-up.
	if r := c.Do(f, http.MethodPost, "/v1/tasks/"+run.ID+"/cancel", nil, nil); r.Status != http.StatusOK {
		t.Fatalf("cancel = %d %s", r.Status, r.Body)
	}
	waitTask(t, leader, run.ID, "cancelled", func(tk *fsm.Task) bool { return tk.Status == fsm.StatusCancelled })
	refused(f, run.ID, "of a cancelled task")
}

// ---------------------------------------------------------------------------
// A failing step in the error database, the metrics and the logs

// logBuffer is a thread-safe log sink.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// captureLogs returns a JSON hclog logger writing into a buffer, whose
// tail is logged if the test fails.
func captureLogs(t *testing.T) (hclog.Logger, *logBuffer) {
	buf := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			s := buf.String()
			if len(s) > 20000 {
				s = s[len(s)-20000:]
			}
			t.Logf("captured logs (tail):\n%s", s)
		}
	})
	return hclog.New(&hclog.LoggerOptions{Name: "tdf", Level: hclog.Info, Output: buf, JSONFormat: true}), buf
}

// TestFailingStepInErrorsMetricsAndLogs: a step handler double fails
// permanently for one task. The failure is an error record (task_failed,
// with the task, step and message) in GET /v1/errors?task_id=, is counted in
// the metrics of the leader that ran it (tdf_step_duration_seconds with
// outcome fail, tdf_tasks{status="failed"}), and is logged once by the
// runner's "step" line with outcome=fail.
func TestFailingStepInErrorsMetricsAndLogs(t *testing.T) {
	const msg = "server type cx23 is sold out"
	provisioning := runner.HandlerFunc(func(_ context.Context, tk *fsm.Task, _ string) runner.Result {
		switch tk.Prompt {
		case "doomed":
			return runner.Failed(runner.Permanentf("%s", msg))
		case "also doomed":
			return runner.Failed(runner.Permanentf("another failure"))
		}
		return runner.PollIn(5 * time.Minute)
	})
	hs := server.TestHandlers()
	hs[fsm.StepNodeProvisioning] = provisioning
	logger, logs := captureLogs(t)
	c := server.NewTestCluster(t, server.TestOptions{Handlers: hs, Logger: logger})
	_, followers := c.Followers()

	other := submitTask(t, c, followers[1], "u2", "also doomed")
	doomed := submitTask(t, c, followers[0], "u1", "doomed")
	task := waitTask(t, followers[0], doomed.ID, "failed", func(tk *fsm.Task) bool { return tk.Status == fsm.StatusFailed })
	waitTask(t, followers[0], other.ID, "failed", func(tk *fsm.Task) bool { return tk.Status == fsm.StatusFailed })
	if task.ErrorMessage != msg {
		t.Errorf("the task's error_message = %q, want %q", task.ErrorMessage, msg)
	}
	var attempt *fsm.StepAttempt
	for i := range task.Steps {
		if s := &task.Steps[i]; s.Step == fsm.StepNodeProvisioning && s.Outcome == string(fsm.OutcomeFail) {
			attempt = s
		}
	}
	if attempt == nil || attempt.Leader == "" || attempt.Error != msg {
		t.Fatalf("the task's steps = %s, want a failed node_provisioning attempt", mustJSON(task.Steps))
	}

	t.Run("errors", func(t *testing.T) {
		var p errorsPage
		server.WaitFor(t, server.TestWait, "the record on "+followers[1].ID, func() error {
			getJSON(t, c, followers[1], "/v1/errors?task_id="+doomed.ID, &p)
			if len(p.Errors) == 0 {
				return errors.New("no record yet")
			}
			return nil
		})
		if len(p.Errors) != 1 {
			t.Fatalf("GET /v1/errors?task_id=%s = %s, want one record", doomed.ID, mustJSON(p.Errors))
		}
		e := p.Errors[0]
		if e.Kind != fsm.ErrKindFailed || e.TaskID != doomed.ID || e.Step != fsm.StepNodeProvisioning || e.Message != msg ||
			e.Class != fsm.ClassPermanent || e.NodeID != task.NodeID || e.Attempt != attempt.Attempt || e.Leader != attempt.Leader || e.At.IsZero() {
			t.Errorf("record = %s, want task_failed of %s at node_provisioning: %q (leader %s)", mustJSON(e), doomed.ID, msg, attempt.Leader)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		// The leader that ran the step counted it (normally the leader
		// still; an election under load may have moved leadership since).
		ran := c.Node(attempt.Leader)
		if l := c.Leader(); l != ran {
			t.Logf("the step ran on %s, %s leads now; reading %s's metrics", ran.ID, l.ID, ran.ID)
		}
		server.WaitFor(t, server.TestWait, "the failure in "+ran.ID+"'s /metrics", func() error {
			body := scrape(t, c, ran)
			if v, ok := metricValue(body, "tdf_step_duration_seconds_count", map[string]string{"step": "node_provisioning", "outcome": "fail"}); !ok || v < 1 {
				return fmt.Errorf(`tdf_step_duration_seconds_count{step="node_provisioning",outcome="fail"} = %v (found %v)`, v, ok)
			}
			if v, ok := metricValue(body, "tdf_tasks", map[string]string{"status": "failed"}); !ok || v < 2 {
				return fmt.Errorf(`tdf_tasks{status="failed"} = %v (found %v), want 2`, v, ok)
			}
			if v, ok := metricValue(body, "tdf_step_duration_seconds_bucket", map[string]string{"step": "node_provisioning", "outcome": "fail", "le": "+Inf"}); !ok || v < 1 {
				return fmt.Errorf(`tdf_step_duration_seconds_bucket{le="+Inf"} = %v (found %v)`, v, ok)
			}
			return nil
		})
		// Every replica counts the failed tasks.
		for _, n := range c.Nodes {
			server.WaitFor(t, server.TestWait, "tdf_tasks on "+n.ID, func() error {
				if v, ok := metricValue(scrape(t, c, n), "tdf_tasks", map[string]string{"status": "failed"}); !ok || v != 2 {
					return fmt.Errorf(`tdf_tasks{status="failed"} = %v (found %v), want 2`, v, ok)
				}
				return nil
			})
		}
	})

	t.Run("logs", func(t *testing.T) {
		var lines []map[string]any
		server.WaitFor(t, server.TestWait, "the runner's step line for "+doomed.ID, func() error {
			lines = lines[:0]
			for _, l := range strings.Split(logs.String(), "\n") {
				var m map[string]any
				if json.Unmarshal([]byte(l), &m) != nil {
					continue
				}
				if m["@message"] == "step" && m["task"] == doomed.ID && m["step"] == string(fsm.StepNodeProvisioning) {
					lines = append(lines, m)
				}
			}
			if len(lines) == 0 {
				return errors.New("no step line yet")
			}
			return nil
		})
		if len(lines) != 1 {
			t.Fatalf("step lines for %s = %s, want one (each attempt is logged once)", doomed.ID, mustJSON(lines))
		}
		l := lines[0]
		if l["@module"] != "tdf.runner" || l["@level"] != "info" || l["step"] != string(fsm.StepNodeProvisioning) ||
			l["outcome"] != string(fsm.OutcomeFail) || l["error"] != msg || l["attempt"] != float64(attempt.Attempt) || l["duration"] == nil {
			t.Errorf("step line = %s, want runner info step=node_provisioning outcome=fail error=%q", mustJSON(l), msg)
		}
		// The line names the task's VM node under "node": the key the
		// server's logger is tagged with (the raft node id), which this
		// one overwrites in JSON logs (runner/runner.go).
		if l["node"] != task.NodeID {
			t.Logf("step line node = %v (task node %s)", l["node"], task.NodeID)
		}
		if strings.Contains(logs.String(), "Bearer ") {
			t.Errorf("a token was logged")
		}
	})
}

// scrape GETs n's /metrics in the text format.
func scrape(t *testing.T, c *server.TestCluster, n *server.TestNode) string {
	t.Helper()
	r := c.Do(n, http.MethodGet, "/metrics", nil, map[string]string{"Accept": "text/plain"})
	if r.Status != http.StatusOK {
		t.Fatalf("GET /metrics on %s = %d %s", n.ID, r.Status, r.Body)
	}
	return string(r.Body)
}

// metricValue finds the sample of name whose labels include want (text
// exposition format) and returns its value.
func metricValue(body, name string, want map[string]string) (float64, bool) {
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		labels := map[string]string{}
		if rest[0] == '{' {
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				continue
			}
			if labels, ok = parseLabels(rest[1:end]); !ok {
				continue
			}
			rest = rest[end+1:]
		}
		match := true
		for k, v := range want {
			if labels[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		return v, err == nil
	}
	return 0, false
}

func parseLabels(s string) (map[string]string, bool) {
	out := map[string]string{}
	for s != "" {
		k, rest, ok := strings.Cut(s, "=")
		if !ok {
			return nil, false
		}
		v, err := strconv.QuotedPrefix(rest)
		if err != nil {
			return nil, false
		}
		out[strings.TrimSpace(k)], _ = strconv.Unquote(v)
		s = strings.TrimPrefix(rest[len(v):], ",")
	}
	return out, true
}
