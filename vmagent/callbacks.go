package vmagent

import (
	"net/url"
	"time"
)

// The callbacks the agent sends to the control plane (VMAGENT.md). tdf
// serves these paths, under its own URL, besides its /v1 routes.

// NodeReadyPath is where the agent reports, once and without retry, that
// system provisioning finished. Node-scoped token.
func NodeReadyPath(nodeID string) string {
	return "/api/nodes/" + url.PathEscape(nodeID) + "/ready"
}

// NodeHeartbeatPath is where the agent sends a heartbeat every interval,
// without retry. Node-scoped token.
func NodeHeartbeatPath(nodeID string) string {
	return "/api/nodes/" + url.PathEscape(nodeID) + "/heartbeat"
}

// NodeErrorsPath is where the agent flushes its error outbox. Node-scoped
// token.
func NodeErrorsPath(nodeID string) string {
	return "/api/nodes/" + url.PathEscape(nodeID) + "/errors"
}

// WorkspaceReadyPath is where the agent reports a running workspace, with
// retries and then re-delivery after heartbeats. Workspace-scoped token.
func WorkspaceReadyPath(workspaceID string) string {
	return "/api/workspaces/" + url.PathEscape(workspaceID) + "/ready"
}

// ProvisioningFailedPath is where the agent reports a workspace whose
// provisioning failed, with retries. Workspace-scoped token.
func ProvisioningFailedPath(workspaceID string) string {
	return "/api/workspaces/" + url.PathEscape(workspaceID) + "/provisioning-failed"
}

// TaskStatusPath is where the agent reports, once and without retry, that
// the agent run finished or failed. Workspace-scoped token.
func TaskStatusPath(projectID, taskID string) string {
	return "/api/projects/" + url.PathEscape(projectID) + "/tasks/" + url.PathEscape(taskID) + "/status/callback"
}

// NodeReadyRequest is the body of the node ready callback.
type NodeReadyRequest struct {
	AgentVersion string `json:"agentVersion"`
}

// NodeReadyResponse is the control plane's answer to node ready.
type NodeReadyResponse struct {
	Status  string    `json:"status"`
	ReadyAt time.Time `json:"readyAt"`
}

// HeartbeatMetrics are the resource figures a heartbeat carries.
type HeartbeatMetrics struct {
	CPULoadAvg1   float64 `json:"cpuLoadAvg1"`
	MemoryPercent float64 `json:"memoryPercent"`
	DiskPercent   float64 `json:"diskPercent"`
}

// HeartbeatRequest is the body of the node heartbeat callback. Metrics is
// absent when the agent could not collect them.
type HeartbeatRequest struct {
	NodeID           string            `json:"nodeId"`
	ActiveWorkspaces int               `json:"activeWorkspaces"`
	AgentVersion     string            `json:"agentVersion"`
	Metrics          *HeartbeatMetrics `json:"metrics,omitempty"`
}

// HeartbeatResponse is the control plane's answer to a heartbeat. A
// non-empty RefreshedToken replaces the agent's node callback token.
type HeartbeatResponse struct {
	Status          string `json:"status,omitempty"`
	LastHeartbeatAt string `json:"lastHeartbeatAt,omitempty"`
	HealthStatus    string `json:"healthStatus,omitempty"`
	RefreshedToken  string `json:"refreshedToken,omitempty"`
}

// WorkspaceReadyRequest is the body of the workspace ready callback; Status
// is "running" or "recovery".
type WorkspaceReadyRequest struct {
	Status string `json:"status"`
}

// WorkspaceReadyResponse is the control plane's answer to workspace ready;
// {success:false, reason:"workspace_not_running"} for a stopped workspace.
type WorkspaceReadyResponse struct {
	Success bool   `json:"success"`
	Reason  string `json:"reason,omitempty"`
}

// ProvisioningFailedRequest is the body of the provisioning-failed callback.
type ProvisioningFailedRequest struct {
	ErrorMessage string `json:"errorMessage"`
}

// ExecutionStepAwaitingFollowup is the execution step a successful agent run
// reports.
const ExecutionStepAwaitingFollowup = "awaiting_followup"

// TaskStatusRequest is the body of the task status callback: either
// ToStatus "failed" with Reason and ErrorMessage, or ExecutionStep
// "awaiting_followup" with GitPushResult (and, in conversation mode, an
// ErrorMessage).
type TaskStatusRequest struct {
	ToStatus      string         `json:"toStatus,omitempty"`
	Reason        string         `json:"reason,omitempty"`
	ErrorMessage  string         `json:"errorMessage,omitempty"`
	ExecutionStep string         `json:"executionStep,omitempty"`
	GitPushResult *GitPushResult `json:"gitPushResult,omitempty"`
}

// GitPushResult is what the agent pushed when its run finished. The real
// agent always sends every field.
type GitPushResult struct {
	Pushed                bool   `json:"pushed"`
	CommitSHA             string `json:"commitSha"`
	BranchName            string `json:"branchName"`
	PRURL                 string `json:"prUrl"`
	PRNumber              int    `json:"prNumber"`
	HasUncommittedChanges bool   `json:"hasUncommittedChanges"`
	Error                 string `json:"error"`
}

// MessagesPath is where the agent delivers the chat messages of a
// workspace's agent session, from its outbox, retried (every answer but
// 400, 401 and 403). It reports messages only for a session created with
// both a chatSessionId and a projectId. Workspace-scoped token.
func MessagesPath(workspaceID string) string {
	return "/api/workspaces/" + url.PathEscape(workspaceID) + "/messages"
}

// MessagesRequest is the body of the messages callback: 1 to 100 messages
// of one chat session.
type MessagesRequest struct {
	Messages []ChatMessage `json:"messages"`
}

// ChatMessage is one chat message the agent reports. SessionID is the chat
// session id of the agent session's creation; Sequence orders the agent's
// messages; Origin is "system" for messages the agent injected itself.
type ChatMessage struct {
	MessageID    string `json:"messageId"`
	SessionID    string `json:"sessionId"`
	Role         string `json:"role"`
	Content      string `json:"content"`
	ToolMetadata string `json:"toolMetadata,omitempty"`
	Timestamp    string `json:"timestamp"`
	Sequence     int64  `json:"sequence"`
	Origin       string `json:"origin,omitempty"`
}

// MessagesResponse is the control plane's answer to the messages callback:
// how many messages it kept and how many it had already.
type MessagesResponse struct {
	Persisted  int `json:"persisted"`
	Duplicates int `json:"duplicates"`
}
