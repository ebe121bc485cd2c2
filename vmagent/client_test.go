package vmagent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tdf-project/tdf/vmagent"
	"github.com/tdf-project/tdf/vmagent/sim"
)

const (
	node = "n1"
	user = "u1"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fakeTokens signs "node|workspace|user" as the management token; the
// fakeVerifier below checks it like the real agent checks JWT claims.
type fakeTokens struct {
	// override, when set, replaces the token (to send garbage).
	override string
}

func (f fakeTokens) ManagementToken(nodeID, workspaceID, userID string) (string, error) {
	if f.override != "" {
		return f.override, nil
	}
	return nodeID + "|" + workspaceID + "|" + userID, nil
}

var _ vmagent.TokenSource = fakeTokens{}

type verifyCall struct{ token, node, workspace string }

type fakeVerifier struct {
	mu    sync.Mutex
	calls []verifyCall
}

func (v *fakeVerifier) Verify(token, nodeID, workspaceID string) error {
	v.mu.Lock()
	v.calls = append(v.calls, verifyCall{token, nodeID, workspaceID})
	v.mu.Unlock()
	parts := strings.Split(token, "|")
	if len(parts) != 3 {
		return fmt.Errorf("%w: malformed", sim.ErrUnauthorized)
	}
	if parts[0] != nodeID {
		return fmt.Errorf("%w: node claim %q", sim.ErrForbidden, parts[0])
	}
	if parts[1] != workspaceID {
		return fmt.Errorf("%w: workspace claim %q", sim.ErrForbidden, parts[1])
	}
	return nil
}

func (v *fakeVerifier) lastCall() verifyCall {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.calls) == 0 {
		return verifyCall{}
	}
	return v.calls[len(v.calls)-1]
}

var _ sim.Verifier = (*fakeVerifier)(nil)

// fixture is a simulated agent behind an httptest server, without a
// control plane (callbacks are logged as skipped).
type fixture struct {
	agent  *sim.Agent
	srv    *httptest.Server
	client *vmagent.Client
	ctx    context.Context
}

func newFixture(t *testing.T, cfg sim.Config) *fixture {
	t.Helper()
	if cfg.NodeID == "" {
		cfg.NodeID = node
	}
	a := sim.New(cfg)
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(func() {
		srv.Close()
		a.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return &fixture{
		agent:  a,
		srv:    srv,
		client: vmagent.NewClient(vmagent.Options{Timeout: 10 * time.Second, Tokens: fakeTokens{}}),
		ctx:    ctx,
	}
}

func (f *fixture) create(t *testing.T, req vmagent.CreateWorkspaceRequest) vmagent.CreateWorkspaceResult {
	t.Helper()
	res, err := f.client.CreateWorkspace(f.ctx, f.srv.URL, node, user, req)
	if err != nil {
		t.Fatalf("CreateWorkspace(%s) = %v, want nil", req.WorkspaceID, err)
	}
	return res
}

// waitRunning polls the replay of req until the agent answers 200.
func (f *fixture) waitRunning(t *testing.T, req vmagent.CreateWorkspaceRequest) vmagent.CreateWorkspaceResult {
	t.Helper()
	var res vmagent.CreateWorkspaceResult
	waitFor(t, "workspace "+req.WorkspaceID+" running", func() bool {
		res = f.create(t, req)
		return res.Running
	})
	return res
}

// raw sends a request with the headers the client would send, minus what
// the test wants to vary.
func (f *fixture) raw(t *testing.T, method, path, workspaceID string, body string, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(f.ctx, method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(vmagent.HeaderNodeID, node)
	if workspaceID != "" {
		req.Header.Set(vmagent.HeaderWorkspaceID, workspaceID)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHealth(t *testing.T) {
	f := newFixture(t, sim.Config{Verifier: &fakeVerifier{}})
	noAuth := vmagent.NewClient(vmagent.Options{})
	if err := noAuth.Health(f.ctx, f.srv.URL); err != nil {
		t.Fatalf("Health() = %v, want nil", err)
	}
	// A trailing slash on the base URL is fine.
	if err := noAuth.Health(f.ctx, f.srv.URL+"/"); err != nil {
		t.Fatalf("Health(base/) = %v, want nil", err)
	}
}

func TestCreateWorkspaceReplay(t *testing.T) {
	f := newFixture(t, sim.Config{WorkspaceReadyDelay: 50 * time.Millisecond})
	req := vmagent.CreateWorkspaceRequest{WorkspaceID: "ws1", Repository: "acme/app", Branch: "sam/fix", CallbackToken: "wt"}

	res := f.create(t, req)
	if res.Running || res.HTTPStatus != http.StatusAccepted || res.Status != vmagent.StatusCreating || res.WorkspaceID != "ws1" {
		t.Fatalf("CreateWorkspace() = %+v, want 202 creating", res)
	}
	res = f.waitRunning(t, req)
	if res.HTTPStatus != http.StatusOK || res.Status != vmagent.StatusRunning {
		t.Fatalf("CreateWorkspace() replay = %+v, want 200 running", res)
	}

	list, err := f.client.ListWorkspaces(f.ctx, f.srv.URL, node, user)
	if err != nil {
		t.Fatalf("ListWorkspaces() = %v", err)
	}
	if len(list) != 1 || list[0].ID != "ws1" || list[0].Status != vmagent.StatusRunning ||
		list[0].Repository != "acme/app" || list[0].Branch != "sam/fix" || list[0].CreatedAt.IsZero() {
		t.Fatalf("ListWorkspaces() = %+v, want ws1 running on acme/app@sam/fix", list)
	}
	// One create effect, however many replays.
	creates := 0
	for _, e := range f.agent.Events() {
		if e.Kind == sim.EventWorkspaceCreate {
			creates++
		}
	}
	if creates != 1 {
		t.Fatalf("workspace_create events = %d, want 1", creates)
	}
}

func TestCreateWorkspaceReplayWhileProvisioning(t *testing.T) {
	f := newFixture(t, sim.Config{Faults: sim.Faults{NeverReady: true}})
	req := vmagent.CreateWorkspaceRequest{WorkspaceID: "ws1", Repository: "acme/app"}
	for i := range 3 {
		res := f.create(t, req)
		if res.Running || res.HTTPStatus != http.StatusAccepted {
			t.Fatalf("CreateWorkspace() #%d = %+v, want 202", i, res)
		}
	}
	// The default branch is main: naming it explicitly is the same request.
	req.Branch = "main"
	if res := f.create(t, req); res.HTTPStatus != http.StatusAccepted {
		t.Fatalf("CreateWorkspace(branch main) = %+v, want 202", res)
	}
}

func TestCreateWorkspaceConflicts(t *testing.T) {
	f := newFixture(t, sim.Config{})
	f.create(t, vmagent.CreateWorkspaceRequest{WorkspaceID: "ws1", Repository: "acme/app", Branch: "b1"})

	for _, tc := range []struct {
		name string
		req  vmagent.CreateWorkspaceRequest
	}{
		{"other repository", vmagent.CreateWorkspaceRequest{WorkspaceID: "ws1", Repository: "acme/other", Branch: "b1"}},
		{"other branch", vmagent.CreateWorkspaceRequest{WorkspaceID: "ws1", Repository: "acme/app", Branch: "b2"}},
		{"default branch", vmagent.CreateWorkspaceRequest{WorkspaceID: "ws1", Repository: "acme/app"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.client.CreateWorkspace(f.ctx, f.srv.URL, node, user, tc.req)
			var e *vmagent.Error
			if !errors.As(err, &e) || !errors.Is(err, vmagent.ErrWorkspaceConflict) {
				t.Fatalf("CreateWorkspace() = %v, want ErrWorkspaceConflict", err)
			}
			if e.Status != http.StatusConflict || e.Code != vmagent.CodeWorkspaceConflict || e.Message == "" {
				t.Fatalf("CreateWorkspace() error = %+v, want 409 workspace_conflict with a message", e)
			}
			if vmagent.IsTransient(err) {
				t.Fatalf("IsTransient(%v) = true, want false", err)
			}
		})
	}
}

func TestCreateWorkspaceNotCreatable(t *testing.T) {
	t.Run("stopped", func(t *testing.T) {
		f := newFixture(t, sim.Config{})
		req := vmagent.CreateWorkspaceRequest{WorkspaceID: "ws1", Repository: "acme/app"}
		f.waitRunning(t, req)
		if err := f.client.StopWorkspace(f.ctx, f.srv.URL, node, user, "ws1"); err != nil {
			t.Fatalf("StopWorkspace() = %v", err)
		}
		_, err := f.client.CreateWorkspace(f.ctx, f.srv.URL, node, user, req)
		if !errors.Is(err, vmagent.ErrWorkspaceNotCreatable) || vmagent.IsTransient(err) {
			t.Fatalf("CreateWorkspace(stopped) = %v, want permanent ErrWorkspaceNotCreatable", err)
		}
	})
	t.Run("failed", func(t *testing.T) {
		f := newFixture(t, sim.Config{Faults: sim.Faults{FailWorkspaces: true}})
		req := vmagent.CreateWorkspaceRequest{WorkspaceID: "ws1", Repository: "acme/app"}
		f.create(t, req)
		var err error
		waitFor(t, "provisioning to fail", func() bool {
			_, err = f.client.CreateWorkspace(f.ctx, f.srv.URL, node, user, req)
			return err != nil
		})
		if !errors.Is(err, vmagent.ErrWorkspaceNotCreatable) {
			t.Fatalf("CreateWorkspace(failed) = %v, want ErrWorkspaceNotCreatable", err)
		}
	})
}

func TestAgentSessionIdempotency(t *testing.T) {
	f := newFixture(t, sim.Config{})
	f.waitRunning(t, vmagent.CreateWorkspaceRequest{WorkspaceID: "ws1"})
	req := vmagent.CreateSessionRequest{SessionID: "s1", Label: "task t1"}

	first, err := f.client.CreateAgentSession(f.ctx, f.srv.URL, node, user, "ws1", req, "key-1")
	if err != nil {
		t.Fatalf("CreateAgentSession() = %v", err)
	}
	if first.ID != "s1" || first.WorkspaceID != "ws1" || first.Status != vmagent.SessionRunning || first.Label != "task t1" {
		t.Fatalf("CreateAgentSession() = %+v, want s1 running", first)
	}

	// Same key: 201 with the existing session.
	again, err := f.client.CreateAgentSession(f.ctx, f.srv.URL, node, user, "ws1", req, "key-1")
	if err != nil {
		t.Fatalf("CreateAgentSession() replay = %v", err)
	}
	if !again.CreatedAt.Equal(first.CreatedAt) || again.ID != first.ID {
		t.Fatalf("CreateAgentSession() replay = %+v, want the first session %+v", again, first)
	}

	// Without the key: 400 "session already exists".
	code, body := f.raw(t, http.MethodPost, "/workspaces/ws1/agent-sessions", "ws1", `{"sessionId":"s1"}`, nil)
	if code != http.StatusBadRequest || !strings.Contains(body, "session already exists: s1") {
		t.Fatalf("POST agent-sessions without key = %d %s, want 400 session already exists: s1", code, body)
	}
	// With the key, raw: 201.
	code, body = f.raw(t, http.MethodPost, "/workspaces/ws1/agent-sessions", "ws1", `{"sessionId":"s1"}`,
		map[string]string{vmagent.HeaderIdempotencyKey: "key-1"})
	if code != http.StatusCreated {
		t.Fatalf("POST agent-sessions with key = %d %s, want 201", code, body)
	}

	// Another key for the same session id: the 400, permanent.
	_, err = f.client.CreateAgentSession(f.ctx, f.srv.URL, node, user, "ws1", req, "key-2")
	var e *vmagent.Error
	if !errors.As(err, &e) || e.Status != http.StatusBadRequest || !strings.Contains(e.Message, "session already exists: s1") || vmagent.IsTransient(err) {
		t.Fatalf("CreateAgentSession(other key) = %v, want permanent 400 session already exists", err)
	}
	if !vmagent.IsSessionExists(err, "s1") || vmagent.IsSessionExists(err, "s") || vmagent.IsSessionExists(errors.New("x"), "s1") {
		t.Fatalf("IsSessionExists(%v) does not tell session s1 from others", err)
	}

	// An empty key is derived from the session id, so retries still replay.
	req2 := vmagent.CreateSessionRequest{SessionID: "s2"}
	for i := range 2 {
		if _, err := f.client.CreateAgentSession(f.ctx, f.srv.URL, node, user, "ws1", req2, ""); err != nil {
			t.Fatalf("CreateAgentSession(no key) #%d = %v, want nil", i, err)
		}
	}
	if got := len(f.agent.Sessions("ws1")); got != 2 {
		t.Fatalf("Sessions(ws1) = %d sessions, want 2", got)
	}
}

func TestStartAgentSession(t *testing.T) {
	f := newFixture(t, sim.Config{AgentWorkDuration: time.Hour})
	f.waitRunning(t, vmagent.CreateWorkspaceRequest{WorkspaceID: "ws1"})
	if _, err := f.client.CreateAgentSession(f.ctx, f.srv.URL, node, user, "ws1", vmagent.CreateSessionRequest{SessionID: "s1"}, "k1"); err != nil {
		t.Fatal(err)
	}
	start := vmagent.StartSessionRequest{AgentType: "claude-code", InitialPrompt: "fix it", TaskID: "t1", ProjectID: "p1"}

	// Without a deliveryId: 202 starting, each time.
	for i := range 2 {
		if err := f.client.StartAgentSession(f.ctx, f.srv.URL, node, user, "ws1", "s1", start); err != nil {
			t.Fatalf("StartAgentSession() #%d = %v, want nil", i, err)
		}
	}
	code, body := f.raw(t, http.MethodPost, "/workspaces/ws1/agent-sessions/s1/start", "ws1",
		`{"agentType":"claude-code","initialPrompt":"fix it"}`, nil)
	if code != http.StatusAccepted || !strings.Contains(body, `"starting"`) {
		t.Fatalf("POST start = %d %s, want 202 starting", code, body)
	}

	// With a deliveryId: 202 accepted, then 200 duplicate; both success.
	start.DeliveryID = "d1"
	if err := f.client.StartAgentSession(f.ctx, f.srv.URL, node, user, "ws1", "s1", start); err != nil {
		t.Fatalf("StartAgentSession(d1) = %v, want nil", err)
	}
	code, body = f.raw(t, http.MethodPost, "/workspaces/ws1/agent-sessions/s1/start", "ws1",
		`{"agentType":"claude-code","initialPrompt":"fix it","deliveryId":"d1","protocolVersion":1,"taskId":"t1","projectId":"p1"}`, nil)
	if code != http.StatusOK || !strings.Contains(body, `"duplicate"`) {
		t.Fatalf("POST start d1 replay = %d %s, want 200 duplicate", code, body)
	}
	if err := f.client.StartAgentSession(f.ctx, f.srv.URL, node, user, "ws1", "s1", start); err != nil {
		t.Fatalf("StartAgentSession(d1) replay = %v, want nil", err)
	}

	// The same deliveryId with another prompt: 409 conflict, permanent.
	start.InitialPrompt = "something else"
	err := f.client.StartAgentSession(f.ctx, f.srv.URL, node, user, "ws1", "s1", start)
	var e *vmagent.Error
	if !errors.As(err, &e) || e.Status != http.StatusConflict || e.Code != vmagent.CodeDeliveryConflict || vmagent.IsTransient(err) {
		t.Fatalf("StartAgentSession(d1, other prompt) = %v, want permanent 409 conflict", err)
	}

	// A deliveryId needs the protocol version.
	code, _ = f.raw(t, http.MethodPost, "/workspaces/ws1/agent-sessions/s1/start", "ws1",
		`{"agentType":"a","initialPrompt":"p","deliveryId":"d2"}`, nil)
	if code != http.StatusBadRequest {
		t.Fatalf("POST start deliveryId without protocolVersion = %d, want 400", code)
	}

	// An unknown session: 404.
	err = f.client.StartAgentSession(f.ctx, f.srv.URL, node, user, "ws1", "nope", vmagent.StartSessionRequest{AgentType: "a", InitialPrompt: "p"})
	if !errors.Is(err, vmagent.ErrNotFound) || vmagent.IsTransient(err) {
		t.Fatalf("StartAgentSession(unknown) = %v, want permanent ErrNotFound", err)
	}

	// Missing fields: 400.
	err = f.client.StartAgentSession(f.ctx, f.srv.URL, node, user, "ws1", "s1", vmagent.StartSessionRequest{AgentType: "a"})
	if !errors.As(err, &e) || e.Status != http.StatusBadRequest {
		t.Fatalf("StartAgentSession(no prompt) = %v, want 400", err)
	}

	// One run however many starts.
	starts := 0
	for _, ev := range f.agent.Events() {
		if ev.Kind == sim.EventSessionStart {
			starts++
		}
	}
	if starts != 1 {
		t.Fatalf("session_start events = %d, want 1", starts)
	}
}

func TestStopAgentSession(t *testing.T) {
	f := newFixture(t, sim.Config{})
	f.waitRunning(t, vmagent.CreateWorkspaceRequest{WorkspaceID: "ws1"})
	if _, err := f.client.CreateAgentSession(f.ctx, f.srv.URL, node, user, "ws1", vmagent.CreateSessionRequest{SessionID: "s1"}, "k1"); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		s, err := f.client.StopAgentSession(f.ctx, f.srv.URL, node, user, "ws1", "s1")
		if err != nil || s.Status != vmagent.SessionStopped || s.StoppedAt == nil {
			t.Fatalf("StopAgentSession() #%d = %+v, %v, want stopped", i, s, err)
		}
	}
	err := f.client.StartAgentSession(f.ctx, f.srv.URL, node, user, "ws1", "s1", vmagent.StartSessionRequest{AgentType: "a", InitialPrompt: "p"})
	if !errors.Is(err, &vmagent.Error{Status: http.StatusConflict}) {
		t.Fatalf("StartAgentSession(stopped) = %v, want 409", err)
	}
}

func TestStopWorkspaceTwice(t *testing.T) {
	f := newFixture(t, sim.Config{})
	f.waitRunning(t, vmagent.CreateWorkspaceRequest{WorkspaceID: "ws1"})
	for i := range 3 {
		if err := f.client.StopWorkspace(f.ctx, f.srv.URL, node, user, "ws1"); err != nil {
			t.Fatalf("StopWorkspace() #%d = %v, want nil", i, err)
		}
	}
	// What the client hides: the agent answers 409 invalid_transition.
	code, body := f.raw(t, http.MethodPost, "/workspaces/ws1/stop", "ws1", "", nil)
	if code != http.StatusConflict || !strings.Contains(body, vmagent.CodeInvalidTransition) {
		t.Fatalf("POST stop (stopped) = %d %s, want 409 invalid_transition", code, body)
	}
	list, err := f.client.ListWorkspaces(f.ctx, f.srv.URL, node, user)
	if err != nil || len(list) != 1 || list[0].Status != vmagent.StatusStopped {
		t.Fatalf("ListWorkspaces() = %+v, %v, want ws1 stopped", list, err)
	}
	// An unknown workspace: 404, permanent.
	err = f.client.StopWorkspace(f.ctx, f.srv.URL, node, user, "nope")
	if !errors.Is(err, vmagent.ErrNotFound) || vmagent.IsTransient(err) {
		t.Fatalf("StopWorkspace(unknown) = %v, want permanent ErrNotFound", err)
	}
}

func TestDeleteWorkspace(t *testing.T) {
	f := newFixture(t, sim.Config{})
	f.waitRunning(t, vmagent.CreateWorkspaceRequest{WorkspaceID: "ws1"})
	for i := range 2 {
		if err := f.client.DeleteWorkspace(f.ctx, f.srv.URL, node, user, "ws1"); err != nil {
			t.Fatalf("DeleteWorkspace() #%d = %v, want nil", i, err)
		}
	}
	if err := f.client.DeleteWorkspace(f.ctx, f.srv.URL, node, user, "never-existed"); err != nil {
		t.Fatalf("DeleteWorkspace(unknown) = %v, want nil", err)
	}
	list, err := f.client.ListWorkspaces(f.ctx, f.srv.URL, node, user)
	if err != nil || len(list) != 0 {
		t.Fatalf("ListWorkspaces() = %+v, %v, want none", list, err)
	}
	// A deleted workspace can be created anew.
	if res := f.create(t, vmagent.CreateWorkspaceRequest{WorkspaceID: "ws1", Branch: "other"}); res.HTTPStatus != http.StatusAccepted {
		t.Fatalf("CreateWorkspace(after delete) = %+v, want 202", res)
	}
}

func TestAuth(t *testing.T) {
	v := &fakeVerifier{}
	f := newFixture(t, sim.Config{Verifier: v})
	good := f.client
	if _, err := good.CreateWorkspace(f.ctx, f.srv.URL, node, user, vmagent.CreateWorkspaceRequest{WorkspaceID: "ws1"}); err != nil {
		t.Fatalf("CreateWorkspace(good token) = %v", err)
	}
	if got, want := v.lastCall(), (verifyCall{node + "|ws1|" + user, node, "ws1"}); got != want {
		t.Fatalf("Verify() called with %+v, want %+v", got, want)
	}
	if _, err := good.ListWorkspaces(f.ctx, f.srv.URL, node, user); err != nil {
		t.Fatalf("ListWorkspaces(good token) = %v", err)
	}
	if got, want := v.lastCall(), (verifyCall{node + "||" + user, node, ""}); got != want {
		t.Fatalf("Verify() called with %+v, want %+v", got, want)
	}

	noToken := vmagent.NewClient(vmagent.Options{})
	garbage := vmagent.NewClient(vmagent.Options{Tokens: fakeTokens{override: "garbage"}})
	otherWS := vmagent.NewClient(vmagent.Options{Tokens: fakeTokens{override: node + "|ws2|" + user}})

	for _, tc := range []struct {
		name string
		call func() error
		want *vmagent.Error
	}{
		{"no token", func() error { _, err := noToken.ListWorkspaces(f.ctx, f.srv.URL, node, user); return err }, vmagent.ErrUnauthorized},
		{"invalid token", func() error { return garbage.StopWorkspace(f.ctx, f.srv.URL, node, user, "ws1") }, vmagent.ErrUnauthorized},
		// The token (and header) name another node: like the real agent,
		// which checks the claims while validating the token, a 401.
		{"other node", func() error { _, err := good.ListWorkspaces(f.ctx, f.srv.URL, "n2", user); return err }, vmagent.ErrUnauthorized},
		{"other workspace claim", func() error { return otherWS.StopWorkspace(f.ctx, f.srv.URL, node, user, "ws1") }, vmagent.ErrUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, tc.want) {
				t.Fatalf("call = %v, want %v", err, tc.want)
			}
			if vmagent.IsTransient(err) {
				t.Fatalf("IsTransient(%v) = true, want false", err)
			}
		})
	}

	// Header mismatches with a valid token.
	tok := "Bearer " + node + "|ws1|" + user
	if code, body := f.raw(t, http.MethodPost, "/workspaces/ws1/stop", "ws2", "", map[string]string{"Authorization": tok}); code != http.StatusForbidden {
		t.Fatalf("stop with X-SAM-Workspace-Id ws2 = %d %s, want 403", code, body)
	}
	if code, body := f.raw(t, http.MethodPost, "/workspaces/ws1/stop", "", "", map[string]string{"Authorization": tok}); code != http.StatusForbidden {
		t.Fatalf("stop without X-SAM-Workspace-Id = %d %s, want 403", code, body)
	}
	if code, body := f.raw(t, http.MethodPost, "/workspaces/ws1/stop", "ws1", "",
		map[string]string{"Authorization": tok, vmagent.HeaderNodeID: "n2"}); code != http.StatusForbidden {
		t.Fatalf("stop with X-SAM-Node-Id n2 = %d %s, want 403", code, body)
	}
	if code, body := f.raw(t, http.MethodPost, "/workspaces/ws1/stop", "ws1", "",
		map[string]string{"Authorization": "Basic x"}); code != http.StatusUnauthorized {
		t.Fatalf("stop with Basic auth = %d %s, want 401", code, body)
	}
	// Health needs nothing.
	if err := noToken.Health(f.ctx, f.srv.URL); err != nil {
		t.Fatalf("Health(no token) = %v", err)
	}
}

// TestRequestShape checks the exact headers and bodies the client sends.
func TestRequestShape(t *testing.T) {
	type seen struct {
		method, path string
		header       http.Header
		body         string
	}
	var mu sync.Mutex
	var got []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, seen{r.Method, r.URL.Path, r.Header.Clone(), string(b)})
		mu.Unlock()
		switch {
		case strings.HasSuffix(r.URL.Path, "/agent-sessions"):
			w.WriteHeader(http.StatusCreated)
			fmt.Fprint(w, `{"id":"s1","workspaceId":"ws1","status":"running"}`)
		case r.URL.Path == "/workspaces" && r.Method == http.MethodPost:
			w.WriteHeader(http.StatusAccepted)
			fmt.Fprint(w, `{"workspaceId":"ws1","status":"creating"}`)
		default:
			fmt.Fprint(w, `{}`)
		}
	}))
	defer srv.Close()
	c := vmagent.NewClient(vmagent.Options{Tokens: fakeTokens{}})
	ctx := context.Background()

	if _, err := c.CreateWorkspace(ctx, srv.URL, node, user, vmagent.CreateWorkspaceRequest{WorkspaceID: "ws1", Repository: "acme/app", CallbackToken: "wt", TaskID: "t1", ProjectID: "p1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAgentSession(ctx, srv.URL, node, user, "ws1", vmagent.CreateSessionRequest{SessionID: "s1"}, "idem-1"); err != nil {
		t.Fatal(err)
	}
	if err := c.StartAgentSession(ctx, srv.URL, node, user, "ws1", "s1", vmagent.StartSessionRequest{AgentType: "a", InitialPrompt: "p", DeliveryID: "d1", TaskID: "t1", ProjectID: "p1"}); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteWorkspace(ctx, srv.URL, node, user, "ws1"); err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(got) != 4 {
		t.Fatalf("server saw %d requests, want 4", len(got))
	}
	for _, s := range got {
		if a := s.header.Get("Authorization"); a != "Bearer "+node+"|ws1|"+user {
			t.Errorf("%s %s: Authorization = %q, want the workspace-scoped token", s.method, s.path, a)
		}
		if h := s.header.Get(vmagent.HeaderNodeID); h != node {
			t.Errorf("%s %s: %s = %q, want %q", s.method, s.path, vmagent.HeaderNodeID, h, node)
		}
		if h := s.header.Get(vmagent.HeaderWorkspaceID); h != "ws1" {
			t.Errorf("%s %s: %s = %q, want ws1", s.method, s.path, vmagent.HeaderWorkspaceID, h)
		}
		if s.method == http.MethodPost && s.header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: Content-Type = %q, want application/json", s.method, s.path, s.header.Get("Content-Type"))
		}
	}
	if !strings.Contains(got[0].body, `"callbackToken":"wt"`) || !strings.Contains(got[0].body, `"taskId":"t1"`) || !strings.Contains(got[0].body, `"workspaceId":"ws1"`) {
		t.Errorf("create body = %s, want workspaceId, callbackToken, taskId", got[0].body)
	}
	if k := got[1].header.Get(vmagent.HeaderIdempotencyKey); k != "idem-1" {
		t.Errorf("create session Idempotency-Key = %q, want idem-1", k)
	}
	if !strings.Contains(got[2].body, `"protocolVersion":1`) || !strings.Contains(got[2].body, `"deliveryId":"d1"`) {
		t.Errorf("start body = %s, want deliveryId with protocolVersion 1", got[2].body)
	}
	if got[2].path != "/workspaces/ws1/agent-sessions/s1/start" || got[3].method != http.MethodDelete || got[3].path != "/workspaces/ws1" {
		t.Errorf("paths = %s %s, %s %s", got[2].method, got[2].path, got[3].method, got[3].path)
	}
}

func TestTimeoutIsTransient(t *testing.T) {
	f := newFixture(t, sim.Config{Faults: sim.Faults{AnswerDelay: time.Minute}})
	c := vmagent.NewClient(vmagent.Options{Timeout: 50 * time.Millisecond})
	_, err := c.ListWorkspaces(f.ctx, f.srv.URL, node, user)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !vmagent.IsTransient(err) {
		t.Fatalf("ListWorkspaces(slow agent) = %v, want a transient deadline error", err)
	}
	// /health is not slowed.
	if err := c.Health(f.ctx, f.srv.URL); err != nil {
		t.Fatalf("Health(slow agent) = %v, want nil", err)
	}
}

func TestConnectionRefusedIsTransient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := vmagent.NewClient(vmagent.Options{Timeout: 5 * time.Second})
	err = c.Health(context.Background(), "http://"+addr)
	if err == nil || !vmagent.IsTransient(err) {
		t.Fatalf("Health(closed port) = %v, want a transient error", err)
	}
}

func TestInvalidRequestIsPermanent(t *testing.T) {
	c := vmagent.NewClient(vmagent.Options{})
	ctx := context.Background()
	for name, err := range map[string]error{
		"relative base": c.Health(ctx, "127.0.0.1:8080"),
		"empty base":    c.Health(ctx, ""),
		"no node":       c.StopWorkspace(ctx, "http://127.0.0.1:1", "", user, "ws1"),
		"no workspace":  c.StopWorkspace(ctx, "http://127.0.0.1:1", node, user, ""),
	} {
		if !errors.Is(err, vmagent.ErrInvalidRequest) || vmagent.IsTransient(err) {
			t.Errorf("%s: err = %v, want permanent ErrInvalidRequest", name, err)
		}
	}
}

func TestIsTransient(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{&vmagent.Error{Status: 500}, true},
		{&vmagent.Error{Status: 502}, true},
		{&vmagent.Error{Status: 503}, true},
		{&vmagent.Error{Status: 408}, true},
		{&vmagent.Error{Status: 429}, true},
		{&vmagent.Error{Status: 409, Code: vmagent.CodeNotReady}, true},
		{&vmagent.Error{Status: 400}, false},
		{&vmagent.Error{Status: 401}, false},
		{&vmagent.Error{Status: 403}, false},
		{&vmagent.Error{Status: 404}, false},
		{&vmagent.Error{Status: 409, Code: vmagent.CodeWorkspaceConflict}, false},
		{fmt.Errorf("wrapped: %w", &vmagent.Error{Status: 503}), true},
		{fmt.Errorf("wrapped: %w", &vmagent.Error{Status: 404}), false},
		{context.DeadlineExceeded, true},
		{context.Canceled, true},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, true},
		{io.ErrUnexpectedEOF, true},
		{errors.New("something unknown"), true},
		{fmt.Errorf("x: %w", vmagent.ErrInvalidRequest), false},
	} {
		if got := vmagent.IsTransient(tc.err); got != tc.want {
			t.Errorf("IsTransient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestErrorAnswers(t *testing.T) {
	for _, tc := range []struct {
		status     int
		body       string
		wantCode   string
		wantMsg    string
		wantIsConf bool
	}{
		{409, `{"error":"workspace_conflict","message":"different branch","workspaceId":"ws1"}`, "workspace_conflict", "different branch", true},
		{400, `{"error":"session already exists: s1"}`, "", "session already exists: s1", false},
		{400, `{"error":"unsupported_protocol_version","supportedVersions":[1]}`, "unsupported_protocol_version", "", false},
		{409, `{"status":"not_ready","sessionId":"s1"}`, "not_ready", "", false},
		{502, `<html>bad gateway</html>`, "", "<html>bad gateway</html>", false},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(tc.status)
			io.Copy(w, bytes.NewBufferString(tc.body))
		}))
		c := vmagent.NewClient(vmagent.Options{})
		_, err := c.CreateWorkspace(context.Background(), srv.URL, node, user, vmagent.CreateWorkspaceRequest{WorkspaceID: "ws1"})
		srv.Close()
		var e *vmagent.Error
		if !errors.As(err, &e) {
			t.Fatalf("answer %d %s: err = %v, want *Error", tc.status, tc.body, err)
		}
		if e.Status != tc.status || e.Code != tc.wantCode || e.Message != tc.wantMsg || e.Op != "POST /workspaces" {
			t.Errorf("answer %d %s: error = %+v, want code %q message %q", tc.status, tc.body, e, tc.wantCode, tc.wantMsg)
		}
		if errors.Is(err, vmagent.ErrWorkspaceConflict) != tc.wantIsConf {
			t.Errorf("answer %d %s: errors.Is(ErrWorkspaceConflict) = %v, want %v", tc.status, tc.body, !tc.wantIsConf, tc.wantIsConf)
		}
	}
}
