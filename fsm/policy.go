package fsm

import "time"

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
