// Package realagent runs the real, unmodified VM agent — the program that
// runs on every VM in the field — as a local process for one simulated
// server, so that tdf's tests are refereed by the agent itself rather
// than by our simulation of it.
//
// The agent provisions its host when it runs as root (apt-get, systemctl,
// docker, iptables, writing under /etc and /var). It is therefore started
// only inside a sandbox: a private mount namespace (`unshare --mount`) in
// which a sandbox script makes every mount but /tmp, /dev and /proc
// read-only and blocks the docker socket, with a directory of failing
// stubs for those tools first on its PATH. Its state lives in a temporary
// directory of its own under /tmp; it listens on its server's own
// loopback address.
//
// The agent is configured from the server's cloud-init — the environment
// the systemd unit gives it and the callback token file — with only the
// paths relocated and the test knobs (role, intervals) added.
package realagent

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Roles the agent can run in (its NODE_ROLE).
const (
	// RoleStandalone works in a plain directory: no docker, no
	// devcontainer; it clones the repository itself.
	RoleStandalone = "standalone"
	// RoleVM is the agent's default on a VM: it provisions the host and
	// builds a devcontainer per workspace. Offline and sandboxed, the
	// devcontainer step fails and the agent reports provisioning-failed.
	RoleVM = ""
)

// CodingAgents are the commands the agent spawns as coding agents (ACP
// over stdio) for the agent types tdf uses; each is a wrapper that runs
// `tdf fake-acp`.
var CodingAgents = []string{"claude-agent-acp", "codex-acp"}

// Options say where the agent and its sandbox are.
type Options struct {
	// Binary is the agent, as built by the fixture's build script.
	Binary string
	// Sandbox is the script that makes the mount namespace read-only.
	Sandbox string
	// Stubs is the directory of failing stand-ins for the host tools
	// (apt-get, systemctl, docker, …), first on the agent's PATH.
	Stubs string
	// TDF is the tdf binary: `tdf fake-acp` is the coding agent.
	TDF string
	// Role is the agent's NODE_ROLE: RoleStandalone, or RoleVM to keep
	// what the cloud-init says (the agent's default, VM mode).
	Role string
	// Root is the directory under which each agent gets its own; it must
	// lie under /tmp, the one place the sandbox leaves writable.
	Root string
	// Env is added to (and overrides) every agent's environment, such as
	// HEARTBEAT_INTERVAL.
	Env map[string]string
	// Output receives the agent's log (stdout and stderr); nil discards.
	Output io.Writer
	// StopGrace is how long the agent has to exit after SIGTERM when its
	// server is deleted (default 2 s).
	StopGrace time.Duration
}

// Check reports what is missing to run the agent.
func (o Options) Check() error {
	var missing []string
	for what, p := range map[string]string{"agent binary": o.Binary, "sandbox script": o.Sandbox, "stubs": o.Stubs, "tdf binary": o.TDF} {
		if p == "" {
			missing = append(missing, what+" (not configured)")
		} else if _, err := os.Stat(p); err != nil {
			missing = append(missing, what+" "+p)
		}
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		missing = append(missing, "unshare (util-linux)")
	}
	if !strings.HasPrefix(filepath.Clean(o.Root)+"/", "/tmp/") {
		missing = append(missing, fmt.Sprintf("a root under /tmp (got %q)", o.Root))
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("realagent: missing %s", strings.Join(missing, ", "))
	}
	return nil
}

// Boot is one server's agent start: what its cloud-init installs.
type Boot struct {
	// Name names the agent's directory (the server's name).
	Name string
	// Env is the environment of the agent's systemd unit.
	Env map[string]string
	// CallbackToken is the content of the node's callback token file.
	CallbackToken string
	// Host is the server's address, where the agent listens.
	Host string
	// Port is the agent's port.
	Port int
	// BinaryURL and BinarySHA256, when set, are where the cloud-init
	// downloads the agent and the checksum it must match: the agent is
	// fetched and checked the same way instead of taken from
	// Options.Binary.
	BinaryURL, BinarySHA256 string
}

// Process is one server's agent, supervised as its systemd unit would
// be: when the agent exits (it does when it cannot fetch the JWKS at
// start, say) it is started again after RestartDelay, until Stop.
type Process struct {
	o    Options
	env  []string
	dir  string
	stop chan struct{}
	done chan struct{}
	once sync.Once

	mu       sync.Mutex
	cmd      *exec.Cmd
	restarts int
	lastErr  error
}

// RestartDelay is the unit's RestartSec.
const RestartDelay = time.Second

// Start runs the agent of one server in its sandbox.
func Start(o Options, b Boot) (*Process, error) {
	if err := o.Check(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(o.Root, "agent-"+safeName(b.Name)+"-")
	if err != nil {
		return nil, err
	}
	env, err := agentEnv(o, b, dir)
	if err == nil && b.BinaryURL != "" {
		o.Binary, err = download(b.BinaryURL, b.BinarySHA256, filepath.Join(dir, "vm-agent"))
	}
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	p := &Process{o: o, env: env, dir: dir, stop: make(chan struct{}), done: make(chan struct{})}
	first, err := p.run()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	go p.supervise(first)
	return p, nil
}

// run starts the agent once and returns a channel closed when it exits.
func (p *Process) run() (<-chan struct{}, error) {
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--", p.o.Sandbox, p.o.Binary)
	cmd.Env = p.env
	cmd.Dir = p.dir
	out := p.o.Output
	if out == nil {
		out = io.Discard
	}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so that Stop reaches the coding agents it
	// spawned; and it dies with its parent, as a VM's agent dies with
	// the VM.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("realagent: start: %w", err)
	}
	p.mu.Lock()
	p.cmd = cmd
	p.mu.Unlock()
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.lastErr = err
		p.mu.Unlock()
		close(exited)
	}()
	return exited, nil
}

func (p *Process) supervise(exited <-chan struct{}) {
	defer close(p.done)
	for {
		select {
		case <-p.stop:
			p.kill(exited)
			return
		case <-exited:
		}
		select {
		case <-p.stop:
			return
		case <-time.After(RestartDelay):
		}
		next, err := p.run()
		if err != nil {
			p.mu.Lock()
			p.lastErr = err
			p.mu.Unlock()
			return
		}
		p.mu.Lock()
		p.restarts++
		p.mu.Unlock()
		exited = next
	}
}

// kill ends the running agent's process group: SIGTERM, then SIGKILL
// after the grace period.
func (p *Process) kill(exited <-chan struct{}) {
	p.mu.Lock()
	pgid := -p.cmd.Process.Pid
	p.mu.Unlock()
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(p.o.grace()):
	}
	_ = syscall.Kill(pgid, syscall.SIGKILL)
	<-exited
}

func (o Options) grace() time.Duration {
	if o.StopGrace > 0 {
		return o.StopGrace
	}
	return 2 * time.Second
}

// Dir is the agent's state directory.
func (p *Process) Dir() string { return p.dir }

// Restarts counts how often the agent exited and was started again, and
// LastExit is how it last exited (nil while it never has).
func (p *Process) Restarts() (n int, lastExit error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.restarts, p.lastErr
}

// Stop ends the agent and everything it started, as deleting its VM
// would, and removes its directory.
func (p *Process) Stop() {
	p.once.Do(func() {
		close(p.stop)
		<-p.done
		_ = os.RemoveAll(p.dir)
	})
}

// agentEnv is the unit's environment with the agent's state moved into
// dir, its token file written there, and the test knobs applied.
func agentEnv(o Options, b Boot, dir string) ([]string, error) {
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return nil, err
	}
	for _, name := range CodingAgents {
		script := fmt.Sprintf("#!/bin/sh\nexec %q fake-acp \"$@\"\n", o.TDF)
		if err := os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755); err != nil {
			return nil, err
		}
	}
	tokenFile := filepath.Join(dir, "callback-token")
	if err := os.WriteFile(tokenFile, []byte(b.CallbackToken), 0o600); err != nil {
		return nil, err
	}
	state := filepath.Join(dir, "state")
	env := maps.Clone(b.Env)
	if env == nil {
		env = map[string]string{}
	}
	maps.Copy(env, map[string]string{
		"CALLBACK_TOKEN_FILE":  tokenFile,
		"PERSISTENCE_DB_PATH":  filepath.Join(state, "state.db"),
		"BOOTSTRAP_STATE_PATH": filepath.Join(state, "bootstrap-state.json"),
		"EVENTSTORE_DB_PATH":   filepath.Join(state, "events.db"),
		"METRICS_DB_PATH":      filepath.Join(state, "metrics.db"),
		"WORKSPACE_BASE_DIR":   filepath.Join(dir, "workspace"),
		"DEPLOY_BASE_DIR":      filepath.Join(dir, "deploy"),
		"HOME":                 filepath.Join(dir, "home"),
		"VM_AGENT_HOST":        b.Host,
		"VM_AGENT_PORT":        fmt.Sprint(b.Port),
		"STUB_LOG":             filepath.Join(dir, "stubs.log"),
		"PATH":                 strings.Join([]string{o.Stubs, bin, "/usr/local/bin", "/usr/bin", "/bin"}, ":"),
		// No GUI, no prompts from git.
		"GIT_TERMINAL_PROMPT": "0",
	})
	if o.Role == RoleStandalone {
		env["NODE_ROLE"] = RoleStandalone
		env["CONTAINER_MODE"] = "false"
		// Standalone, the agent works in this one directory for every
		// workspace (it was made for a one-workspace container).
		env["CONTAINER_WORK_DIR"] = filepath.Join(dir, "work")
	}
	maps.Copy(env, o.Env)
	for _, d := range []string{state, env["HOME"], env["WORKSPACE_BASE_DIR"]} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	// A standalone agent commits with the git identity of its machine
	// image (only VM mode configures one per workspace): give the machine
	// one, as an image would have.
	gitconfig := "[user]\n\tname = tdf agent\n\temail = agent@tdf.invalid\n"
	if err := os.WriteFile(filepath.Join(env["HOME"], ".gitconfig"), []byte(gitconfig), 0o644); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		if strings.ContainsAny(env[k], "\x00") {
			return nil, errors.New("realagent: NUL in " + k)
		}
		out = append(out, k+"="+env[k])
	}
	return out, nil
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, s)
}

// download fetches the agent as the cloud-init does: to a file, checked
// against its SHA-256 before it is made executable.
func download(url, sum, path string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", fmt.Errorf("realagent: download %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("realagent: download %s: %s", url, resp.Status)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("realagent: download %s: %w", url, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, sum) {
		return "", fmt.Errorf("realagent: %s has SHA-256 %s, the cloud-init wants %s", url, got, sum)
	}
	return path, os.Chmod(path, 0o755)
}
