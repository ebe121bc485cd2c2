package cluster_test

import (
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/tdf-project/tdf/fsm"
)

// Replicas that are never restarted must end in the same state as the
// others however often their leader is cut off: a deposed leader's
// uncommitted entries are dropped, never applied. Three raft nodes over
// in-memory transports run the real FSM; whoever believes it leads keeps
// committing commands (error records are not idempotent, so an entry
// applied on one replica only shows in the hash), the leader is isolated
// again and again while it does, snapshots are taken and installed often,
// and at the end every replica's state must be the same.
func TestReplicasAgreeThroughLeaderPartitions(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	const nodes = 3
	c := newInmemCluster(t, nodes)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var seq atomic.Uint64
	for i := range nodes {
		for w := 0; w < 3; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewSource(int64(i*10 + w)))
				for !stop.Load() {
					if c.rafts[i].State() != raft.Leader {
						time.Sleep(2 * time.Millisecond)
						continue
					}
					data := replicaEntry(rng, fmt.Sprintf("n%d", i), seq.Add(1))
					_ = c.rafts[i].Apply(data, 50*time.Millisecond).Error()
				}
			}()
		}
	}
	rng := rand.New(rand.NewSource(1))
	deadline := time.Now().Add(4 * time.Second)
	cuts := 0
	for time.Now().Before(deadline) {
		time.Sleep(time.Duration(50+rng.Intn(100)) * time.Millisecond)
		leader := c.leader()
		if leader < 0 {
			continue
		}
		c.isolate(leader)
		cuts++
		time.Sleep(time.Duration(50+rng.Intn(250)) * time.Millisecond)
		c.heal()
	}
	stop.Store(true)
	wg.Wait()
	c.heal()
	if cuts < 3 {
		t.Fatalf("only %d leader partitions in the run", cuts)
	}
	c.waitSameState(t, 20*time.Second)
	t.Logf("%d leader partitions, %d commands proposed; replicas agree", cuts, seq.Load())
}

// replicaEntry is a command, now and then a batch, that changes the state
// every time it is applied.
func replicaEntry(rng *rand.Rand, node string, n uint64) []byte {
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(n) * time.Millisecond)
	one := func(k uint64) []byte {
		var c fsm.Command = fsm.RecordError{Record: fsm.ErrorRecord{Kind: fsm.ErrKindReconciler, Message: fmt.Sprintf("%s #%d", node, k), At: at}}
		if rng.Intn(3) == 0 {
			c = fsm.SubmitTask{TaskID: fmt.Sprintf("t-%s-%d", node, k), Spec: fsm.TaskSpec{ProjectID: "p", UserID: "u", Prompt: "x", Repository: "r"}, At: at}
		}
		data, err := fsm.Encode(c)
		if err != nil {
			panic(err)
		}
		return data
	}
	if rng.Intn(4) == 0 {
		return fsm.EncodeBatch([][]byte{one(n), one(n + 1<<40)})
	}
	return one(n)
}

// inmemCluster is raft nodes over in-memory transports and stores, with
// snapshots often (a lagging node is sent one).
type inmemCluster struct {
	fsms  []*fsm.FSM
	rafts []*raft.Raft
	trans []*raft.InmemTransport
	addrs []raft.ServerAddress
}

func newInmemCluster(t *testing.T, n int) *inmemCluster {
	c := &inmemCluster{}
	var servers []raft.Server
	for i := range n {
		addr, tr := raft.NewInmemTransport("")
		c.trans, c.addrs = append(c.trans, tr), append(c.addrs, addr)
		servers = append(servers, raft.Server{ID: raft.ServerID(fmt.Sprint("n", i)), Address: addr})
	}
	c.heal()
	for i := range n {
		conf := raft.DefaultConfig()
		conf.LocalID = servers[i].ID
		conf.HeartbeatTimeout, conf.ElectionTimeout = 50*time.Millisecond, 50*time.Millisecond
		conf.LeaderLeaseTimeout, conf.CommitTimeout = 50*time.Millisecond, 5*time.Millisecond
		// Small appends: a node that rejoins gets the log in many pieces.
		conf.MaxAppendEntries = 2
		conf.SnapshotInterval, conf.SnapshotThreshold, conf.TrailingLogs = 100*time.Millisecond, 200, 50
		conf.Logger = hclog.NewNullLogger()
		f := fsm.New()
		store := raft.NewInmemStore()
		// File snapshots, as in production: raft's in-memory snapshot
		// store races between a snapshot being written and one being
		// sent (its buffer is shared), which -race reports.
		snaps, err := raft.NewFileSnapshotStore(t.TempDir(), 2, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		r, err := raft.NewRaft(conf, f, store, store, snaps, c.trans[i])
		if err != nil {
			t.Fatal(err)
		}
		c.fsms, c.rafts = append(c.fsms, f), append(c.rafts, r)
	}
	if err := c.rafts[0].BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, r := range c.rafts {
			_ = r.Shutdown().Error()
		}
	})
	return c
}

// leader is the index of a node that is leader now, or -1.
func (c *inmemCluster) leader() int {
	for i, r := range c.rafts {
		if r.State() == raft.Leader {
			return i
		}
	}
	return -1
}

// isolate cuts node i off from the others, both ways.
func (c *inmemCluster) isolate(i int) {
	c.trans[i].DisconnectAll()
	for j, tr := range c.trans {
		if j != i {
			tr.Disconnect(c.addrs[i])
		}
	}
}

func (c *inmemCluster) heal() {
	for i, a := range c.trans {
		for j, b := range c.trans {
			if i != j {
				a.Connect(c.addrs[j], b)
			}
		}
	}
}

// waitSameState waits until every replica has applied the same log and
// holds the same state; it fails naming the records that differ.
func (c *inmemCluster) waitSameState(t *testing.T, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var idx []uint64
		var sums []string
		for _, f := range c.fsms {
			i, s, err := f.Hash()
			if err != nil {
				t.Fatal(err)
			}
			idx, sums = append(idx, i), append(sums, s)
		}
		same := true
		for i := range sums {
			same = same && idx[i] == idx[0] && sums[i] == sums[0]
		}
		if same && idx[0] > 0 {
			return
		}
		if time.Now().After(deadline) {
			for i := 1; i < len(c.fsms); i++ {
				if idx[i] == idx[0] && sums[i] != sums[0] {
					var a, b bytes.Buffer
					_ = c.fsms[0].WriteSnapshot(&a)
					_ = c.fsms[i].WriteSnapshot(&b)
					d, _ := fsm.SnapshotDifference(&a, &b)
					t.Fatalf("n0 and n%d differ at index %d:\n%s", i, idx[0], d)
				}
			}
			t.Fatalf("replicas did not reach one state within %s: indexes %v, hashes %.12v", within, idx, sums)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
