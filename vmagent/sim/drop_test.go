package sim_test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tdf-project/tdf/vmagent"
	"github.com/tdf-project/tdf/vmagent/sim"
)

// outcomeOf returns the final outcome logged for the delivery of a task's
// status callback ("" while none is logged).
func outcomeOf(a *sim.Agent, taskID string) (sim.Outcome, string) {
	for _, r := range a.Callbacks() {
		if r.Kind == sim.KindTaskStatus && r.TaskID == taskID && !r.Duplicate {
			return r.Outcome, r.Error
		}
	}
	return "", ""
}

// runTasks runs n agent sessions on one workspace, one after the other
// (each starts once the last one's status callback is decided, so the
// draws happen in task order), and returns for each task whether its
// status callback was dropped.
func runTasks(t *testing.T, e *env, n int) []bool {
	t.Helper()
	e.createWorkspace(t, "ws1")
	var out []bool
	for i := range n {
		sid, tid := fmt.Sprintf("s%d", i), fmt.Sprintf("t%d", i)
		startSession(t, e, "ws1", sid, vmagent.StartSessionRequest{AgentType: "a", InitialPrompt: "p", TaskID: tid, ProjectID: "p1"})
		var outcome sim.Outcome
		var why string
		waitFor(t, "status callback of "+tid+" decided", func() bool {
			outcome, why = outcomeOf(e.agent, tid)
			return outcome != ""
		})
		switch outcome {
		case sim.OutcomeDropped:
			if !strings.Contains(why, "DropTaskStatusRate") {
				t.Fatalf("task %s: dropped with error %q, want it to name DropTaskStatusRate", tid, why)
			}
			out = append(out, true)
		case sim.OutcomeDelivered:
			out = append(out, false)
		default:
			t.Fatalf("task %s: status callback outcome %q (%s), want delivered or dropped", tid, outcome, why)
		}
	}
	return out
}

func TestDropTaskStatusRate(t *testing.T) {
	const n = 24
	newAgent := func(seed uint64) *env {
		return newEnv(t, func(c *sim.Config, _ *controlPlane) {
			c.Faults.DropTaskStatusRate = 0.5
			c.Seed = seed
			// Heartbeats play no part here.
			c.HeartbeatInterval = time.Hour
		})
	}
	e := newAgent(7)
	got := runTasks(t, e, n)
	drops := 0
	for i, dropped := range got {
		path := vmagent.TaskStatusPath("p1", fmt.Sprintf("t%d", i))
		arrived := len(e.cp.on(path))
		if dropped {
			drops++
		}
		if (dropped && arrived != 0) || (!dropped && arrived != 1) {
			t.Errorf("task t%d: dropped=%v, status callback arrived %d times", i, dropped, arrived)
		}
		// One decision per callback: one delivery outcome per task.
		recs := 0
		for _, r := range e.records(sim.KindTaskStatus) {
			if r.TaskID == fmt.Sprintf("t%d", i) {
				recs++
			}
		}
		if recs != 1 {
			t.Errorf("task t%d: %d task status records, want 1", i, recs)
		}
	}
	t.Logf("DropTaskStatusRate 0.5, seed 7: dropped %d of %d: %v", drops, n, got)
	if drops == 0 || drops == n {
		t.Fatalf("DropTaskStatusRate 0.5 dropped %d of %d status callbacks, want some but not all", drops, n)
	}

	// The same seed on the same node decides the same; another seed does not.
	if again := runTasks(t, newAgent(7), n); fmt.Sprint(again) != fmt.Sprint(got) {
		t.Errorf("seed 7 again: drops %v, want %v", again, got)
	}
	if other := runTasks(t, newAgent(8), n); fmt.Sprint(other) == fmt.Sprint(got) {
		t.Errorf("seed 8: drops %v, the same as seed 7's", other)
	}
}

// bootAgents starts n agents (nodes n0…) with the given faults and seed,
// each calling back to cp, and returns them once every one has decided its
// node ready callback.
func bootAgents(t *testing.T, cp *controlPlane, n int, seed uint64, f sim.Faults) []*sim.Agent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var agents []*sim.Agent
	for i := range n {
		a := sim.New(sim.Config{
			NodeID:            fmt.Sprintf("n%d", i),
			NodeCallbackToken: nodeToken,
			ControlPlaneURL:   cp.srv.URL,
			HeartbeatInterval: -1,
			Faults:            f,
			Seed:              seed,
		})
		t.Cleanup(a.Close)
		a.Start(ctx)
		agents = append(agents, a)
	}
	for _, a := range agents {
		waitFor(t, a.NodeID()+" node ready decided", func() bool {
			for _, r := range a.Callbacks() {
				if r.Kind == sim.KindNodeReady && (r.Outcome == sim.OutcomeDropped || r.Outcome == sim.OutcomeDelivered) {
					return true
				}
			}
			return false
		})
	}
	return agents
}

// readyDrops lists, per agent, whether its node ready was dropped, and
// checks that the control plane saw exactly the others.
func readyDrops(t *testing.T, cp *controlPlane, agents []*sim.Agent, wantErr string) []bool {
	t.Helper()
	var out []bool
	for _, a := range agents {
		var dropped, delivered int
		for _, r := range a.Callbacks() {
			if r.NodeID != a.NodeID() {
				t.Errorf("%s: callback record %+v names node %q", a.NodeID(), r, r.NodeID)
			}
			switch {
			case r.Kind != sim.KindNodeReady:
			case r.Outcome == sim.OutcomeDropped:
				dropped++
				if !strings.Contains(r.Error, wantErr) {
					t.Errorf("%s: dropped node ready with error %q, want it to name %s", a.NodeID(), r.Error, wantErr)
				}
			case r.Outcome == sim.OutcomeDelivered:
				delivered++
			}
		}
		arrived := len(cp.on(vmagent.NodeReadyPath(a.NodeID())))
		if dropped+delivered != 1 || arrived != delivered {
			t.Errorf("%s: node ready dropped %d times, delivered %d times, arrived %d times; want one decision, arrivals = deliveries",
				a.NodeID(), dropped, delivered, arrived)
		}
		out = append(out, dropped == 1)
	}
	return out
}

func TestDropNodeReadyRate(t *testing.T) {
	const n, rate = 100, 0.3
	cp := newControlPlane(t)
	got := readyDrops(t, cp, bootAgents(t, cp, n, 42, sim.Faults{DropNodeReadyRate: rate}), "DropNodeReadyRate 0.3")
	drops := 0
	for _, d := range got {
		if d {
			drops++
		}
	}
	t.Logf("DropNodeReadyRate %v, seed 42: dropped %d of %d", rate, drops, n)
	// Deterministic for this seed and these node ids; the bound is wide
	// (about four standard deviations) so that it also holds for any
	// seed the implementation might derive.
	if lo, hi := 12, 48; drops < lo || drops > hi {
		t.Fatalf("DropNodeReadyRate %v dropped %d of %d node ready callbacks, want %d..%d", rate, drops, n, lo, hi)
	}
	// The same seed and node ids decide the same.
	cp2 := newControlPlane(t)
	if again := readyDrops(t, cp2, bootAgents(t, cp2, n, 42, sim.Faults{DropNodeReadyRate: rate}), "DropNodeReadyRate"); fmt.Sprint(again) != fmt.Sprint(got) {
		t.Errorf("seed 42 again: drops %v, want %v", again, got)
	}
}

func TestDropRateEdges(t *testing.T) {
	for _, tc := range []struct {
		name        string
		faults      sim.Faults
		wantDropped bool
		wantErr     string
	}{
		{"rate 0", sim.Faults{}, false, ""},
		{"rate 1", sim.Faults{DropNodeReadyRate: 1}, true, "fault DropNodeReadyRate 1"},
		{"boolean wins", sim.Faults{DropNodeReady: true}, true, "fault DropNodeReady"},
		{"boolean with a rate", sim.Faults{DropNodeReady: true, DropNodeReadyRate: 0.5}, true, "fault DropNodeReady"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cp := newControlPlane(t)
			a := bootAgents(t, cp, 1, 1, tc.faults)[0]
			got := readyDrops(t, cp, []*sim.Agent{a}, tc.wantErr)
			if got[0] != tc.wantDropped {
				t.Fatalf("node ready dropped = %v, want %v", got[0], tc.wantDropped)
			}
			if tc.wantDropped {
				for _, r := range a.Callbacks() {
					if r.Outcome == sim.OutcomeDropped && r.Error != tc.wantErr && !strings.HasPrefix(r.Error, tc.wantErr+" ") {
						t.Fatalf("dropped record error = %q, want %q", r.Error, tc.wantErr)
					}
				}
			}
		})
	}
}

// The rate faults switch at run time too: a status callback is decided
// with the faults in force when its run finishes.
func TestDropTaskStatusRateSetAtRunTime(t *testing.T) {
	e := newEnv(t, nil)
	e.createWorkspace(t, "ws1")
	e.agent.SetFaults(sim.Faults{DropTaskStatusRate: 1})
	startSession(t, e, "ws1", "s1", vmagent.StartSessionRequest{AgentType: "a", InitialPrompt: "p", TaskID: "t1", ProjectID: "p1"})
	waitFor(t, "t1 decided", func() bool { o, _ := outcomeOf(e.agent, "t1"); return o != "" })
	if o, why := outcomeOf(e.agent, "t1"); o != sim.OutcomeDropped {
		t.Fatalf("t1 status callback = %s (%s), want dropped at rate 1", o, why)
	}
	e.agent.SetFaults(sim.Faults{})
	startSession(t, e, "ws1", "s2", vmagent.StartSessionRequest{AgentType: "a", InitialPrompt: "p", TaskID: "t2", ProjectID: "p1"})
	waitFor(t, "t2 decided", func() bool { o, _ := outcomeOf(e.agent, "t2"); return o != "" })
	if o, why := outcomeOf(e.agent, "t2"); o != sim.OutcomeDelivered {
		t.Fatalf("t2 status callback = %s (%s), want delivered at rate 0", o, why)
	}
}

func TestDropRateValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		faults  sim.Faults
		wantErr string
	}{
		{"zero", sim.Faults{}, ""},
		{"bounds", sim.Faults{DropNodeReadyRate: 1, DropTaskStatusRate: 0}, ""},
		{"negative", sim.Faults{DropNodeReadyRate: -0.1}, "Faults.DropNodeReadyRate = -0.1"},
		{"above one", sim.Faults{DropTaskStatusRate: 1.5}, "Faults.DropTaskStatusRate = 1.5"},
		{"NaN", sim.Faults{DropTaskStatusRate: math.NaN()}, "Faults.DropTaskStatusRate = NaN"},
		{"negative answer delay", sim.Faults{AnswerDelay: -1}, "Faults.AnswerDelay"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := sim.DefaultConfig()
			c.NodeID = node
			c.Faults = tc.faults
			err := c.Validate()
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "[0, 1]") && tc.faults.AnswerDelay == 0 {
				t.Fatalf("Validate() = %v, want the limit [0, 1] named", err)
			}
		})
	}
}
