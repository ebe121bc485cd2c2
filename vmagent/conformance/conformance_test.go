package conformance_test

// The simulated agent follows the real one: every check below runs against
// both, in both of the agent's roles, through tdf's own vmagent.Client (its
// transport records the exact answer behind what the client made of it),
// with raw requests only where the client refuses to send what the check
// needs (no Idempotency-Key, a malformed deliveryId). Where the answer
// depends on the role (standalone makes a workspace within the create
// call, VM mode in the background), the check says so. Offline, the real
// agent's VM mode cannot provision a workspace (no docker), so its running
// workspaces are compared in the standalone role, and its failed ones in
// both.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tdf-project/tdf/tokens"
	"github.com/tdf-project/tdf/vmagent"
	"github.com/tdf-project/tdf/vmagent/fakeacp"
)

func TestAgentContract(t *testing.T) {
	for _, k := range []struct {
		name  string
		start func(*testing.T) *agent
	}{{"sim", startSim}, {"sim-standalone", startSimStandalone}, {"real", startReal}, {"real-vm", startRealVM}} {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			newContract(t, k.start(t)).run(t)
		})
	}
}

// contract drives one agent.
type contract struct {
	a   *agent
	rec *recorder
	hc  *http.Client
	cl  *vmagent.Client
	ctx context.Context
}

const (
	user      = "u-1"
	project   = "p-1"
	mainWS    = "ws-main"
	session1  = "s-1"
	chatID    = "c-1"
	outBranch = "conformance-out"
)

func newContract(t *testing.T, a *agent) *contract {
	rec := &recorder{}
	hc := &http.Client{Transport: rec}
	return &contract{a: a, rec: rec, hc: hc, ctx: t.Context(),
		cl: vmagent.NewClient(vmagent.Options{HTTPClient: hc, Tokens: a.CP.Issuer, Timeout: 30 * time.Second})}
}

// client is a vmagent.Client of the same transport with other tokens.
func (c *contract) client(tokens vmagent.TokenSource) *vmagent.Client {
	return vmagent.NewClient(vmagent.Options{HTTPClient: c.hc, Tokens: tokens, Timeout: 30 * time.Second})
}

func (c *contract) run(t *testing.T) {
	// Checks of a running workspace need an agent whose workspaces can
	// run; the provisioning failure, one whose workspaces can fail the
	// VM-mode way (a standalone agent fails within the create call, with
	// a 500).
	running := !c.a.WorkspacesFail
	failing := !c.a.Standalone && (c.a.WorkspacesFail || c.a.FailWorkspaces != nil)
	failingStandalone := c.a.Standalone && (c.a.BrokenRepository != "" || c.a.FailWorkspaces != nil)
	for _, s := range []struct {
		name    string
		applies bool
		check   func(*testing.T)
	}{
		{"health", true, c.health},
		{"node ready callback", true, c.nodeReady},
		{"management token refusals", true, c.refusals},
		// Before any workspace: a standalone agent clones into its one
		// working directory once.
		{"workspace whose creation fails, standalone", failingStandalone, c.standaloneFailure},
		{"workspace create and replays", running, c.createWorkspace},
		{"agent session create", running, c.createSession},
		{"unknown workspace or session", running, c.unknown},
		{"task status callback of a prompt naming no branch", running, c.taskOnCheckoutBranch},
		{"session start with a deliveryId", running, c.startSession},
		{"agent session existence, as adoption asks", running, c.sessionExistence},
		{"task status callback of a completed prompt", running, c.taskDone},
		{"prompt receipts, as the run reconcile asks", running, c.promptReceipts},
		{"task status callback of a failed prompt", running, c.taskFailed},
		{"session stop", running, c.stopSession},
		{"workspace stop twice", running, c.stopWorkspace},
		{"workspace delete", running, c.deleteWorkspace},
		{"workspace whose provisioning fails", failing, c.provisioningFailure},
		{"heartbeat", true, c.heartbeat},
	} {
		if s.applies {
			t.Run(s.name, s.check)
		}
	}
}

// last is the agent's last answer; it fails the test unless its status is
// want.
func (c *contract) last(t *testing.T, want int) exchange {
	t.Helper()
	ex := c.rec.Last()
	if ex.Status != want {
		t.Fatalf("%s %s answered %d %s, want %d", ex.Method, ex.Path, ex.Status, ex.Body, want)
	}
	return ex
}

func (c *contract) health(t *testing.T) {
	if err := c.cl.Health(c.ctx, c.a.Base); err != nil {
		t.Fatal(err)
	}
	body := object(t, c.last(t, http.StatusOK).Body)
	if len(body) != 1 || body["status"] != "healthy" {
		t.Fatalf("health body %v, want {status: healthy}", body)
	}
}

func (c *contract) nodeReady(t *testing.T) {
	call := c.a.CP.waitCall(t, c.a.Timeout, vmagent.NodeReadyPath(c.a.NodeID))
	if _, err := c.a.CP.Issuer.VerifyCallback(call.Token, tokens.ScopeNode, c.a.NodeID); err != nil {
		t.Errorf("node ready token: %v", err)
	}
	body := object(t, call.Body)
	keysExactly(t, "node ready body", body, "agentVersion")
	if v, _ := body["agentVersion"].(string); v == "" {
		t.Errorf("node ready agentVersion %v, want a version", body["agentVersion"])
	}
}

// tokenFunc signs management tokens its own way.
type tokenFunc func(nodeID, workspaceID, userID string) (string, error)

func (f tokenFunc) ManagementToken(nodeID, workspaceID, userID string) (string, error) {
	return f(nodeID, workspaceID, userID)
}

// refusals: 401 without a token, with a bad one, and with a valid one for
// another node or workspace (the agent checks the node and workspace
// claims while validating the token); 403 only when the routing headers
// name another node or workspace than the token and route.
func (c *contract) refusals(t *testing.T) {
	is := c.a.CP.Issuer
	otherKey, err := tokens.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	otherIssuer := &tokens.Issuer{URL: is.URL, Keys: func() []tokens.Key { return []tokens.Key{otherKey} }, Now: time.Now}
	const ws = "ws-never"
	for _, tc := range []struct {
		name   string
		tokens vmagent.TokenSource
		node   string
		want   *vmagent.Error
	}{
		{"no token", nil, c.a.NodeID, vmagent.ErrUnauthorized},
		{"not a JWT", tokenFunc(func(string, string, string) (string, error) { return "not-a-jwt", nil }), c.a.NodeID, vmagent.ErrUnauthorized},
		{"signed by another key", otherIssuer, c.a.NodeID, vmagent.ErrUnauthorized},
		{"token of another node", tokenFunc(func(_, w, u string) (string, error) { return is.ManagementToken("n-other", w, u) }), c.a.NodeID, vmagent.ErrUnauthorized},
		{"token of another workspace", tokenFunc(func(n, _, u string) (string, error) { return is.ManagementToken(n, "ws-other", u) }), c.a.NodeID, vmagent.ErrUnauthorized},
		{"X-SAM-Node-Id of another node", tokenFunc(func(_, w, u string) (string, error) { return is.ManagementToken(c.a.NodeID, w, u) }), "n-other", vmagent.ErrForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.client(tc.tokens).StopWorkspace(c.ctx, c.a.Base, tc.node, user, ws)
			if !errors.Is(err, tc.want) {
				t.Fatalf("stop = %v, want %v", err, tc.want)
			}
			plainError(t, c.rec.Last().Body)
		})
	}
	t.Run("X-SAM-Workspace-Id of another workspace", func(t *testing.T) {
		tok, err := is.ManagementToken(c.a.NodeID, ws, user)
		if err != nil {
			t.Fatal(err)
		}
		for _, header := range []string{"ws-other", ""} {
			ex := c.raw(t, http.MethodPost, "/workspaces/"+ws+"/stop", tok, header, "", nil)
			if ex.Status != http.StatusForbidden {
				t.Fatalf("stop with X-SAM-Workspace-Id %q = %d %s, want 403", header, ex.Status, ex.Body)
			}
			plainError(t, ex.Body)
		}
	})
}

func (c *contract) workspaceToken(t *testing.T, ws string) string {
	t.Helper()
	tok, err := c.a.CP.Issuer.CallbackToken(tokens.ScopeWorkspace, ws)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (c *contract) createRequest(t *testing.T, ws string) vmagent.CreateWorkspaceRequest {
	return vmagent.CreateWorkspaceRequest{WorkspaceID: ws, Repository: c.a.Repository, Branch: "main",
		CallbackToken: c.workspaceToken(t, ws), ProjectID: project, TaskID: "t-create"}
}

// createWorkspace: the first call is 202 creating (VM mode) or 200
// running (standalone: the workspace is made within the call); a replay is
// 202 while provisioning, 200 once running; another repository or branch
// is 409 workspace_conflict; the ready callback says {status: running}.
func (c *contract) createWorkspace(t *testing.T) {
	req := c.createRequest(t, mainWS)
	res, err := c.cl.CreateWorkspace(c.ctx, c.a.Base, c.a.NodeID, user, req)
	if err != nil {
		t.Fatal(err)
	}
	if c.a.Standalone {
		c.statusBody(t, c.last(t, http.StatusOK), mainWS, vmagent.StatusRunning)
	} else {
		c.statusBody(t, c.last(t, http.StatusAccepted), mainWS, vmagent.StatusCreating)
	}
	if res.Running != c.a.Standalone {
		t.Errorf("CreateWorkspace = %+v", res)
	}

	if _, err := c.cl.CreateWorkspace(c.ctx, c.a.Base, c.a.NodeID, user, req); err != nil {
		t.Fatalf("replay: %v", err)
	}
	switch ex := c.rec.Last(); ex.Status {
	case http.StatusAccepted:
		c.statusBody(t, ex, mainWS, vmagent.StatusCreating)
	case http.StatusOK:
		c.statusBody(t, ex, mainWS, vmagent.StatusRunning)
	default:
		t.Fatalf("replay answered %d %s, want 202 or 200", ex.Status, ex.Body)
	}
	// A standalone agent makes the workspace again on a replay, and sends
	// ready again, before answering.
	if n := len(c.a.CP.Calls(vmagent.WorkspaceReadyPath(mainWS))); c.a.Standalone && n != 2 {
		t.Errorf("%d ready callbacks after a create and a replay, want 2", n)
	}

	for what, mod := range map[string]func(*vmagent.CreateWorkspaceRequest){
		"repository": func(r *vmagent.CreateWorkspaceRequest) { r.Repository += ".other" },
		"branch":     func(r *vmagent.CreateWorkspaceRequest) { r.Branch = "other" },
	} {
		other := req
		mod(&other)
		_, err := c.cl.CreateWorkspace(c.ctx, c.a.Base, c.a.NodeID, user, other)
		if !errors.Is(err, vmagent.ErrWorkspaceConflict) || !vmagent.IsPermanent(err) {
			t.Errorf("create with another %s = %v, want a permanent 409 workspace_conflict", what, err)
		}
		codedError(t, c.rec.Last().Body, vmagent.CodeWorkspaceConflict)
	}

	call := c.a.CP.waitCall(t, c.a.Timeout, vmagent.WorkspaceReadyPath(mainWS))
	if _, err := c.a.CP.Issuer.VerifyCallback(call.Token, tokens.ScopeWorkspace, mainWS); err != nil {
		t.Errorf("workspace ready token: %v", err)
	}
	if body := object(t, call.Body); len(body) != 1 || body["status"] != vmagent.StatusRunning {
		t.Errorf("workspace ready body %s, want {status: running}", call.Body)
	}
	waitFor(t, c.a.Timeout, "a replay to answer 200 running", func() error {
		res, err := c.cl.CreateWorkspace(c.ctx, c.a.Base, c.a.NodeID, user, req)
		if err != nil {
			return err
		}
		if !res.Running {
			return errors.New("still creating")
		}
		c.statusBody(t, c.last(t, http.StatusOK), mainWS, vmagent.StatusRunning)
		return nil
	})

	list, err := c.cl.ListWorkspaces(c.ctx, c.a.Base, c.a.NodeID, user)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(list, func(w vmagent.Workspace) bool { return w.ID == mainWS })
	if i < 0 || list[i].Status != vmagent.StatusRunning || list[i].Repository != req.Repository || list[i].Branch != "main" ||
		list[i].CreatedAt.IsZero() {
		t.Errorf("GET /workspaces = %+v, want %s running on %s main", list, mainWS, req.Repository)
	}
	var raw struct{ Workspaces []map[string]any }
	if err := json.Unmarshal(c.last(t, http.StatusOK).Body, &raw); err != nil || len(raw.Workspaces) == 0 {
		t.Fatalf("GET /workspaces body: %v", err)
	}
	keysExactly(t, "GET /workspaces entry", raw.Workspaces[0], "id", "repository", "branch", "status", "createdAt", "updatedAt", "sessions")
}

// statusBody checks a {workspaceId, status} answer.
func (c *contract) statusBody(t *testing.T, ex exchange, ws, status string) {
	t.Helper()
	body := object(t, ex.Body)
	keysExactly(t, "create answer", body, "workspaceId", "status")
	if body["workspaceId"] != ws || body["status"] != status {
		t.Errorf("create answered %d %s, want workspaceId %s status %s", ex.Status, ex.Body, ws, status)
	}
}

func (c *contract) createSession(t *testing.T) {
	req := vmagent.CreateSessionRequest{SessionID: session1, Label: "conformance", ChatSessionID: chatID, ProjectID: project}
	s, err := c.cl.CreateAgentSession(c.ctx, c.a.Base, c.a.NodeID, user, mainWS, req, "key-1")
	if err != nil {
		t.Fatal(err)
	}
	body := object(t, c.last(t, http.StatusCreated).Body)
	for _, k := range []string{"id", "workspaceId", "status", "createdAt", "updatedAt"} {
		if _, ok := body[k]; !ok {
			t.Errorf("session %v lacks %s", body, k)
		}
	}
	if s.ID != session1 || s.WorkspaceID != mainWS || s.Status != vmagent.SessionRunning || s.CreatedAt.IsZero() {
		t.Fatalf("session %+v", s)
	}

	again, err := c.cl.CreateAgentSession(c.ctx, c.a.Base, c.a.NodeID, user, mainWS, req, "key-1")
	if err != nil {
		t.Fatalf("replay with the key: %v", err)
	}
	c.last(t, http.StatusCreated)
	if again.ID != s.ID || !again.CreatedAt.Equal(s.CreatedAt) {
		t.Errorf("replay with the key = %+v, want the session %+v", again, s)
	}

	_, err = c.cl.CreateAgentSession(c.ctx, c.a.Base, c.a.NodeID, user, mainWS, req, "key-2")
	var e *vmagent.Error
	if !errors.As(err, &e) || e.Status != http.StatusBadRequest || e.Message != "session already exists: "+session1 {
		t.Errorf("same sessionId, another key = %v, want 400 session already exists", err)
	}
	tok, err := c.a.CP.Issuer.ManagementToken(c.a.NodeID, mainWS, user)
	if err != nil {
		t.Fatal(err)
	}
	ex := c.raw(t, http.MethodPost, "/workspaces/"+mainWS+"/agent-sessions", tok, mainWS, "", req)
	if ex.Status != http.StatusBadRequest || plainError(t, ex.Body) != "session already exists: "+session1 {
		t.Errorf("same sessionId without a key = %d %s, want 400 session already exists", ex.Status, ex.Body)
	}
}

// unknown: a stop or start naming a workspace or session the agent does
// not have is a permanent 404.
func (c *contract) unknown(t *testing.T) {
	err := c.cl.StopWorkspace(c.ctx, c.a.Base, c.a.NodeID, user, "ws-never")
	if !errors.Is(err, vmagent.ErrNotFound) || !vmagent.IsPermanent(err) {
		t.Errorf("stop of an unknown workspace = %v, want a permanent 404", err)
	}
	plainError(t, c.rec.Last().Body)
	_, err = c.cl.StopAgentSession(c.ctx, c.a.Base, c.a.NodeID, user, mainWS, "s-never")
	if !errors.Is(err, vmagent.ErrNotFound) {
		t.Errorf("stop of an unknown session = %v, want 404", err)
	}
	plainError(t, c.rec.Last().Body)
	err = c.cl.StartAgentSession(c.ctx, c.a.Base, c.a.NodeID, user, mainWS, "s-never", startRequest("t-9", "d-9", donePrompt))
	if !errors.Is(err, vmagent.ErrNotFound) {
		t.Errorf("start of an unknown session = %v, want 404", err)
	}
	plainError(t, c.rec.Last().Body)
}

func startRequest(task, delivery, prompt string) vmagent.StartSessionRequest {
	return vmagent.StartSessionRequest{AgentType: "claude-code", InitialPrompt: prompt, ProjectID: project, TaskID: task, DeliveryID: delivery}
}

// donePrompt names a branch, as tdf's prompts do, so that the fake coding
// agent works on it and the agent pushes it.
const donePrompt = "Write the release notes on git branch `" + outBranch + "`."

func (c *contract) startSession(t *testing.T) {
	req := startRequest("t-1", "d-1", donePrompt)
	if err := c.cl.StartAgentSession(c.ctx, c.a.Base, c.a.NodeID, user, mainWS, session1, req); err != nil {
		t.Fatal(err)
	}
	startBody(t, c.last(t, http.StatusAccepted), "accepted")
	if err := c.cl.StartAgentSession(c.ctx, c.a.Base, c.a.NodeID, user, mainWS, session1, req); err != nil {
		t.Fatalf("replay: %v", err)
	}
	startBody(t, c.last(t, http.StatusOK), "duplicate")

	other := req
	other.InitialPrompt += " And more."
	err := c.cl.StartAgentSession(c.ctx, c.a.Base, c.a.NodeID, user, mainWS, session1, other)
	var e *vmagent.Error
	if !errors.As(err, &e) || e.Status != http.StatusConflict || e.Code != vmagent.CodeDeliveryConflict || vmagent.IsTransient(err) {
		t.Errorf("same deliveryId, another prompt = %v, want a permanent 409 conflict", err)
	}
	startBody(t, c.rec.Last(), "conflict")

	tok, err := c.a.CP.Issuer.ManagementToken(c.a.NodeID, mainWS, user)
	if err != nil {
		t.Fatal(err)
	}
	path := "/workspaces/" + mainWS + "/agent-sessions/" + session1 + "/start"
	bad := req
	bad.DeliveryID, bad.ProtocolVersion = "d/1", vmagent.ExecutionProtocolVersion
	if ex := c.raw(t, http.MethodPost, path, tok, mainWS, "", bad); ex.Status != http.StatusBadRequest ||
		plainError(t, ex.Body) != "deliveryId has an invalid format" {
		t.Errorf("deliveryId %q = %d %s, want 400 deliveryId has an invalid format", bad.DeliveryID, ex.Status, ex.Body)
	}
	bad.DeliveryID, bad.ProtocolVersion = "d-2", vmagent.ExecutionProtocolVersion+1
	ex := c.raw(t, http.MethodPost, path, tok, mainWS, "", bad)
	if body := object(t, ex.Body); ex.Status != http.StatusBadRequest || body["error"] != "unsupported_protocol_version" {
		t.Errorf("protocolVersion %d = %d %s, want 400 unsupported_protocol_version", bad.ProtocolVersion, ex.Status, ex.Body)
	}
}

// startBody checks a prompt delivery answer: {status, sessionId, ...}.
func startBody(t *testing.T, ex exchange, status string) {
	t.Helper()
	body := object(t, ex.Body)
	if body["status"] != status || body["sessionId"] != session1 {
		t.Errorf("start answered %d %s, want status %s sessionId %s", ex.Status, ex.Body, status, session1)
	}
}

// taskDone: the completed prompt's task status callback, with the
// workspace's token: {executionStep: awaiting_followup, gitPushResult}
// with every field of the push result. The session was created with a
// chat session id and a project id, so the run's chat messages are
// reported too.
func (c *contract) taskDone(t *testing.T) {
	call := c.a.CP.waitCall(t, c.a.Timeout, vmagent.TaskStatusPath(project, "t-1"))
	if _, err := c.a.CP.Issuer.VerifyCallback(call.Token, tokens.ScopeWorkspace, mainWS); err != nil {
		t.Errorf("task status token: %v", err)
	}
	body := object(t, call.Body)
	keysExactly(t, "task status body", body, "executionStep", "gitPushResult")
	if body["executionStep"] != vmagent.ExecutionStepAwaitingFollowup {
		t.Errorf("executionStep %v, want %s", body["executionStep"], vmagent.ExecutionStepAwaitingFollowup)
	}
	push, _ := body["gitPushResult"].(map[string]any)
	keysExactly(t, "gitPushResult", push, "pushed", "commitSha", "branchName", "prUrl", "prNumber", "hasUncommittedChanges", "error")
	for k, kind := range map[string]string{"pushed": "bool", "hasUncommittedChanges": "bool", "prNumber": "number",
		"commitSha": "string", "branchName": "string", "prUrl": "string", "error": "string"} {
		if got := jsonKind(push[k]); got != kind {
			t.Errorf("gitPushResult.%s is a %s (%v), want a %s", k, got, push[k], kind)
		}
	}
	var pr vmagent.TaskStatusRequest
	if err := json.Unmarshal(call.Body, &pr); err != nil || pr.GitPushResult == nil {
		t.Fatalf("tdf cannot read the task status body %s: %v", call.Body, err)
	}
	if g := pr.GitPushResult; !g.Pushed || g.BranchName != outBranch || g.CommitSHA == "" || g.Error != "" {
		t.Errorf("push result %+v, want %s pushed", *g, outBranch)
	}

	// The delivery, replayed after the run, is still a duplicate.
	if err := c.cl.StartAgentSession(c.ctx, c.a.Base, c.a.NodeID, user, mainWS, session1, startRequest("t-1", "d-1", donePrompt)); err != nil {
		t.Fatalf("replay after the run: %v", err)
	}
	startBody(t, c.last(t, http.StatusOK), "duplicate")

	msgs := c.a.CP.waitCall(t, c.a.Timeout, vmagent.MessagesPath(mainWS))
	if _, err := c.a.CP.Issuer.VerifyCallback(msgs.Token, tokens.ScopeWorkspace, mainWS); err != nil {
		t.Errorf("messages token: %v", err)
	}
	var batch vmagent.MessagesRequest
	if err := json.Unmarshal(msgs.Body, &batch); err != nil || len(batch.Messages) == 0 {
		t.Fatalf("messages body %s: %v", msgs.Body, err)
	}
	for _, m := range batch.Messages {
		if m.MessageID == "" || m.SessionID != chatID || m.Role == "" || m.Timestamp == "" {
			t.Errorf("message %+v, want an id, chat session %s, a role and a time", m, chatID)
		}
	}
}

// taskOnCheckoutBranch: work left on the workspace's checkout branch (the
// project's default: the prompt named no branch) is committed but not
// pushed, and the push result says why. It runs before any prompt names a
// branch: the standalone agent keeps one working directory.
func (c *contract) taskOnCheckoutBranch(t *testing.T) {
	const session0 = "s-0"
	if _, err := c.cl.CreateAgentSession(c.ctx, c.a.Base, c.a.NodeID, user, mainWS,
		vmagent.CreateSessionRequest{SessionID: session0, ProjectID: project}, ""); err != nil {
		t.Fatal(err)
	}
	req := startRequest("t-0", "d-0", "Tidy the docs.")
	if err := c.cl.StartAgentSession(c.ctx, c.a.Base, c.a.NodeID, user, mainWS, session0, req); err != nil {
		t.Fatal(err)
	}
	call := c.a.CP.waitCall(t, c.a.Timeout, vmagent.TaskStatusPath(project, "t-0"))
	var body vmagent.TaskStatusRequest
	if err := json.Unmarshal(call.Body, &body); err != nil || body.GitPushResult == nil {
		t.Fatalf("task status body %s: %v", call.Body, err)
	}
	if g := body.GitPushResult; body.ExecutionStep != vmagent.ExecutionStepAwaitingFollowup || g.Pushed ||
		g.BranchName != "main" || g.CommitSHA == "" || !strings.Contains(g.Error, "push blocked") {
		t.Errorf("task status body %s, want awaiting_followup with a commit on main and its push blocked", call.Body)
	}
}

// taskFailed: a prompt the coding agent fails ends in {toStatus: failed,
// reason, errorMessage}.
func (c *contract) taskFailed(t *testing.T) {
	const session2 = "s-2"
	if _, err := c.cl.CreateAgentSession(c.ctx, c.a.Base, c.a.NodeID, user, mainWS,
		vmagent.CreateSessionRequest{SessionID: session2, ProjectID: project}, ""); err != nil {
		t.Fatal(err)
	}
	if c.a.FailRuns != nil {
		c.a.FailRuns(true)
		defer c.a.FailRuns(false)
	}
	req := startRequest("t-2", "d-2", "Please "+fakeacp.FailMarker+" this.")
	if err := c.cl.StartAgentSession(c.ctx, c.a.Base, c.a.NodeID, user, mainWS, session2, req); err != nil {
		t.Fatal(err)
	}
	call := c.a.CP.waitCall(t, c.a.Timeout, vmagent.TaskStatusPath(project, "t-2"))
	if _, err := c.a.CP.Issuer.VerifyCallback(call.Token, tokens.ScopeWorkspace, mainWS); err != nil {
		t.Errorf("task status token: %v", err)
	}
	body := object(t, call.Body)
	keysExactly(t, "failed task status body", body, "toStatus", "reason", "errorMessage")
	if body["toStatus"] != "failed" || jsonKind(body["reason"]) != "string" || body["errorMessage"] == "" {
		t.Errorf("failed task status body %s", call.Body)
	}
}

func (c *contract) stopSession(t *testing.T) {
	for i := range 2 {
		s, err := c.cl.StopAgentSession(c.ctx, c.a.Base, c.a.NodeID, user, mainWS, session1)
		if err != nil {
			t.Fatalf("stop %d: %v", i+1, err)
		}
		c.last(t, http.StatusOK)
		if s.ID != session1 || s.Status != vmagent.SessionStopped || s.StoppedAt == nil {
			t.Errorf("stop %d = %+v, want the session stopped", i+1, s)
		}
	}
	err := c.cl.StartAgentSession(c.ctx, c.a.Base, c.a.NodeID, user, mainWS, session1, startRequest("t-1", "d-3", donePrompt))
	var e *vmagent.Error
	if !errors.As(err, &e) || e.Status != http.StatusConflict || vmagent.IsTransient(err) || plainError(t, c.rec.Last().Body) != "session is not running" {
		t.Errorf("start of a stopped session = %v, want a permanent 409 session is not running", err)
	}
}

// stopWorkspace: 200 {status: stopped}, then 409 invalid_transition, which
// the client reports as done. A create replay after the stop is 409
// workspace_not_creatable in VM mode; a standalone agent makes the
// workspace again (200 running).
func (c *contract) stopWorkspace(t *testing.T) {
	if err := c.cl.StopWorkspace(c.ctx, c.a.Base, c.a.NodeID, user, mainWS); err != nil {
		t.Fatal(err)
	}
	if body := object(t, c.last(t, http.StatusOK).Body); len(body) != 1 || body["status"] != vmagent.StatusStopped {
		t.Errorf("stop body %v, want {status: stopped}", body)
	}
	if err := c.cl.StopWorkspace(c.ctx, c.a.Base, c.a.NodeID, user, mainWS); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	codedError(t, c.last(t, http.StatusConflict).Body, vmagent.CodeInvalidTransition)

	_, err := c.cl.CreateWorkspace(c.ctx, c.a.Base, c.a.NodeID, user, c.createRequest(t, mainWS))
	if c.a.Standalone {
		if err != nil {
			t.Fatalf("create after stop: %v", err)
		}
		c.statusBody(t, c.last(t, http.StatusOK), mainWS, vmagent.StatusRunning)
		return
	}
	if !errors.Is(err, vmagent.ErrWorkspaceNotCreatable) || !vmagent.IsPermanent(err) {
		t.Errorf("create after stop = %v, want a permanent 409 workspace_not_creatable", err)
	}
	codedError(t, c.rec.Last().Body, vmagent.CodeWorkspaceNotCreatable)
}

func (c *contract) deleteWorkspace(t *testing.T) {
	for _, ws := range []string{mainWS, mainWS, "ws-never"} {
		if err := c.cl.DeleteWorkspace(c.ctx, c.a.Base, c.a.NodeID, user, ws); err != nil {
			t.Fatalf("delete %s: %v", ws, err)
		}
		if body := object(t, c.last(t, http.StatusOK).Body); len(body) != 1 || body["success"] != true {
			t.Errorf("delete %s body %v, want {success: true}", ws, body)
		}
	}
	list, err := c.cl.ListWorkspaces(c.ctx, c.a.Base, c.a.NodeID, user)
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(list, func(w vmagent.Workspace) bool { return w.ID == mainWS }) {
		t.Errorf("GET /workspaces after delete = %+v", list)
	}
}

// standaloneFailure (standalone role): a workspace whose creation fails
// (its clone) is reported with the provisioning-failed callback
// {errorMessage} within the call, which answers 500 {error}; a replay
// tries again (500 again), another branch is 409 workspace_conflict; the
// failed workspace stops and is deleted.
func (c *contract) standaloneFailure(t *testing.T) {
	if c.a.FailWorkspaces != nil {
		c.a.FailWorkspaces(true)
		defer c.a.FailWorkspaces(false)
	}
	const ws = "ws-bad"
	req := c.createRequest(t, ws)
	req.Repository = cmp.Or(c.a.BrokenRepository, req.Repository)
	for i := range 2 {
		_, err := c.cl.CreateWorkspace(c.ctx, c.a.Base, c.a.NodeID, user, req)
		var e *vmagent.Error
		if !errors.As(err, &e) || e.Status != http.StatusInternalServerError || !vmagent.IsTransient(err) {
			t.Fatalf("create %d = %v, want a transient 500", i+1, err)
		}
		plainError(t, c.rec.Last().Body)
		// Sent before the answer.
		calls := c.a.CP.Calls(vmagent.ProvisioningFailedPath(ws))
		if len(calls) != i+1 {
			t.Fatalf("%d provisioning-failed callbacks after %d creates", len(calls), i+1)
		}
		if _, err := c.a.CP.Issuer.VerifyCallback(calls[i].Token, tokens.ScopeWorkspace, ws); err != nil {
			t.Errorf("provisioning-failed token: %v", err)
		}
		body := object(t, calls[i].Body)
		keysExactly(t, "provisioning-failed body", body, "errorMessage")
		if msg, _ := body["errorMessage"].(string); msg == "" {
			t.Errorf("provisioning-failed body %s, want an errorMessage", calls[i].Body)
		}
	}
	other := req
	other.Branch = "other"
	if _, err := c.cl.CreateWorkspace(c.ctx, c.a.Base, c.a.NodeID, user, other); !errors.Is(err, vmagent.ErrWorkspaceConflict) {
		t.Errorf("create with another branch = %v, want 409 workspace_conflict", err)
	}
	body := object(t, c.rec.Last().Body)
	keysExactly(t, "workspace_conflict body", body, "error", "message", "workspaceId")
	if err := c.cl.StopWorkspace(c.ctx, c.a.Base, c.a.NodeID, user, ws); err != nil {
		t.Fatal(err)
	}
	c.last(t, http.StatusOK)
	if err := c.cl.DeleteWorkspace(c.ctx, c.a.Base, c.a.NodeID, user, ws); err != nil {
		t.Fatal(err)
	}
	c.last(t, http.StatusOK)
}

// provisioningFailure (VM mode): a workspace whose provisioning fails is
// 202 creating, then reported with the provisioning-failed callback
// {errorMessage} under its token; a replay is then 409
// workspace_not_creatable, another branch still 409 workspace_conflict; it
// stops (200, then 409 invalid_transition) and is deleted.
func (c *contract) provisioningFailure(t *testing.T) {
	if c.a.FailWorkspaces != nil {
		c.a.FailWorkspaces(true)
		defer c.a.FailWorkspaces(false)
	}
	const ws = "ws-fail"
	req := c.createRequest(t, ws)
	if _, err := c.cl.CreateWorkspace(c.ctx, c.a.Base, c.a.NodeID, user, req); err != nil {
		t.Fatal(err)
	}
	c.statusBody(t, c.last(t, http.StatusAccepted), ws, vmagent.StatusCreating)

	call := c.a.CP.waitCall(t, c.a.Timeout, vmagent.ProvisioningFailedPath(ws))
	if _, err := c.a.CP.Issuer.VerifyCallback(call.Token, tokens.ScopeWorkspace, ws); err != nil {
		t.Errorf("provisioning-failed token: %v", err)
	}
	body := object(t, call.Body)
	keysExactly(t, "provisioning-failed body", body, "errorMessage")
	if msg, _ := body["errorMessage"].(string); msg == "" {
		t.Errorf("provisioning-failed body %s, want an errorMessage", call.Body)
	}

	waitFor(t, c.a.Timeout, "a replay to answer 409 workspace_not_creatable", func() error {
		_, err := c.cl.CreateWorkspace(c.ctx, c.a.Base, c.a.NodeID, user, req)
		if !errors.Is(err, vmagent.ErrWorkspaceNotCreatable) {
			return err
		}
		return nil
	})
	failedBody(t, c.rec.Last().Body, vmagent.CodeWorkspaceNotCreatable, ws)
	other := req
	other.Branch = "other"
	if _, err := c.cl.CreateWorkspace(c.ctx, c.a.Base, c.a.NodeID, user, other); !errors.Is(err, vmagent.ErrWorkspaceConflict) {
		t.Errorf("create with another branch = %v, want 409 workspace_conflict", err)
	}
	failedBody(t, c.rec.Last().Body, vmagent.CodeWorkspaceConflict, ws)

	if err := c.cl.StopWorkspace(c.ctx, c.a.Base, c.a.NodeID, user, ws); err != nil {
		t.Fatal(err)
	}
	c.last(t, http.StatusOK)
	if err := c.cl.StopWorkspace(c.ctx, c.a.Base, c.a.NodeID, user, ws); err != nil {
		t.Fatal(err)
	}
	codedError(t, c.last(t, http.StatusConflict).Body, vmagent.CodeInvalidTransition)
	if err := c.cl.DeleteWorkspace(c.ctx, c.a.Base, c.a.NodeID, user, ws); err != nil {
		t.Fatal(err)
	}
	c.last(t, http.StatusOK)
}

// failedBody checks a 409 about a failed workspace: the coded error, its
// workspace id and status.
func failedBody(t *testing.T, b []byte, code, ws string) {
	t.Helper()
	codedError(t, b, code)
	body := object(t, b)
	keysExactly(t, code+" body", body, "error", "message", "workspaceId", "status")
	if body["workspaceId"] != ws || body["status"] != vmagent.StatusError {
		t.Errorf("%s body %s, want workspaceId %s status error", code, b, ws)
	}
}

func (c *contract) heartbeat(t *testing.T) {
	call := c.a.CP.waitCall(t, c.a.Timeout, vmagent.NodeHeartbeatPath(c.a.NodeID))
	if _, err := c.a.CP.Issuer.VerifyCallback(call.Token, tokens.ScopeNode, c.a.NodeID); err != nil {
		t.Errorf("heartbeat token: %v", err)
	}
	body := object(t, call.Body)
	keysExactly(t, "heartbeat body", body, "nodeId", "activeWorkspaces", "agentVersion", "metrics")
	metrics, _ := body["metrics"].(map[string]any)
	keysExactly(t, "heartbeat metrics", metrics, "cpuLoadAvg1", "memoryPercent", "diskPercent")
	if body["nodeId"] != c.a.NodeID || jsonKind(body["activeWorkspaces"]) != "number" {
		t.Errorf("heartbeat body %s", call.Body)
	}
}

// raw sends a request the client would refuse to send, with a management
// token and the routing headers.
func (c *contract) raw(t *testing.T, method, path, token, workspaceHeader, idempotencyKey string, body any) exchange {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		buf, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(buf)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequestWithContext(c.ctx, method, c.a.Base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set(vmagent.HeaderNodeID, c.a.NodeID)
	if workspaceHeader != "" {
		req.Header.Set(vmagent.HeaderWorkspaceID, workspaceHeader)
	}
	if idempotencyKey != "" {
		req.Header.Set(vmagent.HeaderIdempotencyKey, idempotencyKey)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return c.rec.Last()
}

// object decodes a JSON object.
func object(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not a JSON object: %q: %v", b, err)
	}
	return m
}

// keysExactly checks an object has exactly the given keys.
func keysExactly(t *testing.T, what string, m map[string]any, keys ...string) {
	t.Helper()
	var got []string
	for k := range m {
		got = append(got, k)
	}
	slices.Sort(got)
	slices.Sort(keys)
	if !slices.Equal(got, keys) {
		t.Errorf("%s has keys %v, want %v", what, got, keys)
	}
}

// plainError checks the agent's plain error shape, {"error": "<message>"},
// and returns the message.
func plainError(t *testing.T, b []byte) string {
	t.Helper()
	body := object(t, b)
	msg, _ := body["error"].(string)
	if len(body) != 1 || strings.TrimSpace(msg) == "" {
		t.Errorf("error body %s, want {error: <message>}", b)
	}
	return msg
}

// codedError checks the agent's coded error shape, {"error": code,
// "message": "<message>", ...}.
func codedError(t *testing.T, b []byte, code string) {
	t.Helper()
	body := object(t, b)
	if msg, _ := body["message"].(string); body["error"] != code || msg == "" {
		t.Errorf("error body %s, want {error: %s, message: <message>}", b, code)
	}
}

func jsonKind(v any) string {
	switch v.(type) {
	case bool:
		return "bool"
	case float64:
		return "number"
	case string:
		return "string"
	case nil:
		return "null"
	}
	return "other"
}
