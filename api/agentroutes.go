package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/tokens"
)

// The rest of the real VM agent's control-plane routes: what it asks for
// while it provisions a workspace and runs an agent session, and what it
// reports. Each takes the token the agent sends there:
//
//   - workspace-scoped callback token (the callbackToken tdf passes in
//     POST /workspaces): git-token, agent-key, runtime-assets, runtime,
//     agent-settings, agent-credential-sync, boot-log, and the session
//     activity report (whose path names a project, not a workspace: the
//     token's workspace must belong to a task of that project);
//   - node-scoped token (CALLBACK_TOKEN_FILE): the node-level ACP heartbeat
//     (its body names the node) and diagnostic-incident artifacts; and
//     boot-log, where the agent's node-level reporter (agent crash reports)
//     puts its node id in place of a workspace id.
//
// A token of the other scope is 403, none or a bad one 401. Routes that
// read a workspace's task (and the credentials) run on the caught-up
// leader, as the other callbacks do: a follower that has not applied the
// workspace yet would answer 404, and the agent gives up on a 404 from
// git-token, runtime-assets or agent-key. Reports (boot log, heartbeats,
// artifacts) are accepted and counted on the node that gets them
// (tdf_callbacks_total{kind}); tdf keeps none of them.

const (
	ctxWorkspace = "tdf.workspace"
	ctxTask      = "tdf.task"
)

// gitTokenLifetime is the expiresAt tdf reports for a static git token:
// the agent asks again for every clone and push, and the tokens the
// original control plane hands out live an hour.
const gitTokenLifetime = time.Hour

func (s *Server) agentRoutes(r *gin.Engine) {
	ws := s.requireCallbackToken(tokens.ScopeWorkspace, "id")
	node := s.requireCallbackToken(tokens.ScopeNode, "id")
	cb, id, task := s.countCallback, s.validID("id"), s.workspaceTask
	// What the agent asks the leader for waits through a leader change,
	// as its callbacks do: a git token refused during one would fail the
	// run's push.
	hold := s.holdLonger
	const w = "/api/workspaces/:id/"
	r.POST(w+"git-token", cb("git_token"), id, hold, s.onLeader, ws, task, s.liveWorkspace, s.gitToken)
	r.POST(w+"agent-key", cb("agent_key"), id, hold, s.onLeader, ws, task, s.liveWorkspace, s.agentKey)
	r.GET(w+"runtime-assets", cb("runtime_assets"), id, hold, s.onLeader, ws, task, s.runtimeAssets)
	r.GET(w+"runtime", cb("workspace_runtime"), id, hold, s.onLeader, ws, task, s.workspaceRuntime)
	r.POST(w+"agent-settings", cb("agent_settings"), id, hold, s.onLeader, ws, task, s.agentSettings)
	r.GET(w+"agent-settings", cb("agent_settings"), id, hold, s.onLeader, ws, task, s.agentSettings)
	r.POST(w+"agent-credential-sync", cb("agent_credential_sync"), id, hold, s.onLeader, ws, task, s.liveWorkspace, s.credentialSync)
	r.POST(w+"boot-log", cb("boot_log"), id, s.bootLogAuth, s.bootLog)
	r.POST("/api/projects/:pid/acp-sessions/:sid/activity", cb("acp_activity"), s.validID("pid"), s.validID("sid"), hold, s.onLeader, s.activityAuth, s.acknowledge)
	r.POST("/api/projects/:pid/node-acp-heartbeat", cb("acp_heartbeat"), s.validID("pid"), s.acpHeartbeatAuth, s.acknowledge)
	const inc = "/api/nodes/:id/diagnostic-incidents/:iid/artifacts"
	r.POST(inc, cb("diagnostic_artifact"), id, s.validID("iid"), node, s.artifactRegistered)
	r.PUT(inc+"/:aid/content", cb("diagnostic_artifact_content"), id, s.validID("iid"), s.validID("aid"), node, s.artifactContent)
}

// workspaceTask finds the workspace of the path and the task that owns it:
// the task says which project and user the agent works for.
func (s *Server) workspaceTask(c *gin.Context) {
	f := s.cfg.Node.FSM()
	ws, ok := f.Workspace(c.Param("id"))
	if !ok {
		abortError(c, http.StatusNotFound, CodeNotFound, "workspace "+c.Param("id")+" not found")
		return
	}
	t, ok := f.Task(ws.TaskID)
	if !ok {
		abortError(c, http.StatusNotFound, CodeNotFound, fmt.Sprintf("task %s of workspace %s not found", ws.TaskID, ws.ID))
		return
	}
	c.Set(ctxWorkspace, ws)
	c.Set(ctxTask, t)
	c.Next()
}

func ctxWS(c *gin.Context) *fsm.Workspace { v, _ := c.Get(ctxWorkspace); return v.(*fsm.Workspace) }
func ctxTaskOf(c *gin.Context) *fsm.Task  { v, _ := c.Get(ctxTask); return v.(*fsm.Task) }

// liveWorkspace hands secrets only to a workspace that still runs.
func (s *Server) liveWorkspace(c *gin.Context) {
	if ws := ctxWS(c); !ws.Live() {
		abortError(c, http.StatusConflict, CodeInvalidTrans, fmt.Sprintf("workspace %s is %s: no credentials for it", ws.ID, ws.Status))
		return
	}
	c.Next()
}

// gitToken hands out the project's git credential. The agent needs it to
// clone in VM mode (a non-2xx fails the workspace) and asks again for
// every push.
func (s *Server) gitToken(c *gin.Context) {
	t := ctxTaskOf(c)
	ref := fsm.CredentialRef{Kind: fsm.CredentialGitToken, Scope: fsm.CredentialProject, ScopeID: t.ProjectID}
	cr, ok := s.cfg.Node.FSM().Credential(ref)
	if !ok {
		s.githubApps.forget(t.ProjectID)
		abortError(c, http.StatusNotFound, CodeNotFound, fmt.Sprintf("no git credential is configured for project %s (an admin sets one: tdf credential set git-token project %s)", t.ProjectID, t.ProjectID))
		return
	}
	if cr.IsGitHubApp() {
		s.gitHubAppToken(c, t.ProjectID, cr)
		return
	}
	secret, err := s.openCredential(cr)
	if err != nil {
		s.abortOpen(c, cr, err)
		return
	}
	out := gin.H{"token": secret, "expiresAt": s.now().Add(gitTokenLifetime).Format(time.RFC3339)}
	if cr.Host != "" {
		out["host"] = cr.Host
	}
	if cr.Username != "" {
		out["username"] = cr.Username
	}
	c.JSON(http.StatusOK, out)
}

// agentTypeBody is the body of agent-key and agent-settings.
type agentTypeBody struct {
	AgentType string `json:"agentType"`
}

// agentKeyRef finds the agent key of a task: the user's own for the agent
// type, else the project's.
func (s *Server) agentKeyRef(t *fsm.Task, agentType string) (fsm.Credential, bool) {
	f := s.cfg.Node.FSM()
	for _, ref := range []fsm.CredentialRef{
		{Kind: fsm.CredentialAgentKey, Scope: fsm.CredentialUser, ScopeID: t.UserID, AgentType: agentType},
		{Kind: fsm.CredentialAgentKey, Scope: fsm.CredentialProject, ScopeID: t.ProjectID, AgentType: agentType},
	} {
		if cr, ok := f.Credential(ref); ok {
			return cr, true
		}
	}
	return fsm.Credential{}, false
}

// agentKey hands out the coding agent's key for the workspace's user (or
// project). The agent refuses to start a session without one: a 404 reads
// "no credential configured for <agent type>" in its error report.
func (s *Server) agentKey(c *gin.Context) {
	var req agentTypeBody
	if !decodeLenient(c, &req) {
		return
	}
	if req.AgentType = strings.TrimSpace(req.AgentType); req.AgentType == "" {
		abortError(c, http.StatusBadRequest, CodeInvalidField, "agentType: is required")
		return
	}
	t := ctxTaskOf(c)
	cr, ok := s.agentKeyRef(t, req.AgentType)
	if !ok {
		abortError(c, http.StatusNotFound, CodeNotFound, fmt.Sprintf("no %s key is configured for user %s or project %s (an admin sets one: tdf credential set agent-key user %s %s)",
			req.AgentType, t.UserID, t.ProjectID, t.UserID, req.AgentType))
		return
	}
	secret, err := s.openCredential(cr)
	if err != nil {
		s.abortOpen(c, cr, err)
		return
	}
	kind := cr.SecretKind
	if kind == "" {
		kind = "api-key"
	}
	c.JSON(http.StatusOK, gin.H{"apiKey": secret, "credentialKind": kind})
}

// credentialSync takes back an agent key the agent refreshed (an OAuth
// credential file it rewrote): it replaces the stored key it came from,
// sealed again, if that key exists and is of the same kind.
func (s *Server) credentialSync(c *gin.Context) {
	var req struct {
		AgentType      string `json:"agentType"`
		CredentialKind string `json:"credentialKind"`
		Credential     string `json:"credential"`
	}
	if !decodeLenient(c, &req) {
		return
	}
	if req.AgentType == "" || req.Credential == "" {
		abortError(c, http.StatusBadRequest, CodeInvalidField, "agentType and credential are required")
		return
	}
	cr, ok := s.agentKeyRef(ctxTaskOf(c), req.AgentType)
	kind := cmpOr(cr.SecretKind, "api-key")
	if !ok || (req.CredentialKind != "" && req.CredentialKind != kind) {
		c.JSON(http.StatusOK, gin.H{"success": false, "reason": "credential_not_found"})
		return
	}
	if len(req.Credential) > fsm.MaxCredentialSecret {
		abortError(c, http.StatusRequestEntityTooLarge, CodeBodyTooLarge, fmt.Sprintf("credential is more than %d bytes", fsm.MaxCredentialSecret))
		return
	}
	if s.cfg.Keyring.Len() == 0 {
		s.noKeyring(c)
		return
	}
	if old, err := s.openCredential(cr); err == nil && old == req.Credential {
		c.JSON(http.StatusOK, gin.H{"success": true, "updated": false})
		return
	}
	sealed, err := s.cfg.Keyring.Seal([]byte(req.Credential), cr.AAD())
	if err != nil {
		abortError(c, http.StatusInternalServerError, CodeInternal, "sealing the credential failed")
		return
	}
	cr.KeyID, cr.Nonce, cr.Ciphertext, cr.Fingerprint = sealed.KeyID, sealed.Nonce, sealed.Ciphertext, s.cfg.Keyring.Fingerprint([]byte(req.Credential))
	if _, ok := s.commit(c, fsm.SetCredential{Credential: cr, At: s.now()}); ok {
		c.JSON(http.StatusOK, gin.H{"success": true, "updated": true})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// runtimeAssets answers the project's runtime environment variables and
// files. tdf configures none, and the agent takes empty lists as "nothing
// to add" (it needs a 2xx: in VM mode and for standalone sessions a
// failure stops provisioning or the session).
func (s *Server) runtimeAssets(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"workspaceId": ctxWS(c).ID, "envVars": []any{}, "files": []any{}})
}

// workspaceRuntime answers what the agent asks to recover a workspace it
// lost track of.
func (s *Server) workspaceRuntime(c *gin.Context) {
	ws, t := ctxWS(c), ctxTaskOf(c)
	c.JSON(http.StatusOK, gin.H{"workspaceId": ws.ID, "repository": t.Repository, "branch": t.Branch,
		"projectId": t.ProjectID, "status": ws.Status, "nodeId": ws.NodeID})
}

// agentSettings answers the user's agent settings: tdf keeps none, and
// nulls leave the agent on its defaults.
func (s *Server) agentSettings(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"model": nil, "permissionMode": nil, "opencodeProvider": nil, "opencodeBaseUrl": nil})
}

// bootLogAuth takes the workspace's token, or the node token of a node
// whose id is in the path (the agent's node-level boot log).
func (s *Server) bootLogAuth(c *gin.Context) {
	if s.cfg.Tokens != nil {
		raw, _ := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
		if cl, err := s.cfg.Tokens.CallbackClaims(raw, tokens.ScopeNode); err == nil && cl.Workspace == c.Param("id") {
			c.Next()
			return
		}
	}
	s.requireCallbackToken(tokens.ScopeWorkspace, "id")(c)
}

// bootLog accepts a provisioning log line. It is counted, not kept.
func (s *Server) bootLog(c *gin.Context) {
	body, ok := readBody(c)
	if !ok {
		return
	}
	c.Set(ctxBody, body)
	var req struct {
		Step   string `json:"step"`
		Status string `json:"status"`
	}
	if !decodeLenient(c, &req) {
		return
	}
	c.JSON(http.StatusOK, gin.H{"success": true})
}

// activityAuth checks an activity report's workspace token: its workspace
// must belong to a task of the path's project, and the session, once the
// task has one, must be the task's.
func (s *Server) activityAuth(c *gin.Context) {
	claims, ok := s.tokenClaims(c, tokens.ScopeWorkspace)
	if !ok {
		return
	}
	f := s.cfg.Node.FSM()
	var t *fsm.Task
	if ws, found := f.Workspace(claims.Workspace); found {
		t, _ = f.Task(ws.TaskID)
	}
	switch {
	case t == nil:
		abortError(c, http.StatusForbidden, CodeForbidden, "the token's workspace "+claims.Workspace+" belongs to no task")
	case t.ProjectID != c.Param("pid"):
		abortError(c, http.StatusForbidden, CodeForbidden, fmt.Sprintf("workspace %s is not of project %s", claims.Workspace, c.Param("pid")))
	case t.AgentSessionID != "" && t.AgentSessionID != c.Param("sid"):
		abortError(c, http.StatusForbidden, CodeForbidden, fmt.Sprintf("session %s is not workspace %s's", c.Param("sid"), claims.Workspace))
	default:
		c.Next()
	}
}

// acpHeartbeatAuth checks the node token of a node-level ACP heartbeat
// against the node its body names.
func (s *Server) acpHeartbeatAuth(c *gin.Context) {
	body, ok := readBody(c)
	if !ok {
		return
	}
	c.Set(ctxBody, body)
	var req struct {
		NodeID string `json:"nodeId"`
	}
	if !decodeLenient(c, &req) {
		return
	}
	if !validID(req.NodeID) {
		abortError(c, http.StatusBadRequest, CodeInvalidField, "nodeId: must be a node id")
		return
	}
	c.Params = append(c.Params, gin.Param{Key: "node", Value: req.NodeID})
	s.requireCallbackToken(tokens.ScopeNode, "node")(c)
}

// tokenClaims verifies a callback token whose id the path does not name.
func (s *Server) tokenClaims(c *gin.Context, scope tokens.Scope) (*tokens.Claims, bool) {
	if s.cfg.Tokens == nil {
		abortError(c, http.StatusServiceUnavailable, CodeUnavailable, "callback verification is not configured")
		return nil, false
	}
	raw, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
	if !ok || raw == "" {
		abortError(c, http.StatusUnauthorized, CodeUnauthorized, "a Bearer callback token is required")
		return nil, false
	}
	claims, err := s.cfg.Tokens.CallbackClaims(raw, scope)
	if err != nil {
		status, code := http.StatusUnauthorized, CodeUnauthorized
		if errors.Is(err, tokens.ErrWrongAuth) {
			status, code = http.StatusForbidden, CodeForbidden
		}
		abortError(c, status, code, err.Error())
		return nil, false
	}
	return claims, true
}

// acknowledge answers a report that tdf counts and does not keep.
func (s *Server) acknowledge(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"success": true})
}

// artifactRegistered accepts a diagnostic artifact's registration; tdf
// keeps no artifacts (the agent's incident reports reach GET /v1/errors
// through the node errors callback).
func (s *Server) artifactRegistered(c *gin.Context) {
	var req struct {
		ArtifactID string `json:"artifactId"`
	}
	body, ok := readBody(c)
	if !ok {
		return
	}
	c.Set(ctxBody, body)
	if !decodeLenient(c, &req) {
		return
	}
	c.JSON(http.StatusCreated, gin.H{"artifactId": req.ArtifactID, "status": "registered"})
}

// artifactContent takes an artifact's upload and drops it.
func (s *Server) artifactContent(c *gin.Context) {
	if c.Request.Body != nil {
		if _, err := io.Copy(io.Discard, c.Request.Body); err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				abortError(c, http.StatusRequestEntityTooLarge, CodeBodyTooLarge, fmt.Sprintf("artifact exceeds %d bytes", tooBig.Limit))
				return
			}
			abortError(c, http.StatusBadRequest, CodeInvalidJSON, "cannot read the artifact: "+err.Error())
			return
		}
	}
	c.JSON(http.StatusOK, gin.H{"artifactId": c.Param("aid"), "status": "stored"})
}
