package handlers_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tdf-project/tdf/cloud/fakecloud"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/runner"
	"github.com/tdf-project/tdf/vmagent/sim"
)

// adoptWorld is a handler world whose servers all answer on 127.0.0.1,
// where the test's one agent listens.
func adoptWorld(t *testing.T) *world {
	t.Helper()
	return newWorld(t, worldOpts{fake: fakecloud.Options{Addresses: loopback{}}})
}

// importAt imports a task at a step on node n-old, whose server is srv.
// From agent_session on it carries the session id s-old: the old system
// records a session's id before it creates the session on the VM.
func (w *world) importAt(id string, s fsm.Step, srv int64) {
	w.t.Helper()
	sid := ""
	if s.Order() >= fsm.StepAgentSession.Order() {
		sid = "s-old"
	}
	w.importSession(id, s, srv, sid)
}

// importSession imports a task as importAt does, with session id sid.
func (w *world) importSession(id string, s fsm.Step, srv int64, sid string) {
	w.t.Helper()
	c := fsm.ImportTask{TaskID: id, Spec: taskSpec(), Status: fsm.StatusDelegated, Step: s, NodeID: "n-old", ServerID: srv,
		Policy: fsm.DefaultPolicy(), At: time.Now(), CreatedAt: time.Now(), AgentSessionID: sid}
	if s.Order() >= fsm.StepWorkspaceCreate.Order() {
		c.WorkspaceID = "ws-old"
	}
	if s.Order() >= fsm.StepRunning.Order() {
		c.Status = fsm.StatusInProgress
	}
	w.apply(c)
}

func (w *world) seedServer(off bool) int64 {
	w.t.Helper()
	vm, err := w.fake.Seed(fakecloud.SeedServer{Name: "node-n-old", Off: off})
	if err != nil {
		w.t.Fatal(err)
	}
	return vm.ID
}

// adoptOnce runs the adopt step once and commits its result.
func (w *world) adoptOnce(id string) (runner.Result, *fsm.Task) {
	w.t.Helper()
	c := w.claim(id)
	if c.RunnableStep() != fsm.StepAdopt {
		w.t.Fatalf("runnable step %s, want adopt", c.RunnableStep())
	}
	out := w.run(c)
	return out, w.commit(c, out)
}

func TestAdoptLadder(t *testing.T) {
	cases := []struct {
		name      string
		step      fsm.Step
		gone, off bool
		agentDown bool
		// unrecorded: the export has no session id.
		unrecorded bool
		ws         *sim.SeedWorkspace
		wantStep   fsm.Step
		wantState  fsm.Status // the task's status afterwards
		wantNote   string
	}{
		{name: "server gone", step: fsm.StepRunning, gone: true, wantStep: fsm.StepNodeProvisioning, wantState: fsm.StatusInProgress, wantNote: "is gone"},
		{name: "server off", step: fsm.StepWorkspaceReady, off: true, wantStep: fsm.StepNodeProvisioning, wantState: fsm.StatusDelegated, wantNote: "is off"},
		{name: "agent silent at agent_ready", step: fsm.StepNodeAgentReady, agentDown: true, wantStep: fsm.StepNodeAgentReady, wantState: fsm.StatusDelegated, wantNote: "not answering"},
		{name: "agent healthy at agent_ready", step: fsm.StepNodeAgentReady, wantStep: fsm.StepWorkspaceCreate, wantState: fsm.StatusDelegated, wantNote: "agent healthy"},
		{name: "workspace absent", step: fsm.StepAgentSession, wantStep: fsm.StepWorkspaceCreate, wantState: fsm.StatusDelegated, wantNote: "not on the VM"},
		{name: "workspace creating", step: fsm.StepWorkspaceCreate, ws: &sim.SeedWorkspace{ID: "ws-old", Status: "creating", ReadyAfter: time.Hour},
			wantStep: fsm.StepWorkspaceReady, wantState: fsm.StatusDelegated, wantNote: "is creating"},
		{name: "workspace running, recorded session absent", step: fsm.StepRunning, ws: &sim.SeedWorkspace{ID: "ws-old", Status: "running"},
			wantStep: fsm.StepAgentSession, wantState: fsm.StatusInProgress, wantNote: "has no agent session s-old"},
		{name: "workspace running, no session on record", step: fsm.StepAgentSession, unrecorded: true, ws: &sim.SeedWorkspace{ID: "ws-old", Status: "running"},
			wantStep: fsm.StepAgentSession, wantState: fsm.StatusDelegated, wantNote: "no agent session on record"},
		{name: "session exists", step: fsm.StepAgentSession, ws: &sim.SeedWorkspace{ID: "ws-old", Status: "running", Session: &sim.SeedSession{ID: "s-old"}},
			wantStep: fsm.StepRunning, wantState: fsm.StatusInProgress, wantNote: "wait at running"},
		{name: "session runs", step: fsm.StepRunning, ws: &sim.SeedWorkspace{ID: "ws-old", Status: "running", Session: &sim.SeedSession{ID: "s-old", Prompt: "p", Running: true}},
			wantStep: fsm.StepRunning, wantState: fsm.StatusInProgress, wantNote: "with agent session s-old: wait at running"},
		{name: "finished, workspace gone", step: fsm.StepAwaitingFollowup, wantState: fsm.StatusCompleted, wantNote: "the run had finished"},
		{name: "finished, server gone", step: fsm.StepAwaitingFollowup, gone: true, wantState: fsm.StatusCompleted, wantNote: "the run had finished"},
		{name: "finished, session gone", step: fsm.StepAwaitingFollowup, ws: &sim.SeedWorkspace{ID: "ws-old", Status: "running"},
			wantState: fsm.StatusCompleted, wantNote: "the run had finished"},
		{name: "finished, follow-up alive", step: fsm.StepAwaitingFollowup, ws: &sim.SeedWorkspace{ID: "ws-old", Status: "recovery", Session: &sim.SeedSession{ID: "s-old"}},
			wantStep: fsm.StepAwaitingFollowup, wantState: fsm.StatusInProgress, wantNote: "wait at awaiting_followup"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := adoptWorld(t)
			srv := int64(987654)
			if !tc.gone {
				srv = w.seedServer(tc.off)
			}
			a := w.startAgent("n-old", nil)
			if tc.ws != nil {
				if err := a.Seed(*tc.ws); err != nil {
					t.Fatal(err)
				}
			}
			w.agentDown.Store(tc.agentDown)
			if tc.unrecorded {
				w.importSession("x", tc.step, srv, "")
			} else {
				w.importAt("x", tc.step, srv)
			}
			out, task := w.adoptOnce("x")
			if out.Err != nil || out.PollAfter != 0 {
				t.Fatalf("adopt = %+v", out)
			}
			last := task.Steps[len(task.Steps)-1]
			if task.Adopting || task.Step != tc.wantStep || task.Status != tc.wantState || last.Step != fsm.StepAdopt || !strings.Contains(last.Note, tc.wantNote) {
				t.Fatalf("task %s at %q (adopting %v), note %q; want %s at %q, note ~ %q", task.Status, task.Step, task.Adopting, last.Note,
					tc.wantState, tc.wantStep, tc.wantNote)
			}
			n, _ := w.f.Node("n-old")
			if tc.gone && (n.ServerID != 0 || n.Ready) {
				t.Fatalf("node after a gone server = %+v", n)
			}
			if !tc.gone && !tc.off && !tc.agentDown && (!n.Ready || n.IPv4 != "127.0.0.1") {
				t.Fatalf("node after a healthy agent = %+v", n)
			}
			w.onlyProbed(t)
		})
	}
}

// onlyProbed: adoption wrote nothing to the agent but its session probe
// (a creation of the task's recorded session), and started nothing.
func (w *world) onlyProbed(t *testing.T) {
	t.Helper()
	w.rec.mu.Lock()
	calls := slices.Clone(w.rec.calls)
	w.rec.mu.Unlock()
	for _, c := range calls {
		if c.Method != "GET" && (c.Method != "POST" || c.Path != "/workspaces/ws-old/agent-sessions" || !strings.Contains(string(c.Body), `"sessionId":"s-old"`)) {
			t.Fatalf("adopt wrote to the agent: %s %s %s", c.Method, c.Path, c.Body)
		}
	}
	if w.agent == nil {
		return
	}
	for _, e := range w.agent.Events() {
		if e.Kind == sim.EventSessionStart && e.Detail != "seeded" {
			t.Fatalf("adopt started a session: %+v", e)
		}
	}
}

// TestAdoptSessionOnce: a task whose recorded session is absent from its
// running workspace goes to agent_session, which starts that session; one
// whose session the old system made waits at running. A re-dispatched
// adoption (the first attempt's result lost) decides the same, though the
// first attempt's probe created the absent session: the agent ends with
// one session and one start, or none of tdf's.
func TestAdoptSessionOnce(t *testing.T) {
	for _, tc := range []struct {
		name     string
		session  *sim.SeedSession
		wantStep fsm.Step
	}{
		{"absent", nil, fsm.StepAgentSession},
		{"made by the old system", &sim.SeedSession{ID: "s-old", Prompt: "old prompt", Running: true}, fsm.StepRunning},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := adoptWorld(t)
			srv := w.seedServer(false)
			a := w.startAgent("n-old", nil)
			if err := a.Seed(sim.SeedWorkspace{ID: "ws-old", Status: "running", Session: tc.session}); err != nil {
				t.Fatal(err)
			}
			w.importAt("x", fsm.StepRunning, srv)
			c := w.claim("x")
			if out := w.run(c); out.Err != nil || out.Data.AdoptTo != tc.wantStep {
				t.Fatalf("first adopt attempt = %+v", out)
			}
			out := w.run(c)
			task := w.commit(c, out)
			if out.Err != nil || task.Step != tc.wantStep || task.Adopting {
				t.Fatalf("re-dispatched adopt = %+v, task at %s (adopting %v)", out, task.Step, task.Adopting)
			}
			w.onlyProbed(t)
			if tc.wantStep == fsm.StepAgentSession {
				if out, task := w.runStep("x"); out.Err != nil || task.Step != fsm.StepRunning || task.AgentSessionID != "s-old" {
					t.Fatalf("agent_session = %+v, task at %s with session %q", out, task.Step, task.AgentSessionID)
				}
			}
			ss := a.Sessions("ws-old")
			ev := a.Events()
			if len(ss) != 1 || ss[0].ID != "s-old" || countAgentEvents(ev, sim.EventSessionCreate) != 1 || countAgentEvents(ev, sim.EventSessionStart) != 1 {
				t.Fatalf("sessions %+v, events %+v: want session s-old created and started once", ss, ev)
			}
			if tc.session != nil && ss[0].LastPrompt != tc.session.Prompt {
				t.Fatalf("session prompt %q, want the old system's", ss[0].LastPrompt)
			}
		})
	}
}

// runStep claims the task's step, runs it once and commits the result.
func (w *world) runStep(id string) (runner.Result, *fsm.Task) {
	w.t.Helper()
	c := w.claim(id)
	out := w.run(c)
	return out, w.commit(c, out)
}

func TestAdoptFailures(t *testing.T) {
	t.Run("workspace in error fails the task", func(t *testing.T) {
		w := adoptWorld(t)
		srv := w.seedServer(false)
		a := w.startAgent("n-old", nil)
		if err := a.Seed(sim.SeedWorkspace{ID: "ws-old", Status: "error"}); err != nil {
			t.Fatal(err)
		}
		w.importAt("x", fsm.StepWorkspaceReady, srv)
		out, task := w.adoptOnce("x")
		wantClass(t, "workspace error", out.Err, fsm.ClassPermanent)
		if task.Status != fsm.StatusFailed || task.Adopting {
			t.Fatalf("task = %s (adopting %v)", task.Status, task.Adopting)
		}
	})
	t.Run("silent agent polls, then fails at the agent-ready timeout", func(t *testing.T) {
		w := adoptWorld(t)
		srv := w.seedServer(false)
		w.startAgent("n-old", nil)
		w.agentDown.Store(true)
		c := fsm.ImportTask{TaskID: "x", Spec: taskSpec(), Status: fsm.StatusDelegated, Step: fsm.StepWorkspaceReady, NodeID: "n-old",
			ServerID: srv, WorkspaceID: "ws-old", Policy: fsm.DefaultPolicy(), At: time.Now()}
		c.Policy.AgentReadyTimeout = 300 * time.Millisecond
		w.apply(c)
		out, task := w.adoptOnce("x")
		if out.Err != nil || out.PollAfter != w.cfg.AgentPoll || !task.Adopting {
			t.Fatalf("first attempt = %+v, adopting %v", out, task.Adopting)
		}
		until(t, "the adopt step to give up", func() bool {
			out, task = w.adoptOnce("x")
			return out.Err != nil
		})
		wantClass(t, "silent agent", out.Err, fsm.ClassPermanent)
		if task.Status != fsm.StatusFailed {
			t.Fatalf("task = %s", task.Status)
		}
	})
}
