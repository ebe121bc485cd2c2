package handlers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/handlers"
	"github.com/tdf-project/tdf/vmagent/sim"
)

// toRunning drives a task to running against an agent configured by mod.
func (w *world) toRunning(id string, mod func(*sim.Config)) *fsm.Task {
	w.t.Helper()
	task := w.toWorkspaceCreation(id, mod)
	c := w.claim(id)
	w.commit(c, w.run(c))
	w.apply(fsm.WorkspaceReady{WorkspaceID: task.WorkspaceID, Status: fsm.WorkspaceRunning, At: time.Now()})
	c = w.claim(id)
	task = w.commit(c, w.run(c))
	if task.Step != fsm.StepRunning {
		w.t.Fatalf("task at %s, want running", task.Step)
	}
	return task
}

func (w *world) runReconciler() *handlers.RunReconciler {
	return &handlers.RunReconciler{Config: w.cfg, Leader: "n1", Interval: 20 * time.Millisecond,
		Apply:  func(_ context.Context, c fsm.Command) (*fsm.Result, error) { return w.apply(c), nil },
		Logger: hclog.NewNullLogger()}
}

func recovered(w *world, id string) []*fsm.ErrorRecord {
	page, _ := w.f.Errors(fsm.ErrorFilter{TaskID: id, Kind: fsm.ErrKindRecovered})
	return page
}

// TestRunReconcileFinishesARunWhoseCallbackWasLost: the agent ran the
// prompt and never called back; the reconciler reads its prompt receipt and
// moves the task on once, with a recovered record; while the prompt runs it
// does nothing.
func TestRunReconcileFinishesARunWhoseCallbackWasLost(t *testing.T) {
	w := newWorld(t, worldOpts{})
	task := w.toRunning("t-r1", func(c *sim.Config) { c.AgentWorkDuration = 300 * time.Millisecond })
	w.agent.SetFaults(sim.Faults{DropTaskStatus: true})
	r := w.runReconciler()
	if n := r.Reconcile(context.Background()); n != 0 {
		t.Fatalf("a pass while the prompt runs moved %d tasks", n)
	}
	until(t, "the reconciler moves the task on", func() bool {
		r.Reconcile(context.Background())
		cur, _ := w.f.Task(task.ID)
		return cur.Step == fsm.StepAwaitingFollowup
	})
	cur, _ := w.f.Task(task.ID)
	if cur.Status != fsm.StatusInProgress {
		t.Fatalf("task %s after the reconcile, want in_progress awaiting follow-up", cur.Status)
	}
	recs := recovered(w, task.ID)
	if len(recs) != 1 || recs[0].Step != fsm.StepRunning || !strings.Contains(recs[0].Message, "status callback never arrived") {
		t.Fatalf("recovered records %+v, want one for running", recs)
	}
	if n := r.Reconcile(context.Background()); n != 0 || len(recovered(w, task.ID)) != 1 {
		t.Fatalf("a later pass moved %d tasks; records %d", n, len(recovered(w, task.ID)))
	}
}

// TestRunReconcileWaitsForTheAgentsOwnCallback: within the finish grace a
// completed prompt is left to its callback.
func TestRunReconcileWaitsForTheAgentsOwnCallback(t *testing.T) {
	w := newWorld(t, worldOpts{})
	task := w.toRunning("t-r2", func(c *sim.Config) { c.AgentWorkDuration = 50 * time.Millisecond })
	r := w.runReconciler()
	r.FinishGrace = time.Hour
	until(t, "the prompt completes on the agent", func() bool { return w.agent.Faults() == sim.Faults{} && !sessionRunning(w, task) })
	for range 3 {
		r.Reconcile(context.Background())
	}
	if cur, _ := w.f.Task(task.ID); cur.Step != fsm.StepRunning {
		t.Fatalf("task at %s within the finish grace, want running", cur.Step)
	}
}

func sessionRunning(w *world, task *fsm.Task) bool {
	ans := w.rec.find("POST", fmt.Sprintf("/workspaces/%s/agent-sessions/%s/start", task.WorkspaceID, task.AgentSessionID))
	if len(ans) == 0 {
		return true
	}
	for _, e := range w.agent.Events() {
		if e.Kind == sim.EventAgentRunDone && e.SessionID == task.AgentSessionID {
			return false
		}
	}
	return true
}

// TestRunReconcileLostWorkspace: a workspace that disappeared from its
// agent fails a running task, once a second pass confirms it.
func TestRunReconcileLostWorkspace(t *testing.T) {
	w := newWorld(t, worldOpts{})
	task := w.toRunning("t-r3", nil)
	n, _ := w.f.Node(task.NodeID)
	base := fmt.Sprintf("http://127.0.0.1:%d", w.cfg.AgentPort)
	if err := w.cfg.Agents.DeleteWorkspace(context.Background(), base, n.ID, task.UserID, task.WorkspaceID); err != nil {
		t.Fatal(err)
	}
	r := w.runReconciler()
	if moved := r.Reconcile(context.Background()); moved != 0 {
		t.Fatalf("the first pass moved %d tasks; a loss needs a second look", moved)
	}
	until(t, "the loss is confirmed", func() bool {
		r.Reconcile(context.Background())
		cur, _ := w.f.Task(task.ID)
		return cur.Status == fsm.StatusFailed
	})
	cur, _ := w.f.Task(task.ID)
	if !strings.Contains(cur.ErrorMessage, "no longer exists") {
		t.Fatalf("error %q, want the workspace named", cur.ErrorMessage)
	}
}
