package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/tdf-project/tdf/fsm"
)

// Node is one member of the tdf cluster: a raft server with the FSM.
type Node struct {
	cfg       Config
	log       hclog.Logger
	fsm       *fsm.FSM
	raft      *raft.Raft
	transport raft.Transport
	store     *raftboltdb.BoltStore

	hooksMu sync.Mutex
	hooks   []LeaderHook

	// leaderReady is set while this node leads and its Barrier has
	// completed: only then does its FSM reflect every committed entry.
	leaderMu    sync.RWMutex
	leaderReady bool
	leaderTerm  uint64

	leaderChanges atomic.Uint64

	// leaderCtl suspends and resumes the leader loop (a user restore).
	leaderCtl chan leaderCtlReq
	// faults is the raft stream layer's fault hook (Config.FaultInjection).
	faults *FaultLayer
	// layer is the cluster handshake over the TCP transport (handshake.go);
	// nil with Config.Transport.
	layer  *clusterLayer
	stable raft.StableStore
	// clusterID is the id of the cluster this node belongs to (bootstrap.go).
	clusterMu    sync.Mutex
	clusterID    string
	knownMembers map[string]bool
	// fatal carries the error that keeps this node out of every cluster.
	fatal chan error
	// disk records write failures and free space (disk.go).
	disk *diskHealth
	// contacts holds peers' answers and the commit index to catch up to
	// after start (contact.go).
	contacts *peerContacts
	// logs is the log store raft uses, for reading entry types (health.go).
	logs raft.LogStore
	// leaderSince is when this node last became leader (unix nanoseconds).
	leaderSince atomic.Int64
	// bootstrapWait says what a node without state waits for.
	bootstrapWait atomic.Value
	// Group commit (batch.go), started by the first Batched call.
	batchOnce sync.Once
	batchCh   chan batchReq

	shutdownOnce sync.Once
	shutdownCh   chan struct{}
	wg           sync.WaitGroup
}

// LeaderHook runs while this node is the ready leader of term. ctx is
// cancelled when leadership is lost or the node shuts down; the hook must
// return promptly then. A new term's hooks start only after every hook of
// the previous term has returned.
type LeaderHook func(ctx context.Context, term uint64)

// Open starts a raft node over the FSM. Hooks added with OnLeader before
// Start run on every term this node leads.
func Open(cfg Config, f *fsm.FSM) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	if cfg.DiskProbeInterval <= 0 {
		cfg.DiskProbeInterval = time.Second
	}
	n := &Node{cfg: cfg, log: cfg.Logger.Named("cluster"), fsm: f, shutdownCh: make(chan struct{}), leaderCtl: make(chan leaderCtlReq), fatal: make(chan error, 1),
		disk: &diskHealth{}, contacts: newPeerContacts()}
	n.disk.onChange = n.diskChanged
	if err := n.openRaft(); err != nil {
		n.closeStores()
		return nil, err
	}
	if cfg.DeadServerAfter > 0 {
		n.OnLeader(n.cleanupDeadServers)
	}
	n.OnLeader(n.ensureClusterID)
	return n, nil
}

func (n *Node) openRaft() error {
	store, err := openStore(n.cfg)
	if err != nil {
		return err
	}
	n.store, n.stable = store, store
	n.clusterID, n.knownMembers = readClusterID(store), readMembers(store)
	cache, err := raft.NewLogCache(1024, store)
	if err != nil {
		return err
	}
	// Outside the cache, whose errors do not wrap the store's.
	logs := &diskLog{LogStore: cache, health: n.disk, faults: n.cfg.DiskFaults, path: filepath.Join(n.cfg.DataDir, "raft.db")}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(n.cfg.DataDir, 2, n.cfg.Logger.Named("snapshot"))
	if err != nil {
		return fmt.Errorf("open snapshot store: %w", err)
	}
	n.logs = logs
	restored, err := verifyData(n.cfg, n.log, store, snaps, n.fsm)
	if err != nil {
		return err
	}
	hasState, err := raft.HasExistingState(logs, store, snaps)
	if err != nil {
		return fmt.Errorf("read raft state: %w", err)
	}
	// A node without state in the bootstrap set asks its peers before it
	// bootstraps, and takes no raft connection until then (bootstrap.go).
	guarded := !hasState && n.inBootstrapSet() && n.cfg.Transport == nil
	n.transport = n.cfg.Transport
	if n.transport == nil {
		if n.transport, err = n.tcpTransport(!guarded, hasState); err != nil {
			return err
		}
	}
	rc := n.cfg.raftConfig()
	rc.NoSnapshotRestoreOnStart = restored // verifyData restored raft's newest snapshot
	r, err := raft.NewRaft(rc, n.fsm, logs, store, snaps, gateTransport(n.transport, n.disk, &seenTransport{contacts: n.contacts, done: n.shutdownCh}))
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	n.raft = r
	if n.layer != nil {
		n.layer.setFacts(n.peerFacts)
	}
	if guarded {
		n.goFunc(n.guardedBootstrap)
		return nil
	}
	if !hasState && n.inBootstrapSet() {
		// Every node of the set bootstraps with the same configuration;
		// raft makes that safe, and a later call fails harmlessly.
		err := r.BootstrapCluster(raft.Configuration{Servers: n.cfg.Bootstrap}).Error()
		if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return fmt.Errorf("bootstrap: %w", err)
		}
		n.log.Info("bootstrapped cluster", "servers", len(n.cfg.Bootstrap))
	}
	return nil
}

func (n *Node) tcpTransport(open, hasState bool) (raft.Transport, error) {
	adv := n.cfg.RaftAdvertise
	if adv == "" {
		adv = n.cfg.RaftAddr
	}
	advAddr, err := net.ResolveTCPAddr("tcp", adv)
	if err != nil {
		return nil, fmt.Errorf("raft advertise address %q: %w", adv, err)
	}
	// base stream layer (TCP or mutual TLS) → FaultLayer (chaos only) →
	// cluster handshake → raft's network transport.
	var stream raft.StreamLayer
	stream, err = NewStreamLayer(n.cfg.RaftAddr, advAddr, n.cfg.RaftTLS)
	if err != nil {
		return nil, fmt.Errorf("raft transport on %s: %w", n.cfg.RaftAddr, err)
	}
	if n.cfg.FaultInjection {
		n.faults = NewFaultLayer(stream)
		stream = n.faults
		n.log.Warn("FAULT INJECTION IS ON: this node's raft traffic can be cut through /debug/faults; never run it in production")
	}
	n.layer = newClusterLayer(stream, n.cfg.NodeID, n.clusterID, open, n.log.Named("handshake"))
	// Under the layer's lock: its accept loop already answers probes.
	n.layer.mu.Lock()
	n.layer.hasState = hasState
	n.layer.mu.Unlock()
	return raft.NewNetworkTransportWithLogger(n.layer, 4, 10*time.Second, n.cfg.Logger.Named("transport")), nil
}

func (n *Node) inBootstrapSet() bool {
	for _, s := range n.cfg.Bootstrap {
		if string(s.ID) == n.cfg.NodeID {
			return true
		}
	}
	return false
}

// OnLeader registers a hook that runs on every term this node leads.
// Register hooks before Start.
func (n *Node) OnLeader(h LeaderHook) {
	n.hooksMu.Lock()
	n.hooks = append(n.hooks, h)
	n.hooksMu.Unlock()
}

// Start runs the leadership loop, the self-registration loop and the
// leader-change counter.
func (n *Node) Start() {
	n.goFunc(n.monitorLeadership)
	n.goFunc(n.registerSelf)
	n.goFunc(n.countLeaderChanges)
	n.goFunc(n.learnClusterID)
	n.goFunc(n.watchDisk)
}

// countLeaderChanges counts the leader changes this node observes. The
// observer channel is buffered and non-blocking, so raft never waits on it.
func (n *Node) countLeaderChanges() {
	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(obs)
	defer n.raft.DeregisterObserver(obs)
	for {
		select {
		case <-ch:
			n.leaderChanges.Add(1)
		case <-n.shutdownCh:
			return
		}
	}
}

// LeaderChanges is how many leader changes this node has observed.
func (n *Node) LeaderChanges() uint64 { return n.leaderChanges.Load() }

func (n *Node) goFunc(f func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
}

// ID is this node's raft id.
func (n *Node) ID() string { return n.cfg.NodeID }

// APIURL is this node's advertised API URL.
func (n *Node) APIURL() string { return n.cfg.APIURL }

// FSM is the node's local replica of the state.
func (n *Node) FSM() *fsm.FSM { return n.fsm }

// Raft exposes the raft instance for tests and diagnostics.
func (n *Node) Raft() *raft.Raft { return n.raft }

// IsLeader reports whether this node currently believes it leads.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the current leader's id and raft address, if one is known.
func (n *Node) Leader() (id, raftAddr string) {
	addr, sid := n.raft.LeaderWithID()
	return string(sid), string(addr)
}

// LeaderAPI returns the leader's id and API URL, if both are known.
func (n *Node) LeaderAPI() (id, url string, ok bool) {
	id, _ = n.Leader()
	if id == "" {
		return "", "", false
	}
	if id == n.cfg.NodeID {
		return id, n.cfg.APIURL, true
	}
	m, found := n.fsm.Member(id)
	if !found || m.APIAddr == "" {
		return id, "", false
	}
	return id, m.APIAddr, true
}

// WaitLeader waits until some leader is known, or ctx ends.
func (n *Node) WaitLeader(ctx context.Context) (string, error) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if id, _ := n.Leader(); id != "" {
			return id, nil
		}
		select {
		case <-ctx.Done():
			return "", ErrNoLeader
		case <-n.shutdownCh:
			return "", ErrShutdown
		case <-t.C:
		}
	}
}

// TransferLeadership hands leadership to another voter if this node leads,
// so that a planned stop costs the cluster no election timeout.
func (n *Node) TransferLeadership() {
	if n.raft == nil || !n.IsLeader() || n.voters() < 2 {
		return
	}
	if err := n.raft.LeadershipTransfer().Error(); err != nil {
		n.log.Warn("leadership transfer failed", "error", err)
		return
	}
	n.log.Info("leadership transferred")
}

// TransferLeadershipTo hands leadership to the named voter, or to any
// voter if id is empty. Leader only.
func (n *Node) TransferLeadershipTo(id string) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	var f raft.Future
	if id == "" {
		f = n.raft.LeadershipTransfer()
	} else {
		m, ok := n.fsm.Member(id)
		if !ok {
			return fmt.Errorf("%w: member %s", fsm.ErrNotFound, id)
		}
		f = n.raft.LeadershipTransferToServer(raft.ServerID(id), raft.ServerAddress(m.RaftAddr))
	}
	return mapRaftErr(f.Error())
}

// Close shuts the node down, handing leadership over first.
func (n *Node) Close() error {
	var err error
	n.shutdownOnce.Do(func() {
		n.TransferLeadership()
		close(n.shutdownCh)
		if n.raft != nil {
			err = n.raft.Shutdown().Error()
		}
		n.wg.Wait()
		close(n.fatal) // no sender is left
		n.closeStores()
	})
	return err
}

func (n *Node) closeStores() {
	if c, ok := n.transport.(raft.WithClose); ok && n.cfg.Transport == nil {
		_ = c.Close()
	}
	if n.store != nil {
		_ = n.store.Close()
	}
}

func (n *Node) voters() int {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	c := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			c++
		}
	}
	return c
}
