package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/keyring"
	"github.com/tdf-project/tdf/runner"
	"github.com/tdf-project/tdf/server"
	"github.com/tdf-project/tdf/tokens"
)

const (
	testGitSecret   = "ghp_TESTgitSECRET0123456789abcdef"
	testAgentSecret = "sk-ant-TESTagentSECRET-0123456789abcdef"
)

// agentRoutesCluster is a three-node cluster sharing one keyring, with a
// task parked at agent_session (its workspace exists, the session step
// never finishes) and both credentials set through the admin API.
type agentRoutesCluster struct {
	c            *server.TestCluster
	taskID, wsID string
	nodeID       string
	answers      [][]byte // every API answer, for the secrets test
}

func newAgentRoutesCluster(t *testing.T, opts server.TestOptions) *agentRoutesCluster {
	t.Helper()
	kr, err := keyring.Generate()
	if err != nil {
		t.Fatal(err)
	}
	done := runner.HandlerFunc(func(context.Context, *fsm.Task, string) runner.Result { return runner.Done(fsm.StepData{}) })
	opts.Handlers = map[fsm.Step]runner.Handler{
		fsm.StepNodeProvisioning: done, fsm.StepNodeAgentReady: done, fsm.StepWorkspaceCreate: done,
		fsm.StepAgentSession: runner.HandlerFunc(func(context.Context, *fsm.Task, string) runner.Result { return runner.PollIn(time.Hour) }),
	}
	opts.API = func(c *api.Config) { c.Keyring = kr }
	a := &agentRoutesCluster{c: server.NewTestCluster(t, opts)}
	leader := a.c.Leader()
	r := a.do(t, leader, http.MethodPost, "/v1/tasks", submitBody("u1", "agent routes"), nil)
	if r.Status != http.StatusAccepted {
		t.Fatalf("submit = %d %s", r.Status, r.Body)
	}
	a.taskID = decodeTask(t, r).ID
	waitFor(t, "the task's workspace, on every node", func() bool {
		for _, n := range a.c.Nodes {
			task, ok := n.FSM.Task(a.taskID)
			if !ok || task.WorkspaceID == "" || task.Step != fsm.StepWorkspaceReady || len(n.FSM.SigningKeys()) == 0 || n.FSM.ControlPlaneURL() == "" {
				return false
			}
			a.wsID, a.nodeID = task.WorkspaceID, task.NodeID
		}
		return true
	})
	// The workspace becomes ready, so the task moves on to agent_session.
	ready := a.do(t, leader, http.MethodPost, "/api/workspaces/"+a.wsID+"/ready", []byte(`{"status":"running"}`), a.bearer(t, tokens.ScopeWorkspace, a.wsID))
	if ready.Status != http.StatusOK {
		t.Fatalf("workspace ready = %d %s", ready.Status, ready.Body)
	}
	_, followers := a.c.Followers()
	// Set through a follower: it forwards to the leader, which seals.
	for _, put := range []struct{ path, body string }{
		{"/v1/credentials/git-token/project/p1", `{"secret":"` + testGitSecret + `"}`},
		{"/v1/credentials/agent-key/user/u1/claude-code", `{"secret":"` + testAgentSecret + `"}`},
	} {
		r := a.do(t, followers[0], http.MethodPut, put.path, []byte(put.body), nil)
		if r.Status != http.StatusCreated {
			t.Fatalf("PUT %s = %d %s, want 201", put.path, r.Status, r.Body)
		}
	}
	waitFor(t, "the credentials on every node", func() bool {
		for _, n := range a.c.Nodes {
			if len(n.FSM.Credentials()) != 2 {
				return false
			}
		}
		return true
	})
	return a
}

func (a *agentRoutesCluster) do(t *testing.T, n *server.TestNode, method, path string, body []byte, hdr map[string]string) server.TestResponse {
	t.Helper()
	r := a.c.Do(n, method, path, body, hdr)
	a.answers = append(a.answers, r.Body)
	for k, vs := range r.Header {
		a.answers = append(a.answers, []byte(k+": "+strings.Join(vs, ",")))
	}
	return r
}

func (a *agentRoutesCluster) bearer(t *testing.T, s tokens.Scope, id string) map[string]string {
	t.Helper()
	tok, err := a.c.Nodes[0].Tokens.CallbackToken(s, id)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"Authorization": "Bearer " + tok}
}

// TestAgentRoutes calls every control-plane route the real agent uses
// during a task, on every node: the right token gets a 2xx answer in the
// agent's format, a token of the other scope 403, none 401.
func TestAgentRoutes(t *testing.T) {
	a := newAgentRoutesCluster(t, server.TestOptions{})
	ws, node := a.wsID, a.nodeID
	wsTok, nodeTok := a.bearer(t, tokens.ScopeWorkspace, ws), a.bearer(t, tokens.ScopeNode, node)
	type route struct {
		method, path, body string
		scope              tokens.Scope
		check              func(t *testing.T, body []byte)
	}
	routes := []route{
		{http.MethodPost, "/api/workspaces/" + ws + "/git-token", `{}`, tokens.ScopeWorkspace, func(t *testing.T, b []byte) {
			var out struct{ Token, ExpiresAt string }
			if json.Unmarshal(b, &out); out.Token != testGitSecret || out.ExpiresAt == "" {
				t.Errorf("git-token answer %s", b)
			}
		}},
		{http.MethodPost, "/api/workspaces/" + ws + "/agent-key", `{"agentType":"claude-code"}`, tokens.ScopeWorkspace, func(t *testing.T, b []byte) {
			var out struct{ APIKey, CredentialKind string }
			if json.Unmarshal(b, &out); out.APIKey != testAgentSecret || out.CredentialKind != "api-key" {
				t.Errorf("agent-key answer %s", b)
			}
		}},
		{http.MethodGet, "/api/workspaces/" + ws + "/runtime-assets?agentSessionId=s1", ``, tokens.ScopeWorkspace, func(t *testing.T, b []byte) {
			if string(b) != `{"envVars":[],"files":[],"workspaceId":"`+ws+`"}` {
				t.Errorf("runtime-assets answer %s", b)
			}
		}},
		{http.MethodGet, "/api/workspaces/" + ws + "/runtime", ``, tokens.ScopeWorkspace, func(t *testing.T, b []byte) {
			var out struct{ WorkspaceID, Repository, ProjectID string }
			if json.Unmarshal(b, &out); out.WorkspaceID != ws || out.Repository != "github.com/acme/app" || out.ProjectID != "p1" {
				t.Errorf("runtime answer %s", b)
			}
		}},
		{http.MethodPost, "/api/workspaces/" + ws + "/agent-settings", `{"agentType":"claude-code"}`, tokens.ScopeWorkspace, func(t *testing.T, b []byte) {
			if !strings.Contains(string(b), `"model":null`) {
				t.Errorf("agent-settings answer %s", b)
			}
		}},
		{http.MethodGet, "/api/workspaces/" + ws + "/agent-settings", ``, tokens.ScopeWorkspace, nil},
		{http.MethodPost, "/api/workspaces/" + ws + "/boot-log", `{"step":"git_clone","status":"started","message":"Cloning","timestamp":"2026-01-01T00:00:00Z"}`, tokens.ScopeWorkspace, nil},
		{http.MethodPost, "/api/workspaces/" + ws + "/agent-credential-sync", `{"agentType":"claude-code","credentialKind":"api-key","credential":"` + testAgentSecret + `"}`, tokens.ScopeWorkspace, func(t *testing.T, b []byte) {
			if string(b) != `{"success":true,"updated":false}` {
				t.Errorf("credential-sync of the same key answered %s", b)
			}
		}},
		{http.MethodPost, "/api/projects/p1/acp-sessions/s1/activity", `{"activity":"prompting","nodeId":"` + node + `","restartCount":0}`, tokens.ScopeWorkspace, nil},
		{http.MethodPost, "/api/projects/p1/node-acp-heartbeat", `{"nodeId":"` + node + `"}`, tokens.ScopeNode, nil},
		{http.MethodPost, "/api/nodes/" + node + "/diagnostic-incidents/inc-1/artifacts", `{"artifactId":"inc-1-safe","kind":"safe-vm-incident-v1","status":"ready"}`, tokens.ScopeNode, nil},
		{http.MethodPut, "/api/nodes/" + node + "/diagnostic-incidents/inc-1/artifacts/inc-1-safe/content", "\x1f\x8b gzip bytes", tokens.ScopeNode, nil},
	}
	for _, n := range a.c.Nodes {
		for _, rt := range routes {
			right, wrong := wsTok, nodeTok
			if rt.scope == tokens.ScopeNode {
				right, wrong = nodeTok, wsTok
			}
			var body []byte
			if rt.body != "" {
				body = []byte(rt.body)
			}
			name := rt.method + " " + rt.path + " on " + n.ID
			if r := a.do(t, n, rt.method, rt.path, body, right); r.Status/100 != 2 {
				t.Errorf("%s with the right token = %d %s, want 2xx", name, r.Status, r.Body)
			} else if rt.check != nil {
				rt.check(t, r.Body)
			}
			if r := a.do(t, n, rt.method, rt.path, body, wrong); r.Status != http.StatusForbidden {
				t.Errorf("%s with a %s token = %d %s, want 403", name, map[bool]string{true: "node", false: "workspace"}[rt.scope == tokens.ScopeWorkspace], r.Status, r.Body)
			} else {
				decodeError(t, r)
			}
			if r := a.do(t, n, rt.method, rt.path, body, nil); r.Status != http.StatusUnauthorized {
				t.Errorf("%s without a token = %d %s, want 401", name, r.Status, r.Body)
			}
		}
	}

	// Someone else's workspace token: 403, on the workspace and project routes.
	other := a.bearer(t, tokens.ScopeWorkspace, "ws-other")
	for _, p := range []string{"/api/workspaces/" + ws + "/git-token", "/api/projects/p1/acp-sessions/s1/activity"} {
		if r := a.do(t, a.c.Nodes[0], http.MethodPost, p, []byte(`{}`), other); r.Status != http.StatusForbidden {
			t.Errorf("%s with another workspace's token = %d %s, want 403", p, r.Status, r.Body)
		}
	}
	// The activity of another project: 403.
	if r := a.do(t, a.c.Nodes[0], http.MethodPost, "/api/projects/p2/acp-sessions/s1/activity", []byte(`{}`), wsTok); r.Status != http.StatusForbidden {
		t.Errorf("activity for another project = %d %s, want 403", r.Status, r.Body)
	}
	// The agent's node-level boot log names its node where a workspace
	// goes, with the node token: accepted; another node's token is not.
	bootLog := "/api/workspaces/" + node + "/boot-log"
	if r := a.do(t, a.c.Nodes[1], http.MethodPost, bootLog, []byte(`{"step":"agent","status":"failed"}`), nodeTok); r.Status != http.StatusOK {
		t.Errorf("node-level boot log = %d %s, want 200", r.Status, r.Body)
	}
	if r := a.do(t, a.c.Nodes[1], http.MethodPost, bootLog, []byte(`{}`), a.bearer(t, tokens.ScopeNode, "n-other")); r.Status != http.StatusForbidden {
		t.Errorf("node-level boot log with another node's token = %d %s, want 403", r.Status, r.Body)
	}
	// A heartbeat naming another node: 403.
	if r := a.do(t, a.c.Nodes[0], http.MethodPost, "/api/projects/p1/node-acp-heartbeat", []byte(`{"nodeId":"n-other"}`), nodeTok); r.Status != http.StatusForbidden {
		t.Errorf("heartbeat for another node = %d %s, want 403", r.Status, r.Body)
	}
	// No key for another agent type: 404 with an answer that says what to set.
	r := a.do(t, a.c.Nodes[1], http.MethodPost, "/api/workspaces/"+ws+"/agent-key", []byte(`{"agentType":"codex"}`), wsTok)
	if r.Status != http.StatusNotFound || !strings.Contains(decodeError(t, r).Message, "tdf credential set agent-key") {
		t.Errorf("agent-key for codex = %d %s, want 404 naming the fix", r.Status, r.Body)
	}
	// agent-key needs the agent type.
	if r := a.do(t, a.c.Nodes[0], http.MethodPost, "/api/workspaces/"+ws+"/agent-key", []byte(`{}`), wsTok); r.Status != http.StatusBadRequest {
		t.Errorf("agent-key without agentType = %d %s, want 400", r.Status, r.Body)
	}
}

// TestCredentialAdminAPI: set, list (metadata only), replace, delete;
// malformed names and bodies are 400; a node without a keyring refuses to
// seal with 503 no_keyring.
func TestCredentialAdminAPI(t *testing.T) {
	a := newAgentRoutesCluster(t, server.TestOptions{})
	n := a.c.Nodes[2]
	var list struct {
		Credentials []api.CredentialView `json:"credentials"`
		Keyring     bool                 `json:"keyring"`
	}
	r := a.do(t, n, http.MethodGet, "/v1/credentials", nil, nil)
	if err := json.Unmarshal(r.Body, &list); err != nil || r.Status != http.StatusOK || len(list.Credentials) != 2 || !list.Keyring {
		t.Fatalf("GET /v1/credentials = %d %s", r.Status, r.Body)
	}
	first := list.Credentials[1]
	if first.Kind != fsm.CredentialGitToken || first.ID != "p1" || first.KeyID == "" || !strings.HasPrefix(first.Fingerprint, "hmac-sha256:") {
		t.Fatalf("git token metadata %+v", first)
	}
	r = a.do(t, n, http.MethodPut, "/v1/credentials/git-token/project/p1", []byte(`{"secret":"another-token-value","username":"git","host":"127.0.0.1:9418"}`), nil)
	var set struct{ Credential api.CredentialView }
	if err := json.Unmarshal(r.Body, &set); err != nil || r.Status != http.StatusOK || set.Credential.Fingerprint == first.Fingerprint ||
		!set.Credential.CreatedAt.Equal(first.CreatedAt) || set.Credential.Host != "127.0.0.1:9418" {
		t.Fatalf("replace = %d %s (first %+v)", r.Status, r.Body, first)
	}
	r = a.do(t, n, http.MethodGet, "/v1/credentials?kind=agent-key&scope=user&id=u1", nil, nil)
	if err := json.Unmarshal(r.Body, &list); err != nil || len(list.Credentials) != 1 || list.Credentials[0].AgentType != "claude-code" {
		t.Fatalf("filtered list = %s", r.Body)
	}
	for _, bad := range []struct{ path, body string }{
		{"/v1/credentials/password/project/p1", `{"secret":"x"}`},
		{"/v1/credentials/git-token/user/u1", `{"secret":"x"}`},
		{"/v1/credentials/agent-key/user/u1", `{"secret":"x"}`},
		{"/v1/credentials/agent-key/user/u1/claude-code", `{}`},
		{"/v1/credentials/agent-key/user/u1/claude-code", `{"secret":"x","credential_kind":"password"}`},
		{"/v1/credentials/agent-key/user/u1/claude-code", `{"secret":"x","host":"h"}`},
		{"/v1/credentials/git-token/project/p1", `{"secret":"x","extra":1}`},
		{"/v1/credentials/git-token/project/-bad", `{"secret":"x"}`},
	} {
		if r := a.do(t, n, http.MethodPut, bad.path, []byte(bad.body), nil); r.Status != http.StatusBadRequest {
			t.Errorf("PUT %s %s = %d %s, want 400", bad.path, bad.body, r.Status, r.Body)
		} else {
			decodeError(t, r)
		}
	}
	if r := a.do(t, n, http.MethodDelete, "/v1/credentials/agent-key/user/u1/claude-code", nil, nil); r.Status != http.StatusOK {
		t.Fatalf("DELETE = %d %s", r.Status, r.Body)
	}
	if r := a.do(t, n, http.MethodDelete, "/v1/credentials/agent-key/user/u1/claude-code", nil, nil); r.Status != http.StatusNotFound {
		t.Fatalf("second DELETE = %d %s, want 404", r.Status, r.Body)
	}
	// The agent now gets 404 for its key.
	r = a.do(t, n, http.MethodPost, "/api/workspaces/"+a.wsID+"/agent-key", []byte(`{"agentType":"claude-code"}`), a.bearer(t, tokens.ScopeWorkspace, a.wsID))
	if r.Status != http.StatusNotFound {
		t.Fatalf("agent-key after delete = %d %s, want 404", r.Status, r.Body)
	}
}

// TestCredentialsWithoutKeyring: a cluster started without a keyring
// refuses to set credentials, with a clear 503, and hands none out.
func TestCredentialsWithoutKeyring(t *testing.T) {
	c := server.NewTestCluster(t, server.TestOptions{Nodes: 1})
	r := c.Do(c.Nodes[0], http.MethodPut, "/v1/credentials/git-token/project/p1", []byte(`{"secret":"x"}`), nil)
	if r.Status != http.StatusServiceUnavailable || decodeError(t, r).Code != api.CodeNoKeyring ||
		!strings.Contains(string(r.Body), "--keyring-file") {
		t.Fatalf("PUT without a keyring = %d %s, want 503 no_keyring naming --keyring-file", r.Status, r.Body)
	}
	if len(c.Nodes[0].FSM.Credentials()) != 0 {
		t.Fatal("a credential was stored")
	}
}
