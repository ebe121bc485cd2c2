package e2e_test

// Lost callbacks (VMAGENT.md, "What follows for tdf"): the agent sends the
// node-ready and task-status callbacks once, without retry, so a lost one
// must never wedge a task. The fakecloud's agents drop each such callback
// with a probability, and the fakeworld records every drop in its ledger
// (kind callback_dropped); the test then checks each task against what
// its agent dropped.

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tdf-project/tdf/e2e"
)

const (
	// dropRate is both --drop-node-ready-rate and --drop-task-status-rate.
	dropRate = "0.2"
	// dropGrace is --node-ready-grace: a node whose ready callback was
	// dropped is taken as ready after this long with a healthy agent.
	dropGrace = 2 * time.Second
	// dropReconcile is --run-reconcile-interval and dropFinishGrace
	// --run-finish-grace: a task whose status callback was dropped is
	// moved on by the leader's run reconcile, from its agent's prompt
	// receipt, this long after its agent finished.
	dropReconcile   = 2 * time.Second
	dropFinishGrace = time.Second
	// dropReconcileSlack is what a loaded machine may add to that bound
	// (a pass, its agent calls and a commit).
	dropReconcileSlack = 3 * time.Second
	// dropMaxExec is --max-execution-time: long enough that only the
	// reconcile, never the running deadline, can end a run whose
	// callback was dropped.
	dropMaxExec = 5 * time.Minute
	// dropTerminalWait bounds waiting for every task to end: a wedged task
	// would wait hours (the default max execution time is 4h).
	dropTerminalWait = 2 * time.Minute
	// dropTasks is how many tasks run, over pipeUsers users. With every
	// user's tasks submitted at once, each provisions its own node, so
	// some 40 node-ready and 40 task-status callbacks are each dropped
	// with dropRate: none of either kind dropped has odds of about 1e-4.
	dropTasks = 40
	// dropTopUps bounds the extra rounds, of fresh users (fresh nodes),
	// run in the unlikely case that a kind of callback was never dropped.
	dropTopUps = 3
)

// TestDroppedCallbacksNeverWedgeTasks runs tasks against agents that drop
// 20% of their node-ready and task-status callbacks, sent to the real
// agent's routes. Every task completes: one whose status callback was
// dropped is moved on by the leader's run reconcile within one interval
// (and the finish grace) of its agent finishing, with a recovered error
// record; every node whose ready callback was dropped still runs its task,
// past the grace, leaving a recovered error record. The usual invariants hold at the end: one
// server per node, one workspace and one session per task, every server
// gone once the warm timeout has passed.
func TestDroppedCallbacksNeverWedgeTasks(t *testing.T) {
	began := time.Now()
	c := startDropCluster(t)
	r := newPipeRun(t, c)

	if err := r.submitAll(r.specs(0, dropTasks), 4, 0, c.Nodes); err != nil {
		t.Fatal(err)
	}
	tasks := dropWaitTerminal(r, dropTerminalWait)
	t.Logf("%d tasks ended in %s: %s", len(tasks), time.Since(began).Round(time.Millisecond), summarize(tasks))
	drops := dropReadLedger(t, c)
	for round := 0; (len(drops.ready) == 0 || len(drops.status) == 0) && round < dropTopUps; round++ {
		// Tasks of users who have no node yet, so each provisions one.
		var specs []pipeSpec
		for i := range pipeUsers {
			n := dropTasks + round*pipeUsers + i
			specs = append(specs, pipeSpec{index: n, key: fmt.Sprintf("pipe-%s-%03d", t.Name(), n),
				user: fmt.Sprintf("dropuser%d-%02d", round, i), size: "small", prompt: fmt.Sprintf("pipeline task %03d", n)})
		}
		t.Logf("drops so far: %d node ready, %d task status; one more round of %d tasks of new users", len(drops.ready), len(drops.status), len(specs))
		if err := r.submitAll(specs, 4, 0, c.Nodes); err != nil {
			t.Fatal(err)
		}
		tasks = dropWaitTerminal(r, dropTerminalWait)
		drops = dropReadLedger(t, c)
	}
	if len(drops.ready) == 0 || len(drops.status) == 0 {
		t.Fatalf("the agents dropped %d node-ready and %d task-status callbacks at rate %s, want some of each", len(drops.ready), len(drops.status), dropRate)
	}
	t.Logf("the agents dropped %d node-ready callbacks (nodes %v) and %d task-status callbacks (tasks %v)",
		len(drops.ready), sortedKeys(drops.ready), len(drops.status), sortedKeys(drops.status))

	leader := c.Leader()
	dropCheckTasks(t, r, leader, tasks, drops)
	dropCheckNodes(t, r, leader, tasks, drops)

	// Every node goes: warm ones after the warm timeout, recovered ones
	// (never marked ready) at once on release.
	nodes, events := r.drain()
	checkLedger(t, tasks, nodes, events)
	c.WaitConverged(c.Nodes, 0)
	t.Logf("total %s", time.Since(began).Round(time.Millisecond))
}

// startDropCluster is startPipelineCluster with the drop faults, a short
// node-ready grace and a short max execution time.
func startDropCluster(t *testing.T) *e2e.Cluster {
	t.Helper()
	serverArgs := append(slices.Clone(pipeServerArgs),
		"--node-ready-grace", dropGrace.String(),
		"--max-execution-time", dropMaxExec.String(),
		"--run-reconcile-interval", dropReconcile.String(),
		"--run-finish-grace", dropFinishGrace.String())
	cloudArgs := append(slices.Clone(pipeCloudArgs),
		"--drop-node-ready-rate", dropRate,
		"--drop-task-status-rate", dropRate)
	c := e2e.StartCluster(t, e2e.Options{ExtraArgs: serverArgs, FakeCloud: &e2e.FakeCloudOptions{Args: cloudArgs}})
	c.Leader()
	// As startPipelineCluster: a task must not reach node_provisioning
	// before the first leader committed the signing key.
	c.WaitFor(e2e.DefaultElectionWait, "every node has a signing key", func() error {
		for _, n := range c.Nodes {
			var jwks struct {
				Keys []any `json:"keys"`
			}
			if err := c.GetJSON(n, "/.well-known/jwks.json", &jwks); err != nil {
				return err
			}
			if len(jwks.Keys) == 0 {
				return fmt.Errorf("%s publishes no key yet", n.ID)
			}
		}
		return nil
	})
	return c
}

// dropWaitTerminal waits until every submitted task has ended (completed,
// failed or cancelled, with nothing left to clean up) and returns them. A
// run in which no task changes for pipeStallWait is wedged.
func dropWaitTerminal(r *pipeRun, timeout time.Duration) []pipeTask {
	r.t.Helper()
	want := r.taskIDs()
	start := time.Now()
	prog := newProgress(start, timeout)
	for {
		if err := r.c.Crashed(); err != nil {
			r.t.Fatalf("waiting for %d tasks to end: %v", len(want), err)
		}
		tasks, n, err := r.readTasks()
		var mine, pending []pipeTask
		var state strings.Builder
		if err == nil {
			for _, tk := range tasks {
				if _, ok := want[tk.ID]; !ok {
					continue
				}
				mine = append(mine, tk)
				fmt.Fprintf(&state, "%s:%s:%s:%v ", tk.ID, tk.Status, tk.Step, tk.Cleanup)
				if !dropTerminal(tk.Status) || tk.Cleanup == "pending" {
					pending = append(pending, tk)
				}
			}
			if len(mine) == len(want) && len(pending) == 0 {
				r.t.Logf("%d tasks ended (waited %s)", len(want), time.Since(start).Round(time.Millisecond))
				return mine
			}
			err = fmt.Errorf("%s lists %d of the %d tasks, %d not ended: %s", n.ID, len(mine), len(want), len(pending)+len(want)-len(mine), summarize(mine))
		}
		r.failIfStuck(prog, state.String(), pending, fmt.Sprintf("%d tasks end (none wedged)", len(want)), err)
		time.Sleep(pipeListEvery)
	}
}

func dropTerminal(status string) bool {
	return status == "completed" || status == "failed" || status == "cancelled"
}

// dropped is what the agents dropped, from the ledger: the nodes whose
// node-ready callback and the tasks whose status callback never left.
type dropped struct {
	ready  map[string]bool // node id →
	status map[string]bool // task id →
	// runDone is when each task's agent finished its run.
	runDone map[string]time.Time
}

func dropReadLedger(t *testing.T, c *e2e.Cluster) dropped {
	t.Helper()
	events, err := c.Ledger()
	if err != nil {
		t.Fatal(err)
	}
	d := dropped{ready: map[string]bool{}, status: map[string]bool{}, runDone: map[string]time.Time{}}
	for _, e := range events {
		if e.Kind == "agent_run_done" && e.TaskID != "" {
			d.runDone[e.TaskID] = e.Time
		}
		if e.Kind != "callback_dropped" {
			continue
		}
		kind, _, _ := strings.Cut(e.Detail, ":")
		switch {
		case kind == "node_ready" && e.NodeID != "":
			if d.ready[e.NodeID] {
				t.Errorf("ledger: node %s dropped its node-ready callback twice (sent once per boot)", e.NodeID)
			}
			d.ready[e.NodeID] = true
		case kind == "task_status" && e.TaskID != "":
			if d.status[e.TaskID] {
				t.Errorf("ledger: task %s's status callback dropped twice (one agent run per task)", e.TaskID)
			}
			d.status[e.TaskID] = true
		default:
			t.Errorf("ledger: unexpected callback_dropped event %+v", e)
		}
	}
	return d
}

// dropErr is the part of an error record (GET /v1/errors) the test checks.
type dropErr struct {
	Kind    string    `json:"kind"`
	TaskID  string    `json:"task_id"`
	NodeID  string    `json:"node_id"`
	Step    string    `json:"step"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
}

// dropErrors lists a node's error records matching the query (all pages).
func dropErrors(r *pipeRun, n *e2e.Node, q url.Values) ([]dropErr, error) {
	var out []dropErr
	q.Set("limit", "500")
	for page := 0; page < 20; page++ {
		var got struct {
			Errors     []dropErr `json:"errors"`
			NextCursor string    `json:"next_cursor"`
		}
		if err := r.c.GetJSON(n, "/v1/errors?"+q.Encode(), &got); err != nil {
			return nil, err
		}
		out = append(out, got.Errors...)
		if got.NextCursor == "" {
			return out, nil
		}
		q.Set("cursor", got.NextCursor)
	}
	return nil, fmt.Errorf("GET /v1/errors?%s: more than 20 pages", q.Encode())
}

// dropCheckTasks checks every task against its agent's drops: every task
// completed; one whose status callback was dropped has exactly one
// recovered record at running, made within the reconcile bound of its
// agent finishing, and no other one has any. Along the way every step that
// calls out succeeded exactly once.
func dropCheckTasks(t *testing.T, r *pipeRun, leader *e2e.Node, tasks []pipeTask, d dropped) {
	t.Helper()
	ours := map[string]bool{}
	reconciled := 0
	var slowest time.Duration
	for _, tk := range tasks {
		ours[tk.ID] = true
		var path []string
		for _, h := range tk.History {
			path = append(path, h.To)
		}
		succeeded := map[string]int{}
		for _, s := range tk.Steps {
			if s.Outcome == "success" {
				succeeded[s.Step]++
			}
		}
		for _, step := range []string{"node_selection", "node_agent_ready", "workspace_creation", "agent_session", "cleanup"} {
			if succeeded[step] != 1 {
				t.Errorf("task %s (%s): step %s succeeded %d times, want once; steps %+v", tk.ID, tk.Status, step, succeeded[step], tk.Steps)
			}
		}
		for step, n := range succeeded {
			if n > 1 {
				t.Errorf("task %s: step %s succeeded %d times", tk.ID, step, n)
			}
		}
		if tk.NodeID == "" || tk.WorkspaceID == "" || tk.AgentSessionID == "" {
			t.Errorf("task %s: node %q, workspace %q, session %q; want all three", tk.ID, tk.NodeID, tk.WorkspaceID, tk.AgentSessionID)
		}
		if tk.Status != "completed" || !slices.Equal(path, wantHistory) {
			t.Errorf("task %s (status callback dropped: %v): status %s, history %v, error %q; want completed along %v; steps %+v",
				tk.ID, d.status[tk.ID], tk.Status, path, tk.ErrorMessage, wantHistory, tk.Steps)
		}
		recs, err := dropErrors(r, leader, url.Values{"task_id": {tk.ID}, "kind": {"recovered"}, "step": {"running"}})
		if err != nil {
			t.Fatal(err)
		}
		if !d.status[tk.ID] {
			if len(recs) != 0 {
				t.Errorf("task %s (status callback delivered): reconciled anyway: %+v", tk.ID, recs)
			}
			continue
		}
		reconciled++
		done, ok := d.runDone[tk.ID]
		switch {
		case len(recs) != 1:
			t.Errorf("task %s (status callback dropped): %d recovered records at running, want 1: %+v", tk.ID, len(recs), recs)
		case !ok:
			t.Errorf("task %s (status callback dropped): the ledger has no agent_run_done", tk.ID)
		default:
			took := recs[0].At.Sub(done)
			slowest = max(slowest, took)
			if took > dropReconcile+dropFinishGrace+dropReconcileSlack {
				t.Errorf("task %s: reconciled %s after its agent finished, want within %s (+%s grace, +%s slack)",
					tk.ID, took, dropReconcile, dropFinishGrace, dropReconcileSlack)
			}
		}
	}
	for id := range d.status {
		if !ours[id] {
			t.Errorf("ledger: a status callback of task %s was dropped, a task nobody submitted", id)
		}
	}
	t.Logf("%d tasks whose status callback was dropped completed through the run reconcile (the slowest %s after its agent finished); %d by their callback",
		reconciled, slowest.Round(time.Millisecond), len(tasks)-reconciled)
}

// dropCheckNodes checks that every node whose ready callback was dropped
// still served its task (selected, past node_agent_ready, workspace and
// session created) and left a recovered error record naming it.
func dropCheckNodes(t *testing.T, r *pipeRun, leader *e2e.Node, tasks []pipeTask, d dropped) {
	t.Helper()
	byNode := map[string][]pipeTask{}
	for _, tk := range tasks {
		byNode[tk.NodeID] = append(byNode[tk.NodeID], tk)
	}
	for _, nodeID := range sortedKeys(d.ready) {
		on := byNode[nodeID]
		if len(on) == 0 {
			t.Errorf("node %s (node-ready dropped) ran no task", nodeID)
			continue
		}
		for _, tk := range on {
			if !dropTerminal(tk.Status) || tk.Status == "cancelled" || tk.AgentSessionID == "" {
				t.Errorf("task %s on node %s (node-ready dropped) did not run: status %s, session %q", tk.ID, nodeID, tk.Status, tk.AgentSessionID)
			}
		}
		recs, err := dropErrors(r, leader, url.Values{"node_id": {nodeID}, "kind": {"recovered"}})
		if err != nil {
			t.Fatal(err)
		}
		var found bool
		for _, e := range recs {
			if e.Step == "node_agent_ready" && strings.Contains(e.Message, nodeID) && slices.ContainsFunc(on, func(tk pipeTask) bool { return tk.ID == e.TaskID }) {
				found = true
			}
		}
		if !found {
			t.Errorf("node %s (node-ready dropped): no recovered node_agent_ready record naming it for one of its tasks; records %+v", nodeID, recs)
		}
	}
	// A delivered callback may still come after the grace on a loaded
	// machine: recoveries of other nodes are reported, not failed.
	all, err := dropErrors(r, leader, url.Values{"kind": {"recovered"}})
	if err != nil {
		t.Fatal(err)
	}
	var others []string
	for _, e := range all {
		if !d.ready[e.NodeID] {
			others = append(others, e.NodeID)
		}
	}
	t.Logf("%d recovered records, %d for nodes whose node-ready callback was delivered (late): %v", len(all), len(others), others)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
