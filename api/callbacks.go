package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/tokens"
)

// Callbacks from the VM agents. They are served twice, with the same
// handlers: under tdf's /v1 routes and under the real agent's own /api
// paths (docs/real-agent.md), so agents in the field work unchanged. A
// callback is held until there is a leader and forwarded to it; there the
// token is checked (signature, audience, type, scope and id) before any
// state is read, so a forged callback learns nothing, and the write is
// committed.

const ctxClaims = "tdf.claims"

// requireCallbackToken checks the bearer token against the route's scope
// and id: 401 without a valid token, 403 for a token about another node or
// workspace, or of the wrong scope.
func (s *Server) requireCallbackToken(scope tokens.Scope, param string) gin.HandlerFunc {
	return func(c *gin.Context) {
		if s.cfg.Tokens == nil {
			abortError(c, http.StatusServiceUnavailable, CodeUnavailable, "callback verification is not configured")
			return
		}
		raw, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
		if !ok || raw == "" {
			abortError(c, http.StatusUnauthorized, CodeUnauthorized, "a Bearer callback token is required")
			return
		}
		claims, err := s.cfg.Tokens.VerifyCallback(raw, scope, c.Param(param))
		switch {
		case errors.Is(err, tokens.ErrWrongAuth):
			abortError(c, http.StatusForbidden, CodeForbidden, err.Error())
			return
		case err != nil:
			abortError(c, http.StatusUnauthorized, CodeUnauthorized, err.Error())
			return
		}
		c.Set(ctxClaims, claims)
		c.Next()
	}
}

// decodeLenient parses a callback body, ignoring unknown fields: agents of
// newer versions may send more. An empty body is an empty object.
func decodeLenient(c *gin.Context, v any) bool {
	b, _ := c.Get(ctxBody)
	body, _ := b.([]byte)
	if len(bytes.TrimSpace(body)) == 0 {
		return true
	}
	if err := json.Unmarshal(body, v); err != nil {
		abortError(c, http.StatusBadRequest, CodeInvalidJSON, describeJSONError(err).Error())
		return false
	}
	return true
}

func (s *Server) callbackRoutes(r *gin.Engine) {
	node := s.requireCallbackToken(tokens.ScopeNode, "id")
	ws := s.requireCallbackToken(tokens.ScopeWorkspace, "id")
	cb := s.countCallback
	// Callbacks wait longer for a leader than client writes (holdLonger):
	// the agent does not retry node-ready and task-status callbacks.
	hold := s.holdLonger
	for _, prefix := range []string{"/v1", "/api"} {
		r.POST(prefix+"/nodes/:id/ready", cb("node_ready"), s.validID("id"), hold, s.onLeader, node, s.nodeReady)
		r.POST(prefix+"/nodes/:id/heartbeat", cb("node_heartbeat"), s.validID("id"), hold, s.onLeader, node, s.nodeHeartbeat)
		r.POST(prefix+"/nodes/:id/errors", cb("node_errors"), s.validID("id"), hold, s.onLeader, node, s.nodeErrors)
		r.POST(prefix+"/workspaces/:id/ready", cb("workspace_ready"), s.validID("id"), hold, s.onLeader, ws, s.workspaceReady)
		r.POST(prefix+"/workspaces/:id/provisioning-failed", cb("workspace_failed"), s.validID("id"), hold, s.onLeader, ws, s.workspaceFailed)
	}
	r.POST("/api/workspaces/:id/messages", cb("workspace_messages"), s.validID("id"), hold, s.onLeader, ws, s.workspaceMessages)
	r.POST("/v1/tasks/:id/status", cb("task_status"), s.validID("id"), hold, s.onLeader, s.taskStatusAuth, s.taskStatus)
	r.POST("/api/projects/:pid/tasks/:id/status/callback", cb("task_status"), s.validID("id"), hold, s.onLeader, s.taskStatusAuth, s.taskStatus)
	s.agentRoutes(r)
}

func (s *Server) validID(param string) gin.HandlerFunc {
	return func(c *gin.Context) {
		if !validID(c.Param(param)) {
			abortError(c, http.StatusBadRequest, CodeInvalidID, "invalid "+param)
			return
		}
		c.Next()
	}
}

func (s *Server) nodeReady(c *gin.Context) {
	now := s.now()
	if _, ok := s.commit(c, fsm.NodeReady{NodeID: c.Param("id"), At: now}); ok {
		c.JSON(http.StatusOK, gin.H{"status": "running", "readyAt": now})
	}
}

// HeartbeatRequest is the agent's heartbeat body.
type HeartbeatRequest struct {
	NodeID           string `json:"nodeId"`
	ActiveWorkspaces int    `json:"activeWorkspaces"`
	AgentVersion     string `json:"agentVersion"`
	Metrics          *struct {
		CPULoadAvg1   float64 `json:"cpuLoadAvg1"`
		MemoryPercent float64 `json:"memoryPercent"`
		DiskPercent   float64 `json:"diskPercent"`
	} `json:"metrics"`
}

// check refuses numbers no machine reports: node selection trusts them
// (a negative load would make a node look emptier than any other).
func (r *HeartbeatRequest) check() error {
	if r.ActiveWorkspaces < 0 {
		return &fieldError{"activeWorkspaces", fmt.Sprintf("%d is negative", r.ActiveWorkspaces)}
	}
	if m := r.Metrics; m != nil {
		switch {
		case m.CPULoadAvg1 < 0:
			return &fieldError{"metrics.cpuLoadAvg1", fmt.Sprintf("%g is negative", m.CPULoadAvg1)}
		case m.MemoryPercent < 0 || m.MemoryPercent > 100:
			return &fieldError{"metrics.memoryPercent", fmt.Sprintf("%g is not a percentage from 0 to 100", m.MemoryPercent)}
		case m.DiskPercent < 0 || m.DiskPercent > 100:
			return &fieldError{"metrics.diskPercent", fmt.Sprintf("%g is not a percentage from 0 to 100", m.DiskPercent)}
		}
	}
	return nil
}

func (s *Server) nodeHeartbeat(c *gin.Context) {
	var req HeartbeatRequest
	if !decodeLenient(c, &req) {
		return
	}
	if err := req.check(); err != nil {
		abortError(c, http.StatusBadRequest, CodeInvalidField, err.Error())
		return
	}
	cmd := fsm.NodeHeartbeat{NodeID: c.Param("id"), ActiveWorkspaces: req.ActiveWorkspaces, At: s.now()}
	if m := req.Metrics; m != nil {
		cmd.Metrics = &fsm.NodeMetrics{CPULoad: m.CPULoadAvg1, MemoryPercent: m.MemoryPercent, DiskPercent: m.DiskPercent}
	}
	if _, ok := s.commit(c, cmd); !ok {
		return
	}
	out := gin.H{"status": "ok"}
	// Hand out a fresh node token once the current one is past three
	// quarters of its life, so a long-lived node never loses its voice.
	if claims, _ := c.Get(ctxClaims); claims != nil && s.cfg.Tokens != nil {
		cl := claims.(*tokens.Claims)
		if cl.ExpiresAt != nil && s.now().After(cl.ExpiresAt.Add(-tokens.CallbackTTL/4)) {
			if tok, err := s.cfg.Tokens.CallbackToken(tokens.ScopeNode, c.Param("id")); err == nil {
				out["refreshedToken"] = tok
			}
		}
	}
	c.JSON(http.StatusOK, out)
}

func (s *Server) workspaceReady(c *gin.Context) {
	var req struct {
		Status string `json:"status"`
	}
	if !decodeLenient(c, &req) {
		return
	}
	st := fsm.WorkspaceRunning
	switch req.Status {
	case "", "running":
	case "recovery":
		st = fsm.WorkspaceRecovery
	default:
		abortError(c, http.StatusBadRequest, CodeInvalidField, `status: must be "running" or "recovery"`)
		return
	}
	res, ok := s.commitResult(c, fsm.WorkspaceReady{WorkspaceID: c.Param("id"), Status: st, At: s.now()})
	if !ok {
		return
	}
	if errors.Is(res.Err, fsm.ErrIgnored) {
		c.JSON(http.StatusOK, gin.H{"success": false, "reason": "workspace_not_running"})
		return
	}
	if res.Err != nil {
		abortErr(c, res.Err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"success": true})
}

func (s *Server) workspaceFailed(c *gin.Context) {
	var req struct {
		ErrorMessage string `json:"errorMessage"`
	}
	if !decodeLenient(c, &req) {
		return
	}
	if req.ErrorMessage == "" {
		req.ErrorMessage = "workspace provisioning failed"
	}
	if _, ok := s.commit(c, fsm.WorkspaceFailed{WorkspaceID: c.Param("id"), Message: req.ErrorMessage, At: s.now()}); ok {
		c.JSON(http.StatusOK, gin.H{"success": true})
	}
}

// taskStatusAuth checks the workspace token of a task status callback
// before it reads any state (signature, audience, type, scope): a caller
// without a valid token learns nothing of the task. The token's workspace
// must then be the one the task runs in; a task that does not exist, has
// no workspace yet or runs in another gets the same 403, so that even a
// valid token of one workspace cannot probe for other tasks.
func (s *Server) taskStatusAuth(c *gin.Context) {
	claims, ok := s.tokenClaims(c, tokens.ScopeWorkspace)
	if !ok {
		return
	}
	t, found := s.cfg.Node.FSM().Task(c.Param("id"))
	if !found || t.WorkspaceID == "" || t.WorkspaceID != claims.Workspace {
		abortError(c, http.StatusForbidden, CodeForbidden, fmt.Sprintf("workspace %s runs no task %s", claims.Workspace, c.Param("id")))
		return
	}
	c.Params = append(c.Params, gin.Param{Key: "workspace", Value: t.WorkspaceID})
	c.Next()
}

// TaskStatusRequest is the body of the agent's task status callback.
type TaskStatusRequest struct {
	ToStatus      string         `json:"toStatus"`
	ExecutionStep string         `json:"executionStep"`
	Reason        string         `json:"reason"`
	ErrorMessage  string         `json:"errorMessage"`
	OutputSummary string         `json:"outputSummary"`
	OutputBranch  string         `json:"outputBranch"`
	OutputPRURL   string         `json:"outputPrUrl"`
	GitPushResult *GitPushResult `json:"gitPushResult"`
}

func (s *Server) taskStatus(c *gin.Context) {
	var req TaskStatusRequest
	if !decodeLenient(c, &req) {
		return
	}
	cmd := fsm.TaskStatusCallback{TaskID: c.Param("id"), WorkspaceID: c.Param("workspace"), Reason: req.Reason,
		ErrorMessage: req.ErrorMessage, At: s.now(),
		Output: fsm.Output{Branch: req.OutputBranch, PRURL: req.OutputPRURL, Summary: req.OutputSummary}}
	if req.ToStatus != "" {
		st, err := fsm.ParseStatus(req.ToStatus)
		if err != nil {
			abortError(c, http.StatusBadRequest, CodeInvalidField, "toStatus: "+err.Error())
			return
		}
		cmd.ToStatus = st
	}
	if req.ExecutionStep != "" {
		st, err := fsm.ParseStep(req.ExecutionStep)
		if err != nil {
			abortError(c, http.StatusBadRequest, CodeInvalidField, "executionStep: "+err.Error())
			return
		}
		cmd.ExecutionStep = st
	}
	if g := req.GitPushResult; g != nil {
		cmd.Output.Branch = firstNonEmpty(g.BranchName, cmd.Output.Branch)
		cmd.Output.PRURL = firstNonEmpty(g.PRURL, cmd.Output.PRURL)
		cmd.Output.Push = g.push()
	}
	if cmd.ToStatus != fsm.StatusFailed {
		// An error with a finished run (a failed prompt in conversation
		// mode) does not fail the task; the output keeps it.
		cmd.Output.AgentError = cut(req.ErrorMessage, maxReportMessage)
	}
	res, ok := s.commit(c, cmd)
	if ok {
		c.JSON(http.StatusOK, TaskResponse{Task: TaskView(res.Task)})
	}
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
