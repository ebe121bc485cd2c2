package fsm

import "time"

// Outcome is how one attempt of a step ended.
type Outcome string

// Step outcomes.
const (
	// OutcomeSuccess: the step is done; the task advances.
	OutcomeSuccess Outcome = "success"
	// OutcomePoll: not done yet (a server booting): run again at RetryAt,
	// within the step's deadline. Not a failure.
	OutcomePoll Outcome = "poll"
	// OutcomeRetry: a transient failure: run again at RetryAt.
	OutcomeRetry Outcome = "retry"
	// OutcomeFail: a permanent failure (or retries exhausted): the task
	// fails. For cleanup, the cleanup is given up and recorded.
	OutcomeFail Outcome = "fail"
)

// ErrorClass says whether a failure is worth retrying.
type ErrorClass string

// Error classes (REFERENCE.md "Failure handling").
const (
	ClassTransient ErrorClass = "transient"
	ClassPermanent ErrorClass = "permanent"
)

// StepData carries what a step learned; Apply stores the fields the step
// owns.
type StepData struct {
	NodeID   string `json:"node_id,omitempty"`
	ServerID int64  `json:"server_id,omitempty"`
	ActionID int64  `json:"action_id,omitempty"`
	IPv4     string `json:"ipv4,omitempty"`
	// ServerGone says the node's server was deleted (its create failed)
	// and must be created anew.
	ServerGone  bool   `json:"server_gone,omitempty"`
	WorkspaceID string `json:"workspace_id,omitempty"`
	SessionID   string `json:"session_id,omitempty"`
	// WorkspaceStopped says cleanup stopped the task's workspace.
	WorkspaceStopped bool `json:"workspace_stopped,omitempty"`
	// Recovered notes how a step got past something that went missing (a
	// callback the agent never resent); Apply records it as an error record.
	Recovered string `json:"recovered,omitempty"`

	// What adoption (StepAdopt) found; see adoptResult.

	// AdoptTo is the step the adopted task really is at.
	AdoptTo Step `json:"adopt_to,omitempty"`
	// AdoptComplete ends the task as completed instead (a finished run
	// whose follow-up workspace is gone).
	AdoptComplete bool `json:"adopt_complete,omitempty"`
	// AdoptNote says what reality showed, for the step timeline.
	AdoptNote string `json:"adopt_note,omitempty"`
	// NodeReady: the node's agent answers /health.
	NodeReady bool `json:"node_ready,omitempty"`
	// WorkspaceStatus is what the agent reports of the task's workspace.
	WorkspaceStatus WorkspaceStatus `json:"workspace_status,omitempty"`
}

// StepStarted is the claim a leader commits before any external effect of
// an attempt. It is fenced: accepted only for the task's runnable step and
// the next attempt number.
type StepStarted struct {
	TaskID  string    `json:"task_id"`
	Step    Step      `json:"step"`
	Attempt int       `json:"attempt"`
	Term    uint64    `json:"term"`
	Leader  string    `json:"leader"`
	At      time.Time `json:"at"`
}

// StepResult is the outcome of a claimed attempt. It is fenced: accepted
// only if (step, attempt, term) is still the task's current claim, so a
// result from a deposed leader or an older attempt changes nothing.
type StepResult struct {
	TaskID  string     `json:"task_id"`
	Step    Step       `json:"step"`
	Attempt int        `json:"attempt"`
	Term    uint64     `json:"term"`
	Outcome Outcome    `json:"outcome"`
	Class   ErrorClass `json:"class,omitempty"`
	Error   string     `json:"error,omitempty"`
	// RetryAt is when a poll or retry runs again, chosen by the leader
	// (backoff with jitter) and committed so every replica agrees.
	RetryAt time.Time `json:"retry_at,omitempty"`
	Data    StepData  `json:"data"`
	Leader  string    `json:"leader"`
	At      time.Time `json:"at"`
}

// DecideStep runs a step that only reads replicated state (node selection)
// inside Apply: one commit, no claim.
type DecideStep struct {
	TaskID string    `json:"task_id"`
	Step   Step      `json:"step"`
	Leader string    `json:"leader"`
	At     time.Time `json:"at"`
}

// StepTimeout fires a waiting step's deadline alarm. Due must equal the
// task's current alarm, so a stale fire changes nothing.
type StepTimeout struct {
	TaskID string    `json:"task_id"`
	Step   Step      `json:"step"`
	Due    time.Time `json:"due"`
	At     time.Time `json:"at"`
}

// FailTask fails a task for a reason found outside its steps (the stuck
// sweeper), with a diagnostic error record.
type FailTask struct {
	TaskID     string    `json:"task_id"`
	Reason     string    `json:"reason"`
	Diagnostic string    `json:"diagnostic,omitempty"`
	Source     ErrorKind `json:"source"`
	At         time.Time `json:"at"`
}

// Reschedule re-arms the alarm of a task found without one (a safety net
// that should never be needed), with an error record.
type Reschedule struct {
	TaskID string    `json:"task_id"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// Type implements Command.
func (StepStarted) Type() CommandType { return CmdStepStarted }

// Type implements Command.
func (StepResult) Type() CommandType { return CmdStepResult }

// Type implements Command.
func (DecideStep) Type() CommandType { return CmdDecideStep }

// Type implements Command.
func (StepTimeout) Type() CommandType { return CmdStepTimeout }

// Type implements Command.
func (FailTask) Type() CommandType { return CmdFailTask }

// Type implements Command.
func (Reschedule) Type() CommandType { return CmdReschedule }
