package conformance_test

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tdf-project/tdf/e2e"
	"github.com/tdf-project/tdf/fakeworld"
	"github.com/tdf-project/tdf/tokens"
	"github.com/tdf-project/tdf/vmagent/realagent"
	"github.com/tdf-project/tdf/vmagent/sim"
)

// agent is one agent under test, with its own control plane.
type agent struct {
	Base   string
	NodeID string
	CP     *controlPlane
	// Repository is a repository the agent can clone, on branch main.
	Repository string
	// Standalone: the agent runs in the standalone role, which creates a
	// workspace within the create call (the real agent's NODE_ROLE).
	Standalone bool
	// WorkspacesFail: every workspace's provisioning fails (the real agent
	// in VM mode, offline: no docker, no devcontainer).
	WorkspacesFail bool
	// FailWorkspaces, when set, makes provisioning fail (on) or succeed
	// (off).
	FailWorkspaces func(on bool)
	// BrokenRepository, when set, is a repository the agent fails to
	// clone.
	BrokenRepository string
	// FailRuns, when set, makes the agent's runs fail (on) or succeed
	// (off); the real agent's fake coding agent fails a prompt that
	// carries fakeacp.FailMarker instead.
	FailRuns func(on bool)
	// Timeout bounds the waits for callbacks.
	Timeout time.Duration
}

// startSim runs the simulated agent in its default VM mode, and
// startSimStandalone in the standalone role.
func startSim(t *testing.T) *agent           { return startSimRole(t, false) }
func startSimStandalone(t *testing.T) *agent { return startSimRole(t, true) }

// startSimRole runs the simulated agent, configured as the fakeworld does
// (tokens verified against the control plane's JWKS), with short delays.
func startSimRole(t *testing.T, standalone bool) *agent {
	cp := startControlPlane(t)
	const nodeID = "n-sim"
	nodeToken, err := cp.Issuer.CallbackToken(tokens.ScopeNode, nodeID)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := tokens.NewJWKSVerifier(ctx, cp.URL+"/.well-known/jwks.json", cp.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := sim.DefaultConfig()
	cfg.NodeID, cfg.ControlPlaneURL, cfg.NodeCallbackToken = nodeID, cp.URL, nodeToken
	cfg.Verifier = fakeworld.AgentVerifier{V: v}
	cfg.BootDelay, cfg.WorkspaceReadyDelay, cfg.AgentWorkDuration = 50*time.Millisecond, 200*time.Millisecond, 200*time.Millisecond
	cfg.HeartbeatInterval = time.Second
	cfg.Standalone = standalone
	a := sim.New(cfg)
	srv := httptest.NewServer(a.Handler())
	a.Start(context.Background())
	t.Cleanup(func() {
		a.Close()
		srv.Close()
	})
	return &agent{
		Base: srv.URL, NodeID: nodeID, CP: cp,
		Repository: "https://git.example.invalid/app.git", Standalone: standalone,
		FailRuns: func(on bool) {
			f := a.Faults()
			f.AgentRunFailure = on
			a.SetFaults(f)
		},
		FailWorkspaces: func(on bool) {
			f := a.Faults()
			f.FailWorkspaces = on
			a.SetFaults(f)
		},
		Timeout: 10 * time.Second,
	}
}

// startReal boots the real agent in the standalone role, as the e2e tests
// do, and startRealVM in its default VM role, where every workspace's
// provisioning fails offline.
func startReal(t *testing.T) *agent   { return startRealRole(t, realagent.RoleStandalone) }
func startRealVM(t *testing.T) *agent { return startRealRole(t, realagent.RoleVM) }

// startRealRole boots the real agent in its sandbox (vmagent/realagent),
// with tdf fake-acp as its coding agent and a git server on loopback for
// its repository.
func startRealRole(t *testing.T, role string) *agent {
	fixture := e2e.NeedRealAgent(t)
	tdf := buildTDF(t)
	git := e2e.StartGitServer(t)
	repo := git.NewRepo("app.git")
	cp := startControlPlane(t)
	nodeID := "n-real-" + cmp.Or(role, "vm")
	nodeToken, err := cp.Issuer.CallbackToken(tokens.ScopeNode, nodeID)
	if err != nil {
		t.Fatal(err)
	}
	ports, err := e2e.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	// The sandbox leaves only /tmp writable.
	root, err := os.MkdirTemp("/tmp", "tdf-conformance-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(root) })
	logPath := filepath.Join(root, "agent.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	p, err := realagent.Start(realagent.Options{
		Binary: fixture.Binary, Sandbox: filepath.Join(fixture.Fixture, "sandbox"), Stubs: filepath.Join(fixture.Fixture, "stubs"),
		TDF: tdf, Role: role, Root: root, Output: logFile,
		Env: map[string]string{"HEARTBEAT_INTERVAL": "1s", "ERROR_REPORT_FLUSH_INTERVAL": "1s"},
	}, realagent.Boot{
		Name: nodeID,
		Env: map[string]string{"NODE_ID": nodeID, "CONTROL_PLANE_URL": cp.URL,
			"JWKS_ENDPOINT": cp.URL + "/.well-known/jwks.json"},
		CallbackToken: nodeToken, Host: "127.0.0.1", Port: ports[0],
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		logFile.Close()
		if t.Failed() {
			t.Logf("the real agent's log (last lines):\n%s", e2e.Tail(logPath, 80))
		}
	})
	a := &agent{
		Base: fmt.Sprintf("http://127.0.0.1:%d", ports[0]), NodeID: nodeID, CP: cp,
		Repository: repo, BrokenRepository: git.URL + "/missing.git",
		Standalone: role == realagent.RoleStandalone, WorkspacesFail: role == realagent.RoleVM,
		Timeout: time.Minute,
	}
	waitFor(t, time.Minute, "the real agent's /health", func() error {
		resp, err := http.Get(a.Base + "/health")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if n, last := p.Restarts(); n > 0 {
			return fmt.Errorf("the agent exited %d times (last: %v)", n, last)
		}
		return nil
	})
	return a
}

var tdfBuild struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// buildTDF builds the tdf binary once (without -race: it only serves as
// the coding agent, `tdf fake-acp`); TestMain removes it.
func buildTDF(t *testing.T) string {
	t.Helper()
	tdfBuild.once.Do(func() {
		root, err := e2e.ModuleRoot()
		if err != nil {
			tdfBuild.err = err
			return
		}
		if tdfBuild.dir, err = os.MkdirTemp("/tmp", "tdf-conformance-bin-"); err != nil {
			tdfBuild.err = err
			return
		}
		out := filepath.Join(tdfBuild.dir, "tdf")
		cmd := exec.Command("go", "build", "-o", out, "./cmd/tdf")
		cmd.Dir = root
		if msg, err := cmd.CombinedOutput(); err != nil {
			tdfBuild.err = fmt.Errorf("go build ./cmd/tdf: %v\n%s", err, msg)
			return
		}
		tdfBuild.path = out
	})
	if tdfBuild.err != nil {
		t.Fatal(tdfBuild.err)
	}
	return tdfBuild.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if tdfBuild.dir != "" {
		_ = os.RemoveAll(tdfBuild.dir)
	}
	os.Exit(code)
}
