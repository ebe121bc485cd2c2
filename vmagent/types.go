package vmagent

import "time"

// Header names of the agent contract.
const (
	// HeaderNodeID carries the node id on every orchestration call; the agent
	// answers 403 when it names another node.
	HeaderNodeID = "X-SAM-Node-Id"
	// HeaderWorkspaceID carries the workspace id on workspace routes; the
	// agent answers 403 when it is missing or names another workspace.
	HeaderWorkspaceID = "X-SAM-Workspace-Id"
	// HeaderIdempotencyKey makes agent-session creation replayable.
	HeaderIdempotencyKey = "Idempotency-Key"
)

// Workspace statuses the agent reports.
const (
	StatusCreating = "creating"
	StatusRunning  = "running"
	StatusRecovery = "recovery"
	StatusStopped  = "stopped"
	StatusError    = "error"
)

// Session statuses the agent reports.
const (
	SessionRunning   = "running"
	SessionSuspended = "suspended"
	SessionStopped   = "stopped"
	SessionError     = "error"
)

// ExecutionProtocolVersion is the prompt-delivery protocol the agent speaks
// when a start request carries a deliveryId; any other version is refused
// with 400 unsupported_protocol_version.
const ExecutionProtocolVersion = 1

// DefaultBranch is the branch the agent assumes when a create request names
// none.
const DefaultBranch = "main"

// CreateWorkspaceRequest is the body of POST /workspaces.
//
// TaskID and ProjectID are not read by the real agent (it learns the task
// from cloud-init and from the session start request); tdf sends them anyway
// and the simulated agent falls back on them. The real agent ignores unknown
// fields.
type CreateWorkspaceRequest struct {
	WorkspaceID   string `json:"workspaceId"`
	Repository    string `json:"repository,omitempty"`
	Branch        string `json:"branch,omitempty"`
	CallbackToken string `json:"callbackToken,omitempty"` // workspace-scoped callback JWT
	GitUserName   string `json:"gitUserName,omitempty"`
	GitUserEmail  string `json:"gitUserEmail,omitempty"`
	GitHubID      string `json:"githubId,omitempty"`
	ProjectID     string `json:"projectId,omitempty"`
	TaskID        string `json:"taskId,omitempty"`
}

// CreateWorkspaceResult is a successful answer to POST /workspaces.
type CreateWorkspaceResult struct {
	WorkspaceID string
	// Status is the agent's workspace status: "creating" on a 202,
	// "running" or "recovery" on a 200.
	Status string
	// Running is true when the agent answered 200: the workspace already
	// exists and runs (a replay after provisioning finished). Its ready
	// callback has been sent already, or is pending re-delivery after the
	// next heartbeat. False means 202: provisioning has started or is still
	// in flight, and the ready (or provisioning-failed) callback is to come.
	Running bool
	// HTTPStatus is the status code the agent answered (202 or 200).
	HTTPStatus int
}

// CreateSessionRequest is the body of POST /workspaces/{id}/agent-sessions.
type CreateSessionRequest struct {
	SessionID     string `json:"sessionId"`
	Label         string `json:"label,omitempty"`
	ChatSessionID string `json:"chatSessionId,omitempty"`
	ProjectID     string `json:"projectId,omitempty"`
}

// StartSessionRequest is the body of
// POST /workspaces/{id}/agent-sessions/{sid}/start.
//
// The agent sends the task status callback only when it knows both TaskID
// and ProjectID (the real agent falls back on the project id given at
// session creation); tdf sets both.
type StartSessionRequest struct {
	AgentType     string `json:"agentType"`
	InitialPrompt string `json:"initialPrompt"`
	Model         string `json:"model,omitempty"`
	ProjectID     string `json:"projectId,omitempty"`
	TaskID        string `json:"taskId,omitempty"`
	TaskMode      string `json:"taskMode,omitempty"`
	// DeliveryID makes the start replayable: a replay answers 200
	// duplicate instead of starting the agent again. With a DeliveryID the
	// client fills ProtocolVersion with ExecutionProtocolVersion when unset.
	DeliveryID      string `json:"deliveryId,omitempty"`
	ProtocolVersion int    `json:"protocolVersion,omitempty"`
	MessageID       string `json:"messageId,omitempty"`
}

// Session is an agent session as the agent reports it.
type Session struct {
	ID           string     `json:"id"`
	WorkspaceID  string     `json:"workspaceId"`
	Status       string     `json:"status"`
	Label        string     `json:"label,omitempty"`
	AgentType    string     `json:"agentType,omitempty"`
	LastPrompt   string     `json:"lastPrompt,omitempty"`
	CreatedAt    time.Time  `json:"createdAt"`
	UpdatedAt    time.Time  `json:"updatedAt"`
	StoppedAt    *time.Time `json:"stoppedAt,omitempty"`
	ErrorMessage string     `json:"errorMessage,omitempty"`
}

// Workspace is one entry of GET /workspaces.
type Workspace struct {
	ID         string    `json:"id"`
	Repository string    `json:"repository,omitempty"`
	Branch     string    `json:"branch,omitempty"`
	Status     string    `json:"status"`
	CreatedAt  time.Time `json:"createdAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
	// Sessions counts the workspace's terminal (PTY) sessions, not its
	// agent sessions: it is 0 while an agent session runs. Whether an
	// agent session exists is learnt from IsSessionExists.
	Sessions int `json:"sessions"`
}

// ListWorkspacesResponse is the body of GET /workspaces.
type ListWorkspacesResponse struct {
	Workspaces []Workspace `json:"workspaces"`
}

// WorkspaceStatusResponse is the body of the 202/200 answers to
// POST /workspaces.
type WorkspaceStatusResponse struct {
	WorkspaceID string `json:"workspaceId"`
	Status      string `json:"status"`
}

// StartSessionResponse is the body of the answers to a session start.
type StartSessionResponse struct {
	// Status is "starting" without a deliveryId; with one, "accepted",
	// "duplicate", "conflict" or "not_ready".
	Status    string `json:"status"`
	SessionID string `json:"sessionId"`
}

// ErrorBody is the agent's error answer. Error is a machine code
// ("workspace_conflict") when Message is set, a human message otherwise.
type ErrorBody struct {
	Error   string `json:"error"`
	Message string `json:"message,omitempty"`
}

// PromptReceipt is the agent's durable record of one prompt delivery.
type PromptReceipt struct {
	DeliveryID      string `json:"deliveryId"`
	State           string `json:"state"`
	RuntimeIdentity string `json:"runtimeIdentity,omitempty"`
	// AcceptedAt and CompletedAt are Unix milliseconds.
	AcceptedAt  *int64 `json:"acceptedAt"`
	CompletedAt *int64 `json:"completedAt"`
}

// Prompt receipt states. Accepted and in flight: the prompt runs (or is
// about to); completed: it ended, well or not (the agent's task-status
// callback says which); ambiguous: the agent restarted while it ran, so it
// was cut off and is never replayed; not found: the agent has no record.
const (
	ReceiptAccepted  = "accepted"
	ReceiptInFlight  = "in_flight"
	ReceiptCompleted = "completed"
	ReceiptAmbiguous = "ambiguous"
	ReceiptNotFound  = "not_found"
)

// SendPromptRequest is the body of POST
// /workspaces/{id}/agent-sessions/{sid}/prompt: a follow-up prompt to a
// session that has finished its run. With a DeliveryID it is replayable,
// as a start is.
type SendPromptRequest struct {
	Prompt          string `json:"prompt"`
	MessageID       string `json:"messageId"`
	DeliveryID      string `json:"deliveryId,omitempty"`
	ProtocolVersion int    `json:"protocolVersion,omitempty"`
}
