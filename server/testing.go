package server

// In-process cluster helper for tests, in the manner of hashicorp/raft's
// testing.go. It lives in package server rather than cluster because the
// tests it serves talk to the nodes' HTTP APIs, and cluster cannot import
// server (or api) without a cycle. Not a stable API: it exists for the tests
// of this module.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/cluster"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/internal/testkit"
	"github.com/tdf-project/tdf/runner"
)

// TestWait is how long the helper's waits poll before they fail the test.
// It is generous on purpose: tests run under -race on loaded two-core
// machines, where an election can take several heartbeat timeouts.
const TestWait = 30 * time.Second

// TestOptions configures NewTestCluster. The zero value starts three nodes.
type TestOptions struct {
	// Nodes is the number of nodes started (default 3).
	Nodes int
	// Absent adds this many voters to the bootstrap configuration that are
	// never started. With Nodes: 1, Absent: 1 no leader can ever be elected.
	Absent int
	// Cluster adjusts a node's cluster configuration after the helper's
	// defaults (TestClusterConfig) are applied.
	Cluster func(c *cluster.Config)
	// API adjusts a node's API configuration after the helper's defaults.
	API func(c *api.Config)
	// Runner adjusts a node's step runner configuration after
	// runner.DefaultConfig.
	Runner func(c *runner.Config)
	// Server adjusts a node's whole configuration last, just before it
	// starts (c.Cluster.NodeID tells which node). A test that runs the real
	// pipeline sets Pipeline, HTTPAddr and ControlPlaneURL here.
	Server func(c *Config)
	// Secure runs the nodes as production does: API authentication on
	// and a bootstrap admin token (TestCluster.AdminToken). Without it,
	// and without API tokens set through API, the nodes run with
	// InsecureNoAuth.
	Secure bool
	// Handlers are the step handlers of every node. Nil means
	// TestHandlers: every effect step polls again in five minutes, so that
	// a submitted task stays queued at node_provisioning for the length of
	// a test instead of failing for want of a handler.
	Handlers map[fsm.Step]runner.Handler
	// Logger receives every node's logs. Default: the test's t.Log at the
	// level of $TDF_TEST_LOG_LEVEL (default info).
	Logger hclog.Logger
	// DataDir is the parent of the nodes' data directories (default
	// t.TempDir()). A directory on tmpfs makes raft's fsyncs free, which
	// fuzz targets that commit on every input want.
	DataDir string
	// NoWait skips waiting, in NewTestCluster, for a ready leader and for
	// every node's API address to be in every member table.
	NoWait bool
}

// TestClusterConfig is the cluster configuration the helper starts nodes
// with. The raft timeouts are generous for an in-process cluster: under the
// race detector on two loaded cores, goroutines can stall for hundreds of
// milliseconds, and shorter heartbeat timeouts cause spurious elections.
func TestClusterConfig() cluster.Config {
	c := cluster.DefaultConfig()
	c.HeartbeatTimeout = time.Second
	c.ElectionTimeout = time.Second
	c.LeaderLeaseTimeout = 500 * time.Millisecond
	c.CommitTimeout = 10 * time.Millisecond
	c.ApplyTimeout = 10 * time.Second
	return c
}

// TestAPIConfig is the API configuration the helper starts nodes with.
func TestAPIConfig() api.Config {
	c := api.DefaultConfig()
	c.HoldTimeout = 5 * time.Second
	c.RequestTimeout = 20 * time.Second
	c.Client = &http.Client{Timeout: 20 * time.Second}
	return c
}

// TestHandlers returns handlers for every effect step that answer "not
// done yet, look again in five minutes" (within the default provisioning
// timeout), which parks each task at its first effect step, queued. Cleanup
// has no handler: it then has nothing to do and succeeds.
func TestHandlers() map[fsm.Step]runner.Handler {
	park := runner.HandlerFunc(func(context.Context, *fsm.Task, string) runner.Result {
		return runner.PollIn(5 * time.Minute)
	})
	hs := map[fsm.Step]runner.Handler{}
	for _, s := range fsm.AllSteps {
		if fsm.KindOf(s) == fsm.KindEffect {
			hs[s] = park
		}
	}
	return hs
}

// TestNode is one node of a TestCluster.
type TestNode struct {
	*Server
	// ID is the node's raft id (n1, n2, …).
	ID string
	// Addr is its in-memory raft address.
	Addr raft.ServerAddress
	// Trans is its in-memory raft transport.
	Trans *raft.InmemTransport
	// DataDir is its data directory.
	DataDir string
}

// AdminToken waits for the bootstrap admin token (TestOptions.Secure) and
// returns it, from whichever node first led.
func (c *TestCluster) AdminToken() string {
	c.t.Helper()
	var tok string
	WaitFor(c.t, 30*time.Second, "the bootstrap admin token", func() error {
		for _, n := range c.Nodes {
			if t, err := ReadAdminToken(n.DataDir); err == nil && n.FSM.HasBootstrapToken() {
				if _, ok := n.FSM.LookupAPIToken(t, time.Now()); ok {
					tok = t
					return nil
				}
			}
		}
		return fmt.Errorf("no node's %s holds the committed token yet", AdminTokenFile)
	})
	return tok
}

// TestCluster is a set of in-process nodes joined by raft's in-memory
// transport, each serving its HTTP API on 127.0.0.1 at a free port. Raft
// traffic can be partitioned and healed; HTTP traffic is never cut.
type TestCluster struct {
	t      testing.TB
	Nodes  []*TestNode
	client *http.Client

	mu       sync.Mutex
	isolated map[string]bool // nodes cut off by Partition
	closed   bool
}

// NewTestCluster starts the nodes and, unless opts.NoWait, waits until a
// leader is ready and every node's API address is in every member table
// (so that followers can forward). Everything is shut down in t.Cleanup.
func NewTestCluster(t testing.TB, opts TestOptions) *TestCluster {
	t.Helper()
	if opts.Nodes <= 0 {
		opts.Nodes = 3
	}
	logger := opts.Logger
	if logger == nil {
		logger = TestLogger(t)
	}
	c := &TestCluster{
		t:        t,
		client:   &http.Client{Timeout: 30 * time.Second},
		isolated: map[string]bool{},
	}
	var voters []raft.Server
	for i := 1; i <= opts.Nodes; i++ {
		id := fmt.Sprintf("n%d", i)
		addr, trans := raft.NewInmemTransportWithTimeout(raft.ServerAddress("inmem-"+id), time.Second)
		c.Nodes = append(c.Nodes, &TestNode{ID: id, Addr: addr, Trans: trans})
		voters = append(voters, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: addr})
	}
	for i := 1; i <= opts.Absent; i++ {
		id := fmt.Sprintf("absent%d", i)
		voters = append(voters, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress("inmem-" + id)})
	}
	c.connectAll()
	// Cleanups run last-registered first: the nodes must be closed before
	// the temporary directory is removed and before logging stops.
	dir := opts.DataDir
	if dir == "" {
		dir = t.TempDir()
	}
	t.Cleanup(c.Close)
	for _, n := range c.Nodes {
		cc := TestClusterConfig()
		cc.NodeID = n.ID
		cc.DataDir = filepath.Join(dir, n.ID)
		n.DataDir = cc.DataDir
		cc.Transport = n.Trans
		cc.Bootstrap = voters
		if opts.Cluster != nil {
			opts.Cluster(&cc)
		}
		ac := TestAPIConfig()
		if opts.API != nil {
			opts.API(&ac)
		}
		rc := runner.DefaultConfig()
		if opts.Runner != nil {
			opts.Runner(&rc)
		}
		handlers := opts.Handlers
		if handlers == nil {
			handlers = TestHandlers()
		}
		cfg := Config{
			Cluster:  cc,
			API:      ac,
			Runner:   rc,
			Handlers: handlers,
			HTTPAddr: "127.0.0.1:0",
			Logger:   logger.With("node", n.ID),
		}
		// Tests that do not test authentication run without it; a test
		// that sets API tokens or Secure gets the production default.
		cfg.InsecureNoAuth = ac.Auth == nil && !opts.Secure
		if opts.Server != nil {
			opts.Server(&cfg)
		}
		srv, err := Start(cfg)
		if err != nil {
			t.Fatalf("Start(%s) = %v", n.ID, err)
		}
		n.Server = srv
	}
	if !opts.NoWait {
		c.Leader()
		c.WaitMembers()
	}
	return c
}

// TestLogger returns an hclog logger that writes to t.Log and goes quiet
// once the test has finished (goroutines still running then must not call
// t.Log). The level is $TDF_TEST_LOG_LEVEL, default info.
func TestLogger(t testing.TB) hclog.Logger {
	w := &testLogWriter{t: t}
	t.Cleanup(w.stop)
	level := hclog.LevelFromString(os.Getenv("TDF_TEST_LOG_LEVEL"))
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:            "tdf",
		Level:           level,
		Output:          w,
		IncludeLocation: false,
		TimeFormat:      "15:04:05.000",
	})
}

type testLogWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testLogWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// Close shuts all nodes down. It is called by t.Cleanup; calling it
// earlier is allowed.
func (c *TestCluster) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	// Cut all raft traffic first, then close the nodes concurrently: a
	// raft RPC to a node already shut down would otherwise block for the
	// transport's timeout, and a leader closed last would try to hand its
	// leadership to peers already gone. Graceful hand-over is tested on
	// its own, not in every cleanup.
	for _, n := range c.Nodes {
		n.Trans.DisconnectAll()
	}
	var wg sync.WaitGroup
	for _, n := range c.Nodes {
		if n.Server == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.Server.Close(); err != nil {
				c.t.Logf("close %s: %v", n.ID, err)
			}
		}()
	}
	wg.Wait()
}

// Node returns the node with the given id, or nil.
func (c *TestCluster) Node(id string) *TestNode {
	for _, n := range c.Nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// Others returns every node but the given ones.
func (c *TestCluster) Others(except ...*TestNode) []*TestNode {
	var out []*TestNode
outer:
	for _, n := range c.Nodes {
		for _, x := range except {
			if n == x {
				continue outer
			}
		}
		out = append(out, n)
	}
	return out
}

func (c *TestCluster) connectAll() {
	for _, a := range c.Nodes {
		for _, b := range c.Nodes {
			if a != b {
				a.Trans.Connect(b.Addr, b.Trans)
			}
		}
	}
}

// Partition cuts the raft traffic between the given nodes and the rest of
// the cluster, in both directions. The given nodes stay connected among
// themselves, as do the others.
func (c *TestCluster) Partition(far ...*TestNode) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range far {
		c.isolated[f.ID] = true
	}
	for _, a := range c.Nodes {
		for _, b := range c.Nodes {
			if a != b && c.isolated[a.ID] != c.isolated[b.ID] {
				a.Trans.Disconnect(b.Addr)
			}
		}
	}
	c.t.Logf("partitioned %v away from the rest", ids(far))
}

// Heal reconnects every pair of nodes.
func (c *TestCluster) Heal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.isolated = map[string]bool{}
	c.connectAll()
}

// connected returns the nodes not cut off by Partition.
func (c *TestCluster) connected() []*TestNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*TestNode
	for _, n := range c.Nodes {
		if !c.isolated[n.ID] {
			out = append(out, n)
		}
	}
	return out
}

// Leader waits until the nodes not cut off by Partition agree on one
// leader that has finished its barrier, and returns it.
func (c *TestCluster) Leader() *TestNode {
	c.t.Helper()
	return c.WaitLeader(c.connected()...)
}

// WaitLeader waits until exactly one of the group is a ready leader
// (LeaderReady: its barrier is done) and every member of the group names it
// as leader, and returns it.
func (c *TestCluster) WaitLeader(group ...*TestNode) *TestNode {
	c.t.Helper()
	var leader *TestNode
	WaitFor(c.t, TestWait, "a leader among "+strings.Join(ids(group), ","), func() error {
		leader = nil
		for _, n := range group {
			if ok, _ := n.Node.LeaderReady(); ok {
				if leader != nil {
					return fmt.Errorf("both %s and %s lead", leader.ID, n.ID)
				}
				leader = n
			}
		}
		if leader == nil {
			return errors.New("no ready leader")
		}
		for _, n := range group {
			if id, _ := n.Node.Leader(); id != leader.ID {
				return fmt.Errorf("%s sees leader %q, want %s", n.ID, id, leader.ID)
			}
		}
		return nil
	})
	return leader
}

// WaitLeaderNot waits for a leader other than old, agreed on by every
// connected node but old, and returns it.
func (c *TestCluster) WaitLeaderNot(old *TestNode) *TestNode {
	c.t.Helper()
	var group []*TestNode
	for _, n := range c.connected() {
		if n != old {
			group = append(group, n)
		}
	}
	return c.WaitLeader(group...)
}

// Followers returns the nodes other than the current leader.
func (c *TestCluster) Followers() (leader *TestNode, followers []*TestNode) {
	c.t.Helper()
	leader = c.Leader()
	return leader, c.Others(leader)
}

// WaitMembers waits until every node's member table holds every node's
// raft and API address, which followers need to forward to the leader.
func (c *TestCluster) WaitMembers() {
	c.t.Helper()
	WaitFor(c.t, TestWait, "member tables complete", func() error {
		for _, n := range c.Nodes {
			for _, m := range c.Nodes {
				rec, ok := n.FSM.Member(m.ID)
				if !ok || rec.APIAddr != m.URL || rec.RaftAddr != string(m.Addr) {
					return fmt.Errorf("%s's member table has %s as %+v (found %v), want api %s", n.ID, m.ID, rec, ok, m.URL)
				}
			}
		}
		return nil
	})
}

// WaitConverged waits until the given nodes (default: all) have the same
// raft log length, have applied all of it, and hold FSM states with the
// same applied index and hash. It returns that index and hash.
func (c *TestCluster) WaitConverged(nodes ...*TestNode) (index uint64, hash string) {
	c.t.Helper()
	if len(nodes) == 0 {
		nodes = c.Nodes
	}
	WaitFor(c.t, TestWait, "replicas converged", func() error {
		last := nodes[0].Node.Raft().LastIndex()
		for _, n := range nodes {
			r := n.Node.Raft()
			if li, ai := r.LastIndex(), r.AppliedIndex(); li != last || ai != last {
				return fmt.Errorf("%s: raft last index %d, applied %d; %s has last index %d", n.ID, li, ai, nodes[0].ID, last)
			}
		}
		for i, n := range nodes {
			idx, sum, err := n.FSM.Hash()
			if err != nil {
				return fmt.Errorf("%s: Hash() = %v", n.ID, err)
			}
			if i == 0 {
				index, hash = idx, sum
				continue
			}
			if idx != index || sum != hash {
				return fmt.Errorf("%s at %d has hash %.12s, %s at %d has %.12s", n.ID, idx, sum, nodes[0].ID, index, hash)
			}
		}
		return nil
	})
	return index, hash
}

// WaitFor polls cond every 10ms until it returns nil, and fails the test
// with cond's last error if that does not happen within timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	testkit.WaitFor(t, timeout, 10*time.Millisecond, what, cond)
}

// TestResponse is an HTTP answer with its body read.
type TestResponse struct {
	Status int
	Header http.Header
	Body   []byte
}

// Do sends a request to node n's API and reads the whole answer. hdr holds
// extra request headers ("Header: value" pairs as a map). A transport error
// fails the test.
func (c *TestCluster) Do(n *TestNode, method, path string, body []byte, hdr map[string]string) TestResponse {
	c.t.Helper()
	resp, err := DoRequest(c.client, n.URL, method, path, body, hdr)
	if err != nil {
		c.t.Fatalf("%s %s on %s: %v", method, path, n.ID, err)
	}
	return resp
}

// DoRequest sends one request to the API at baseURL and reads the answer.
func DoRequest(client *http.Client, baseURL, method, path string, body []byte, hdr map[string]string) (TestResponse, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, baseURL+path, rd)
	if err != nil {
		return TestResponse{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return TestResponse{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return TestResponse{}, err
	}
	return TestResponse{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

func ids(nodes []*TestNode) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.ID
	}
	return out
}

// FreePorts returns n distinct ports free on 127.0.0.1 (testkit.FreePorts).
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports, err := testkit.FreePorts(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}
