package sim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
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
	node      = "n1"
	user      = "u1"
	nodeToken = "node-token"
	wsToken   = "ws-token"
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

// arrival is one callback as the control plane saw it.
type arrival struct {
	Path string
	Auth string
	Body []byte
	Time time.Time
}

func (a arrival) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(a.Body, v); err != nil {
		t.Fatalf("decode %s body %s: %v", a.Path, a.Body, err)
	}
}

// controlPlane is a test control plane: it records every callback and
// answers with answer (default: 200 {}).
type controlPlane struct {
	srv *httptest.Server

	mu       sync.Mutex
	arrivals []arrival
	answer   func(path string, n int) (int, any) // n: arrivals on this path so far, this one included
}

func newControlPlane(t *testing.T) *controlPlane {
	t.Helper()
	cp := &controlPlane{}
	cp.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("callback %s %s with Content-Type %q, want POST application/json", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
		}
		cp.mu.Lock()
		cp.arrivals = append(cp.arrivals, arrival{r.URL.Path, r.Header.Get("Authorization"), b, time.Now()})
		n := 0
		for _, a := range cp.arrivals {
			if a.Path == r.URL.Path {
				n++
			}
		}
		answer := cp.answer
		cp.mu.Unlock()
		status, body := http.StatusOK, any(map[string]any{})
		if answer != nil {
			status, body = answer(r.URL.Path, n)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(body)
	}))
	t.Cleanup(cp.srv.Close)
	return cp
}

func (cp *controlPlane) setAnswer(f func(path string, n int) (int, any)) {
	cp.mu.Lock()
	cp.answer = f
	cp.mu.Unlock()
}

// on returns the arrivals on path.
func (cp *controlPlane) on(path string) []arrival {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	var out []arrival
	for _, a := range cp.arrivals {
		if a.Path == path {
			out = append(out, a)
		}
	}
	return out
}

func (cp *controlPlane) all() []arrival {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return append([]arrival(nil), cp.arrivals...)
}

// testWriter routes the agent's log to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// env is an agent, its HTTP server and a control plane.
type env struct {
	cp     *controlPlane
	agent  *sim.Agent
	srv    *httptest.Server
	client *vmagent.Client
	ctx    context.Context
}

// fastConfig is a world where everything happens within milliseconds.
func fastConfig() sim.Config {
	return sim.Config{
		NodeID:              node,
		NodeCallbackToken:   nodeToken,
		AgentVersion:        "v-test",
		CallbackTimeout:     5 * time.Second,
		BootDelay:           5 * time.Millisecond,
		WorkspaceReadyDelay: 5 * time.Millisecond,
		AgentWorkDuration:   20 * time.Millisecond,
		HeartbeatInterval:   20 * time.Millisecond,
		Retry:               sim.RetryPolicy{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond, MaxAttempts: 5, MaxElapsed: time.Minute},
	}
}

// newEnv starts an agent whose callbacks go to a fresh control plane;
// tweak adjusts the config (URLs included) before the agent is built.
func newEnv(t *testing.T, tweak func(*sim.Config, *controlPlane)) *env {
	t.Helper()
	cp := newControlPlane(t)
	cfg := fastConfig()
	cfg.ControlPlaneURL = cp.srv.URL
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if tweak != nil {
		tweak(&cfg, cp)
	}
	a := sim.New(cfg)
	srv := httptest.NewServer(a.Handler())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(func() {
		cancel()
		srv.Close()
		a.Close()
	})
	a.Start(ctx)
	return &env{cp: cp, agent: a, srv: srv, client: vmagent.NewClient(vmagent.Options{Timeout: 10 * time.Second}), ctx: ctx}
}

func (e *env) createWorkspace(t *testing.T, id string) vmagent.CreateWorkspaceResult {
	t.Helper()
	res, err := e.client.CreateWorkspace(e.ctx, e.srv.URL, node, user, vmagent.CreateWorkspaceRequest{
		WorkspaceID: id, Repository: "https://github.com/acme/app.git", Branch: "sam/fix-" + id,
		CallbackToken: wsToken, ProjectID: "p-ws", TaskID: "t-ws",
	})
	if err != nil {
		t.Fatalf("CreateWorkspace(%s) = %v", id, err)
	}
	return res
}

// records returns the agent's callback log entries of kind.
func (e *env) records(kind sim.CallbackKind) []sim.CallbackRecord {
	var out []sim.CallbackRecord
	for _, r := range e.agent.Callbacks() {
		if r.Kind == kind {
			out = append(out, r)
		}
	}
	return out
}

func (e *env) hasRecord(kind sim.CallbackKind, outcome sim.Outcome) bool {
	for _, r := range e.records(kind) {
		if r.Outcome == outcome {
			return true
		}
	}
	return false
}

// waitHeartbeats waits for n more heartbeats to arrive: time passing, as
// the agent measures it.
func (e *env) waitHeartbeats(t *testing.T, n int) {
	t.Helper()
	path := vmagent.NodeHeartbeatPath(node)
	target := len(e.cp.on(path)) + n
	waitFor(t, fmt.Sprintf("%d heartbeats", target), func() bool { return len(e.cp.on(path)) >= target })
}

func TestNodeReadyOnceThenHeartbeats(t *testing.T) {
	e := newEnv(t, nil)
	e.createWorkspace(t, "ws1")
	waitFor(t, "node ready", func() bool { return len(e.cp.on(vmagent.NodeReadyPath(node))) == 1 })
	e.waitHeartbeats(t, 3)

	ready := e.cp.on(vmagent.NodeReadyPath(node))
	if len(ready) != 1 {
		t.Fatalf("node ready arrived %d times, want once", len(ready))
	}
	if ready[0].Auth != "Bearer "+nodeToken {
		t.Fatalf("node ready Authorization = %q, want the node token", ready[0].Auth)
	}
	var nr vmagent.NodeReadyRequest
	ready[0].decode(t, &nr)
	if nr.AgentVersion != "v-test" {
		t.Fatalf("node ready agentVersion = %q, want v-test", nr.AgentVersion)
	}

	hbs := e.cp.on(vmagent.NodeHeartbeatPath(node))
	last := hbs[len(hbs)-1]
	var hb vmagent.HeartbeatRequest
	last.decode(t, &hb)
	if last.Auth != "Bearer "+nodeToken || hb.NodeID != node || hb.AgentVersion != "v-test" || hb.ActiveWorkspaces != 1 || hb.Metrics == nil || hb.Metrics.MemoryPercent <= 0 {
		t.Fatalf("heartbeat = %s (auth %q), want node n1, 1 active workspace, metrics, node token", last.Body, last.Auth)
	}
	for _, r := range e.records(sim.KindHeartbeat) {
		if r.Attempt != 1 || r.Outcome != sim.OutcomeDelivered {
			t.Fatalf("heartbeat record = %+v, want one delivered attempt", r)
		}
	}
}

func TestHeartbeatRefreshedToken(t *testing.T) {
	e := newEnv(t, func(c *sim.Config, cp *controlPlane) {
		cp.setAnswer(func(path string, n int) (int, any) {
			if path == vmagent.NodeHeartbeatPath(node) && n == 1 {
				return 200, vmagent.HeartbeatResponse{Status: "ok", RefreshedToken: "node-token-2"}
			}
			return 200, map[string]any{}
		})
	})
	waitFor(t, "a heartbeat with the refreshed token", func() bool {
		for _, a := range e.cp.on(vmagent.NodeHeartbeatPath(node)) {
			if a.Auth == "Bearer node-token-2" {
				return true
			}
		}
		return false
	})
	if got := e.agent.NodeToken(); got != "node-token-2" {
		t.Fatalf("NodeToken() = %q, want node-token-2", got)
	}
}

func TestWorkspaceReadyRetriedOn503(t *testing.T) {
	e := newEnv(t, func(c *sim.Config, cp *controlPlane) {
		cp.setAnswer(func(path string, n int) (int, any) {
			if path == vmagent.WorkspaceReadyPath("ws1") && n <= 2 {
				return http.StatusServiceUnavailable, map[string]string{"error": "no leader"}
			}
			return 200, vmagent.WorkspaceReadyResponse{Success: true}
		})
	})
	e.createWorkspace(t, "ws1")
	waitFor(t, "ready delivered", func() bool { return e.hasRecord(sim.KindWorkspaceReady, sim.OutcomeDelivered) })

	arr := e.cp.on(vmagent.WorkspaceReadyPath("ws1"))
	if len(arr) != 3 {
		t.Fatalf("ready arrived %d times, want 3 (two 503s, then 200)", len(arr))
	}
	for _, a := range arr {
		var body vmagent.WorkspaceReadyRequest
		a.decode(t, &body)
		if a.Auth != "Bearer "+wsToken || body.Status != vmagent.StatusRunning {
			t.Fatalf("ready = %s (auth %q), want status running with the workspace token", a.Body, a.Auth)
		}
	}
	recs := e.records(sim.KindWorkspaceReady)
	want := []struct {
		attempt int
		status  int
		outcome sim.Outcome
	}{{1, 503, sim.OutcomeError}, {2, 503, sim.OutcomeError}, {3, 200, sim.OutcomeDelivered}}
	if len(recs) != len(want) {
		t.Fatalf("ready records = %+v, want %d", recs, len(want))
	}
	for i, w := range want {
		if recs[i].Attempt != w.attempt || recs[i].StatusCode != w.status || recs[i].Outcome != w.outcome || recs[i].WorkspaceID != "ws1" {
			t.Fatalf("ready record %d = %+v, want attempt %d, %d, %s", i, recs[i], w.attempt, w.status, w.outcome)
		}
	}
	// Backoff: the retries are spaced by at least the initial delay.
	if gap := arr[1].Time.Sub(arr[0].Time); gap < 5*time.Millisecond {
		t.Fatalf("first retry after %v, want >= 5ms", gap)
	}
}

func TestWorkspaceReady4xxNotRetried(t *testing.T) {
	e := newEnv(t, func(c *sim.Config, cp *controlPlane) {
		cp.setAnswer(func(path string, n int) (int, any) {
			if path == vmagent.WorkspaceReadyPath("ws1") {
				return http.StatusForbidden, map[string]string{"error": "node-scoped token"}
			}
			return 200, map[string]any{}
		})
	})
	e.createWorkspace(t, "ws1")
	waitFor(t, "ready rejected", func() bool { return e.hasRecord(sim.KindWorkspaceReady, sim.OutcomeRejected) })
	e.waitHeartbeats(t, 3)
	if n := len(e.cp.on(vmagent.WorkspaceReadyPath("ws1"))); n != 1 {
		t.Fatalf("ready arrived %d times after a 403, want once", n)
	}
	if e.hasRecord(sim.KindWorkspaceReady, sim.OutcomePending) {
		t.Fatal("a rejected ready was kept pending")
	}
}

func TestWorkspaceReadyPendingResentAfterHeartbeat(t *testing.T) {
	var mu sync.Mutex
	up := false
	e := newEnv(t, func(c *sim.Config, cp *controlPlane) {
		c.Retry.MaxAttempts = 2
		cp.setAnswer(func(path string, n int) (int, any) {
			mu.Lock()
			defer mu.Unlock()
			if path == vmagent.WorkspaceReadyPath("ws1") && !up {
				return http.StatusBadGateway, map[string]string{"error": "down"}
			}
			return 200, map[string]any{}
		})
	})
	e.createWorkspace(t, "ws1")
	waitFor(t, "ready kept pending", func() bool { return e.hasRecord(sim.KindWorkspaceReady, sim.OutcomePending) })
	if n := len(e.cp.on(vmagent.WorkspaceReadyPath("ws1"))); n < 2 {
		t.Fatalf("ready arrived %d times before pending, want >= 2 (MaxAttempts)", n)
	}
	mu.Lock()
	up = true
	mu.Unlock()

	var resent sim.CallbackRecord
	waitFor(t, "pending ready re-sent", func() bool {
		for _, r := range e.records(sim.KindWorkspaceReady) {
			if r.Resend && r.Outcome == sim.OutcomeDelivered {
				resent = r
				return true
			}
		}
		return false
	})
	// It followed a successful heartbeat.
	var hbBefore bool
	for _, r := range e.agent.Callbacks() {
		if r.Seq >= resent.Seq {
			break
		}
		if r.Kind == sim.KindHeartbeat && r.Outcome == sim.OutcomeDelivered {
			hbBefore = true
		}
	}
	if !hbBefore {
		t.Fatal("pending ready re-sent before any delivered heartbeat")
	}
	// Settled: not re-sent again.
	n := len(e.cp.on(vmagent.WorkspaceReadyPath("ws1")))
	e.waitHeartbeats(t, 3)
	if m := len(e.cp.on(vmagent.WorkspaceReadyPath("ws1"))); m != n {
		t.Fatalf("ready arrived %d more times after delivery, want none", m-n)
	}
}

func TestEarlyReady(t *testing.T) {
	e := newEnv(t, func(c *sim.Config, _ *controlPlane) {
		c.Faults.EarlyReady = true
		c.WorkspaceReadyDelay = time.Hour
	})
	res := e.createWorkspace(t, "ws1")
	if res.HTTPStatus != http.StatusAccepted {
		t.Fatalf("CreateWorkspace() = %+v, want 202", res)
	}
	// No polling: the callback was made before the answer.
	if n := len(e.cp.on(vmagent.WorkspaceReadyPath("ws1"))); n != 1 {
		t.Fatalf("ready arrived %d times by the time POST /workspaces answered, want 1", n)
	}
	res = e.createWorkspace(t, "ws1")
	if !res.Running {
		t.Fatalf("CreateWorkspace() replay = %+v, want 200 running", res)
	}
}

func TestDuplicateCallbacks(t *testing.T) {
	e := newEnv(t, func(c *sim.Config, _ *controlPlane) { c.Faults.DuplicateCallbacks = true })
	e.createWorkspace(t, "ws1")
	startSession(t, e, "ws1", "s1", vmagent.StartSessionRequest{AgentType: "a", InitialPrompt: "p", TaskID: "t1", ProjectID: "p1"})
	for _, path := range []string{vmagent.NodeReadyPath(node), vmagent.WorkspaceReadyPath("ws1"), vmagent.TaskStatusPath("p1", "t1")} {
		waitFor(t, "two copies on "+path, func() bool { return len(e.cp.on(path)) == 2 })
		arr := e.cp.on(path)
		if string(arr[0].Body) != string(arr[1].Body) || arr[0].Auth != arr[1].Auth {
			t.Fatalf("copies on %s differ: %s / %s", path, arr[0].Body, arr[1].Body)
		}
	}
	// A copy is logged once its answer is back, after the control plane saw it.
	dups := func() int {
		n := 0
		for _, r := range e.agent.Callbacks() {
			if r.Duplicate {
				n++
			}
		}
		return n
	}
	waitFor(t, "three duplicate records", func() bool { return dups() >= 3 })
	e.waitHeartbeats(t, 2)
	if n := dups(); n != 3 {
		t.Fatalf("duplicate records = %d, want 3 (node ready, workspace ready, task status)", n)
	}
}

// startSession waits for ws to run, creates session sid and starts it.
func startSession(t *testing.T, e *env, ws, sid string, req vmagent.StartSessionRequest) {
	t.Helper()
	waitFor(t, ws+" ready callback", func() bool { return len(e.cp.on(vmagent.WorkspaceReadyPath(ws))) > 0 })
	if _, err := e.client.CreateAgentSession(e.ctx, e.srv.URL, node, user, ws, vmagent.CreateSessionRequest{SessionID: sid}, "k-"+sid); err != nil {
		t.Fatalf("CreateAgentSession() = %v", err)
	}
	if err := e.client.StartAgentSession(e.ctx, e.srv.URL, node, user, ws, sid, req); err != nil {
		t.Fatalf("StartAgentSession() = %v", err)
	}
}

func TestStatusCallbackAfterWork(t *testing.T) {
	e := newEnv(t, func(c *sim.Config, _ *controlPlane) { c.AgentWorkDuration = 100 * time.Millisecond })
	e.createWorkspace(t, "ws1")
	started := time.Now()
	startSession(t, e, "ws1", "s1", vmagent.StartSessionRequest{AgentType: "claude-code", InitialPrompt: "fix it on the git branch `sam/out-1`", TaskID: "t1", ProjectID: "p1"})
	path := vmagent.TaskStatusPath("p1", "t1")
	waitFor(t, "task status callback", func() bool { return len(e.cp.on(path)) > 0 })

	got := e.cp.on(path)[0]
	if got.Time.Sub(started) < 100*time.Millisecond {
		t.Fatalf("status callback %v after the start, want >= the work duration", got.Time.Sub(started))
	}
	if got.Auth != "Bearer "+wsToken {
		t.Fatalf("status callback Authorization = %q, want the workspace token", got.Auth)
	}
	var body vmagent.TaskStatusRequest
	got.decode(t, &body)
	g := body.GitPushResult
	if body.ExecutionStep != vmagent.ExecutionStepAwaitingFollowup || body.ToStatus != "" || g == nil ||
		!g.Pushed || g.BranchName != "sam/out-1" || !strings.HasPrefix(g.PRURL, "https://github.com/acme/app/pull/") ||
		len(g.CommitSHA) != 40 || g.PRNumber == 0 {
		t.Fatalf("status callback body = %s, want awaiting_followup with a pushed branch and PR", got.Body)
	}
	// The real agent sends every gitPushResult field.
	for _, field := range []string{`"hasUncommittedChanges":true`, `"error":""`} {
		if !strings.Contains(string(got.Body), field) {
			t.Fatalf("status callback body = %s, want %s", got.Body, field)
		}
	}
	e.waitHeartbeats(t, 2)
	if n := len(e.cp.on(path)); n != 1 {
		t.Fatalf("status callback arrived %d times, want once", n)
	}
	var done bool
	for _, ev := range e.agent.Events() {
		done = done || (ev.Kind == sim.EventAgentRunDone && ev.TaskID == "t1" && ev.SessionID == "s1")
	}
	if !done {
		t.Fatalf("Events() = %+v, want agent_run_done for t1", e.agent.Events())
	}
}

func TestStatusCallbackTaskContextFallback(t *testing.T) {
	e := newEnv(t, nil)
	e.createWorkspace(t, "ws1") // projectId p-ws, taskId t-ws
	startSession(t, e, "ws1", "s1", vmagent.StartSessionRequest{AgentType: "a", InitialPrompt: "p"})
	waitFor(t, "status callback on the workspace's task", func() bool {
		return len(e.cp.on(vmagent.TaskStatusPath("p-ws", "t-ws"))) == 1
	})
}

func TestAgentRunFailure(t *testing.T) {
	e := newEnv(t, func(c *sim.Config, _ *controlPlane) {
		c.Faults.AgentRunFailure = true
		c.Faults.AgentFailureMessage = "boom"
	})
	e.createWorkspace(t, "ws1")
	startSession(t, e, "ws1", "s1", vmagent.StartSessionRequest{AgentType: "a", InitialPrompt: "p", TaskID: "t1", ProjectID: "p1"})
	path := vmagent.TaskStatusPath("p1", "t1")
	waitFor(t, "failed status callback", func() bool { return len(e.cp.on(path)) == 1 })
	var body vmagent.TaskStatusRequest
	e.cp.on(path)[0].decode(t, &body)
	if body.ToStatus != "failed" || body.ErrorMessage != "boom" || body.Reason == "" || body.GitPushResult != nil {
		t.Fatalf("status callback = %+v, want toStatus failed with the message", body)
	}
}

func TestDroppedCallbacks(t *testing.T) {
	e := newEnv(t, func(c *sim.Config, _ *controlPlane) {
		c.Faults.DropNodeReady = true
		c.Faults.DropTaskStatus = true
	})
	e.createWorkspace(t, "ws1")
	startSession(t, e, "ws1", "s1", vmagent.StartSessionRequest{AgentType: "a", InitialPrompt: "p", TaskID: "t1", ProjectID: "p1"})
	waitFor(t, "node ready dropped", func() bool { return e.hasRecord(sim.KindNodeReady, sim.OutcomeDropped) })
	waitFor(t, "task status dropped", func() bool { return e.hasRecord(sim.KindTaskStatus, sim.OutcomeDropped) })
	e.waitHeartbeats(t, 2)
	if n := len(e.cp.on(vmagent.NodeReadyPath(node))); n != 0 {
		t.Fatalf("node ready arrived %d times, want none", n)
	}
	if n := len(e.cp.on(vmagent.TaskStatusPath("p1", "t1"))); n != 0 {
		t.Fatalf("task status arrived %d times, want none", n)
	}
}

func TestNeverReady(t *testing.T) {
	e := newEnv(t, func(c *sim.Config, _ *controlPlane) { c.Faults.NeverReady = true })
	e.createWorkspace(t, "ws1")
	e.waitHeartbeats(t, 3)
	if n := len(e.cp.on(vmagent.WorkspaceReadyPath("ws1"))); n != 0 {
		t.Fatalf("ready arrived %d times, want none", n)
	}
	if res := e.createWorkspace(t, "ws1"); res.Running {
		t.Fatalf("CreateWorkspace() replay = %+v, want 202", res)
	}
}

func TestProvisioningFailed(t *testing.T) {
	e := newEnv(t, func(c *sim.Config, cp *controlPlane) {
		c.Faults.FailWorkspaces = true
		c.Faults.FailureMessage = "devcontainer build failed"
		cp.setAnswer(func(path string, n int) (int, any) {
			if path == vmagent.ProvisioningFailedPath("ws1") && n == 1 {
				return http.StatusTooManyRequests, map[string]string{"error": "slow down"}
			}
			return 200, map[string]any{}
		})
	})
	e.createWorkspace(t, "ws1")
	path := vmagent.ProvisioningFailedPath("ws1")
	waitFor(t, "provisioning-failed delivered", func() bool { return e.hasRecord(sim.KindProvisioningFailed, sim.OutcomeDelivered) })
	arr := e.cp.on(path)
	if len(arr) != 2 {
		t.Fatalf("provisioning-failed arrived %d times, want 2 (429 retried)", len(arr))
	}
	var body vmagent.ProvisioningFailedRequest
	arr[1].decode(t, &body)
	if body.ErrorMessage != "devcontainer build failed" || arr[1].Auth != "Bearer "+wsToken {
		t.Fatalf("provisioning-failed = %s (auth %q), want the message with the workspace token", arr[1].Body, arr[1].Auth)
	}
	if n := len(e.cp.on(vmagent.WorkspaceReadyPath("ws1"))); n != 0 {
		t.Fatalf("ready arrived %d times for a failed workspace, want none", n)
	}
	if ws := e.agent.Workspaces(); len(ws) != 1 || ws[0].Status != vmagent.StatusError {
		t.Fatalf("Workspaces() = %+v, want ws1 in error", ws)
	}
}

// closedURL returns the URL of a port nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + ln.Addr().String()
	ln.Close()
	return u
}

// With its one URL unreachable, node ready (sent once) is lost as a
// transport error on that URL: like the real agent, the simulator has no
// other URL to try; a load balancer in front of the cluster is what
// survives a node's death.
func TestUnreachableControlPlaneLosesNodeReady(t *testing.T) {
	dead := closedURL(t)
	e := newEnv(t, func(c *sim.Config, cp *controlPlane) { c.ControlPlaneURL = dead })
	waitFor(t, "node ready attempted", func() bool { return e.hasRecord(sim.KindNodeReady, sim.OutcomeError) })
	recs := e.records(sim.KindNodeReady)
	if len(recs) != 1 || !strings.HasPrefix(recs[0].URL, dead) || recs[0].Error == "" || recs[0].Attempt != 1 {
		t.Fatalf("node ready records = %+v, want one transport error on %s", recs, dead)
	}
	if n := len(e.cp.on(vmagent.NodeReadyPath(node))); n != 0 {
		t.Fatalf("node ready reached the control plane %d times", n)
	}
}

func TestStopBeforeWorkDoneSendsNoStatus(t *testing.T) {
	e := newEnv(t, func(c *sim.Config, _ *controlPlane) { c.AgentWorkDuration = time.Hour })
	e.createWorkspace(t, "ws1")
	startSession(t, e, "ws1", "s1", vmagent.StartSessionRequest{AgentType: "a", InitialPrompt: "p", TaskID: "t1", ProjectID: "p1"})
	if err := e.client.StopWorkspace(e.ctx, e.srv.URL, node, user, "ws1"); err != nil {
		t.Fatalf("StopWorkspace() = %v", err)
	}
	waitFor(t, "status skipped", func() bool { return e.hasRecord(sim.KindTaskStatus, sim.OutcomeSkipped) })
	if n := len(e.cp.on(vmagent.TaskStatusPath("p1", "t1"))); n != 0 {
		t.Fatalf("status callback arrived %d times for a stopped workspace, want none", n)
	}
}

func TestRestartSendsReadyAgain(t *testing.T) {
	e := newEnv(t, nil)
	e.createWorkspace(t, "ws1")
	waitFor(t, "first ready", func() bool { return len(e.cp.on(vmagent.WorkspaceReadyPath("ws1"))) == 1 })
	if err := e.client.StopWorkspace(e.ctx, e.srv.URL, node, user, "ws1"); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/workspaces/ws1/restart", nil)
	req.Header.Set(vmagent.HeaderWorkspaceID, "ws1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST restart = %d, want 202", resp.StatusCode)
	}
	waitFor(t, "second ready", func() bool { return len(e.cp.on(vmagent.WorkspaceReadyPath("ws1"))) == 2 })
	// Restarting a running workspace is refused.
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("POST restart (running) = %d, want 409", resp.StatusCode)
	}
}

func TestNoControlPlane(t *testing.T) {
	a := sim.New(sim.Config{NodeID: node, HeartbeatInterval: 10 * time.Millisecond})
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	defer a.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a.Start(ctx)
	c := vmagent.NewClient(vmagent.Options{})
	if _, err := c.CreateWorkspace(ctx, srv.URL, node, user, vmagent.CreateWorkspaceRequest{WorkspaceID: "ws1", CallbackToken: "t"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ready skipped", func() bool {
		for _, r := range a.Callbacks() {
			if r.Kind == sim.KindWorkspaceReady {
				return r.Outcome == sim.OutcomeSkipped
			}
		}
		return false
	})
	for _, r := range a.Callbacks() {
		if r.Outcome != sim.OutcomeSkipped {
			t.Fatalf("record %+v, want every callback skipped without a control plane", r)
		}
	}
}

func TestCloseDuringRetries(t *testing.T) {
	e := newEnv(t, func(c *sim.Config, cp *controlPlane) {
		c.Retry = sim.RetryPolicy{Initial: time.Hour, Max: time.Hour, MaxAttempts: 5, MaxElapsed: 10 * time.Hour}
		cp.setAnswer(func(path string, n int) (int, any) { return 503, map[string]any{} })
	})
	e.createWorkspace(t, "ws1")
	waitFor(t, "a failed ready", func() bool { return len(e.records(sim.KindWorkspaceReady)) > 0 })
	done := make(chan struct{})
	go func() {
		e.agent.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close() did not return while a callback waited to retry")
	}
	// Closed: new work is refused, answers still come.
	if _, err := e.client.CreateWorkspace(e.ctx, e.srv.URL, node, user, vmagent.CreateWorkspaceRequest{WorkspaceID: "ws2"}); !vmagent.IsTransient(err) {
		t.Fatalf("CreateWorkspace() after Close = %v, want a transient error", err)
	}
}

func TestEventHook(t *testing.T) {
	var mu sync.Mutex
	var kinds []sim.EventKind
	var cbs int
	e := newEnv(t, func(c *sim.Config, _ *controlPlane) {
		c.OnEvent = func(ev sim.Event) {
			mu.Lock()
			kinds = append(kinds, ev.Kind)
			mu.Unlock()
		}
		c.OnCallback = func(sim.CallbackRecord) {
			mu.Lock()
			cbs++
			mu.Unlock()
		}
	})
	e.createWorkspace(t, "ws1")
	startSession(t, e, "ws1", "s1", vmagent.StartSessionRequest{AgentType: "a", InitialPrompt: "p", TaskID: "t1", ProjectID: "p1"})
	waitFor(t, "run done", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(kinds) > 0 && kinds[len(kinds)-1] == sim.EventAgentRunDone
	})
	mu.Lock()
	defer mu.Unlock()
	want := []sim.EventKind{sim.EventWorkspaceCreate, sim.EventWorkspaceReady, sim.EventSessionCreate, sim.EventSessionStart, sim.EventAgentRunDone}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Fatalf("events = %v, want %v", kinds, want)
	}
	if cbs == 0 {
		t.Fatal("OnCallback was never called")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mutate  func(*sim.Config)
		wantErr string
	}{
		{"ok", func(*sim.Config) {}, ""},
		{"no node", func(c *sim.Config) { c.NodeID = "" }, "NodeID"},
		{"bad url", func(c *sim.Config) { c.ControlPlaneURL = "localhost:8000" }, "ControlPlaneURL"},
		{"negative delay", func(c *sim.Config) { c.BootDelay = -1 }, "BootDelay"},
		{"retry max below initial", func(c *sim.Config) { c.Retry.Initial, c.Retry.Max = time.Second, time.Millisecond }, "Retry.Max"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := sim.DefaultConfig()
			c.NodeID = node
			c.ControlPlaneURL = "http://127.0.0.1:8001"
			tc.mutate(&c)
			err := c.Validate()
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Validate() = %v, want an error naming %q", err, tc.wantErr)
			}
		})
	}
}
