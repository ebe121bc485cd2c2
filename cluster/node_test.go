package cluster_test

// In-process tests of the raft wiring. They use server's cluster helper
// (cluster cannot import server, but its external test package can).

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/tdf-project/tdf/cluster"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/server"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), server.TestWait)
	t.Cleanup(cancel)
	return ctx
}

func submitCmd(req, id string) fsm.SubmitTask {
	return fsm.SubmitTask{
		RequestID:   req,
		Fingerprint: "fp-" + req,
		TaskID:      id,
		Spec:        fsm.TaskSpec{ProjectID: "p1", UserID: "u1", Prompt: "p " + id, Repository: "github.com/acme/app"},
		Policy:      fsm.DefaultPolicy(),
		At:          time.Now().UTC(),
	}
}

// Apply's typed outcomes: a follower refuses with ErrNotLeader, the leader
// commits, a repeated request id is a duplicate, a domain error comes back
// in the result rather than as an error.
func TestApplyOutcomes(t *testing.T) {
	c := server.NewTestCluster(t, server.TestOptions{})
	ctx := ctxT(t)
	leader, followers := c.Followers()

	for _, f := range followers {
		if res, err := f.Node.Apply(ctx, submitCmd("r0", "t-0")); !errors.Is(err, cluster.ErrNotLeader) {
			t.Errorf("Apply on follower %s = %+v, %v; want %v", f.ID, res, err, cluster.ErrNotLeader)
		}
		if err := f.Node.ConsistentRead(ctx); !errors.Is(err, cluster.ErrNotLeader) {
			t.Errorf("ConsistentRead on follower %s = %v, want %v", f.ID, err, cluster.ErrNotLeader)
		}
	}

	res, err := leader.Node.Apply(ctx, submitCmd("r1", "t-1"))
	if err != nil || res.Err != nil || res.Task == nil || res.Task.ID != "t-1" || res.Replayed {
		t.Fatalf("Apply(SubmitTask t-1) on leader = %+v, %v; want the new task", res, err)
	}
	if res.Index == 0 {
		t.Errorf("Apply result index = 0, want the log index")
	}
	// The same request id again, even with another task id: the first
	// result, marked duplicate.
	again, err := leader.Node.ApplyIdempotent(ctx, submitCmd("r1", "t-other"))
	if err != nil || again.Err != nil || !again.Replayed || again.Task == nil || again.Task.ID != "t-1" {
		t.Fatalf("ApplyIdempotent(same request id) = %+v, %v; want a duplicate of t-1", again, err)
	}
	// A domain error is a committed no-op, reported in the result.
	nf, err := leader.Node.Apply(ctx, fsm.CancelTask{TaskID: "t-missing", Actor: fsm.Actor{Type: fsm.ActorUser}, At: time.Now().UTC()})
	if err != nil || !errors.Is(nf.Err, fsm.ErrNotFound) {
		t.Fatalf("Apply(CancelTask missing) = %+v, %v; want result error %v", nf, err, fsm.ErrNotFound)
	}
	// A pipeline status cannot be set directly.
	ss, err := leader.Node.Apply(ctx, fsm.SetStatus{TaskID: "t-1", To: fsm.StatusCompleted, Actor: fsm.Actor{Type: fsm.ActorUser}, At: time.Now().UTC()})
	if err != nil || !errors.Is(ss.Err, fsm.ErrInvalidTransition) {
		t.Fatalf("Apply(SetStatus completed) = %+v, %v; want result error %v", ss, err, fsm.ErrInvalidTransition)
	}

	if err := leader.Node.ConsistentRead(ctx); err != nil {
		t.Fatalf("ConsistentRead on leader = %v", err)
	}
	if got := leader.FSM.AppliedIndex(); got < res.Index {
		t.Errorf("after ConsistentRead, AppliedIndex() = %d, want >= %d", got, res.Index)
	}
	c.WaitConverged()
	for _, n := range c.Nodes {
		if _, ok := n.FSM.Task("t-1"); !ok {
			t.Errorf("%s lacks t-1", n.ID)
		}
		if _, ok := n.FSM.Task("t-other"); ok {
			t.Errorf("%s has t-other: a duplicate request created a task", n.ID)
		}
	}
}

// Status merges the raft configuration with the member table, on the
// leader and on followers alike.
func TestStatus(t *testing.T) {
	c := server.NewTestCluster(t, server.TestOptions{})
	leader, _ := c.Followers()
	for _, n := range c.Nodes {
		st := n.Node.Status()
		if st.NodeID != n.ID || st.LeaderID != leader.ID || st.LeaderAPI != leader.URL || st.Term == 0 {
			t.Errorf("%s: Status() = %+v, want node %s, leader %s at %s", n.ID, st, n.ID, leader.ID, leader.URL)
		}
		wantState := "follower"
		if n == leader {
			wantState = "leader"
		}
		if st.State != wantState {
			t.Errorf("%s: State = %q, want %q", n.ID, st.State, wantState)
		}
		if len(st.Members) != len(c.Nodes) {
			t.Fatalf("%s: %d members, want %d: %+v", n.ID, len(st.Members), len(c.Nodes), st.Members)
		}
		for i, m := range st.Members {
			want := c.Nodes[i] // both sorted by id
			wantState := "follower"
			if want == leader {
				wantState = "leader"
			}
			if m.ID != want.ID || m.RaftAddr != string(want.Addr) || m.APIAddr != want.URL || !m.Voter || m.State != wantState {
				t.Errorf("%s: member %d = %+v, want %s at %s / %s, voter, %s", n.ID, i, m, want.ID, want.Addr, want.URL, wantState)
			}
		}
		if id, url, ok := n.Node.LeaderAPI(); !ok || id != leader.ID || url != leader.URL {
			t.Errorf("%s: LeaderAPI() = %q, %q, %v; want %s, %s", n.ID, id, url, ok, leader.ID, leader.URL)
		}
		ready, term := n.Node.LeaderReady()
		if ready != (n == leader) || (ready && term != n.Node.Raft().CurrentTerm()) {
			t.Errorf("%s: LeaderReady() = %v, %d; want %v in term %d", n.ID, ready, term, n == leader, n.Node.Raft().CurrentTerm())
		}
	}
}

func voterIDs(t *testing.T, r *raft.Raft) map[string]bool {
	t.Helper()
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		t.Fatalf("GetConfiguration() = %v", err)
	}
	out := map[string]bool{}
	for _, s := range f.Configuration().Servers {
		out[string(s.ID)] = s.Suffrage == raft.Voter
	}
	return out
}

// A member removed through the leader leaves the raft configuration and the
// member table; joining again with the same id and address brings it back
// and it catches up.
func TestRemoveAndRejoin(t *testing.T) {
	c := server.NewTestCluster(t, server.TestOptions{})
	ctx := ctxT(t)
	leader, followers := c.Followers()
	gone := followers[1]
	stay := c.Others(gone)

	if err := followers[0].Node.Remove(ctx, gone.ID); !errors.Is(err, cluster.ErrNotLeader) {
		t.Errorf("Remove on follower = %v, want %v", err, cluster.ErrNotLeader)
	}
	if err := leader.Node.Remove(ctx, "n-unknown"); !errors.Is(err, fsm.ErrNotFound) {
		t.Errorf("Remove(unknown) = %v, want %v", err, fsm.ErrNotFound)
	}
	if err := leader.Node.Remove(ctx, gone.ID); err != nil {
		t.Fatalf("Remove(%s) = %v", gone.ID, err)
	}
	if v := voterIDs(t, leader.Node.Raft()); len(v) != 2 || v[gone.ID] {
		t.Fatalf("configuration after removing %s = %v", gone.ID, v)
	}
	c.WaitConverged(stay...)
	for _, n := range stay {
		if _, ok := n.FSM.Member(gone.ID); ok {
			t.Errorf("%s's member table still lists %s", n.ID, gone.ID)
		}
	}
	// The two remaining voters still commit.
	l := c.WaitLeader(stay...)
	if res, err := l.Node.Apply(ctx, submitCmd("r-two", "t-two")); err != nil || res.Err != nil {
		t.Fatalf("Apply with two voters = %+v, %v", res, err)
	}

	bad := cluster.JoinRequest{ID: gone.ID, RaftAddr: string(gone.Addr), APIAddr: "not-a-url"}
	if err := l.Node.Join(ctx, bad); err == nil {
		t.Errorf("Join(%+v) = nil, want a validation error", bad)
	}
	join := cluster.JoinRequest{ID: gone.ID, RaftAddr: string(gone.Addr), APIAddr: gone.URL}
	if err := l.Node.Join(ctx, join); err != nil {
		t.Fatalf("Join(%+v) = %v", join, err)
	}
	// Joining again is a no-op.
	if err := c.Leader().Node.Join(ctx, join); err != nil {
		t.Fatalf("second Join(%+v) = %v", join, err)
	}
	if v := voterIDs(t, c.Leader().Node.Raft()); len(v) != 3 || !v[gone.ID] {
		t.Fatalf("configuration after re-join = %v", v)
	}
	c.Leader()
	c.WaitMembers()
	c.WaitConverged()
	if _, ok := gone.FSM.Task("t-two"); !ok {
		t.Errorf("re-joined %s lacks t-two, committed while it was out", gone.ID)
	}
}

// Close hands leadership over and shuts down: the others elect a leader
// and keep committing, and closing twice is harmless.
func TestCloseLeader(t *testing.T) {
	c := server.NewTestCluster(t, server.TestOptions{})
	ctx := ctxT(t)
	leader := c.Leader()
	if err := leader.Node.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := leader.Node.Close(); err != nil {
		t.Fatalf("second Close() = %v", err)
	}
	if res, err := leader.Node.Apply(ctx, submitCmd("r-closed", "t-closed")); err == nil {
		t.Fatalf("Apply on a closed node = %+v, nil; want an error", res)
	}
	rest := c.Others(leader)
	nl := c.WaitLeader(rest...)
	if res, err := nl.Node.Apply(ctx, submitCmd("r-after", "t-after")); err != nil || res.Err != nil {
		t.Fatalf("Apply on new leader %s = %+v, %v", nl.ID, res, err)
	}
	c.WaitConverged(rest...)
	for _, n := range rest {
		if _, ok := n.FSM.Task("t-after"); !ok {
			t.Errorf("%s lacks t-after", n.ID)
		}
	}
}
