package fsm

import "time"

// RunnableStep is the unit of work a task's run alarm stands for: its
// execution step, or cleanup once it has ended.
func (t *Task) RunnableStep() Step {
	if t.Cleanup {
		return StepCleanup
	}
	if t.Adopting {
		return StepAdopt
	}
	return t.Step
}

// enterStep moves the task to step s and arms the alarm the step needs.
func (t *Task) enterStep(s Step, at time.Time) {
	sp := stepOf(s)
	if sp.StartsRun {
		t.NodeID, t.WorkspaceID, t.AgentSessionID, t.FollowupEarly = "", "", "", false
	}
	t.Step, t.Attempt, t.Retries, t.InFlight, t.ClaimTerm = s, 0, 0, false, 0
	t.StepDeadline, t.Adopting = nil, false
	t.UpdatedAt = at
	timeout := sp.timeout(t.Policy)
	if sp.Kind == KindWaiting {
		t.Alarm = &Alarm{Due: at.Add(timeout), Kind: AlarmDeadline}
		return
	}
	if timeout > 0 {
		t.StepDeadline = timePtr(at.Add(timeout))
	}
	t.Alarm = &Alarm{Due: at, Kind: AlarmRun}
}

// startCleanup marks an ended task for cleanup and arms its run alarm.
func (t *Task) startCleanup(at time.Time) {
	t.Cleanup, t.Attempt, t.Retries, t.InFlight, t.ClaimTerm = true, 0, 0, false, 0
	t.StepDeadline, t.Adopting = nil, false
	t.Alarm = &Alarm{Due: at, Kind: AlarmRun}
}

// end moves the task to a terminal status, clears its step and schedules
// cleanup (always: it is idempotent and cheap when there is nothing to
// clean).
func (t *Task) end(to Status, actor Actor, reason, errMsg string, at time.Time) {
	t.setStatus(to, actor, reason, at)
	if errMsg != "" {
		t.ErrorMessage = errMsg
	}
	t.startCleanup(at)
}

// applyDone makes a finished step's status change, if the task's status
// allows it. An adopted task keeps the start time it was imported with.
func (t *Task) applyDone(sp *StepSpec, adopted bool, at time.Time) {
	d := sp.Done
	if d.To == "" {
		return
	}
	if CanTransition(t.Status, d.To) {
		reason := d.Reason
		if adopted {
			reason = "adopted: " + reason
		}
		t.setStatus(d.To, Actor{Type: ActorSystem}, reason, at)
		if d.Started && !adopted {
			t.StartedAt = timePtr(at)
		}
	}
	if d.Started && adopted && t.StartedAt == nil {
		t.StartedAt = timePtr(at)
	}
}
