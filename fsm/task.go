package fsm

import (
	"slices"
	"time"
)

// ActorType says who caused a status change.
type ActorType string

// Actor types of status events (REFERENCE.md).
const (
	ActorUser              ActorType = "user"
	ActorSystem            ActorType = "system"
	ActorWorkspaceCallback ActorType = "workspace_callback"
)

// Actor is who caused a change.
type Actor struct {
	Type ActorType `json:"type"`
	ID   string    `json:"id,omitempty"`
}

// StatusEvent records one status change of a task.
type StatusEvent struct {
	From   Status    `json:"from"`
	To     Status    `json:"to"`
	Actor  Actor     `json:"actor"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// StepAttempt records one attempt of one execution step.
type StepAttempt struct {
	Step     Step       `json:"step"`
	Attempt  int        `json:"attempt"`
	Leader   string     `json:"leader,omitempty"` // node that ran it
	Started  time.Time  `json:"started"`
	Finished *time.Time `json:"finished,omitempty"`
	Outcome  string     `json:"outcome,omitempty"`
	Error    string     `json:"error,omitempty"`
	// Note says what a decided step chose (a node, a new one).
	Note string `json:"note,omitempty"`
}

// Output is what a finished agent run produced.
type Output struct {
	Branch  string `json:"branch,omitempty"`
	PRURL   string `json:"pr_url,omitempty"`
	Summary string `json:"summary,omitempty"`
	// Push is the agent's report of committing and pushing the run's work
	// (its gitPushResult); nil when the agent sent none.
	Push *PushResult `json:"push,omitempty"`
	// AgentError is an error the agent reported with a finished run that
	// it did not fail (a prompt error in conversation mode).
	AgentError string `json:"agent_error,omitempty"`
}

// PushResult is the agent's gitPushResult: whether it pushed the run's
// work, where, and why not. A push that failed (Error set) does not fail
// the task; it stays here and in the error database.
type PushResult struct {
	Pushed                bool   `json:"pushed"`
	CommitSHA             string `json:"commit_sha,omitempty"`
	BranchName            string `json:"branch_name,omitempty"`
	PRURL                 string `json:"pr_url,omitempty"`
	PRNumber              int    `json:"pr_number,omitempty"`
	HasUncommittedChanges bool   `json:"has_uncommitted_changes,omitempty"`
	Error                 string `json:"error,omitempty"`
}

// TaskSpec is what a user submits.
type TaskSpec struct {
	ProjectID       string `json:"project_id"`
	UserID          string `json:"user_id"`
	Prompt          string `json:"prompt"`
	Repository      string `json:"repository"`
	Branch          string `json:"branch,omitempty"`
	VMSize          string `json:"vm_size,omitempty"`
	VMLocation      string `json:"vm_location,omitempty"`
	PreferredNodeID string `json:"preferred_node_id,omitempty"`
}

// Task is one task and its run. Stored tasks are immutable: Apply replaces a
// task with a modified clone, so readers may hold a *Task without locks but
// must never modify it.
type Task struct {
	ID string `json:"id"`
	TaskSpec
	// Owner is the API token subject that submitted the task; a user token
	// sees only its own tasks ("" when submitted without authentication).
	Owner          string     `json:"owner,omitempty"`
	Status         Status     `json:"status"`
	Step           Step       `json:"execution_step"`
	NodeID         string     `json:"node_id,omitempty"`
	WorkspaceID    string     `json:"workspace_id,omitempty"`
	AgentSessionID string     `json:"agent_session_id,omitempty"`
	ErrorMessage   string     `json:"error_message,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
	StartedAt      *time.Time `json:"started_at,omitempty"`
	CompletedAt    *time.Time `json:"completed_at,omitempty"`
	Output         Output     `json:"output"`
	// Attempts counts step attempts over the task's whole life.
	Attempts int           `json:"attempts"`
	History  []StatusEvent `json:"history"`
	Steps    []StepAttempt `json:"steps"`

	// The run's bookkeeping, all set by Apply.

	// Policy holds the timeouts the task was submitted with.
	Policy Policy `json:"policy"`
	// Attempt is the current step's latest claimed attempt (0: none yet).
	Attempt int `json:"attempt"`
	// Retries counts transient failures of the current step.
	Retries int `json:"retries"`
	// InFlight is set between a step's claim and its result; ClaimTerm is
	// the raft term of the leader that claimed it.
	InFlight  bool   `json:"in_flight,omitempty"`
	ClaimTerm uint64 `json:"claim_term,omitempty"`
	// Alarm is the task's one pending alarm.
	Alarm *Alarm `json:"alarm,omitempty"`
	// StepDeadline bounds the polling of the current effect step.
	StepDeadline *time.Time `json:"step_deadline,omitempty"`
	// Cleanup is set from the moment the task ends until its cleanup ran.
	Cleanup bool `json:"cleanup_pending,omitempty"`
	// FollowupEarly keeps an agent's "finished" callback that arrived
	// before the task reached the running step.
	FollowupEarly bool `json:"followup_early,omitempty"`
	// Imported is set on a task brought over from the old system.
	Imported *ImportInfo `json:"imported,omitempty"`
	// Adopting is set while an imported task waits for its adoption
	// (StepAdopt): Step is then the step the old system reported.
	Adopting bool `json:"adopting,omitempty"`

	// timeline, when set, holds History and Steps packed (compact.go):
	// the stored form of a dormant task. Such a task never leaves the FSM
	// except through ForEachTask and Watch's visit, which say so.
	timeline []byte
}

// clone returns a copy that Apply may modify. Slices are copied with spare
// capacity cut off so that appending to the clone never writes into an
// array a snapshot still reads.
func (t *Task) clone() *Task {
	if t.timeline != nil {
		return t.loaded() // a fresh copy already
	}
	c := *t
	c.History = slices.Clip(t.History)
	c.Steps = slices.Clip(t.Steps)
	return &c
}

// setStatus moves the task to a new status and records the event. The caller
// has checked CanTransition; a same-status change records nothing.
func (t *Task) setStatus(to Status, actor Actor, reason string, at time.Time) {
	if t.Status == to {
		return
	}
	t.History = append(t.History, StatusEvent{From: t.Status, To: to, Actor: actor, Reason: reason, At: at})
	t.Status = to
	t.UpdatedAt = at
	if to.Terminal() {
		t.CompletedAt = timePtr(at)
		t.Step = StepNone
	}
}

func timePtr(t time.Time) *time.Time { return &t }
