package bench

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/cluster"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/runner"
	"github.com/tdf-project/tdf/server"
)

// clusterOptions configures a benchmark cluster.
type clusterOptions struct {
	Dir     string
	Workers int
	// Calls bounds the runner's concurrent handler calls (0: default).
	Calls int
	// Handlers builds node i's step handlers; apply commits on that node.
	Handlers func(apply func() applyFunc) map[fsm.Step]runner.Handler
	Policy   fsm.Policy
	Settings fsm.Settings
	Logger   hclog.Logger
}

// tdfCluster is three `tdf server`s in this process: real TCP raft
// transport on loopback, boltdb, file snapshots, HTTP API, runner, with the
// binary's default raft timing.
type tdfCluster struct {
	servers []*server.Server
	addrs   []string
	voters  []raft.Server
	opts    clusterOptions
	// callbacks counts the commands the fakes committed.
	callbacks atomic.Int64
}

func startCluster(ctx context.Context, o clusterOptions) (*tdfCluster, error) {
	c, err := newCluster(o)
	if err != nil {
		return nil, err
	}
	return c, c.startAll(ctx)
}

// newCluster picks the nodes' raft addresses; nothing runs yet.
func newCluster(o clusterOptions) (*tdfCluster, error) {
	addrs, err := freeAddrs(3)
	if err != nil {
		return nil, err
	}
	c := &tdfCluster{addrs: addrs, opts: o, servers: make([]*server.Server, 3)}
	for i, a := range addrs {
		c.voters = append(c.voters, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(fmt.Sprintf("n%d", i+1)), Address: raft.ServerAddress(a)})
	}
	return c, nil
}

// dataDir is node i's data directory.
func (c *tdfCluster) dataDir(i int) string { return filepath.Join(c.opts.Dir, string(c.voters[i].ID)) }

// startAll starts every node and waits for the cluster to be ready.
func (c *tdfCluster) startAll(ctx context.Context) error {
	for i := range c.servers {
		if err := c.start(i); err != nil {
			c.close()
			return err
		}
	}
	if _, err := c.waitReady(ctx); err != nil {
		c.close()
		return err
	}
	return nil
}

// start (re)starts node i on its data directory.
func (c *tdfCluster) start(i int) error {
	o := c.opts
	cc := cluster.DefaultConfig()
	cc.NodeID = string(c.voters[i].ID)
	cc.DataDir = c.dataDir(i)
	cc.RaftAddr = c.addrs[i]
	cc.Bootstrap = c.voters
	ac := api.DefaultConfig()
	ac.Policy = o.Policy
	ac.Client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 512}}
	rc := runner.DefaultConfig()
	if o.Workers > 0 {
		rc.Workers = o.Workers
	}
	if o.Calls > 0 {
		rc.Calls = o.Calls
	}
	logger := o.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	var mu sync.Mutex
	var srv *server.Server
	apply := func() applyFunc {
		mu.Lock()
		defer mu.Unlock()
		s := srv
		return func(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) {
			c.callbacks.Add(1)
			return s.Node.Apply(ctx, cmd)
		}
	}
	cfg := server.Config{
		Cluster:  cc,
		API:      ac,
		HTTPAddr: "127.0.0.1:0",
		Runner:   rc,
		Settings: o.Settings,
		Logger:   logger.With("node", cc.NodeID),
		// The benchmarks' clients send no API token: they measure the
		// pipeline, and a token lookup is one hash per request.
		InsecureNoAuth: true,
	}
	if o.Handlers != nil {
		cfg.Handlers = o.Handlers(apply)
	}
	// The handlers read srv only after the node leads, long after Start
	// returned; the mutex makes that visible to the race detector.
	mu.Lock()
	s, err := server.Start(cfg)
	srv = s
	mu.Unlock()
	if err != nil {
		return fmt.Errorf("start %s: %w", cc.NodeID, err)
	}
	c.servers[i] = s
	return nil
}

// readyWait bounds waitReady.
const readyWait = 15 * time.Minute

// waitReady waits for a leader whose barrier is done and whose member
// table holds every node's API address (so followers can forward).
func (c *tdfCluster) waitReady(ctx context.Context) (*server.Server, error) {
	// Generous: on an overloaded machine elections can take many rounds,
	// and three nodes restarting on a 1M-task snapshot each verify and
	// restore it on two shared cores (more than 3 minutes even on an idle
	// machine, 2026-11-25).
	ctx, cancel := context.WithTimeout(ctx, readyWait)
	defer cancel()
	for {
		if l := c.leader(); l != nil && c.membersKnown() {
			return l, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("cluster not ready within %s (no ready leader, or member tables incomplete)", readyWait)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (c *tdfCluster) leader() *server.Server {
	for _, s := range c.servers {
		if s == nil {
			continue
		}
		if ok, _ := s.Node.LeaderReady(); ok {
			return s
		}
	}
	return nil
}

func (c *tdfCluster) membersKnown() bool {
	for _, s := range c.servers {
		for _, m := range c.servers {
			if s == nil || m == nil {
				return false
			}
			if rec, ok := s.FSM.Member(m.Node.ID()); !ok || rec.APIAddr != m.URL {
				return false
			}
		}
	}
	return true
}

// commands is how many commands the leader's runner and the fakes have
// committed (a batch counts each member).
func (c *tdfCluster) commands(leader *server.Server) uint64 {
	st := leader.Runner.Stats()
	return st.Claims.Load() + st.Results.Load() + st.Decisions.Load() + st.Timeouts.Load() + st.NodeAlarms.Load() +
		st.SweeperActions.Load() + uint64(c.callbacks.Load())
}

func (c *tdfCluster) follower() *server.Server {
	l := c.leader()
	for _, s := range c.servers {
		if s != l {
			return s
		}
	}
	return nil
}

func (c *tdfCluster) close() {
	var wg sync.WaitGroup
	for _, s := range c.servers {
		if s == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = s.Close()
		}()
	}
	wg.Wait()
}
