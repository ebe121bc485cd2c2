package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/tdf-project/tdf/cluster"
)

// RawOptions sizes the raw raft benchmark.
type RawOptions struct {
	// Dir holds the three nodes' data directories.
	Dir string
	// Clients lists the concurrency levels, each run for Duration.
	Clients  []int
	Duration time.Duration
	// Payload is the size of each applied entry; tdf's step commands are
	// 200–400 bytes of JSON.
	Payload int
}

// noopFSM is the ceiling's state machine: it does nothing.
type noopFSM struct{ applied atomic.Uint64 }

func (f *noopFSM) Apply(l *raft.Log) interface{} { f.applied.Store(l.Index); return nil }
func (f *noopFSM) Snapshot() (raft.FSMSnapshot, error) {
	return noopSnapshot{}, nil
}
func (f *noopFSM) Restore(rc io.ReadCloser) error { return rc.Close() }

type noopSnapshot struct{}

func (noopSnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (noopSnapshot) Release()                             {}

// rawNode is one raft server wired as cluster.Node wires tdf's (see
// cluster/node.go openRaft): boltdb log and stable store behind a 1024-entry
// log cache, file snapshots keeping two, TCP transport with a pool of 4.
type rawNode struct {
	r     *raft.Raft
	store *raftboltdb.BoltStore
	trans *raft.NetworkTransport
}

func openRawNode(dir, id, addr string, voters []raft.Server) (*rawNode, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	cc := cluster.DefaultConfig()
	cc.NodeID = id
	rc := cc.RaftConfig()
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		return nil, err
	}
	logs, err := raft.NewLogCache(1024, store)
	if err != nil {
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hclog.NewNullLogger())
	if err != nil {
		return nil, err
	}
	tcpAddr, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, err
	}
	trans, err := raft.NewTCPTransportWithLogger(addr, tcpAddr, 4, 10*time.Second, hclog.NewNullLogger())
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("raft transport on %s: %w", addr, err)
	}
	r, err := raft.NewRaft(rc, &noopFSM{}, logs, store, snaps, trans)
	if err != nil {
		trans.Close()
		store.Close()
		return nil, err
	}
	if err := r.BootstrapCluster(raft.Configuration{Servers: voters}).Error(); err != nil {
		return nil, err
	}
	return &rawNode{r: r, store: store, trans: trans}, nil
}

func (n *rawNode) close() {
	_ = n.r.Shutdown().Error()
	n.trans.Close()
	n.store.Close()
}

// RawRaft measures hashicorp/raft Apply on three loopback nodes with tdf's
// stores and configuration and a no-op FSM: for each concurrency level,
// that many clients each apply one entry at a time for opts.Duration.
func RawRaft(ctx context.Context, opts RawOptions) ([]Throughput, error) {
	addrs, err := freeAddrs(3)
	if err != nil {
		return nil, err
	}
	var voters []raft.Server
	for i, a := range addrs {
		voters = append(voters, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(fmt.Sprintf("r%d", i+1)), Address: raft.ServerAddress(a)})
	}
	var nodes []*rawNode
	defer func() {
		for _, n := range nodes {
			n.close()
		}
	}()
	for i, a := range addrs {
		n, err := openRawNode(filepath.Join(opts.Dir, fmt.Sprintf("r%d", i+1)), string(voters[i].ID), a, voters)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	first, err := waitRawLeader(ctx, nodes)
	if err != nil {
		return nil, err
	}
	// On a loaded machine the leader can lose its lease; the clients then
	// find the new one and go on (the time lost stays in the figures).
	var leader atomic.Pointer[rawNode]
	leader.Store(first)
	var mu sync.Mutex
	apply := func(payload []byte) error {
		for {
			l := leader.Load()
			err := l.r.Apply(payload, 10*time.Second).Error()
			if err == nil || !(errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrNotLeader)) {
				return err
			}
			mu.Lock()
			if leader.Load() == l {
				nl, werr := waitRawLeader(ctx, nodes)
				if werr != nil {
					mu.Unlock()
					return werr
				}
				leader.Store(nl)
			}
			mu.Unlock()
		}
	}
	payload := make([]byte, opts.Payload)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	var out []Throughput
	for _, c := range opts.Clients {
		t, err := closedLoop(ctx, c, opts.Duration, func() error {
			return apply(payload)
		})
		if err != nil {
			return out, fmt.Errorf("raw raft at %d clients: %w", c, err)
		}
		out = append(out, t)
	}
	return out, nil
}

func waitRawLeader(ctx context.Context, nodes []*rawNode) (*rawNode, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		for _, n := range nodes {
			if n.r.State() == raft.Leader {
				if err := n.r.Barrier(10 * time.Second).Error(); err == nil {
					return n, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no raft leader within 30s")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// closedLoop runs op from clients goroutines, each one at a time, for d,
// and returns how many completed and their latencies.
func closedLoop(ctx context.Context, clients int, d time.Duration, op func() error) (Throughput, error) {
	var lat Latencies
	var ops atomic.Int64
	var firstErr atomic.Value
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				t0 := time.Now()
				if err := op(); err != nil {
					firstErr.CompareAndSwap(nil, err)
					cancel()
					return
				}
				lat.Add(time.Since(t0))
				ops.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err, ok := firstErr.Load().(error); ok {
		return Throughput{}, err
	}
	return Throughput{Clients: clients, Ops: int(ops.Load()), Elapsed: elapsed, P50: lat.Percentile(50), P99: lat.Percentile(99)}, nil
}
