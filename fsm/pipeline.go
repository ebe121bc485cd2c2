package fsm

import "time"

// StepCleanup is the pseudo-step that runs after a task ends (failed,
// cancelled or completed): stop the workspace, release the node. It is
// claimed and fenced like any step but is not an execution step: the
// task's Step is already cleared.
const StepCleanup Step = "cleanup"

// StepKind says how a step is run.
type StepKind int

// Step kinds.
const (
	// KindDecided steps only read replicated state: the runner commits
	// DecideStep and Apply decides, in one commit with no claim.
	KindDecided StepKind = iota + 1
	// KindEffect steps call out: StepStarted (the claim), the call with an
	// idempotency key derived from (task, step), then StepResult.
	KindEffect
	// KindWaiting steps wait for a callback under a deadline alarm.
	KindWaiting
)

// KindOf returns how a step runs.
func KindOf(s Step) StepKind {
	switch s {
	case StepNodeSelection:
		return KindDecided
	case StepWorkspaceReady, StepRunning, StepAwaitingFollowup:
		return KindWaiting
	}
	return KindEffect
}

// AlarmKind says what a task's alarm does when it fires.
type AlarmKind string

// Alarm kinds.
const (
	// AlarmRun: run the task's current step (first attempt, retry, poll).
	AlarmRun AlarmKind = "run"
	// AlarmClaim: a claimed attempt has produced no result in time: the
	// runner re-dispatches it as a new attempt.
	AlarmClaim AlarmKind = "claim"
	// AlarmDeadline: a waiting step timed out.
	AlarmDeadline AlarmKind = "deadline"
)

// Alarm is a task's one pending alarm. Every task that is not finished has
// exactly one; Apply sets, replaces and clears it, and the leader's wheel
// mirrors it.
type Alarm struct {
	Due  time.Time `json:"due"`
	Kind AlarmKind `json:"kind"`
}

// Duration is a time.Duration; in JSON it is a number of nanoseconds.
type Duration = time.Duration // JSON: nanoseconds

// Policy holds a task's timeouts. The leader stamps it into the task at
// submission from its configuration, so that Apply can compute every
// deadline deterministically and a task keeps the rules it started with.
type Policy struct {
	// ClaimTimeout bounds one attempt of an effect step: past it the
	// attempt is presumed lost and re-dispatched.
	ClaimTimeout Duration `json:"claim_timeout"`
	// ProvisionTimeout bounds node_provisioning, polls included.
	ProvisionTimeout Duration `json:"provision_timeout"`
	// AgentReadyTimeout bounds node_agent_ready, polls included.
	AgentReadyTimeout Duration `json:"agent_ready_timeout"`
	// WorkspaceReadyTimeout bounds the wait for the workspace ready callback.
	WorkspaceReadyTimeout Duration `json:"workspace_ready_timeout"`
	// MaxExecution bounds the running step.
	MaxExecution Duration `json:"max_execution"`
	// IdleTimeout is the follow-up idle timer of awaiting_followup.
	IdleTimeout Duration `json:"idle_timeout"`
}

// DefaultPolicy returns REFERENCE.md's defaults.
func DefaultPolicy() Policy {
	return Policy{
		ClaimTimeout:          2 * time.Minute,
		ProvisionTimeout:      15 * time.Minute,
		AgentReadyTimeout:     15 * time.Minute,
		WorkspaceReadyTimeout: 30 * time.Minute,
		MaxExecution:          4 * time.Hour,
		IdleTimeout:           15 * time.Minute,
	}
}

// stepTimeout is the overall bound of a step: the deadline of a waiting
// step, or the limit on polling of an effect step (0: none).
func (p Policy) stepTimeout(s Step) time.Duration {
	switch s {
	case StepNodeProvisioning:
		return p.ProvisionTimeout
	case StepNodeAgentReady:
		return p.AgentReadyTimeout
	case StepWorkspaceReady:
		return p.WorkspaceReadyTimeout
	case StepRunning:
		return p.MaxExecution
	case StepAwaitingFollowup:
		return p.IdleTimeout
	}
	return 0
}

// nextStep is the step after s in the pipeline (StepNone after the last).
func nextStep(s Step) Step {
	o := s.Order()
	if o <= 0 || o >= len(AllSteps) {
		return StepNone
	}
	return AllSteps[o]
}

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
	if s == StepNodeSelection { // a new run: nothing of the last one's VM resources carries over
		t.NodeID, t.WorkspaceID, t.AgentSessionID, t.FollowupEarly = "", "", "", false
	}
	t.Step, t.Attempt, t.Retries, t.InFlight, t.ClaimTerm = s, 0, 0, false, 0
	t.StepDeadline, t.Adopting = nil, false
	t.UpdatedAt = at
	timeout := t.Policy.stepTimeout(s)
	switch KindOf(s) {
	case KindWaiting:
		t.Alarm = &Alarm{Due: at.Add(timeout), Kind: AlarmDeadline}
	default:
		if timeout > 0 {
			t.StepDeadline = timePtr(at.Add(timeout))
		}
		t.Alarm = &Alarm{Due: at, Kind: AlarmRun}
	}
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
