package fsm

import (
	"fmt"
	"slices"
	"time"
)

// The step protocol's Apply side. Every function here first fences the
// command against the task's current state; a command that does not match
// changes nothing but the rejection counter and the error database.

// fence rejects a stale command: it counts it, records why and leaves the
// task untouched.
func (f *FSM) fence(res *Result, t *Task, step Step, attempt int, leader, why string, at time.Time) {
	f.st.rejected++
	res.Err = fmt.Errorf("%w: %s", ErrFenced, why)
	res.Task = t
	f.recordError(ErrorRecord{Kind: ErrKindFenced, TaskID: t.ID, Step: step, Attempt: attempt, Leader: leader,
		Message: why, At: at})
}

func (f *FSM) task(id string, res *Result) (*Task, bool) {
	t, ok := f.st.tasks.Get(&Task{ID: id})
	if !ok {
		res.Err = fmt.Errorf("%w: task %s", ErrNotFound, id)
	}
	return t, ok
}

func (f *FSM) applyStepStarted(c StepStarted, res *Result) {
	cur, ok := f.task(c.TaskID, res)
	if !ok {
		return
	}
	switch {
	case cur.RunnableStep() != c.Step || c.Step == StepNone:
		f.fence(res, cur, c.Step, c.Attempt, c.Leader, fmt.Sprintf("claim for step %s, task is at %q", c.Step, cur.RunnableStep()), c.At)
		return
	case KindOf(c.Step) != KindEffect:
		f.fence(res, cur, c.Step, c.Attempt, c.Leader, fmt.Sprintf("step %s is not claimed", c.Step), c.At)
		return
	case c.Attempt != cur.Attempt+1:
		f.fence(res, cur, c.Step, c.Attempt, c.Leader, fmt.Sprintf("claim of attempt %d, next is %d", c.Attempt, cur.Attempt+1), c.At)
		return
	case c.Term < cur.ClaimTerm:
		f.fence(res, cur, c.Step, c.Attempt, c.Leader, fmt.Sprintf("claim from term %d, task claimed in term %d", c.Term, cur.ClaimTerm), c.At)
		return
	}
	t := cur.clone()
	t.Attempt, t.InFlight, t.ClaimTerm = c.Attempt, true, c.Term
	t.Attempts++
	t.UpdatedAt = c.At
	t.Steps = append(t.Steps, StepAttempt{Step: c.Step, Attempt: c.Attempt, Leader: c.Leader, Started: c.At})
	t.Alarm = &Alarm{Due: c.At.Add(t.Policy.ClaimTimeout), Kind: AlarmClaim}
	f.st.tasks.ReplaceOrInsert(t)
	res.Task = t
}

func (f *FSM) applyStepResult(c StepResult, res *Result) {
	cur, ok := f.task(c.TaskID, res)
	if !ok {
		return
	}
	if fenceResults && (!cur.InFlight || cur.RunnableStep() != c.Step || cur.Attempt != c.Attempt || cur.ClaimTerm != c.Term) {
		f.fence(res, cur, c.Step, c.Attempt, c.Leader, fmt.Sprintf("result of %s attempt %d (term %d); current claim is %q attempt %d (term %d, in flight %v)",
			c.Step, c.Attempt, c.Term, cur.RunnableStep(), cur.Attempt, cur.ClaimTerm, cur.InFlight), c.At)
		return
	}
	t := cur.clone()
	t.InFlight = false
	t.UpdatedAt = c.At
	t.finishAttempt(c)
	if c.Data.Recovered != "" {
		f.recordError(ErrorRecord{Kind: ErrKindRecovered, TaskID: t.ID, NodeID: t.NodeID, Step: c.Step, Attempt: c.Attempt,
			Message: c.Data.Recovered, Leader: c.Leader, At: c.At})
		// And on the task's timeline (e.g. a fallback placement).
		t.noteLastAttempt(c.Step, c.Attempt, c.Data.Recovered)
	}
	if sp := stepOf(c.Step); sp.Result != nil {
		sp.Result(f, t, c)
	} else {
		f.stepResult(t, c)
	}
	f.st.tasks.ReplaceOrInsert(t)
	res.Task = t
}

// finishAttempt closes the attempt's timeline entry. The slice is copied:
// the old array may be shared with a snapshot.
func (t *Task) finishAttempt(c StepResult) {
	for i := len(t.Steps) - 1; i >= 0; i-- {
		if t.Steps[i].Step == c.Step && t.Steps[i].Attempt == c.Attempt {
			t.Steps = slices.Clone(t.Steps)
			t.Steps[i].Finished = timePtr(c.At)
			t.Steps[i].Outcome = string(c.Outcome)
			t.Steps[i].Error = c.Error
			return
		}
	}
}

func (f *FSM) stepResult(t *Task, c StepResult) {
	sp := stepOf(c.Step)
	learned := c.Outcome == OutcomeSuccess || c.Outcome == OutcomePoll || c.Outcome == OutcomeRetry
	if learned && sp.Store != nil {
		sp.Store(f, t, c.Data, c.At)
	}
	switch c.Outcome {
	case OutcomeSuccess:
		if sp.Succeeded != nil {
			sp.Succeeded(f, t, c.At)
		}
		f.advance(t, c.Step, c.At)
	case OutcomePoll:
		if t.StepDeadline != nil && !c.RetryAt.Before(*t.StepDeadline) {
			f.failTask(t, ErrKindFailed, c.Step, c.Attempt, ClassPermanent, fmt.Sprintf("%s timed out", c.Step), c.Leader, c.At)
			return
		}
		t.Alarm = &Alarm{Due: c.RetryAt, Kind: AlarmRun}
	case OutcomeRetry:
		t.Retries++
		f.recordError(ErrorRecord{Kind: ErrKindStep, TaskID: t.ID, NodeID: t.NodeID, Step: c.Step, Attempt: c.Attempt,
			Class: ClassTransient, Message: c.Error, Leader: c.Leader, At: c.At})
		t.Alarm = &Alarm{Due: c.RetryAt, Kind: AlarmRun}
	default: // OutcomeFail, or an unknown outcome from a newer binary: fail safe.
		class := c.Class
		if class == "" {
			class = ClassPermanent
		}
		f.failTask(t, ErrKindFailed, c.Step, c.Attempt, class, c.Error, c.Leader, c.At)
	}
}

// updateNode replaces a node with a modified copy and feeds the change.
func (f *FSM) updateNode(id string, at time.Time, mod func(*Node)) {
	cur, ok := f.st.nodes.Get(&Node{ID: id})
	if !ok {
		return
	}
	n := cur.clone()
	mod(n)
	n.UpdatedAt = at
	f.st.nodes.ReplaceOrInsert(n)
	f.notifyNode(n)
}

// enter moves a task into a step, with what the state needs there (the
// table's Enter).
func (f *FSM) enter(t *Task, s Step, at time.Time) {
	t.enterStep(s, at)
	if sp := stepOf(s); sp.Enter != nil {
		sp.Enter(f, t, at)
	}
}

// advance moves the task past a finished step, with the status change the
// table ties to it (REFERENCE.md's).
func (f *FSM) advance(t *Task, done Step, at time.Time) {
	t.applyDone(stepOf(done), false, at)
	next := nextStep(done)
	if next == StepNone {
		t.end(StatusCompleted, Actor{Type: ActorSystem}, "pipeline finished", "", at)
		return
	}
	f.enter(t, next, at)
}

// failTask ends a task as failed, with an error record.
func (f *FSM) failTask(t *Task, kind ErrorKind, step Step, attempt int, class ErrorClass, msg, leader string, at time.Time) {
	f.recordError(ErrorRecord{Kind: kind, TaskID: t.ID, NodeID: t.NodeID, Step: step, Attempt: attempt,
		Class: class, Message: msg, Leader: leader, At: at})
	if !CanTransition(t.Status, StatusFailed) {
		// Only terminal or not-yet-queued tasks land here; nothing to fail.
		return
	}
	t.end(StatusFailed, Actor{Type: ActorSystem}, fmt.Sprintf("%s failed", step), msg, at)
}

func (f *FSM) cleanupResult(t *Task, c StepResult) {
	switch c.Outcome {
	case OutcomeRetry, OutcomePoll:
		t.Retries++
		t.Alarm = &Alarm{Due: c.RetryAt, Kind: AlarmRun}
		return
	case OutcomeFail:
		f.recordError(ErrorRecord{Kind: ErrKindCleanup, TaskID: t.ID, NodeID: t.NodeID, Step: StepCleanup, Attempt: c.Attempt,
			Class: c.Class, Message: c.Error, Leader: c.Leader, At: c.At})
	}
	t.Cleanup, t.Alarm, t.Attempt, t.Retries, t.ClaimTerm = false, nil, 0, 0, 0
	// Stopping the workspace is best effort: once cleanup gives up, the
	// workspace is taken as stopped so that its node is still released.
	f.finishCleanup(t, c.Data.WorkspaceStopped || c.Outcome == OutcomeFail, c.At)
	if t.Status == StatusQueued {
		// Re-run requested while the old run was being cleaned up.
		t.enterStep(StepNodeSelection, c.At)
	}
}

func (f *FSM) applyDecideStep(c DecideStep, res *Result) {
	cur, ok := f.task(c.TaskID, res)
	if !ok {
		return
	}
	sp := stepOf(c.Step)
	if cur.RunnableStep() != c.Step || sp.Kind != KindDecided || sp.Decide == nil || cur.InFlight {
		f.fence(res, cur, c.Step, 0, c.Leader, fmt.Sprintf("decision for step %s, task is at %q", c.Step, cur.RunnableStep()), c.At)
		return
	}
	t := cur.clone()
	t.Attempts++
	sp.Decide(f, t, c.Leader, c.At)
	f.st.tasks.ReplaceOrInsert(t)
	res.Task = t
}

func (f *FSM) applyStepTimeout(c StepTimeout, res *Result) {
	cur, ok := f.task(c.TaskID, res)
	if !ok {
		return
	}
	if cur.Step != c.Step || cur.Alarm == nil || cur.Alarm.Kind != AlarmDeadline || !cur.Alarm.Due.Equal(c.Due) {
		f.fence(res, cur, c.Step, 0, "", fmt.Sprintf("timeout of %s due %s does not match the task's alarm", c.Step, c.Due.Format(time.RFC3339Nano)), c.At)
		return
	}
	t := cur.clone()
	t.UpdatedAt = c.At
	sp := stepOf(c.Step)
	switch {
	case sp.ExpiredCompletes:
		// The idle timer ran out: the run is over and successful.
		t.end(StatusCompleted, Actor{Type: ActorSystem}, "follow-up idle timeout", "", c.At)
	case sp.ExpiredError != "":
		f.failTask(t, ErrKindFailed, c.Step, 0, ClassPermanent, sp.ExpiredError, "", c.At)
	default:
		f.failTask(t, ErrKindFailed, c.Step, 0, ClassPermanent, fmt.Sprintf("%s timed out", c.Step), "", c.At)
	}
	f.st.tasks.ReplaceOrInsert(t)
	res.Task = t
}

func (f *FSM) applyFailTask(c FailTask, res *Result) {
	cur, ok := f.task(c.TaskID, res)
	if !ok {
		return
	}
	if cur.Status.Terminal() {
		res.Task, res.Unchanged = cur, true
		return
	}
	t := cur.clone()
	msg := c.Reason
	if c.Diagnostic != "" {
		msg += " (" + c.Diagnostic + ")"
	}
	source := c.Source
	if source == "" {
		source = ErrKindSweeper
	}
	f.failTask(t, source, cur.Step, cur.Attempt, ClassPermanent, msg, "", c.At)
	t.ErrorMessage = c.Reason
	f.st.tasks.ReplaceOrInsert(t)
	res.Task = t
}

func (f *FSM) applyReschedule(c Reschedule, res *Result) {
	cur, ok := f.task(c.TaskID, res)
	if !ok {
		return
	}
	if cur.Alarm != nil || cur.RunnableStep() == StepNone {
		res.Task, res.Unchanged = cur, true
		return
	}
	t := cur.clone()
	switch {
	case cur.InFlight:
		t.Alarm = &Alarm{Due: c.At, Kind: AlarmClaim}
	case KindOf(cur.Step) == KindWaiting && !cur.Cleanup:
		// The deadline is lost with the alarm: grant the step's full wait.
		t.Alarm = &Alarm{Due: c.At.Add(stepOf(cur.Step).timeout(cur.Policy)), Kind: AlarmDeadline}
	default:
		t.Alarm = &Alarm{Due: c.At, Kind: AlarmRun}
	}
	f.recordError(ErrorRecord{Kind: ErrKindSweeper, TaskID: t.ID, Step: cur.RunnableStep(), Attempt: cur.Attempt,
		Message: "task had no pending alarm: " + c.Reason, At: c.At})
	f.st.tasks.ReplaceOrInsert(t)
	res.Task = t
}

// finishCleanup records the end of a task's cleanup: its workspace is
// stopped (when cleanup stopped it, or it never got past creating) and its
// node released.
func (f *FSM) finishCleanup(t *Task, stopped bool, at time.Time) {
	if ws, ok := f.st.workspaces.Get(&Workspace{ID: t.WorkspaceID}); ok && ws.Live() && (stopped || ws.Status == WorkspaceCreating) {
		ws = ws.cloneWS()
		ws.Status, ws.UpdatedAt = WorkspaceStopped, at
		f.st.workspaces.ReplaceOrInsert(ws)
	}
	if t.NodeID != "" {
		f.releaseNode(t.NodeID, t.ID, at)
	}
}
