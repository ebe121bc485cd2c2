// Package e2e runs tdf as real processes: it builds the tdf binary once per
// test process, starts a cluster of `tdf server` processes on free loopback
// ports, and stops, kills and restarts them. Tests (and later the chaos
// tooling) talk to the nodes only over the HTTP API, the contract of
// DESIGN.md, never through the packages' Go types.
//
// A cluster may also run the simulated cloud (Options.FakeCloud): a `tdf
// fakecloud` process, started before the nodes and stopped after them,
// which the nodes use as their Hetzner API and whose simulated VM agents
// call the nodes back. Its ledger of effects (Ledger) and its servers
// (FakeServers) are what the pipeline tests check the cluster against.
// The agents know one URL, as the real agent does (CONTROL_PLANE_URL): a
// load balancer in front of the nodes, by default the Go one of package lb
// run in the test process (Cluster.LB), which outlives any node's death;
// StartHAProxy puts haproxy there instead (Options.ControlPlaneURL).
//
// Every wait polls with a deadline; nothing sleeps and then asserts. Each
// process logs to its own file under the test's temporary directory, and
// when the test fails the tail of every log is printed.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tdf-project/tdf/cloud/fakecloud"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/internal/testkit"
	"github.com/tdf-project/tdf/lb"
)

// Timeouts sized for a loaded two-core machine running tests under -race.
const (
	// DefaultElectionWait bounds waiting for a leader to be agreed on.
	DefaultElectionWait = 60 * time.Second
	// DefaultCatchUpWait bounds waiting for replicas to converge.
	DefaultCatchUpWait = 60 * time.Second
	// DefaultStopWait is how long a SIGTERMed node may take to exit before
	// it is killed (and the test fails).
	DefaultStopWait = 30 * time.Second
	// pollInterval is the pause between two rounds of a wait.
	pollInterval = 100 * time.Millisecond
	// logTailLines is how much of each node's log a failing test prints.
	logTailLines = 80
)

// Pipeline timers for clusters that run tasks through the simulated cloud
// (the pipeline, safety and chaos tests): short enough that hundreds of
// tasks run through in a minute or two on a loaded machine, long enough
// that a warm node is still there when the next wave of tasks arrives.
// PipelineServerArgs are the `tdf server` flags, PipelineCloudArgs the
// `tdf fakecloud` ones (small delays, so that steps are in flight most of
// the time).
var (
	PipelineServerArgs = []string{
		"--session-idle-timeout", "3s",
		"--node-warm-timeout", "5s",
		"--provisioning-poll-interval", "500ms",
		"--agent-ready-poll-interval", "500ms",
		"--node-ready-grace", "5s",
		"--retry-base-delay", "500ms",
		"--retry-max-delay", "5s",
		// Node selection only reuses nodes that are ready; a burst of a
		// user's tasks before the first node is up provisions one node
		// each. The per-user limit is not under test here: keep it out
		// of the way whatever the machine's speed.
		"--max-nodes-per-user", "50",
	}
	PipelineCloudArgs = []string{
		"--server-create-duration", "500ms",
		"--server-delete-duration", "200ms",
		"--agent-boot-delay", "500ms",
		"--workspace-ready-delay", "200ms",
		"--agent-work-duration", "1s",
		"--heartbeat-interval", "2s",
	}
)

// ---------------------------------------------------------------------------
// Building the binary

var build struct {
	mu   sync.Mutex
	dir  string
	path string
	err  error
}

// Binary returns the path of a tdf binary built from this module's
// ./cmd/tdf. The first call builds it; later calls in the same test process
// reuse it. When the test binary runs under the race detector, so does the
// tdf binary: a data race in a node is then reported by the node (its log
// carries "WARNING: DATA RACE") and fails the test. TDF_E2E_RACE=0 or 1
// overrides that choice.
func Binary(tb testing.TB) string {
	tb.Helper()
	build.mu.Lock()
	defer build.mu.Unlock()
	if build.path == "" && build.err == nil {
		build.path, build.err = buildBinary()
	}
	if build.err != nil {
		tb.Fatalf("build tdf: %v", build.err)
	}
	return build.path
}

// RemoveBinary deletes the binary Binary built. Call it from TestMain after
// m.Run; the binary is shared by every test of the process, so no single
// test's cleanup may remove it.
func RemoveBinary() {
	build.mu.Lock()
	defer build.mu.Unlock()
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
	build.dir, build.path, build.err = "", "", nil
}

func buildBinary() (string, error) {
	dir, err := os.MkdirTemp("", "tdf-e2e-bin-")
	if err != nil {
		return "", err
	}
	build.dir = dir
	return buildInto(dir, "")
}

// BuildTagged builds a tdf binary with the given build tags (e.g.
// "nofence") into a directory of the test's, with the same race choice as
// Binary; pass it as Options.Binary.
func BuildTagged(tb testing.TB, tags string) string {
	tb.Helper()
	out, err := buildInto(tb.TempDir(), tags)
	if err != nil {
		tb.Fatalf("build tdf -tags %s: %v", tags, err)
	}
	return out
}

func buildInto(dir, tags string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out := filepath.Join(dir, "tdf")
	args := []string{"build", "-o", out}
	if buildWithRace() {
		args = append(args, "-race")
	}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	args = append(args, "./cmd/tdf")
	cmd := exec.Command(gobin, args...)
	cmd.Dir = root
	var msg bytes.Buffer
	cmd.Stdout, cmd.Stderr = &msg, &msg
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go %s (in %s): %v\n%s", strings.Join(args, " "), root, err, msg.Bytes())
	}
	fmt.Fprintf(os.Stderr, "e2e: built %s (race=%v) in %s\n", out, buildWithRace(), time.Since(start).Round(time.Millisecond))
	return out, nil
}

func buildWithRace() bool {
	switch os.Getenv("TDF_E2E_RACE") {
	case "0", "false":
		return false
	case "1", "true":
		return true
	}
	return raceEnabled
}

// ModuleRoot finds the directory holding this module's go.mod, starting
// from this source file's directory (so it works whatever the current
// directory of the caller) and falling back to the working directory.
func ModuleRoot() (string, error) {
	var starts []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	for _, dir := range starts {
		for d := dir; ; d = filepath.Dir(d) {
			if data, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil {
				if bytes.Contains(data, []byte("module github.com/tdf-project/tdf\n")) {
					return d, nil
				}
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return "", fmt.Errorf("no go.mod of github.com/tdf-project/tdf above %v", starts)
}

// ---------------------------------------------------------------------------
// Ports

// FreePorts returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago (testkit.FreePorts).
func FreePorts(n int) ([]int, error) { return testkit.FreePorts(n) }

// ---------------------------------------------------------------------------
// The cluster

// Options configure StartCluster. The zero value is a three-node cluster
// with the binary's default raft timing.
//
// Node logs go under the test's temporary directory, or, if the
// environment variable TDF_E2E_LOG_DIR is set, under a directory there
// named after the test, which is kept.
type Options struct {
	// Nodes is the cluster size (default 3).
	Nodes int
	// LogLevel is every node's --log-level (default "info").
	LogLevel string
	// ExtraArgs are appended to every node's `tdf server` command line.
	ExtraArgs []string
	// FakeCloud, if not nil, runs a `tdf fakecloud` process alongside the
	// nodes (see FakeCloudOptions), and points every node at it.
	FakeCloud *FakeCloudOptions
	// Binary, if set, is the nodes' tdf binary (e.g. from BuildTagged)
	// instead of Binary's; the fakecloud runs it too.
	Binary string
	// ControlPlaneURL, with FakeCloud, is the agents' one URL
	// (--control-plane-url): a load balancer the test runs itself in
	// front of the nodes (StartHAProxy). Default: an in-process lb.Server
	// (Cluster.LB) started before the nodes.
	ControlPlaneURL string
	// Secure runs the nodes as production does, with API authentication
	// (Cluster.AdminToken reads the bootstrap token). Otherwise they run
	// with --insecure-no-auth, which tests of other things assume.
	Secure bool
}

// FakeCloudOptions configure the `tdf fakecloud` process of a cluster.
//
// The fakecloud is started before the nodes and stopped after them; its
// log is kept next to theirs (fakecloud.log). Every node then gets
// --cloud-endpoint http://<fakecloud>/v1, the cloud token in its
// environment (TDF_CLOUD_TOKEN, never on the command line, which the log's
// start marker prints), --control-plane-url (the load balancer's URL, see
// Options.ControlPlaneURL) and --agent-port; a test's ExtraArgs come after
// these and may override them.
type FakeCloudOptions struct {
	// Args are appended to the `tdf fakecloud` command line: delays
	// (--agent-work-duration, …) and faults (--early-ready, …).
	Args []string
	// FirstIP is the fakecloud's --first-ip, the address of its first
	// server's agent. Default: a random 127.<2-250>.<0-255>.1, so that
	// the agents of tests running in parallel (other packages, other
	// processes) do not collide; a base whose agent port is taken is
	// skipped.
	FirstIP string
	// AgentPort is the port every simulated agent listens on, on its own
	// address (default 8080, or a free port if 8080 cannot be bound on
	// FirstIP).
	AgentPort int
	// LogLevel is the fakecloud's --log-level (default: the nodes').
	LogLevel string
	// Token is the API token (default "fakecloud-token", the fakecloud's
	// own default, which is then not passed on its command line).
	Token string
	// Binary, if set, runs this program (with the same arguments as `tdf
	// fakecloud`, "fakecloud" first) instead of the built tdf binary: a
	// fakecloud instrumented for a diagnosis. The environment variable
	// TDF_E2E_FAKECLOUD_BIN sets it for every test.
	Binary string
}

// DefaultCloudToken is the API token `tdf fakecloud` accepts by default.
const DefaultCloudToken = "fakecloud-token"

// FakeCloud is the `tdf fakecloud` process of a cluster. Its Node is the
// process slot (ID "fakecloud", URL its base URL): Cluster.Start, Stop,
// Kill and Do work on it as on a node.
type FakeCloud struct {
	*Node
	// Endpoint is the Hetzner API base URL the nodes use, <URL>/v1.
	Endpoint  string
	FirstIP   string
	AgentPort int
	Token     string
}

// Cluster is a set of tdf server processes bootstrapped together.
type Cluster struct {
	tb     testing.TB
	bin    string
	dir    string
	Nodes  []*Node
	Client *http.Client
	// Cloud is the fakecloud process, or nil (Options.FakeCloud).
	Cloud *FakeCloud
	// ControlPlaneURL is the agents' one URL, with a fakecloud: LB's, or
	// Options.ControlPlaneURL.
	ControlPlaneURL string
	// LB is the in-process load balancer in front of the nodes, or nil
	// (no fakecloud, or Options.ControlPlaneURL given). Its log is lb.log.
	LB    *lb.Server
	lbLog string
	// Token, if set, goes with every request of Do and GetJSON (an
	// Options.Secure cluster's AdminToken, say).
	Token string
}

// AdminToken waits for the bootstrap admin token of an Options.Secure
// cluster and returns it (from the data directory of the node that first
// led, as an operator would find it).
func (c *Cluster) AdminToken() string {
	c.tb.Helper()
	var tok string
	c.WaitFor(DefaultElectionWait, "a bootstrap admin token the cluster accepts", func() error {
		for _, n := range c.Nodes {
			b, err := os.ReadFile(filepath.Join(n.DataDir, "admin-token"))
			if err != nil {
				continue
			}
			t := strings.TrimSpace(string(b))
			if r, err := c.Do(context.Background(), n, http.MethodGet, "/v1/whoami", http.Header{"Authorization": {"Bearer " + t}}, nil); err == nil && r.Status == http.StatusOK {
				tok = t
				return nil
			}
		}
		return fmt.Errorf("no node's data directory holds an accepted admin-token yet")
	})
	return tok
}

// Node is one tdf server process (or the slot of one that is stopped).
type Node struct {
	ID       string
	RaftAddr string
	HTTPAddr string
	// URL is the node's API base URL, http://<HTTPAddr>.
	URL     string
	DataDir string
	LogPath string
	args    []string
	// bin, if set, is run instead of the cluster's tdf binary.
	bin string
	// env is added to the process's environment (secrets go here, not in
	// args: the log's start marker prints the command line).
	env []string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current process has exited
	state   *os.ProcessState
	waitErr error
	// expectExit is set before the harness signals the process; an exit
	// without it is a crash.
	expectExit bool
	crash      error // first unexpected exit
	starts     int
}

// StartCluster builds the binary if needed, starts every node with
// --bootstrap listing all of them, and registers cleanup that kills every
// process still running (and prints log tails if the test failed). It does
// not wait for a leader; call Leader.
func StartCluster(tb testing.TB, opts Options) *Cluster {
	tb.Helper()
	if opts.Nodes <= 0 {
		opts.Nodes = 3
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	c := &Cluster{
		tb:  tb,
		bin: opts.Binary,
		dir: tb.TempDir(),
		// Longer than the server's 30s request timeout, so the server, not
		// the client, decides when a request has taken too long.
		Client: &http.Client{Timeout: 45 * time.Second},
	}
	if c.bin == "" {
		c.bin = Binary(tb)
	}
	nports := 2 * opts.Nodes
	if opts.FakeCloud != nil {
		nports++
	}
	ports, err := FreePorts(nports)
	if err != nil {
		tb.Fatalf("FreePorts(%d): %v", nports, err)
	}
	logDir := c.dir
	if keep := os.Getenv("TDF_E2E_LOG_DIR"); keep != "" {
		// Keep the logs after the test for a closer look.
		name := strings.NewReplacer("/", "_", " ", "_").Replace(tb.Name())
		logDir = filepath.Join(keep, name+"-"+time.Now().Format("20060102-150405.000"))
		if err := os.MkdirAll(logDir, 0o755); err != nil {
			tb.Fatalf("TDF_E2E_LOG_DIR: %v", err)
		}
	}
	var peers []string
	for i := range opts.Nodes {
		id := fmt.Sprintf("n%d", i+1)
		n := &Node{
			ID:       id,
			RaftAddr: fmt.Sprintf("127.0.0.1:%d", ports[2*i]),
			HTTPAddr: fmt.Sprintf("127.0.0.1:%d", ports[2*i+1]),
			DataDir:  filepath.Join(c.dir, id),
			LogPath:  filepath.Join(logDir, id+".log"),
		}
		n.URL = "http://" + n.HTTPAddr
		peers = append(peers, id+"="+n.RaftAddr)
		c.Nodes = append(c.Nodes, n)
	}
	var cloudArgs, env []string
	if opts.FakeCloud != nil {
		c.Cloud = newFakeCloud(tb, *opts.FakeCloud, ports[nports-1], opts.LogLevel, logDir)
		c.ControlPlaneURL = opts.ControlPlaneURL
		if c.ControlPlaneURL == "" {
			c.startLB(logDir)
		}
		cloudArgs = []string{
			"--cloud-endpoint", c.Cloud.Endpoint,
			"--control-plane-url", c.ControlPlaneURL,
			"--agent-port", strconv.Itoa(c.Cloud.AgentPort),
		}
		env = []string{"TDF_CLOUD_TOKEN=" + c.Cloud.Token}
	}
	for _, n := range c.Nodes {
		n.args = append([]string{"server",
			"--node-id", n.ID,
			"--data-dir", n.DataDir,
			"--raft-addr", n.RaftAddr,
			"--http-addr", n.HTTPAddr,
			"--bootstrap", strings.Join(peers, ","),
			"--log-level", opts.LogLevel,
		}, cloudArgs...)
		if !opts.Secure {
			n.args = append(n.args, "--insecure-no-auth")
		}
		n.args = append(n.args, opts.ExtraArgs...)
		n.env = env
	}
	// Cleanups run last-registered first: kill the processes, then report.
	tb.Cleanup(c.report)
	tb.Cleanup(c.killAll)
	if c.Cloud != nil {
		c.Start(c.Cloud.Node)
		c.WaitFor(DefaultElectionWait, "fakecloud answers", func() error {
			_, err := c.FakeServers()
			return err
		})
	}
	for _, n := range c.Nodes {
		c.Start(n)
	}
	return c
}

// newFakeCloud makes the fakecloud's process slot.
func newFakeCloud(tb testing.TB, o FakeCloudOptions, port int, nodeLogLevel, logDir string) *FakeCloud {
	tb.Helper()
	if o.LogLevel == "" {
		o.LogLevel = nodeLogLevel
	}
	if o.Token == "" {
		o.Token = DefaultCloudToken
	}
	if o.FirstIP == "" || o.AgentPort == 0 {
		ip, agentPort, err := pickAgentBase(o.FirstIP, o.AgentPort)
		if err != nil {
			tb.Fatalf("fakecloud: %v", err)
		}
		o.FirstIP, o.AgentPort = ip, agentPort
	}
	n := &Node{
		ID:       "fakecloud",
		HTTPAddr: fmt.Sprintf("127.0.0.1:%d", port),
		LogPath:  filepath.Join(logDir, "fakecloud.log"),
	}
	n.URL = "http://" + n.HTTPAddr
	n.args = []string{"fakecloud",
		"--http-addr", n.HTTPAddr,
		"--first-ip", o.FirstIP,
		"--agent-port", strconv.Itoa(o.AgentPort),
		"--log-level", o.LogLevel,
	}
	if o.Token != DefaultCloudToken {
		n.env = []string{"TDF_CLOUD_TOKEN=" + o.Token}
	}
	n.args = append(n.args, o.Args...)
	n.bin = o.Binary
	if n.bin == "" {
		n.bin = os.Getenv("TDF_E2E_FAKECLOUD_BIN")
	}
	return &FakeCloud{Node: n, Endpoint: n.URL + "/v1", FirstIP: o.FirstIP, AgentPort: o.AgentPort, Token: o.Token}
}

// pickAgentBase chooses the fakecloud's first agent address (a random
// 127.<2-250>.<0-255>.1 unless given) and agent port (8080 unless given),
// checking that the port can be bound on the first few addresses of the
// base: another test's agents, or a process listening on the wildcard
// address, would make the agents fail to boot.
func pickAgentBase(ip string, port int) (string, int, error) {
	free := func(ip string, port int) bool {
		base := net.ParseIP(ip).To4()
		if base == nil {
			return false
		}
		for i := range 4 {
			a := net.IPv4(base[0], base[1], base[2], base[3]+byte(i))
			ln, err := net.Listen("tcp", net.JoinHostPort(a.String(), strconv.Itoa(port)))
			if err != nil {
				return false
			}
			ln.Close()
		}
		return true
	}
	fixedIP, fixedPort := ip != "", port != 0
	for tries := 0; tries < 50; tries++ {
		if !fixedIP {
			ip = fmt.Sprintf("127.%d.%d.1", 2+rand.IntN(249), rand.IntN(256))
		}
		if !fixedPort {
			port = 8080
			if tries >= 10 {
				// 8080 seems taken on the wildcard address.
				port = 20000 + rand.IntN(10000)
			}
		}
		if free(ip, port) {
			return ip, port, nil
		}
		if fixedIP && fixedPort {
			break
		}
	}
	return "", 0, fmt.Errorf("no free agent address and port (last tried %s:%d)", ip, port)
}

// Node returns the node with the given id.
func (c *Cluster) Node(id string) *Node {
	for _, n := range c.Nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// Live returns the nodes whose process is running.
func (c *Cluster) Live() []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		if n.Running() {
			out = append(out, n)
		}
	}
	return out
}

// Others returns every node but the given ones.
func (c *Cluster) Others(except ...*Node) []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		skip := false
		for _, e := range except {
			skip = skip || n == e
		}
		if !skip {
			out = append(out, n)
		}
	}
	return out
}

// Running reports whether the node's process is running.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.done == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// Pid is the running process's id, or 0.
func (n *Node) Pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.cmd.Process == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// Start starts the node's process with its flags and data directory; it is
// also how a stopped or killed node is restarted. The node's log file is
// appended to, with a marker line per start.
func (c *Cluster) Start(n *Node) {
	c.tb.Helper()
	if n.Running() {
		c.tb.Fatalf("Start(%s): already running (pid %d)", n.ID, n.Pid())
	}
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.tb.Fatalf("Start(%s): open log: %v", n.ID, err)
	}
	defer logf.Close() // the child holds its own descriptor
	n.mu.Lock()
	n.starts++
	bin := c.bin
	if n.bin != "" {
		bin = n.bin
	}
	fmt.Fprintf(logf, "=== e2e: start #%d at %s: %s %s\n", n.starts, time.Now().Format(time.RFC3339Nano), bin, strings.Join(n.args, " "))
	cmd := exec.Command(bin, n.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Keep the environment, but drop TDF_* variables so that a developer's
	// shell cannot change the flags under test.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TDF_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, n.env...)
	if raceEnabled || buildWithRace() {
		// Make a race in the node visible without ending it; the log
		// scan at cleanup fails the test.
		cmd.Env = append(cmd.Env, "GORACE=halt_on_error=0")
	}
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		n.mu.Unlock()
		c.tb.Fatalf("Start(%s): %v", n.ID, err)
	}
	done := make(chan struct{})
	n.cmd, n.done, n.state, n.waitErr, n.expectExit = cmd, done, nil, nil, false
	n.mu.Unlock()
	go func() {
		err := cmd.Wait()
		n.mu.Lock()
		n.state, n.waitErr = cmd.ProcessState, err
		if !n.expectExit && n.crash == nil {
			n.crash = fmt.Errorf("%s (pid %d) exited unexpectedly: %v", n.ID, cmd.Process.Pid, err)
		}
		n.mu.Unlock()
		close(done)
	}()
	if n.RaftAddr != "" {
		c.tb.Logf("started %s (pid %d): api %s raft %s", n.ID, cmd.Process.Pid, n.URL, n.RaftAddr)
	} else {
		c.tb.Logf("started %s (pid %d): %s", n.ID, cmd.Process.Pid, n.URL)
	}
}

// Stop sends SIGTERM and waits for the process to exit. A node that takes
// longer than DefaultStopWait, or exits with a failure status, fails the
// test (it is killed in the first case).
func (c *Cluster) Stop(n *Node) {
	c.tb.Helper()
	start := time.Now()
	state, ok := c.signalAndWait(n, syscall.SIGTERM, DefaultStopWait)
	if !ok {
		c.tb.Errorf("Stop(%s): no exit within %s of SIGTERM; killed", n.ID, DefaultStopWait)
		c.signalAndWait(n, syscall.SIGKILL, DefaultStopWait)
		return
	}
	if state != nil && !state.Success() {
		c.tb.Errorf("Stop(%s): exit after SIGTERM = %v, want status 0 (see %s)", n.ID, state, n.LogPath)
	}
	c.tb.Logf("stopped %s in %s", n.ID, time.Since(start).Round(time.Millisecond))
}

// Kill sends SIGKILL and waits for the process to exit.
func (c *Cluster) Kill(n *Node) {
	c.tb.Helper()
	if _, ok := c.signalAndWait(n, syscall.SIGKILL, DefaultStopWait); !ok {
		c.tb.Fatalf("Kill(%s): process did not exit within %s of SIGKILL", n.ID, DefaultStopWait)
	}
	c.tb.Logf("killed %s (SIGKILL)", n.ID)
}

// Restart starts the node again with the same flags and data directory,
// stopping it first (SIGTERM) if it is still running.
func (c *Cluster) Restart(n *Node) {
	c.tb.Helper()
	if n.Running() {
		c.Stop(n)
	}
	c.Start(n)
}

// Pause freezes the node's process (SIGSTOP); Resume thaws it (SIGCONT).
// A paused node keeps its sockets: peers and clients see it hang, not
// refuse, as with a stalled VM or a long GC pause.
func (c *Cluster) Pause(n *Node) error { return c.signal(n, syscall.SIGSTOP) }

// Resume thaws a node Pause froze.
func (c *Cluster) Resume(n *Node) error { return c.signal(n, syscall.SIGCONT) }

func (c *Cluster) signal(n *Node, sig syscall.Signal) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.cmd.Process == nil {
		return fmt.Errorf("%s: not started", n.ID)
	}
	select {
	case <-n.done:
		return fmt.Errorf("%s: not running", n.ID)
	default:
	}
	if err := n.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: %v: %w", n.ID, sig, err)
	}
	return nil
}

// Isolate cuts the node's raft traffic in and out (POST
// /debug/faults/isolate); Heal restores it. The node must run with
// --fault-injection.
func (c *Cluster) Isolate(n *Node) error { return c.fault(n, "isolate") }

// Heal reconnects a node Isolate cut off.
func (c *Cluster) Heal(n *Node) error { return c.fault(n, "heal") }

func (c *Cluster) fault(n *Node, action string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Do(ctx, n, http.MethodPost, "/debug/faults/"+action, nil, nil)
	if err != nil {
		return fmt.Errorf("%s %s: %w", action, n.ID, err)
	}
	if resp.Status != http.StatusOK {
		return fmt.Errorf("%s %s = %d: %s (does it run with --fault-injection?)", action, n.ID, resp.Status, bytes.TrimSpace(resp.Body))
	}
	return nil
}

// signalAndWait signals the node's process, if running, and waits up to
// timeout for it to exit. ok is false on timeout.
func (c *Cluster) signalAndWait(n *Node, sig syscall.Signal, timeout time.Duration) (state *os.ProcessState, ok bool) {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	if done == nil {
		n.mu.Unlock()
		return nil, true
	}
	select {
	case <-done:
		// Already gone (a crash, recorded by the waiter).
		st := n.state
		n.mu.Unlock()
		return st, true
	default:
	}
	n.expectExit = true
	_ = cmd.Process.Signal(sig)
	n.mu.Unlock()
	select {
	case <-done:
	case <-time.After(timeout):
		return nil, false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state, true
}

// Crashed returns the first unexpected process exit of any node, or nil.
func (c *Cluster) Crashed() error {
	var errs []error
	for _, n := range c.procs() {
		n.mu.Lock()
		if n.crash != nil {
			errs = append(errs, n.crash)
		}
		n.mu.Unlock()
	}
	return errors.Join(errs...)
}

// procs returns the fakecloud's slot, if any, and every node's.
func (c *Cluster) procs() []*Node {
	var out []*Node
	if c.Cloud != nil {
		out = append(out, c.Cloud.Node)
	}
	return append(out, c.Nodes...)
}

// LogPaths returns the log file of every process: the fakecloud's (if
// any) first, then the nodes'.
func (c *Cluster) LogPaths() []string {
	var out []string
	for _, n := range c.procs() {
		out = append(out, n.LogPath)
	}
	return out
}

// killAll kills the nodes, then the fakecloud (last, so that no node
// sees the cloud vanish under it).
func (c *Cluster) killAll() {
	var wg sync.WaitGroup
	for _, n := range c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, ok := c.signalAndWait(n, syscall.SIGKILL, DefaultStopWait); !ok {
				c.tb.Errorf("cleanup: %s (pid %d) survived SIGKILL", n.ID, n.Pid())
			}
		}()
	}
	wg.Wait()
	if c.Cloud != nil {
		if _, ok := c.signalAndWait(c.Cloud.Node, syscall.SIGKILL, DefaultStopWait); !ok {
			c.tb.Errorf("cleanup: fakecloud (pid %d) survived SIGKILL", c.Cloud.Pid())
		}
	}
}

// report runs at cleanup, after every process is gone: it fails the test
// on a crash or on a data race a node reported, and prints log tails when
// the test failed.
func (c *Cluster) report() {
	if err := c.Crashed(); err != nil {
		c.tb.Errorf("node crash: %v", err)
	}
	for _, n := range c.procs() {
		if data, err := os.ReadFile(n.LogPath); err == nil && bytes.Contains(data, []byte("WARNING: DATA RACE")) {
			c.tb.Errorf("%s reported a data race (see its log below)", n.ID)
		}
	}
	if !c.tb.Failed() {
		return
	}
	for _, n := range c.procs() {
		c.tb.Logf("---- last %d lines of %s (%s) ----\n%s", logTailLines, n.ID, n.LogPath, Tail(n.LogPath, logTailLines))
	}
	if c.lbLog != "" {
		c.tb.Logf("---- last %d lines of the load balancer (%s) ----\n%s", logTailLines, c.lbLog, Tail(c.lbLog, logTailLines))
	}
}

// Tail returns the last lines of a file.
func Tail(path string, lines int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read: %v)", err)
	}
	data = bytes.TrimRight(data, "\n")
	for i, cnt := len(data)-1, 0; i >= 0; i-- {
		if data[i] == '\n' {
			if cnt++; cnt == lines {
				return string(data[i+1:])
			}
		}
	}
	return string(data)
}

// ---------------------------------------------------------------------------
// Waiting

// WaitFor polls cond until it returns nil or timeout passes; then it fails
// the test with what and cond's last error.
func WaitFor(tb testing.TB, timeout time.Duration, what string, cond func() error) {
	tb.Helper()
	testkit.WaitFor(tb, timeout, pollInterval, what, cond)
}

// Poll is WaitFor without a test: it returns nil once cond does, or cond's
// last error when timeout passes.
func Poll(timeout time.Duration, cond func() error) error {
	return testkit.Poll(timeout, pollInterval, cond)
}

// WaitFor is the package's WaitFor that also fails at once if a node
// crashes meanwhile.
func (c *Cluster) WaitFor(timeout time.Duration, what string, cond func() error) {
	c.tb.Helper()
	var crash error
	err := Poll(timeout, func() error {
		if crash = c.Crashed(); crash != nil {
			return nil
		}
		return cond()
	})
	switch {
	case crash != nil:
		c.tb.Fatalf("%s: %v", what, crash)
	case err != nil:
		c.tb.Fatalf("%s: not reached within %s: %v", what, timeout, err)
	}
}

// ---------------------------------------------------------------------------
// HTTP

// Response is a fully read HTTP answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Do sends one request to a node's API and reads the whole answer. body, if
// not nil, is sent as JSON. Only transport failures are errors; any status
// is a Response.
func (c *Cluster) Do(ctx context.Context, n *Node, method, path string, hdr http.Header, body any) (*Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, n.URL+path, rd)
	if err != nil {
		return nil, err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s%s: read body: %w", method, n.ID, path, err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

// GetJSON GETs path from a node and decodes a 200 answer into out; any
// other status is an error carrying the body.
func (c *Cluster) GetJSON(n *Node, path string, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.Client.Timeout)
	defer cancel()
	resp, err := c.Do(ctx, n, http.MethodGet, path, nil, nil)
	if err != nil {
		return err
	}
	if resp.Status != http.StatusOK {
		return fmt.Errorf("GET %s%s = %d: %s", n.ID, path, resp.Status, bytes.TrimSpace(resp.Body))
	}
	if err := json.Unmarshal(resp.Body, out); err != nil {
		return fmt.Errorf("GET %s%s: decode: %v", n.ID, path, err)
	}
	return nil
}

// ClusterStatus is the part of GET /v1/cluster the harness uses.
type ClusterStatus struct {
	NodeID       string `json:"node_id"`
	State        string `json:"state"`
	LeaderID     string `json:"leader_id"`
	LeaderAPI    string `json:"leader_api"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	Members      []struct {
		ID       string `json:"id"`
		RaftAddr string `json:"raft_addr"`
		APIAddr  string `json:"api_addr"`
		Voter    bool   `json:"voter"`
		State    string `json:"state"`
	} `json:"members"`
}

// Status is GET /v1/cluster on one node.
func (c *Cluster) Status(n *Node) (ClusterStatus, error) {
	var st ClusterStatus
	err := c.GetJSON(n, "/v1/cluster", &st)
	return st, err
}

// StateHash is the answer of GET /v1/cluster/state-hash.
type StateHash struct {
	NodeID       string `json:"node_id"`
	AppliedIndex uint64 `json:"applied_index"`
	Hash         string `json:"hash"`
}

// StateHash is GET /v1/cluster/state-hash on one node.
func (c *Cluster) StateHash(n *Node) (StateHash, error) {
	var h StateHash
	err := c.GetJSON(n, "/v1/cluster/state-hash", &h)
	return h, err
}

// LeaderAmong returns the leader every given node agrees on (each reports
// the same leader_id, and the leader, one of them, reports itself as
// leader), or an error describing the disagreement.
func (c *Cluster) LeaderAmong(nodes []*Node) (*Node, error) {
	if len(nodes) == 0 {
		return nil, errors.New("no live nodes")
	}
	var views []string
	leaders := map[string]bool{}
	var selfLeader string
	for _, n := range nodes {
		st, err := c.Status(n)
		if err != nil {
			return nil, err
		}
		views = append(views, fmt.Sprintf("%s→%q(%s, term %d)", n.ID, st.LeaderID, st.State, st.Term))
		leaders[st.LeaderID] = true
		if st.State == "leader" && st.LeaderID == n.ID {
			selfLeader = n.ID
		}
	}
	if len(leaders) != 1 || leaders[""] || selfLeader == "" {
		return nil, fmt.Errorf("no agreed leader: %s", strings.Join(views, ", "))
	}
	return c.Node(selfLeader), nil
}

// Leader polls GET /v1/cluster on the live nodes until they agree on a
// leader that is one of them, and returns it.
func (c *Cluster) Leader() *Node {
	c.tb.Helper()
	var leader *Node
	start := time.Now()
	c.WaitFor(DefaultElectionWait, "leader election", func() error {
		var err error
		leader, err = c.LeaderAmong(c.Live())
		return err
	})
	c.tb.Logf("leader is %s (agreed after %s)", leader.ID, time.Since(start).Round(time.Millisecond))
	return leader
}

// askAll asks every node at once and returns the answers in node order.
// At once, because the leader may commit at any moment (its alarms fire):
// the shorter the round, the likelier the answers share one index.
func askAll[T any](nodes []*Node, ask func(*Node) (T, error)) ([]T, error) {
	out := make([]T, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = ask(n)
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// Converged returns the common state hash of the given nodes if all of them
// report the same applied index and hash in one round.
func (c *Cluster) Converged(nodes []*Node) (StateHash, error) {
	hashes, err := askAll(nodes, c.StateHash)
	if err != nil {
		return StateHash{}, err
	}
	var first StateHash
	var views []string
	same := true
	for i, n := range nodes {
		h := hashes[i]
		views = append(views, fmt.Sprintf("%s@%d:%.12s", n.ID, h.AppliedIndex, h.Hash))
		if i == 0 {
			first = h
		} else if h.AppliedIndex != first.AppliedIndex || h.Hash != first.Hash {
			same = false
		}
	}
	if !same {
		return StateHash{}, fmt.Errorf("state hashes differ: %s", strings.Join(views, " "))
	}
	return first, nil
}

// WaitConverged polls until the given nodes report the same applied index
// and state hash in one round, with the index at least minIndex, and
// returns that state.
func (c *Cluster) WaitConverged(nodes []*Node, minIndex uint64) StateHash {
	c.tb.Helper()
	var h StateHash
	start := time.Now()
	differ := false
	var crash error
	err := Poll(DefaultCatchUpWait, func() error {
		if crash = c.Crashed(); crash != nil {
			return nil
		}
		// Hashing encodes the whole state: compare the cheap applied
		// indexes first and hash only once they agree.
		differ = false
		if err := c.sameAppliedIndex(nodes, minIndex); err != nil {
			return err
		}
		var err error
		if h, err = c.Converged(nodes); err != nil {
			differ = true
			return err
		}
		if h.AppliedIndex < minIndex {
			return fmt.Errorf("converged at index %d, below %d", h.AppliedIndex, minIndex)
		}
		return nil
	})
	if crash != nil {
		c.tb.Fatalf("state hashes converge: %v", crash)
	}
	if err != nil {
		if differ {
			// Name the records the replicas differ in, so that a rare
			// divergence can be understood from the test's log alone.
			c.tb.Logf("%s", c.stateDifference(nodes))
		}
		c.tb.Fatalf("state hashes converge: not reached within %s: %v", DefaultCatchUpWait, err)
	}
	c.tb.Logf("%d nodes converged at index %d, hash %.16s (after %s)", len(nodes), h.AppliedIndex, h.Hash, time.Since(start).Round(time.Millisecond))
	return h
}

// stateDifference compares every node's own state (GET
// /v1/cluster/state-hash?snapshot=true) with the first node's, record by
// record.
func (c *Cluster) stateDifference(nodes []*Node) string {
	states := make([][]byte, len(nodes))
	for i, n := range nodes {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		resp, err := c.Do(ctx, n, http.MethodGet, "/v1/cluster/state-hash?snapshot=true", nil, nil)
		cancel()
		if err != nil || resp.Status != http.StatusOK {
			return fmt.Sprintf("cannot read %s's state to compare: %v %v", n.ID, err, resp)
		}
		states[i] = resp.Body
	}
	var b strings.Builder
	for i := 1; i < len(nodes); i++ {
		d, err := fsm.SnapshotDifference(bytes.NewReader(states[0]), bytes.NewReader(states[i]))
		switch {
		case err != nil:
			fmt.Fprintf(&b, "%s vs %s: cannot compare: %v\n", nodes[0].ID, nodes[i].ID, err)
		case d != "":
			fmt.Fprintf(&b, "%s vs %s:\n%s\n", nodes[0].ID, nodes[i].ID, d)
		}
	}
	if b.Len() == 0 {
		return "no record differs now (the states moved on between the reads)"
	}
	return b.String()
}

// sameAppliedIndex returns nil when every node reports one applied index,
// at least minIndex.
func (c *Cluster) sameAppliedIndex(nodes []*Node, minIndex uint64) error {
	sts, err := askAll(nodes, c.Status)
	if err != nil {
		return err
	}
	var views []string
	var first uint64
	same := true
	for i, n := range nodes {
		st := sts[i]
		views = append(views, fmt.Sprintf("%s@%d", n.ID, st.AppliedIndex))
		if i == 0 {
			first = st.AppliedIndex
		} else if st.AppliedIndex != first {
			same = false
		}
	}
	if !same {
		return fmt.Errorf("applied indexes differ: %s", strings.Join(views, " "))
	}
	if first < minIndex {
		return fmt.Errorf("applied index %d, below %d", first, minIndex)
	}
	return nil
}

// WaitSigningKeys waits until every node publishes a signing key in its
// JWKS: until then an agent booting against it could not verify tokens.
func (c *Cluster) WaitSigningKeys() {
	c.tb.Helper()
	c.WaitFor(DefaultElectionWait, "every node has a signing key", func() error {
		for _, n := range c.Nodes {
			var jwks struct {
				Keys []json.RawMessage `json:"keys"`
			}
			if err := c.GetJSON(n, "/.well-known/jwks.json", &jwks); err != nil {
				return err
			}
			if len(jwks.Keys) == 0 {
				return fmt.Errorf("%s publishes no key yet", n.ID)
			}
		}
		return nil
	})
}

// WaitForEvery is WaitFor polling every interval instead of every
// pollInterval, for conditions that are costly to check (listing every
// task of a large run).
func (c *Cluster) WaitForEvery(timeout, interval time.Duration, what string, cond func() error) {
	c.tb.Helper()
	var crash error
	deadline := time.Now().Add(timeout)
	for {
		if crash = c.Crashed(); crash != nil {
			c.tb.Fatalf("%s: %v", what, crash)
		}
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("%s: not reached within %s: %v", what, timeout, err)
		}
		time.Sleep(interval)
	}
}

// ---------------------------------------------------------------------------
// The fakecloud's view

// LedgerEvent is one effect in the fakecloud's ledger (GET /fake/ledger):
// kind is server_create, server_running, server_delete, workspace_create,
// workspace_ready, workspace_stop, session_create, session_start, … .
type LedgerEvent = fakecloud.Event

// FakeServer is one server the fakecloud holds (GET /fake/servers).
type FakeServer struct {
	ID         int64             `json:"id"`
	Name       string            `json:"name"`
	Status     string            `json:"status"`
	IPv4       string            `json:"ipv4"`
	Labels     map[string]string `json:"labels"`
	ServerType string            `json:"server_type"`
	Location   string            `json:"location"`
	Image      string            `json:"image"`
	Created    time.Time         `json:"created"`
}

// Ledger is GET /fake/ledger: every effect the fakecloud and its agents
// recorded, oldest first. The cluster must have a fakecloud.
func (c *Cluster) Ledger() ([]LedgerEvent, error) {
	if c.Cloud == nil {
		return nil, errors.New("the cluster has no fakecloud")
	}
	var out struct {
		Events []LedgerEvent `json:"events"`
	}
	err := c.GetJSON(c.Cloud.Node, "/fake/ledger", &out)
	return out.Events, err
}

// FakeServers is GET /fake/servers: the servers that exist (deleted ones
// are gone). The cluster must have a fakecloud.
func (c *Cluster) FakeServers() ([]FakeServer, error) {
	if c.Cloud == nil {
		return nil, errors.New("the cluster has no fakecloud")
	}
	var out struct {
		Servers []FakeServer `json:"servers"`
	}
	err := c.GetJSON(c.Cloud.Node, "/fake/servers", &out)
	return out.Servers, err
}
