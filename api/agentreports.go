package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/tdf-project/tdf/fsm"
)

// What the agents report besides the pipeline's callbacks, all kept in the
// replicated state: node reports (errors, warnings, lifecycle events) and
// the chat messages of a task's agent session. The limits follow the
// system the agents were written for, so that an agent's size fallbacks
// and permanent-error rules work unchanged.

// Limits of a node report's fields: longer text is cut, not refused (the
// agent drops a batch answered 400 for good).
const (
	maxReportMessage = 2048
	maxReportSource  = 256
	maxReportStack   = 4096
	maxReportContext = 4096
	maxReportLevel   = 16
	maxReportTime    = 64
)

// Limits of a message batch. The agent splits a batch answered 400 with
// "payload exceeds" or "byte limit" in its body and re-sends the messages
// one by one, cut down; other 400s drop the batch.
const (
	maxMessagesPayload = 256 << 10
	maxMessagesBatch   = 100
	maxMessageContent  = 100 << 10
	maxMessageMetadata = 64 << 10
	maxMessageField    = 256 // ids, role, origin, timestamp
)

// messageRoles are the roles the agent's chat messages have.
var messageRoles = map[string]bool{"user": true, "assistant": true, "system": true, "tool": true, "thinking": true, "plan": true}

// cut shortens s to at most n bytes on a rune boundary, marking the cut.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…[truncated]"
	// Cutting may split the last rune: drop its bytes.
	return strings.ToValidUTF8(s[:max(n-len(mark), 0)], "") + mark
}

// NodeReport is one entry of the agent's POST /api/nodes/{id}/errors.
type NodeReport struct {
	IncidentID  string          `json:"incidentId"`
	Level       string          `json:"level"`
	Message     string          `json:"message"`
	Source      string          `json:"source"`
	Stack       string          `json:"stack"`
	WorkspaceID string          `json:"workspaceId"`
	Timestamp   string          `json:"timestamp"`
	Context     json.RawMessage `json:"context"`
}

// toNodeError bounds a report for the log. The level is kept lower-case
// (the agent sends "" only for what it means as an error).
func (r NodeReport) toNodeError() fsm.NodeError {
	level := strings.ToLower(strings.TrimSpace(r.Level))
	if level == "" {
		level = "error"
	}
	e := fsm.NodeError{IncidentID: cut(r.IncidentID, maxMessageField), Level: cut(level, maxReportLevel),
		Message: cut(r.Message, maxReportMessage), Source: cut(r.Source, maxReportSource), Stack: cut(r.Stack, maxReportStack),
		WorkspaceID: cut(r.WorkspaceID, maxMessageField), ReportedAt: cut(r.Timestamp, maxReportTime)}
	var ctx bytes.Buffer
	if len(r.Context) > 0 && !bytes.Equal(r.Context, []byte("null")) && json.Compact(&ctx, r.Context) == nil {
		e.Context = ctx.String()
		if len(e.Context) > maxReportContext {
			e.Context = fmt.Sprintf(`{"truncated":%d}`, len(e.Context))
		}
	}
	return e
}

// nodeErrors takes a batch of the agent's node reports. Each is kept in the
// node's event log; error-level ones also go to the error database.
func (s *Server) nodeErrors(c *gin.Context) {
	var req struct {
		Errors []NodeReport `json:"errors"`
	}
	if !decodeLenient(c, &req) {
		return
	}
	cmd := fsm.NodeErrors{NodeID: c.Param("id"), SplitLevels: true, At: s.now()}
	for _, r := range req.Errors {
		cmd.Errors = append(cmd.Errors, r.toNodeError())
	}
	if _, ok := s.commit(c, cmd); ok {
		c.JSON(http.StatusOK, gin.H{"accepted": len(cmd.Errors)})
	}
}

// AgentMessage is one message of the agent's POST
// /api/workspaces/{id}/messages.
type AgentMessage struct {
	MessageID    string `json:"messageId"`
	SessionID    string `json:"sessionId"`
	Role         string `json:"role"`
	Content      string `json:"content"`
	ToolMetadata string `json:"toolMetadata"`
	Timestamp    string `json:"timestamp"`
	Sequence     int64  `json:"sequence"`
	Origin       string `json:"origin"`
}

// check validates a message as the system the agent was written for did.
func (m *AgentMessage) check(i int) error {
	field := func(name string) string { return fmt.Sprintf("messages[%d].%s", i, name) }
	switch {
	case m.MessageID == "":
		return &fieldError{field("messageId"), "is required"}
	case m.SessionID == "":
		return &fieldError{field("sessionId"), "is required"}
	case !messageRoles[m.Role]:
		return &fieldError{field("role"), fmt.Sprintf("%q must be one of user, assistant, system, tool, thinking, plan", m.Role)}
	case m.Content == "":
		return &fieldError{field("content"), "must not be empty"}
	case m.Timestamp == "":
		return &fieldError{field("timestamp"), "is required"}
	case len(m.Content) > maxMessageContent:
		return fmt.Errorf("individual message content exceeds %d byte limit (%s)", maxMessageContent, field("content"))
	case len(m.ToolMetadata) > maxMessageMetadata:
		return fmt.Errorf("individual message toolMetadata exceeds %d byte limit (%s)", maxMessageMetadata, field("toolMetadata"))
	}
	for name, v := range map[string]string{"messageId": m.MessageID, "sessionId": m.SessionID, "timestamp": m.Timestamp, "origin": m.Origin} {
		if len(v) > maxMessageField {
			return &fieldError{field(name), fmt.Sprintf("is longer than %d bytes", maxMessageField)}
		}
	}
	return nil
}

// workspaceMessages keeps a batch of the chat messages of the workspace's
// agent session with the workspace's task, and answers how many were new
// and how many it had already (the agent re-sends a batch it got no
// answer for).
func (s *Server) workspaceMessages(c *gin.Context) {
	b, _ := c.Get(ctxBody)
	body, _ := b.([]byte)
	if len(body) > maxMessagesPayload {
		abortError(c, http.StatusBadRequest, CodeBodyTooLarge, fmt.Sprintf("Payload exceeds %d byte limit", maxMessagesPayload))
		return
	}
	var req struct {
		Messages []AgentMessage `json:"messages"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		abortError(c, http.StatusBadRequest, CodeInvalidJSON, describeJSONError(err).Error())
		return
	}
	switch n := len(req.Messages); {
	case n == 0:
		abortError(c, http.StatusBadRequest, CodeInvalidField, "messages: must not be empty")
		return
	case n > maxMessagesBatch:
		abortError(c, http.StatusBadRequest, CodeInvalidField, fmt.Sprintf("messages: at most %d per batch, got %d", maxMessagesBatch, n))
		return
	}
	cmd := fsm.RecordMessages{WorkspaceID: c.Param("id"), At: s.now()}
	for i, m := range req.Messages {
		if err := m.check(i); err != nil {
			abortError(c, http.StatusBadRequest, CodeInvalidField, err.Error())
			return
		}
		if m.SessionID != req.Messages[0].SessionID {
			abortError(c, http.StatusBadRequest, CodeInvalidField, "messages: all messages of a batch must have the same sessionId")
			return
		}
		cmd.Messages = append(cmd.Messages, fsm.Message{MessageID: m.MessageID, SessionID: m.SessionID, Role: m.Role,
			Content: m.Content, ToolMetadata: m.ToolMetadata, Origin: m.Origin, Timestamp: m.Timestamp, Sequence: m.Sequence})
	}
	if res, ok := s.commit(c, cmd); ok {
		c.JSON(http.StatusOK, gin.H{"persisted": res.Persisted, "duplicates": res.Duplicates})
	}
}

// GitPushResult is the gitPushResult of the agent's task status callback.
type GitPushResult struct {
	Pushed                bool   `json:"pushed"`
	CommitSha             string `json:"commitSha"`
	BranchName            string `json:"branchName"`
	PRURL                 string `json:"prUrl"`
	PRNumber              int    `json:"prNumber"`
	HasUncommittedChanges bool   `json:"hasUncommittedChanges"`
	Error                 string `json:"error"`
}

// push is the result as the task's output keeps it.
func (g *GitPushResult) push() *fsm.PushResult {
	return &fsm.PushResult{Pushed: g.Pushed, CommitSHA: cut(g.CommitSha, maxMessageField), BranchName: cut(g.BranchName, maxMessageField),
		PRURL: cut(g.PRURL, maxURLLen), PRNumber: g.PRNumber, HasUncommittedChanges: g.HasUncommittedChanges, Error: cut(g.Error, maxReportMessage)}
}

// maxURLLen bounds a pull request URL kept from a callback.
const maxURLLen = 2048

// TaskMessagesResponse is the body of GET /v1/tasks/{id}/messages.
type TaskMessagesResponse struct {
	fsm.TaskMessages
}

// taskMessages answers a task's kept chat messages, oldest first.
func (s *Server) taskMessages(c *gin.Context) {
	id, ok := s.taskID(c)
	if !ok {
		return
	}
	f := s.cfg.Node.FSM()
	t, found := f.Task(id)
	if !found || !mayAccessTask(c, t.Owner, t.ProjectID) {
		abortError(c, http.StatusNotFound, CodeNotFound, "task "+id+" not found")
		return
	}
	tm, _ := f.Messages(id)
	if tm.Messages == nil {
		tm.Messages = []fsm.Message{}
	}
	c.JSON(http.StatusOK, TaskMessagesResponse{tm})
}

// NodeResponse is the body of GET /v1/nodes/{id}: the node, its health
// and its event log (oldest first).
type NodeResponse struct {
	NodeView
	Events []fsm.NodeEvent `json:"events"`
}

func (s *Server) getNode(c *gin.Context) {
	id := c.Param("id")
	if !validID(id) {
		abortError(c, http.StatusBadRequest, CodeInvalidID, fmt.Sprintf("%q is not a valid node id", id))
		return
	}
	f := s.cfg.Node.FSM()
	n, ok := f.Node(id)
	if owner := nodeOwnerFilter(c); !ok || (owner != "" && n.UserID != owner) {
		abortError(c, http.StatusNotFound, CodeNotFound, "node "+id+" not found")
		return
	}
	events := f.NodeEvents(id)
	if events == nil {
		events = []fsm.NodeEvent{}
	}
	c.JSON(http.StatusOK, NodeResponse{NodeView: NodeView{Node: n, Health: n.HealthAt(s.now(), f.Settings()),
		Cost: s.nodeCost(c.Request.Context(), n, s.now())}, Events: events})
}
