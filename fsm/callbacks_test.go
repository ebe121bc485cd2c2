package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Callbacks from the VMs (REFERENCE.md "Callbacks from VMs"), driven with
// encoded commands. Every callback may be repeated (agents retry) and may
// arrive before the task waits for it.

// cbToWorkspaceCreation drives a new task to workspace_creation: its node
// n-<id> is provisioned and ready, its workspace ws-<id> recorded as
// creating.
func cbToWorkspaceCreation(t *testing.T, a *applier, id string) *Task {
	t.Helper()
	submit(a, id)
	a.apply(DecideStep{TaskID: id, Step: StepNodeSelection, Leader: "n1", At: t0})
	succeed(t, a, claim(t, a, id, 1, t0), StepData{ServerID: 7, IPv4: "10.0.0.7"}, t0)
	task := succeed(t, a, claim(t, a, id, 1, t0), StepData{}, t0)
	if task.Step != StepWorkspaceCreate || task.WorkspaceID == "" {
		t.Fatalf("task at %s with workspace %q, want workspace_creation", task.Step, task.WorkspaceID)
	}
	return task
}

// cbToRunning drives a new task to running (agent session started at
// t0+2s).
func cbToRunning(t *testing.T, a *applier, id string) *Task {
	t.Helper()
	task := toWorkspaceReady(t, a, id)
	if r := a.apply(WorkspaceReady{WorkspaceID: task.WorkspaceID, Status: WorkspaceRunning, At: t0.Add(2 * time.Second)}); r.Err != nil {
		t.Fatalf("workspace ready: %v", r.Err)
	}
	task = succeed(t, a, claim(t, a, id, 1, t0), StepData{SessionID: "s-" + id}, t0.Add(2*time.Second))
	if task.Step != StepRunning || task.Status != StatusInProgress || task.AgentSessionID != "s-"+id {
		t.Fatalf("task at %s/%s session %q, want in_progress/running", task.Status, task.Step, task.AgentSessionID)
	}
	return task
}

// cbTaskBytes is the task's encoding, to check that a command left it
// untouched.
func cbTaskBytes(t *testing.T, a *applier, id string) []byte { return encodeTask(t, a.f, id) }

func TestEarlyWorkspaceReadyIsKept(t *testing.T) {
	for _, st := range []WorkspaceStatus{WorkspaceRunning, WorkspaceRecovery} {
		t.Run(string(st), func(t *testing.T) {
			a := newApplier(t)
			task := cbToWorkspaceCreation(t, a, "t1")
			c := claim(t, a, "t1", 1, t0)
			// The agent's ready overtakes its 202 answer.
			r := a.apply(WorkspaceReady{WorkspaceID: task.WorkspaceID, Status: st, At: t0.Add(time.Second)})
			if r.Err != nil || r.Task.Step != StepWorkspaceCreate || r.Task.Status != StatusQueued {
				t.Fatalf("early ready: err=%v task at %s/%s, want it left at workspace_creation", r.Err, r.Task.Status, r.Task.Step)
			}
			if ws, _ := a.f.Workspace(task.WorkspaceID); ws.Status != st {
				t.Fatalf("workspace %s after early ready, want %s kept", ws.Status, st)
			}
			// Reaching workspace_ready, the task uses it at once.
			done := succeed(t, a, c, StepData{WorkspaceID: task.WorkspaceID}, t0.Add(2*time.Second))
			if done.Step != StepAgentSession || done.Status != StatusDelegated {
				t.Fatalf("after creation: %s/%s, want delegated/agent_session", done.Status, done.Step)
			}
			if done.Alarm == nil || done.Alarm.Kind != AlarmRun {
				t.Fatalf("alarm %+v, want the session step to run", done.Alarm)
			}
		})
	}
}

func TestWorkspaceReadyAdvancesOnceAndIsIdempotent(t *testing.T) {
	a := newApplier(t)
	task := toWorkspaceReady(t, a, "t1")
	r := a.apply(WorkspaceReady{WorkspaceID: task.WorkspaceID, Status: WorkspaceRunning, At: t0.Add(3 * time.Second)})
	if r.Err != nil || r.Unchanged || r.Task.Step != StepAgentSession {
		t.Fatalf("ready: err=%v duplicate=%v step=%s", r.Err, r.Unchanged, r.Task.Step)
	}
	before := cbTaskBytes(t, a, "t1")
	for _, st := range []WorkspaceStatus{WorkspaceRunning, WorkspaceRecovery} {
		r := a.apply(WorkspaceReady{WorkspaceID: task.WorkspaceID, Status: st, At: t0.Add(4 * time.Second)})
		if r.Err != nil || !r.Unchanged {
			t.Fatalf("repeated ready (%s): err=%v duplicate=%v", st, r.Err, r.Unchanged)
		}
	}
	if !bytes.Equal(before, cbTaskBytes(t, a, "t1")) {
		t.Fatal("a repeated ready changed the task")
	}
	if ws, _ := a.f.Workspace(task.WorkspaceID); ws.Status != WorkspaceRunning {
		t.Fatalf("workspace %s, want running", ws.Status)
	}
	if r := a.apply(WorkspaceReady{WorkspaceID: "ws-nope", Status: WorkspaceRunning, At: t0}); !errors.Is(r.Err, ErrNotFound) {
		t.Fatalf("unknown workspace: err = %v", r.Err)
	}
}

func TestWorkspaceReadyIgnoredWhenStoppedOrFailed(t *testing.T) {
	// Stopped: the task was cancelled and its cleanup stopped it.
	a := newApplier(t)
	task := toWorkspaceReady(t, a, "t1")
	a.apply(CancelTask{TaskID: "t1", Actor: Actor{Type: ActorUser}, At: t0.Add(time.Minute)})
	succeed(t, a, claim(t, a, "t1", 1, t0), StepData{WorkspaceStopped: true}, t0.Add(time.Minute))
	before := cbTaskBytes(t, a, "t1")
	r := a.apply(WorkspaceReady{WorkspaceID: task.WorkspaceID, Status: WorkspaceRunning, At: t0.Add(2 * time.Minute)})
	if !errors.Is(r.Err, ErrIgnored) {
		t.Fatalf("ready for a stopped workspace: err = %v, want ErrIgnored", r.Err)
	}
	if ws, _ := a.f.Workspace(task.WorkspaceID); ws.Status != WorkspaceStopped || !bytes.Equal(before, cbTaskBytes(t, a, "t1")) {
		t.Fatalf("ignored ready changed state: workspace %s", ws.Status)
	}

	// Failed: provisioning-failed came first.
	a = newApplier(t)
	task = toWorkspaceReady(t, a, "t2")
	a.apply(WorkspaceFailed{WorkspaceID: task.WorkspaceID, Message: "disk full", At: t0.Add(time.Minute)})
	if r := a.apply(WorkspaceReady{WorkspaceID: task.WorkspaceID, Status: WorkspaceRunning, At: t0.Add(2 * time.Minute)}); !errors.Is(r.Err, ErrIgnored) {
		t.Fatalf("ready for a failed workspace: err = %v, want ErrIgnored", r.Err)
	}
}

func TestWorkspaceProvisioningFailedFailsTask(t *testing.T) {
	for _, early := range []bool{false, true} {
		t.Run(fmt.Sprintf("early=%v", early), func(t *testing.T) {
			a := newApplier(t)
			var task *Task
			at := t0.Add(time.Minute)
			var r *Result
			if early {
				task = cbToWorkspaceCreation(t, a, "t1")
				c := claim(t, a, "t1", 1, t0) // the create call is in flight
				// While the call is unanswered, the failure is kept on the
				// workspace and the answer decides: here it accepted the
				// workspace, so the task fails on reaching workspace_ready.
				early := a.apply(WorkspaceFailed{WorkspaceID: task.WorkspaceID, Message: "clone failed: repository not found", At: at})
				if early.Err != nil || early.Task.Status != StatusQueued || early.Task.Step != StepWorkspaceCreate || !early.Task.InFlight {
					t.Fatalf("early failure: err=%v task at %s/%s, want it left at workspace_creation", early.Err, early.Task.Status, early.Task.Step)
				}
				r = &Result{Task: succeed(t, a, c, StepData{WorkspaceID: task.WorkspaceID}, at)}
			} else {
				task = toWorkspaceReady(t, a, "t1")
				r = a.apply(WorkspaceFailed{WorkspaceID: task.WorkspaceID, Message: "clone failed: repository not found", At: at})
			}
			if r.Err != nil || r.Task.Status != StatusFailed || r.Task.Step != StepNone || !r.Task.Cleanup ||
				!strings.Contains(r.Task.ErrorMessage, "clone failed") || r.Task.InFlight {
				t.Fatalf("failed: err=%v task=%+v", r.Err, r.Task)
			}
			if ws, _ := a.f.Workspace(task.WorkspaceID); ws.Status != WorkspaceError || ws.ErrorMessage != "clone failed: repository not found" {
				t.Fatalf("workspace = %+v", ws)
			}
			errs, _ := a.f.Errors(ErrorFilter{TaskID: "t1", Kind: ErrKindFailed})
			if len(errs) != 1 || errs[0].Class != ClassPermanent || !strings.Contains(errs[0].Message, "clone failed") {
				t.Fatalf("error records = %+v", errs)
			}
			// Repeated: nothing more happens.
			before := cbTaskBytes(t, a, "t1")
			if r := a.apply(WorkspaceFailed{WorkspaceID: task.WorkspaceID, Message: "again", At: at.Add(time.Second)}); r.Err != nil || !r.Unchanged {
				t.Fatalf("repeated: err=%v duplicate=%v", r.Err, r.Unchanged)
			}
			errs, _ = a.f.Errors(ErrorFilter{TaskID: "t1", Kind: ErrKindFailed})
			if !bytes.Equal(before, cbTaskBytes(t, a, "t1")) || len(errs) != 1 {
				t.Fatalf("a repeated provisioning-failed changed the task or recorded again (%d records)", len(errs))
			}
		})
	}
}

// A leader dies while a standalone agent creates the workspace within the
// call: the agent's work is cut off and reported as provisioning-failed;
// the next leader's attempt re-creates the workspace, whose ready callback
// then counts, and the task goes on.
func TestWorkspaceFailureDuringCreationIsRedone(t *testing.T) {
	a := newApplier(t)
	task := cbToWorkspaceCreation(t, a, "t1")
	claim(t, a, "t1", 1, t0)
	at := t0.Add(time.Second)
	if r := a.apply(WorkspaceFailed{WorkspaceID: task.WorkspaceID, Message: "standalone git clone failed: signal: killed", At: at}); r.Err != nil || r.Task.Status.Terminal() {
		t.Fatalf("interrupted creation: err=%v task %s", r.Err, r.Task.Status)
	}
	// The new leader re-dispatches the claimed step as attempt 2, which
	// re-creates the workspace.
	c := claim(t, a, "t1", 2, at.Add(time.Minute))
	if r := a.apply(WorkspaceReady{WorkspaceID: task.WorkspaceID, Status: WorkspaceRunning, At: at.Add(time.Minute)}); r.Err != nil {
		t.Fatalf("ready of the re-created workspace: %v", r.Err)
	}
	done := succeed(t, a, c, StepData{WorkspaceID: task.WorkspaceID}, at.Add(time.Minute))
	if done.Status != StatusDelegated || done.Step != StepAgentSession {
		t.Fatalf("after re-creation: %s/%s (%s), want delegated/agent_session", done.Status, done.Step, done.ErrorMessage)
	}
	// Once past creation, a failed workspace's ready is ignored again.
	if ws, _ := a.f.Workspace(task.WorkspaceID); ws.Status != WorkspaceRunning {
		t.Fatalf("workspace %s, want running", ws.Status)
	}
}

func TestStatusCallbackAwaitingFollowup(t *testing.T) {
	a := newApplier(t)
	cbToRunning(t, a, "t1")
	at := t0.Add(10 * time.Minute)
	out := Output{Branch: "sam/fix-the-bug", PRURL: "https://github.com/acme/app/pull/7", Summary: "fixed"}
	r := a.apply(TaskStatusCallback{TaskID: "t1", WorkspaceID: "ws-t1", ExecutionStep: StepAwaitingFollowup, Output: out, At: at})
	if r.Err != nil || r.Task.Step != StepAwaitingFollowup || r.Task.Status != StatusInProgress {
		t.Fatalf("callback: err=%v task at %s/%s", r.Err, r.Task.Status, r.Task.Step)
	}
	if r.Task.Output != out {
		t.Fatalf("output = %+v, want %+v", r.Task.Output, out)
	}
	idle := DefaultPolicy().IdleTimeout
	if r.Task.Alarm == nil || r.Task.Alarm.Kind != AlarmDeadline || !r.Task.Alarm.Due.Equal(at.Add(idle)) {
		t.Fatalf("alarm %+v, want the idle deadline %s", r.Task.Alarm, at.Add(idle))
	}
	// Repeated: a no-op (the idle timer is not restarted).
	before := cbTaskBytes(t, a, "t1")
	r = a.apply(TaskStatusCallback{TaskID: "t1", WorkspaceID: "ws-t1", ExecutionStep: StepAwaitingFollowup, Output: out, At: at.Add(time.Minute)})
	if r.Err != nil || !r.Unchanged || !bytes.Equal(before, cbTaskBytes(t, a, "t1")) {
		t.Fatalf("repeated callback: err=%v duplicate=%v", r.Err, r.Unchanged)
	}
	// A callback naming another workspace is refused.
	if r := a.apply(TaskStatusCallback{TaskID: "t1", WorkspaceID: "ws-other", ToStatus: StatusFailed, At: at}); !errors.Is(r.Err, ErrInvalid) {
		t.Fatalf("callback from another workspace: err = %v, want ErrInvalid", r.Err)
	}
	if r := a.apply(TaskStatusCallback{TaskID: "t-nope", ExecutionStep: StepAwaitingFollowup, At: at}); !errors.Is(r.Err, ErrNotFound) {
		t.Fatalf("unknown task: err = %v", r.Err)
	}
}

// TestEarlyFollowupCallback: the agent finished before the session step's
// result was committed; entering running moves straight on.
func TestEarlyFollowupCallback(t *testing.T) {
	a := newApplier(t)
	task := toWorkspaceReady(t, a, "t1")
	a.apply(WorkspaceReady{WorkspaceID: task.WorkspaceID, Status: WorkspaceRunning, At: t0.Add(2 * time.Second)})
	c := claim(t, a, "t1", 1, t0.Add(2*time.Second))
	r := a.apply(TaskStatusCallback{TaskID: "t1", WorkspaceID: task.WorkspaceID, ExecutionStep: StepAwaitingFollowup,
		Output: Output{Branch: "sam/early"}, At: t0.Add(3 * time.Second)})
	if r.Err != nil || r.Task.Step != StepAgentSession || !r.Task.FollowupEarly || r.Task.Output.Branch != "sam/early" {
		t.Fatalf("early callback: err=%v step=%s early=%v output=%+v", r.Err, r.Task.Step, r.Task.FollowupEarly, r.Task.Output)
	}
	at := t0.Add(4 * time.Second)
	done := succeed(t, a, c, StepData{SessionID: "s1"}, at)
	if done.Step != StepAwaitingFollowup || done.Status != StatusInProgress || done.FollowupEarly {
		t.Fatalf("after the session step: %s/%s early=%v, want in_progress/awaiting_followup", done.Status, done.Step, done.FollowupEarly)
	}
	if done.Alarm == nil || done.Alarm.Kind != AlarmDeadline || !done.Alarm.Due.Equal(at.Add(DefaultPolicy().IdleTimeout)) {
		t.Fatalf("alarm %+v, want the idle deadline", done.Alarm)
	}
}

func TestStatusCallbackFailed(t *testing.T) {
	a := newApplier(t)
	cbToRunning(t, a, "t1")
	at := t0.Add(5 * time.Minute)
	r := a.apply(TaskStatusCallback{TaskID: "t1", WorkspaceID: "ws-t1", ToStatus: StatusFailed, Reason: "agent crashed",
		ErrorMessage: "claude exited 1", At: at})
	if r.Err != nil || r.Task.Status != StatusFailed || r.Task.Step != StepNone || !r.Task.Cleanup || r.Task.ErrorMessage != "claude exited 1" {
		t.Fatalf("failed callback: err=%v task=%+v", r.Err, r.Task)
	}
	ev := r.Task.History[len(r.Task.History)-1]
	if ev.From != StatusInProgress || ev.To != StatusFailed || ev.Actor.Type != ActorWorkspaceCallback || ev.Actor.ID != "ws-t1" || ev.Reason != "agent crashed" || !ev.At.Equal(at) {
		t.Fatalf("status event = %+v, want in_progress → failed by workspace_callback ws-t1", ev)
	}
	errs, _ := a.f.Errors(ErrorFilter{TaskID: "t1", Kind: ErrKindFailed})
	if len(errs) != 1 || !strings.Contains(errs[0].Message, "claude exited 1") {
		t.Fatalf("error records = %+v", errs)
	}
	before := cbTaskBytes(t, a, "t1")
	if r := a.apply(TaskStatusCallback{TaskID: "t1", WorkspaceID: "ws-t1", ToStatus: StatusFailed, At: at.Add(time.Second)}); r.Err != nil || !r.Unchanged {
		t.Fatalf("repeated: err=%v duplicate=%v", r.Err, r.Unchanged)
	}
	if !bytes.Equal(before, cbTaskBytes(t, a, "t1")) {
		t.Fatal("a repeated failure changed the task")
	}
}

func TestStatusCallbackInvalidToStatus(t *testing.T) {
	a := newApplier(t)
	cbToRunning(t, a, "t1")
	before := cbTaskBytes(t, a, "t1")
	for _, c := range []struct {
		cb   TaskStatusCallback
		want error
	}{
		{TaskStatusCallback{ToStatus: StatusDelegated}, ErrInvalidTransition}, // backwards
		{TaskStatusCallback{ToStatus: StatusQueued}, ErrInvalidTransition},    // backwards
		{TaskStatusCallback{ToStatus: StatusCancelled}, ErrInvalidTransition}, // allowed by the table, not by an agent
		{TaskStatusCallback{ToStatus: StatusReady}, ErrInvalidTransition},     // not from in_progress
		{TaskStatusCallback{ToStatus: Status("bogus")}, ErrInvalidTransition}, // not a status
		{TaskStatusCallback{Reason: "neither toStatus nor executionStep"}, ErrInvalid},
	} {
		cb := c.cb
		cb.TaskID, cb.WorkspaceID, cb.At = "t1", "ws-t1", t0.Add(time.Minute)
		if r := a.apply(cb); !errors.Is(r.Err, c.want) {
			t.Errorf("toStatus %q: err = %v, want %v", cb.ToStatus, r.Err, c.want)
		}
	}
	if !bytes.Equal(before, cbTaskBytes(t, a, "t1")) {
		t.Fatal("a refused callback changed the task")
	}
	// Same status: a no-op. completed: allowed from in_progress.
	if r := a.apply(TaskStatusCallback{TaskID: "t1", WorkspaceID: "ws-t1", ToStatus: StatusInProgress, At: t0.Add(time.Minute)}); r.Err != nil || !r.Unchanged {
		t.Fatalf("same status: err=%v duplicate=%v", r.Err, r.Unchanged)
	}
	r := a.apply(TaskStatusCallback{TaskID: "t1", WorkspaceID: "ws-t1", ToStatus: StatusCompleted, Output: Output{Summary: "done"}, At: t0.Add(2 * time.Minute)})
	if r.Err != nil || r.Task.Status != StatusCompleted || !r.Task.Cleanup || r.Task.Output.Summary != "done" {
		t.Fatalf("completed: err=%v task=%+v", r.Err, r.Task)
	}
	// Before the session started (delegated), completed is not allowed.
	a = newApplier(t)
	toWorkspaceReady(t, a, "t2")
	if r := a.apply(TaskStatusCallback{TaskID: "t2", WorkspaceID: "ws-t2", ToStatus: StatusCompleted, At: t0}); !errors.Is(r.Err, ErrInvalidTransition) {
		t.Fatalf("delegated → completed: err = %v, want ErrInvalidTransition", r.Err)
	}
}

// TestStatusCallbackOutsideARun: a late callback of an ended run — the task
// re-opened to ready, or re-run while the old run is still being cleaned
// up — must not touch the task: ready → failed is not in the transition
// table, and an old "finished" must not end the new run.
func TestStatusCallbackOutsideARun(t *testing.T) {
	a := newApplier(t)
	cbToRunning(t, a, "t1")
	at := t0.Add(time.Minute)
	a.apply(CancelTask{TaskID: "t1", Actor: Actor{Type: ActorUser}, At: at})
	succeed(t, a, claim(t, a, "t1", 1, at), StepData{WorkspaceStopped: true}, at)
	a.apply(SetStatus{TaskID: "t1", To: StatusReady, Actor: Actor{Type: ActorUser}, At: at})
	for _, cb := range []TaskStatusCallback{
		{ToStatus: StatusFailed, ErrorMessage: "late"},
		{ExecutionStep: StepAwaitingFollowup},
	} {
		before := cbTaskBytes(t, a, "t1")
		cb.TaskID, cb.WorkspaceID, cb.At = "t1", "ws-t1", at.Add(time.Second)
		r := a.apply(cb)
		if cur, _ := a.f.Task("t1"); cur.Status != StatusReady || cur.FollowupEarly || !bytes.Equal(before, cbTaskBytes(t, a, "t1")) {
			t.Fatalf("late callback %+v to a ready task: err=%v, task now %s early=%v", cb, r.Err, cur.Status, cur.FollowupEarly)
		}
	}

	// Re-run while the previous run's cleanup is pending.
	a = newApplier(t)
	cbToRunning(t, a, "t2")
	a.apply(CancelTask{TaskID: "t2", Actor: Actor{Type: ActorUser}, At: at})
	a.apply(SetStatus{TaskID: "t2", To: StatusReady, Actor: Actor{Type: ActorUser}, At: at})
	a.apply(SetStatus{TaskID: "t2", To: StatusQueued, Actor: Actor{Type: ActorUser}, At: at})
	for _, cb := range []TaskStatusCallback{
		{ExecutionStep: StepAwaitingFollowup},
		{ToStatus: StatusFailed, ErrorMessage: "late"},
	} {
		cb.TaskID, cb.WorkspaceID, cb.At = "t2", "ws-t2", at.Add(time.Second)
		a.apply(cb)
		if cur, _ := a.f.Task("t2"); cur.Status != StatusQueued || cur.FollowupEarly {
			t.Fatalf("late callback %+v during the re-run's pending cleanup: task %s early=%v", cb, cur.Status, cur.FollowupEarly)
		}
	}
}

func TestIdleResetAndDeadline(t *testing.T) {
	a := newApplier(t)
	cbToRunning(t, a, "t1")
	// Not awaiting follow-up yet: refused.
	if r := a.apply(IdleReset{TaskID: "t1", Actor: Actor{Type: ActorUser, ID: "u1"}, At: t0.Add(time.Minute)}); !errors.Is(r.Err, ErrInvalidTransition) {
		t.Fatalf("idle reset while running: err = %v, want ErrInvalidTransition", r.Err)
	}
	a.apply(NodeReady{NodeID: "n-t1", At: t0})
	at := t0.Add(10 * time.Minute)
	a.apply(TaskStatusCallback{TaskID: "t1", WorkspaceID: "ws-t1", ExecutionStep: StepAwaitingFollowup, At: at})
	idle := DefaultPolicy().IdleTimeout
	first, _ := a.f.Task("t1")
	if !first.Alarm.Due.Equal(at.Add(idle)) {
		t.Fatalf("idle deadline %s, want %s", first.Alarm.Due, at.Add(idle))
	}
	// User activity pushes it out.
	reset := at.Add(5 * time.Minute)
	r := a.apply(IdleReset{TaskID: "t1", Actor: Actor{Type: ActorUser, ID: "u1"}, At: reset})
	if r.Err != nil || r.Task.Alarm == nil || r.Task.Alarm.Kind != AlarmDeadline || !r.Task.Alarm.Due.Equal(reset.Add(idle)) {
		t.Fatalf("idle reset: err=%v alarm=%+v, want %s", r.Err, r.Task.Alarm, reset.Add(idle))
	}
	// A reset that would not push it out (an older, re-delivered one) is a no-op.
	if r := a.apply(IdleReset{TaskID: "t1", At: at.Add(time.Minute)}); r.Err != nil || !r.Unchanged {
		t.Fatalf("older reset: err=%v duplicate=%v", r.Err, r.Unchanged)
	}
	// The first deadline is stale now.
	if r := a.apply(StepTimeout{TaskID: "t1", Step: StepAwaitingFollowup, Due: first.Alarm.Due, At: first.Alarm.Due}); !errors.Is(r.Err, ErrFenced) {
		t.Fatalf("stale idle deadline: err = %v, want ErrFenced", r.Err)
	}
	// The deadline fires: the run is over and successful, cleanup scheduled.
	due := reset.Add(idle)
	r = a.apply(StepTimeout{TaskID: "t1", Step: StepAwaitingFollowup, Due: due, At: due})
	if r.Err != nil || r.Task.Status != StatusCompleted || r.Task.Step != StepNone || !r.Task.Cleanup || r.Task.ErrorMessage != "" ||
		r.Task.Alarm == nil || r.Task.Alarm.Kind != AlarmRun || !r.Task.Alarm.Due.Equal(due) || r.Task.CompletedAt == nil {
		t.Fatalf("idle timeout: err=%v task=%+v", r.Err, r.Task)
	}
	if ev := r.Task.History[len(r.Task.History)-1]; ev.From != StatusInProgress || ev.To != StatusCompleted || ev.Actor.Type != ActorSystem {
		t.Fatalf("status event %+v", ev)
	}
	if r := a.apply(IdleReset{TaskID: "t1", At: due}); !errors.Is(r.Err, ErrInvalidTransition) {
		t.Fatalf("idle reset after completion: err = %v", r.Err)
	}
	// Cleanup stops the workspace and releases the node to the warm pool.
	done := succeed(t, a, claim(t, a, "t1", 1, due), StepData{WorkspaceStopped: true}, due)
	if done.Cleanup || done.Alarm != nil {
		t.Fatalf("after cleanup: cleanup=%v alarm=%+v", done.Cleanup, done.Alarm)
	}
	if ws, _ := a.f.Workspace("ws-t1"); ws.Status != WorkspaceStopped {
		t.Fatalf("workspace %s after cleanup", ws.Status)
	}
	if n, _ := a.f.Node("n-t1"); n.Status != NodeWarm {
		t.Fatalf("node %s after cleanup, want warm", n.Status)
	}
}

func TestNodeReadyAndHeartbeats(t *testing.T) {
	a := newApplier(t)
	submit(a, "t1")
	a.apply(DecideStep{TaskID: "t1", Step: StepNodeSelection, At: t0})
	r := a.apply(NodeReady{NodeID: "n-t1", At: t0.Add(time.Minute)})
	if r.Err != nil || !r.Node.Ready || r.Node.ReadyAt == nil || !r.Node.ReadyAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("node ready: err=%v node=%+v", r.Err, r.Node)
	}
	if r := a.apply(NodeReady{NodeID: "n-t1", At: t0.Add(2 * time.Minute)}); r.Err != nil || !r.Unchanged || !r.Node.ReadyAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("repeated ready: err=%v duplicate=%v", r.Err, r.Unchanged)
	}
	if r := a.apply(NodeReady{NodeID: "n-nope", At: t0}); !errors.Is(r.Err, ErrNotFound) {
		t.Fatalf("unknown node: err = %v", r.Err)
	}

	n, _ := a.f.Node("n-t1")
	if h := n.HealthAt(t0, DefaultSettings()); h != HealthUnknown {
		t.Fatalf("health before any heartbeat = %s, want unknown", h)
	}
	hb := t0.Add(2 * time.Minute)
	m := &NodeMetrics{CPULoad: 0.7, MemoryPercent: 42, DiskPercent: 13}
	r = a.apply(NodeHeartbeat{NodeID: "n-t1", ActiveWorkspaces: 3, Metrics: m, At: hb})
	if r.Err != nil || r.Node.LastHeartbeat == nil || !r.Node.LastHeartbeat.Equal(hb) || r.Node.ActiveWorkspaces != 3 || *r.Node.Metrics != *m {
		t.Fatalf("heartbeat: err=%v node=%+v", r.Err, r.Node)
	}
	n = r.Node
	for _, c := range []struct {
		stale time.Duration
		age   time.Duration
		want  Health
	}{
		{180 * time.Second, 0, HealthHealthy},
		{180 * time.Second, 180 * time.Second, HealthHealthy},
		{180 * time.Second, 180*time.Second + time.Nanosecond, HealthStale},
		{180 * time.Second, 360 * time.Second, HealthStale},
		{180 * time.Second, 360*time.Second + time.Nanosecond, HealthUnhealthy},
		{180 * time.Second, time.Hour, HealthUnhealthy},
		// Configurable.
		{60 * time.Second, 61 * time.Second, HealthStale},
		{60 * time.Second, 121 * time.Second, HealthUnhealthy},
	} {
		s := DefaultSettings()
		s.HeartbeatStale = c.stale
		if got := n.HealthAt(hb.Add(c.age), s); got != c.want {
			t.Errorf("stale=%s age=%s: health %s, want %s", c.stale, c.age, got, c.want)
		}
	}
	// The next heartbeat replaces the figures.
	r = a.apply(NodeHeartbeat{NodeID: "n-t1", ActiveWorkspaces: 0, At: hb.Add(time.Minute)})
	if r.Node.ActiveWorkspaces != 0 || r.Node.Metrics != nil || !r.Node.LastHeartbeat.Equal(hb.Add(time.Minute)) {
		t.Fatalf("second heartbeat: node=%+v", r.Node)
	}
	if r := a.apply(NodeHeartbeat{NodeID: "n-nope", At: hb}); !errors.Is(r.Err, ErrNotFound) {
		t.Fatalf("unknown node: err = %v", r.Err)
	}
}

func TestNodeErrorsOncePerIncident(t *testing.T) {
	a := newApplier(t)
	submit(a, "t1")
	submit(a, "t2")
	a.apply(DecideStep{TaskID: "t1", Step: StepNodeSelection, At: t0})
	a.apply(DecideStep{TaskID: "t2", Step: StepNodeSelection, At: t0}) // n-t2: t1's node is not ready
	batch := []NodeError{
		{IncidentID: "inc-1", Level: "error", Message: "docker died", Source: "docker"},
		{IncidentID: "inc-2", Level: "warn", Message: "disk 91 %"},
		{IncidentID: "inc-1", Level: "error", Message: "docker died", Source: "docker"}, // twice in one batch
		{Message: "no incident id"},
	}
	count := func(node string) []*ErrorRecord {
		errs, _ := a.f.Errors(ErrorFilter{NodeID: node, Kind: ErrKindNode})
		return errs
	}
	r := a.apply(NodeErrors{NodeID: "n-t1", Errors: batch, At: t0})
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	errs := count("n-t1")
	if len(errs) != 3 || errs[0].IncidentID != "inc-1" || errs[0].Message != "docker: docker died" || errs[1].IncidentID != "inc-2" {
		t.Fatalf("records after the first batch = %+v, want inc-1, inc-2 and the one without id", errs)
	}
	// The agent re-sends its outbox: only the entry without an incident id
	// cannot be recognised.
	a.apply(NodeErrors{NodeID: "n-t1", Errors: batch, At: t0.Add(30 * time.Second)})
	if errs := count("n-t1"); len(errs) != 4 {
		t.Fatalf("records after the re-send = %d, want 4", len(errs))
	}
	// Incident ids are per node.
	a.apply(NodeErrors{NodeID: "n-t2", Errors: batch[:1], At: t0})
	if errs := count("n-t2"); len(errs) != 1 {
		t.Fatalf("records of n-t2 = %d, want 1", len(errs))
	}
	if r := a.apply(NodeErrors{NodeID: "n-nope", Errors: batch, At: t0}); !errors.Is(r.Err, ErrNotFound) {
		t.Fatalf("unknown node: err = %v", r.Err)
	}
}
