package api

import (
	"encoding/json"
	"time"

	"github.com/tdf-project/tdf/fsm"
)

// The v1 API's own types. They are mapped from the FSM's records (TaskView)
// so that what the state machine keeps for itself — claims, terms, alarms,
// flags of its bookkeeping — never becomes API, and the FSM's records can
// change without changing the API. TestTaskV1Shape pins the JSON.

// SubmitRequest is the body of POST /v1/tasks.
type SubmitRequest struct {
	ProjectID       string `json:"project_id"`
	UserID          string `json:"user_id"`
	Prompt          string `json:"prompt"`
	Repository      string `json:"repository"`
	Branch          string `json:"branch,omitempty"`
	VMSize          string `json:"vm_size,omitempty"`
	VMLocation      string `json:"vm_location,omitempty"`
	PreferredNodeID string `json:"preferred_node_id,omitempty"`
}

// spec is the submission as the FSM records it.
func (r SubmitRequest) spec() fsm.TaskSpec {
	return fsm.TaskSpec{ProjectID: r.ProjectID, UserID: r.UserID, Prompt: r.Prompt, Repository: r.Repository,
		Branch: r.Branch, VMSize: r.VMSize, VMLocation: r.VMLocation, PreferredNodeID: r.PreferredNodeID}
}

// Task is one task as the API shows it.
type Task struct {
	ID              string `json:"id"`
	ProjectID       string `json:"project_id"`
	UserID          string `json:"user_id"`
	Prompt          string `json:"prompt"`
	Repository      string `json:"repository"`
	Branch          string `json:"branch,omitempty"`
	VMSize          string `json:"vm_size,omitempty"`
	VMLocation      string `json:"vm_location,omitempty"`
	PreferredNodeID string `json:"preferred_node_id,omitempty"`
	// Owner is the API token subject that submitted the task.
	Owner          string     `json:"owner,omitempty"`
	Status         fsm.Status `json:"status"`
	ExecutionStep  fsm.Step   `json:"execution_step"`
	NodeID         string     `json:"node_id,omitempty"`
	WorkspaceID    string     `json:"workspace_id,omitempty"`
	AgentSessionID string     `json:"agent_session_id,omitempty"`
	ErrorMessage   string     `json:"error_message,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
	StartedAt      *time.Time `json:"started_at,omitempty"`
	CompletedAt    *time.Time `json:"completed_at,omitempty"`
	// StepDeadline is when the current step gives up: a waiting step's
	// deadline (the idle timer of awaiting_followup), the polling limit of
	// provisioning.
	StepDeadline *time.Time `json:"step_deadline,omitempty"`
	// Cleanup is "pending" from the end of a run until its workspace is
	// stopped and its node released, then "done"; empty before.
	Cleanup  string        `json:"cleanup,omitempty"`
	Output   TaskOutput    `json:"output"`
	Attempts int           `json:"attempts"`
	Timeouts Timeouts      `json:"timeouts"`
	History  []StatusEvent `json:"history"`
	Steps    []StepAttempt `json:"steps"`
	Imported *ImportInfo   `json:"imported,omitempty"`
}

// Submitted is what the task was submitted with.
func (t *Task) Submitted() SubmitRequest {
	return SubmitRequest{ProjectID: t.ProjectID, UserID: t.UserID, Prompt: t.Prompt, Repository: t.Repository,
		Branch: t.Branch, VMSize: t.VMSize, VMLocation: t.VMLocation, PreferredNodeID: t.PreferredNodeID}
}

// Cleanup states of Task.Cleanup.
const (
	CleanupPending = "pending"
	CleanupDone    = "done"
)

// Timeouts are the limits the task runs under, in seconds, fixed when it
// was submitted.
type Timeouts struct {
	ClaimSeconds          float64 `json:"claim_seconds"`
	ProvisioningSeconds   float64 `json:"provisioning_seconds"`
	AgentReadySeconds     float64 `json:"agent_ready_seconds"`
	WorkspaceReadySeconds float64 `json:"workspace_ready_seconds"`
	MaxExecutionSeconds   float64 `json:"max_execution_seconds"`
	IdleSeconds           float64 `json:"idle_seconds"`
}

// TaskOutput is what a finished agent run produced.
type TaskOutput struct {
	Branch     string      `json:"branch,omitempty"`
	PRURL      string      `json:"pr_url,omitempty"`
	Summary    string      `json:"summary,omitempty"`
	Push       *PushResult `json:"push,omitempty"`
	AgentError string      `json:"agent_error,omitempty"`
}

// PushResult is the agent's report of committing and pushing a run's work.
type PushResult struct {
	Pushed                bool   `json:"pushed"`
	CommitSHA             string `json:"commit_sha,omitempty"`
	BranchName            string `json:"branch_name,omitempty"`
	PRURL                 string `json:"pr_url,omitempty"`
	PRNumber              int    `json:"pr_number,omitempty"`
	HasUncommittedChanges bool   `json:"has_uncommitted_changes,omitempty"`
	Error                 string `json:"error,omitempty"`
}

// StatusEvent is one status change of a task.
type StatusEvent struct {
	From   fsm.Status `json:"from"`
	To     fsm.Status `json:"to"`
	Actor  Actor      `json:"actor"`
	Reason string     `json:"reason,omitempty"`
	At     time.Time  `json:"at"`
}

// Actor is who caused a status change: user, system or workspace_callback.
type Actor struct {
	Type string `json:"type"`
	ID   string `json:"id,omitempty"`
}

// StepAttempt is one attempt of one step (cleanup and adoption included).
type StepAttempt struct {
	Step     fsm.Step   `json:"step"`
	Attempt  int        `json:"attempt"`
	Leader   string     `json:"leader,omitempty"`
	Started  time.Time  `json:"started"`
	Finished *time.Time `json:"finished,omitempty"`
	Outcome  string     `json:"outcome,omitempty"`
	Error    string     `json:"error,omitempty"`
	Note     string     `json:"note,omitempty"`
}

// ImportInfo says where an imported task came from.
type ImportInfo struct {
	At       time.Time  `json:"at"`
	Status   fsm.Status `json:"status"`
	Step     fsm.Step   `json:"execution_step,omitempty"`
	ServerID int64      `json:"server_id,omitempty"`
}

// TaskView maps an FSM task onto the API's; nil stays nil.
func TaskView(t *fsm.Task) *Task {
	if t == nil {
		return nil
	}
	v := &Task{ID: t.ID, ProjectID: t.ProjectID, UserID: t.UserID, Prompt: t.Prompt, Repository: t.Repository,
		Branch: t.Branch, VMSize: t.VMSize, VMLocation: t.VMLocation, PreferredNodeID: t.PreferredNodeID,
		Owner: t.Owner, Status: t.Status, ExecutionStep: t.Step, NodeID: t.NodeID, WorkspaceID: t.WorkspaceID,
		AgentSessionID: t.AgentSessionID, ErrorMessage: t.ErrorMessage, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt,
		StartedAt: t.StartedAt, CompletedAt: t.CompletedAt, StepDeadline: stepDeadline(t),
		Output: outputView(t.Output), Attempts: t.Attempts, Timeouts: timeoutsView(t.Policy),
		History: make([]StatusEvent, len(t.History)), Steps: make([]StepAttempt, len(t.Steps))}
	switch {
	case t.Cleanup:
		v.Cleanup = CleanupPending
	case t.Status.Terminal():
		v.Cleanup = CleanupDone
	}
	for i, e := range t.History {
		v.History[i] = StatusEvent{From: e.From, To: e.To, Actor: Actor{Type: string(e.Actor.Type), ID: e.Actor.ID},
			Reason: e.Reason, At: e.At}
	}
	for i, a := range t.Steps {
		v.Steps[i] = StepAttempt{Step: a.Step, Attempt: a.Attempt, Leader: a.Leader, Started: a.Started,
			Finished: a.Finished, Outcome: a.Outcome, Error: a.Error, Note: a.Note}
	}
	if im := t.Imported; im != nil {
		v.Imported = &ImportInfo{At: im.At, Status: im.Status, Step: im.Step, ServerID: im.ServerID}
	}
	return v
}

// stepDeadline is when the task's current step gives up, if it does.
func stepDeadline(t *fsm.Task) *time.Time {
	switch {
	case t.Cleanup || t.Status.Terminal():
		return nil
	case t.Alarm != nil && t.Alarm.Kind == fsm.AlarmDeadline:
		due := t.Alarm.Due
		return &due
	}
	return t.StepDeadline
}

func outputView(o fsm.Output) TaskOutput {
	v := TaskOutput{Branch: o.Branch, PRURL: o.PRURL, Summary: o.Summary, AgentError: o.AgentError}
	if p := o.Push; p != nil {
		v.Push = &PushResult{Pushed: p.Pushed, CommitSHA: p.CommitSHA, BranchName: p.BranchName, PRURL: p.PRURL,
			PRNumber: p.PRNumber, HasUncommittedChanges: p.HasUncommittedChanges, Error: p.Error}
	}
	return v
}

func timeoutsView(p fsm.Policy) Timeouts {
	return Timeouts{ClaimSeconds: p.ClaimTimeout.Seconds(), ProvisioningSeconds: p.ProvisionTimeout.Seconds(),
		AgentReadySeconds: p.AgentReadyTimeout.Seconds(), WorkspaceReadySeconds: p.WorkspaceReadyTimeout.Seconds(),
		MaxExecutionSeconds: p.MaxExecution.Seconds(), IdleSeconds: p.IdleTimeout.Seconds()}
}

// EventMessage is one event as the stream sends it (Event in the API's
// words): a client decodes the stream's data lines into it. A task event
// carries what changed (TaskChange); GET /v1/tasks/{id} has the rest.
type EventMessage struct {
	ID    string      `json:"id"`
	Index uint64      `json:"index"`
	Type  string      `json:"type"`
	Task  *TaskChange `json:"task,omitempty"`
	Node  *NodeChange `json:"node,omitempty"`
	At    time.Time   `json:"at"`
}

// MarshalJSON writes an event as its EventMessage.
func (e Event) MarshalJSON() ([]byte, error) {
	return json.Marshal(EventMessage{ID: e.ID, Index: e.Index, Type: e.Type, Task: e.Task, Node: e.Node, At: e.At})
}
