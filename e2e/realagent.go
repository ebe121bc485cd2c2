package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// RealAgent is the real VM agent fixture: the unmodified agent's source
// with its build script, sandbox script and stubs (see vmagent/realagent).
// It lives outside this repository; TDF_VM_AGENT_FIXTURE names its
// directory, by default ../shared/vm-agent beside the module.
type RealAgent struct {
	// Binary is the built agent, Fixture the fixture's directory.
	Binary, Fixture string
}

var realAgentBuild struct {
	once sync.Once
	bin  string
	err  error
}

// NeedRealAgent returns the built real agent, building it on first use
// (about 90 s, Go module proxy only). Without the fixture, or without
// what the sandbox needs (root, unshare, git), the test is skipped with
// the reason, and fails under CI=true, where the fixture must be there.
func NeedRealAgent(tb testing.TB) RealAgent {
	tb.Helper()
	dir := os.Getenv("TDF_VM_AGENT_FIXTURE")
	if dir == "" {
		root, err := ModuleRoot()
		if err != nil {
			tb.Fatal(err)
		}
		dir = filepath.Join(root, "..", "shared", "vm-agent")
	}
	missing := func(what string) {
		tb.Helper()
		if os.Getenv("CI") == "true" {
			tb.Fatalf("real VM agent: %s (required under CI=true)", what)
		}
		tb.Skipf("real VM agent: %s; skipping", what)
	}
	for _, f := range []string{"build", "sandbox", "stubs"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			missing("no fixture at " + dir + " (set TDF_VM_AGENT_FIXTURE)")
		}
	}
	if os.Geteuid() != 0 {
		missing("the sandbox needs root (a private mount namespace)")
	}
	for _, tool := range []string{"unshare", "git", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing(tool + " is not on PATH")
		}
	}
	realAgentBuild.once.Do(func() {
		// Test binaries of several packages may build it at once; the
		// build script writes one cached file, so take turns.
		if lock, err := os.OpenFile(filepath.Join(os.TempDir(), "tdf-vm-agent-build.lock"), os.O_CREATE|os.O_RDWR, 0o600); err == nil {
			defer lock.Close()
			_ = syscall.Flock(int(lock.Fd()), syscall.LOCK_EX)
		}
		out, err := exec.Command(filepath.Join(dir, "build")).Output()
		if ee, ok := err.(*exec.ExitError); ok {
			err = &buildError{err, string(ee.Stderr)}
		}
		realAgentBuild.bin, realAgentBuild.err = strings.TrimSpace(string(out)), err
	})
	if realAgentBuild.err != nil {
		tb.Fatalf("real VM agent: build: %v", realAgentBuild.err)
	}
	return RealAgent{Binary: realAgentBuild.bin, Fixture: dir}
}

type buildError struct {
	err    error
	stderr string
}

func (e *buildError) Error() string { return e.err.Error() + ": " + lastLines(e.stderr, 20) }

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// CloudArgs are the `tdf fakecloud` flags that boot this agent for each
// server, in the given role ("standalone" or "vm"), its output appended
// to logPath, with its intervals shortened for tests.
func (r RealAgent) CloudArgs(role, logPath string) []string {
	return []string{
		"--real-agent", r.Binary, "--real-agent-fixture", r.Fixture,
		"--real-agent-role", role, "--real-agent-log", logPath,
		"--real-agent-env", "HEARTBEAT_INTERVAL=2s",
		"--real-agent-env", "ERROR_REPORT_FLUSH_INTERVAL=1s",
		"--server-create-duration", "300ms",
		"--server-delete-duration", "200ms",
	}
}
