package fsm

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func reconcile(task *Task, step Step, f RunFinding, at time.Time) ReconcileRun {
	return ReconcileRun{TaskID: task.ID, Step: step, WorkspaceID: task.WorkspaceID, SessionID: task.AgentSessionID,
		Finding: f, Detail: "the agent's prompt receipt says " + string(f), Leader: "n1", At: at}
}

func recoveredRecords(a *applier, id string) int {
	page, _ := a.f.Errors(ErrorFilter{TaskID: id, Kind: ErrKindRecovered, Limit: 100})
	return len(page)
}

// TestReconcileFinishedRunOnce: a lost "finished" callback is made up for
// once: the task moves to awaiting_followup with a recovered record; a
// second reconcile, and the callback if it comes after all, change nothing
// more than the callback's own output.
func TestReconcileFinishedRunOnce(t *testing.T) {
	a := newApplier(t)
	task := cbToRunning(t, a, "t1")
	at := t0.Add(10 * time.Minute)
	r := a.apply(reconcile(task, StepRunning, RunFinished, at))
	if r.Err != nil || r.Unchanged || r.Task.Step != StepAwaitingFollowup || r.Task.Status != StatusInProgress {
		t.Fatalf("reconcile: err=%v unchanged=%v task at %s/%s", r.Err, r.Unchanged, r.Task.Status, r.Task.Step)
	}
	if r.Task.Alarm == nil || !r.Task.Alarm.Due.Equal(at.Add(DefaultPolicy().IdleTimeout)) {
		t.Fatalf("alarm %+v, want the idle deadline", r.Task.Alarm)
	}
	if n := recoveredRecords(a, "t1"); n != 1 {
		t.Fatalf("%d recovered records, want 1", n)
	}
	before := cbTaskBytes(t, a, "t1")
	if r := a.apply(reconcile(task, StepRunning, RunFinished, at.Add(time.Minute))); r.Err != nil || !r.Unchanged || !bytes.Equal(before, cbTaskBytes(t, a, "t1")) {
		t.Fatalf("second reconcile: err=%v unchanged=%v", r.Err, r.Unchanged)
	}
	out := Output{Branch: "sam/fix", Push: &PushResult{Pushed: true, CommitSHA: "abc"}}
	r = a.apply(TaskStatusCallback{TaskID: "t1", WorkspaceID: "ws-t1", ExecutionStep: StepAwaitingFollowup, Output: out, At: at.Add(2 * time.Minute)})
	if r.Err != nil || r.Task.Step != StepAwaitingFollowup || r.Task.Output.Push == nil {
		t.Fatalf("late callback: err=%v step %s output %+v, want its output kept", r.Err, r.Task.Step, r.Task.Output)
	}
	if n := recoveredRecords(a, "t1"); n != 1 {
		t.Fatalf("%d recovered records after the late callback, want 1", n)
	}
}

// TestReconcileAfterCallbackChangesNothing: the callback came first; the
// reconcile of the same end is a no-op.
func TestReconcileAfterCallbackChangesNothing(t *testing.T) {
	a := newApplier(t)
	task := cbToRunning(t, a, "t1")
	at := t0.Add(10 * time.Minute)
	a.apply(TaskStatusCallback{TaskID: "t1", WorkspaceID: "ws-t1", ExecutionStep: StepAwaitingFollowup, At: at})
	before := cbTaskBytes(t, a, "t1")
	if r := a.apply(reconcile(task, StepRunning, RunFinished, at.Add(time.Minute))); r.Err != nil || !r.Unchanged || !bytes.Equal(before, cbTaskBytes(t, a, "t1")) {
		t.Fatalf("reconcile after the callback: err=%v unchanged=%v", r.Err, r.Unchanged)
	}
	if r := a.apply(reconcile(task, StepAwaitingFollowup, RunFinished, at.Add(time.Minute))); r.Err != nil || !r.Unchanged {
		t.Fatalf("finished at awaiting_followup: err=%v unchanged=%v, want no change", r.Err, r.Unchanged)
	}
	if n := recoveredRecords(a, "t1"); n != 0 {
		t.Fatalf("%d recovered records, want none", n)
	}
}

// TestReconcileLostRun: a lost run fails a running task and completes one
// awaiting follow-ups; a reconcile naming another session changes nothing.
func TestReconcileLostRun(t *testing.T) {
	a := newApplier(t)
	task := cbToRunning(t, a, "t1")
	at := t0.Add(10 * time.Minute)
	other := reconcile(task, StepRunning, RunLost, at)
	other.SessionID = "s-other"
	if r := a.apply(other); r.Err != nil || !r.Unchanged {
		t.Fatalf("reconcile of another session: err=%v unchanged=%v", r.Err, r.Unchanged)
	}
	r := a.apply(reconcile(task, StepRunning, RunLost, at))
	if r.Err != nil || r.Task.Status != StatusFailed || !r.Task.Cleanup || r.Task.ErrorMessage == "" {
		t.Fatalf("lost running: err=%v task %s cleanup=%v error %q", r.Err, r.Task.Status, r.Task.Cleanup, r.Task.ErrorMessage)
	}

	a = newApplier(t) // a fresh state: t1's node would be reused
	task = cbToRunning(t, a, "t2")
	a.apply(TaskStatusCallback{TaskID: "t2", WorkspaceID: "ws-t2", ExecutionStep: StepAwaitingFollowup, At: at})
	r = a.apply(reconcile(task, StepAwaitingFollowup, RunLost, at.Add(time.Minute)))
	if r.Err != nil || r.Task.Status != StatusCompleted || !r.Task.Cleanup {
		t.Fatalf("lost awaiting follow-up: err=%v task %s cleanup=%v, want completed", r.Err, r.Task.Status, r.Task.Cleanup)
	}
	a = newApplier(t)
	bad := reconcile(cbToRunning(t, a, "t3"), StepRunning, "maybe", at)
	if r := a.apply(bad); !errors.Is(r.Err, ErrInvalid) {
		t.Fatalf("unknown finding: err = %v, want ErrInvalid", r.Err)
	}
}
