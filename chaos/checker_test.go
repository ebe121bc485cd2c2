package chaos

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
func atp(ms int) *time.Time {
	t := at(ms)
	return &t
}

// attempt is a finished step attempt from ms to ms+10.
func attempt(step string, n, ms int, outcome string) StepAttempt {
	return StepAttempt{Step: step, Attempt: n, Leader: "n1", Started: at(ms), Finished: atp(ms + 10), Outcome: outcome}
}

// goodTask is a task that ran the whole pipeline once, with a retry of
// workspace_creation and a claim cut short (a superseded attempt with no
// result) of agent_session.
func goodTask(id string) Task {
	return Task{
		ID: id, Status: "completed", Step: "awaiting_followup", NodeID: "node-1", WorkspaceID: "ws-" + id, AgentSessionID: "s-" + id,
		CreatedAt: at(0), CompletedAt: atp(1000),
		History: []StatusEvent{{"", "queued", at(0)}, {"queued", "delegated", at(300)}, {"delegated", "in_progress", at(500)}, {"in_progress", "completed", at(1000)}},
		Steps: []StepAttempt{
			attempt("node_selection", 1, 10, "success"),
			attempt("node_provisioning", 1, 100, "success"),
			attempt("node_agent_ready", 1, 200, "success"),
			attempt("workspace_creation", 1, 250, "retry"),
			attempt("workspace_creation", 2, 280, "success"),
			{Step: "agent_session", Attempt: 1, Leader: "n1", Started: at(400)}, // n1 died mid-claim
			{Step: "agent_session", Attempt: 2, Leader: "n2", Started: at(450), Finished: atp(460), Outcome: "success"},
			attempt("cleanup", 1, 1100, "success"),
		},
	}
}

func goodLedger(id string) []LedgerEvent {
	return []LedgerEvent{
		{Kind: "server_create", Name: "srv-1"},
		{Kind: "workspace_create", WorkspaceID: "ws-" + id, TaskID: id},
		{Kind: "session_create", SessionID: "s-" + id, WorkspaceID: "ws-" + id, TaskID: id},
		{Kind: "server_delete", Name: "srv-1"},
	}
}

func want(t *testing.T, vs []Violation, check, substr string) {
	t.Helper()
	for _, v := range vs {
		if v.Check == check && strings.Contains(v.Detail, substr) {
			return
		}
	}
	t.Errorf("no %s violation mentioning %q; got %v", check, substr, vs)
}

func none(t *testing.T, vs []Violation) {
	t.Helper()
	if len(vs) > 0 {
		t.Errorf("violations on a correct history: %v", vs)
	}
}

func TestCheckerPassesACorrectRun(t *testing.T) {
	tasks := []Task{goodTask("a")}
	ops := []Op{
		{Client: 0, Kind: OpSubmit, TaskID: "a", Call: at(0), Return: at(5), Status: "queued", Step: "node_selection"},
		{Client: 1, Kind: OpRead, TaskID: "a", Call: at(20), Return: at(30), Status: "queued", Step: "node_provisioning"},
		{Client: 0, Kind: OpRead, TaskID: "a", Call: at(310), Return: at(320), Status: "delegated", Step: "workspace_ready"},
		{Client: 1, Kind: OpRead, TaskID: "a", Call: at(1200), Return: at(1210), Status: "completed", Step: "awaiting_followup"},
	}
	none(t, CheckAcknowledgedTasks(ops, tasks, time.Minute))
	none(t, CheckStatusHistories(tasks))
	none(t, CheckTimelines(tasks))
	none(t, CheckLedger(tasks, goodLedger("a"), nil))
	none(t, CheckConverged([]NodeHash{{"n1", 10, "h"}, {"n2", 10, "h"}, {"n3", 10, "h"}}))
	res, vs := CheckLinearizable(ops, time.Minute)
	none(t, vs)
	if res.Result != "Ok" || res.Tasks != 1 || res.Operations != 4 {
		t.Errorf("linearizability result %+v", res)
	}
}

func TestCheckerAcknowledged(t *testing.T) {
	ops := []Op{
		{Kind: OpSubmit, TaskID: "lost", Key: "k1", Return: at(1)},
		{Kind: OpSubmit, TaskID: "stuck", Key: "k2", Return: at(1)},
		{Kind: OpSubmit, TaskID: "slow", Key: "k3", Return: at(1)},
	}
	tasks := []Task{
		{ID: "stuck", Status: "in_progress", Step: "running"},
		{ID: "slow", Status: "completed", CreatedAt: at(0), CompletedAt: atp(120_000)},
	}
	vs := CheckAcknowledgedTasks(ops, tasks, time.Minute)
	want(t, vs, NameAcknowledged, "missing from the cluster")
	want(t, vs, NameAcknowledged, "still in_progress")
	want(t, vs, NameAcknowledged, "bound 1m0s")
}

func TestCheckerStatusHistory(t *testing.T) {
	tk := goodTask("a")
	tk.History = append(tk.History[:3:3], StatusEvent{"in_progress", "queued", at(900)}, StatusEvent{"queued", "completed", at(1000)})
	want(t, CheckStatusHistories([]Task{tk}), NameStatus, "backwards")
}

// The stale result fencing exists to reject: attempt 1's result accepted
// after attempt 2 was claimed.
func TestCheckerStaleResult(t *testing.T) {
	tk := goodTask("a")
	tk.Steps[5].Finished, tk.Steps[5].Outcome = atp(470), "success" // attempt 1's late result
	want(t, CheckTimelines([]Task{tk}), NameTimeline, "a stale result")
}

func TestCheckerStepAppliedTwice(t *testing.T) {
	tk := goodTask("a")
	tk.Steps = append(tk.Steps[:3:3], attempt("workspace_creation", 1, 250, "success"), attempt("workspace_creation", 2, 280, "success"))
	want(t, CheckTimelines([]Task{tk}), NameTimeline, "after the step had succeeded")
}

func TestCheckerStepsBackwardsAndSkips(t *testing.T) {
	back := goodTask("a")
	back.Steps = []StepAttempt{attempt("node_selection", 1, 10, "success"), attempt("node_agent_ready", 1, 20, "success"), attempt("node_selection", 2, 30, "success")}
	vs := CheckTimelines([]Task{back})
	want(t, vs, NameTimeline, "back from node_agent_ready to node_selection")

	skip := goodTask("b")
	skip.Steps = []StepAttempt{attempt("node_selection", 1, 10, "success"), attempt("workspace_creation", 1, 20, "success")}
	want(t, CheckTimelines([]Task{skip}), NameTimeline, "skipped node_agent_ready")

	early := goodTask("c")
	early.Steps = []StepAttempt{attempt("node_selection", 1, 10, "retry"), attempt("node_agent_ready", 1, 20, "success")}
	want(t, CheckTimelines([]Task{early}), NameTimeline, "without its success")

	numbering := goodTask("d")
	numbering.Steps = []StepAttempt{attempt("node_selection", 2, 10, "success")}
	want(t, CheckTimelines([]Task{numbering}), NameTimeline, "attempt 2, want 1")
}

func TestCheckerLedger(t *testing.T) {
	tk := goodTask("a")
	dup := append(goodLedger("a"), LedgerEvent{Kind: "workspace_create", WorkspaceID: "ws-a", TaskID: "a"})
	want(t, CheckLedger([]Task{tk}, dup, nil), NameLedger, "workspace_create ws-a happened 2 times")

	second := append(goodLedger("a"), LedgerEvent{Kind: "session_create", SessionID: "s-other", WorkspaceID: "ws-a", TaskID: "a"})
	want(t, CheckLedger([]Task{tk}, second, nil), NameLedger, "2 sessions created")

	leak := append(goodLedger("a"), LedgerEvent{Kind: "server_create", Name: "srv-2"})
	vs := CheckLedger([]Task{tk}, leak, []FakeServer{{ID: 2, Name: "srv-2", Status: "running"}})
	want(t, vs, NameLedger, "never deleted")
	want(t, vs, NameLedger, "leaked")

	twice := append(goodLedger("a"), LedgerEvent{Kind: "server_create", Name: "srv-1"})
	want(t, CheckLedger([]Task{tk}, twice, nil), NameLedger, "server_create srv-1 happened 2 times")
}

func TestCheckerConverged(t *testing.T) {
	want(t, CheckConverged([]NodeHash{{"n1", 10, "h"}, {"n2", 10, "x"}}), NameConverged, "differ")
	want(t, CheckConverged([]NodeHash{{"n1", 10, "h"}, {"n2", 11, "h"}}), NameConverged, "differ")
	want(t, CheckConverged(nil), NameConverged, "no state hash")
}

// A consistent read that goes back in time after another client saw the
// task further on is not linearizable; nor is a 404 after the submission
// was acknowledged. Reads that overlap may come in either order.
func TestCheckerLinearizability(t *testing.T) {
	base := []Op{
		{Client: 0, Kind: OpSubmit, TaskID: "a", Call: at(0), Return: at(5), Status: "queued", Step: "node_selection"},
		{Client: 1, Kind: OpSubmit, TaskID: "b", Call: at(0), Return: at(5), Status: "queued", Step: "node_selection"},
		{Client: 1, Kind: OpRead, TaskID: "b", Call: at(10), Return: at(20), Status: "delegated", Step: "workspace_ready"},
	}
	overlapping := append(base[:3:3],
		Op{Client: 0, Kind: OpRead, TaskID: "a", Call: at(10), Return: at(50), Status: "in_progress", Step: "running"},
		Op{Client: 1, Kind: OpRead, TaskID: "a", Call: at(20), Return: at(60), Status: "delegated", Step: "workspace_ready"})
	if _, vs := CheckLinearizable(overlapping, time.Minute); len(vs) > 0 {
		t.Errorf("overlapping reads in either order: %v", vs)
	}

	stale := append(base[:3:3],
		Op{Client: 0, Kind: OpRead, TaskID: "a", Call: at(10), Return: at(20), Status: "in_progress", Step: "running"},
		Op{Client: 1, Kind: OpRead, TaskID: "a", Call: at(30), Return: at(40), Status: "delegated", Step: "workspace_ready"})
	res, vs := CheckLinearizable(stale, time.Minute)
	want(t, vs, NameLinearizable, "tasks [a]")
	var html bytes.Buffer
	if err := res.WriteVisualization(&html); err != nil || !strings.Contains(html.String(), "<html") {
		t.Errorf("visualisation: %v (%d bytes)", err, html.Len())
	}

	terminal := append(base[:3:3],
		Op{Client: 0, Kind: OpRead, TaskID: "a", Call: at(10), Return: at(20), Status: "completed"},
		Op{Client: 1, Kind: OpRead, TaskID: "a", Call: at(30), Return: at(40), Status: "failed"})
	_, vs = CheckLinearizable(terminal, time.Minute)
	want(t, vs, NameLinearizable, "tasks [a]")

	vanished := append(base[:3:3], Op{Client: 0, Kind: OpRead, TaskID: "a", Call: at(10), Return: at(20)})
	_, vs = CheckLinearizable(vanished, time.Minute)
	want(t, vs, NameLinearizable, "tasks [a]")
}

func TestStats(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	ds = append(ds, -1) // not measured
	s := NewStats(ds)
	if s.N != 100 || s.P50 != 50*time.Millisecond || s.P99 != 99*time.Millisecond || s.Max != 100*time.Millisecond {
		t.Errorf("stats %+v", s)
	}
	if NewStats(nil).N != 0 {
		t.Error("stats of nothing")
	}
}

func TestFirstStepsAndInFlight(t *testing.T) {
	faults := []Fault{
		{N: 1, Kind: FaultKill, Victim: "n1", At: at(100), NewLeader: "n2", FirstStepAfter: -1},
		{N: 2, Kind: FaultPause, Victim: "n2", At: at(1000), NewLeader: "n3", FirstStepAfter: -1},
	}
	tasks := []Task{{ID: "a", Steps: []StepAttempt{
		{Step: "node_selection", Attempt: 1, Leader: "n1", Started: at(50), Finished: atp(60), Outcome: "success"},
		{Step: "node_agent_ready", Attempt: 1, Leader: "n1", Started: at(90)},                                           // in flight at fault 1
		{Step: "node_agent_ready", Attempt: 2, Leader: "n2", Started: at(400), Finished: atp(1200), Outcome: "success"}, // in flight at fault 2
		{Step: "workspace_creation", Attempt: 1, Leader: "n3", Started: at(1300), Finished: atp(1310), Outcome: "success"},
	}}, {ID: "b", Steps: []StepAttempt{
		{Step: "node_selection", Attempt: 1, Leader: "n2", Started: at(250), Finished: atp(260), Outcome: "success"},
	}}}
	FirstSteps(faults, tasks)
	if f := faults[0]; f.FirstStepAfter != 150*time.Millisecond || f.FirstStepTask != "b" || f.InFlight != 1 {
		t.Errorf("fault 1: %+v", f)
	}
	if f := faults[1]; f.FirstStepAfter != 300*time.Millisecond || f.FirstStepName != "workspace_creation" || f.InFlight != 1 {
		t.Errorf("fault 2: %+v", f)
	}
}
