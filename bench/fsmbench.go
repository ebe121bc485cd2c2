package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/tdf-project/tdf/fsm"
)

// MemoryPerTask drives n tasks to completion on a fresh FSM (no raft) and
// returns the live heap it grew by, per task. Each task here provisions its
// own node, so the figure includes one node, one workspace, one
// idempotency key and the task itself.
func MemoryPerTask(ctx context.Context, n int) (bytesPerTask float64, err error) {
	f := fsm.New()
	m0 := liveHeap()
	d := newFSMDriver(f)
	for i := 0; i < n; i++ {
		if err := d.finish(ctx, i); err != nil {
			return 0, err
		}
	}
	m1 := liveHeap()
	runtime.KeepAlive(f)
	return float64(int64(m1)-int64(m0)) / float64(n), nil
}

func liveHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// SnapshotOptions sizes the snapshot and restart benchmark.
type SnapshotOptions struct {
	Dir string
	// Tasks finished tasks are in the snapshot: Seed of them driven to
	// completion on an FSM, each copied Tasks/Seed times under new ids.
	Tasks, Seed int
	// Restart also restarts a three-node cluster from the snapshot.
	Restart bool
}

// SnapshotResult holds the snapshot figures.
type SnapshotResult struct {
	Tasks int
	Bytes int64
	// Persist is FSM.Snapshot + Persist into raft's file snapshot store,
	// fsync included; Restore is opening it and FSM.Restore.
	Persist, Restore time.Duration
	// HeapPerTask is the live heap per task after the restore.
	HeapPerTask float64
	// ClusterReady is three nodes started on the snapshot → a ready leader
	// with its runner started and every node's /readyz answering.
	ClusterReady time.Duration
	// FollowerReady is one follower stopped and started again → its FSM at
	// the leader's index and its /readyz answering.
	FollowerReady time.Duration
}

// Snapshot builds a state of opts.Tasks finished tasks, times persisting and
// restoring it through raft's file snapshot store, and (with Restart) the
// restart of a cluster holding it.
func Snapshot(ctx context.Context, opts SnapshotOptions) (SnapshotResult, error) {
	res := SnapshotResult{Tasks: opts.Tasks}
	seed := fsm.New()
	d := newFSMDriver(seed)
	for i := 0; i < opts.Seed; i++ {
		if err := d.finish(ctx, i); err != nil {
			return res, err
		}
	}
	var seedSnap bytes.Buffer
	if err := seed.WriteSnapshot(&seedSnap); err != nil {
		return res, err
	}
	// The synthesized state goes to a file, not memory: at 1M tasks it is
	// hundreds of megabytes.
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return res, err
	}
	bigPath := filepath.Join(opts.Dir, "synthesized.snap")
	big, err := os.Create(bigPath)
	if err != nil {
		return res, err
	}
	defer os.Remove(bigPath)
	if err := multiplySnapshot(big, seedSnap.Bytes(), opts.Tasks/opts.Seed); err != nil {
		big.Close()
		return res, err
	}
	if _, err := big.Seek(0, io.SeekStart); err != nil {
		return res, err
	}
	c, err := newCluster(clusterOptions{Dir: opts.Dir, Handlers: zeroDelayHandlers, Policy: benchPolicy(), Settings: benchSettings()})
	if err != nil {
		return res, err
	}
	cfg := raft.Configuration{Servers: c.voters}
	index := d.index
	// Restore: the synthesized snapshot into a fresh FSM.
	f := fsm.New()
	h0 := liveHeap()
	t0 := time.Now()
	if err := f.Restore(big); err != nil {
		return res, fmt.Errorf("restore the synthesized snapshot: %w", err)
	}
	res.HeapPerTask = float64(int64(liveHeap())-int64(h0)) / float64(f.TaskCount())
	if n := f.TaskCount(); n != opts.Tasks {
		return res, fmt.Errorf("restored %d tasks, want %d", n, opts.Tasks)
	}
	// Persist it as raft does, into node 1's snapshot store.
	store1, err := raft.NewFileSnapshotStoreWithLogger(c.dataDir(0), 2, hclog.NewNullLogger())
	if err != nil {
		return res, err
	}
	t0 = time.Now()
	snap, err := f.Snapshot()
	if err != nil {
		return res, err
	}
	sink, err := store1.Create(raft.SnapshotVersionMax, index, 1, cfg, 1, peerEncoder)
	if err != nil {
		return res, err
	}
	if err := snap.Persist(sink); err != nil {
		return res, err
	}
	res.Persist = time.Since(t0)
	f = nil
	// Restore as raft does on start: open the newest snapshot, Restore.
	metas, err := store1.List()
	if err != nil || len(metas) == 0 {
		return res, fmt.Errorf("list snapshots: %v (%d)", err, len(metas))
	}
	res.Bytes = metas[0].Size
	t0 = time.Now()
	_, rc, err := store1.Open(metas[0].ID)
	if err != nil {
		return res, err
	}
	g := fsm.New()
	if err := g.Restore(rc); err != nil {
		return res, err
	}
	res.Restore = time.Since(t0)
	if !opts.Restart {
		return res, nil
	}
	// The other two nodes get a copy, as if each had taken it.
	for i := 1; i < 3; i++ {
		if err := copySnapshot(store1, metas[0].ID, c.dataDir(i), index, cfg); err != nil {
			return res, err
		}
	}
	g = nil
	runtime.GC()
	t0 = time.Now()
	if err := c.startAll(ctx); err != nil {
		return res, fmt.Errorf("restart on the snapshot: %w", err)
	}
	defer c.close()
	if err := waitUntil(ctx, 5*time.Minute, func() bool { return c.allReady(ctx) }); err != nil {
		return res, err
	}
	res.ClusterReady = time.Since(t0)
	fi := 0
	for i, s := range c.servers {
		if s == c.follower() {
			fi = i
		}
	}
	if err := c.servers[fi].Close(); err != nil {
		return res, err
	}
	c.servers[fi] = nil
	t0 = time.Now()
	if err := c.start(fi); err != nil {
		return res, err
	}
	if err := waitUntil(ctx, 5*time.Minute, func() bool {
		l := c.leader()
		return l != nil && c.servers[fi].FSM.AppliedIndex() >= l.FSM.AppliedIndex() && c.readyz(ctx, fi)
	}); err != nil {
		return res, fmt.Errorf("follower restart: %w", err)
	}
	res.FollowerReady = time.Since(t0)
	return res, nil
}

// peerEncoder only encodes the peer addresses of old snapshot versions.
var _, peerEncoder = raft.NewInmemTransport("")

// allReady: a leader with its runner started, every node answering /readyz.
func (c *tdfCluster) allReady(ctx context.Context) bool {
	l := c.leader()
	if l == nil || !l.Runner.Started() {
		return false
	}
	for i := range c.servers {
		if !c.readyz(ctx, i) {
			return false
		}
	}
	return true
}

func (c *tdfCluster) readyz(ctx context.Context, i int) bool {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.servers[i].URL+"/readyz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func copySnapshot(from *raft.FileSnapshotStore, id, dir string, index uint64, cfg raft.Configuration) error {
	store, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hclog.NewNullLogger())
	if err != nil {
		return err
	}
	_, rc, err := from.Open(id)
	if err != nil {
		return err
	}
	defer rc.Close()
	sink, err := store.Create(raft.SnapshotVersionMax, index, 1, cfg, 1, peerEncoder)
	if err != nil {
		return err
	}
	if _, err := io.Copy(sink, rc); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

// multiplySnapshot writes seed (an FSM snapshot, format 2 of
// fsm/snapshot.go) with every task record repeated k times under new ids
// (task-X-rNNNN); the other records are copied once. It re-frames and
// re-checksums the stream as the FSM writes it. A binary task record
// starts with its id as a string of fsm/codec.go: a uvarint of 64 + its
// length, then its bytes.
func multiplySnapshot(w io.Writer, seed []byte, k int) error {
	const magic = "TDFSNAP2"
	const kindTask, kindEnd, literal = 3, 0xFF, 64
	if !bytes.HasPrefix(seed, []byte(magic)) {
		return fmt.Errorf("seed snapshot has no format-2 header")
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	crc := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	out := io.MultiWriter(bw, crc)
	out.Write([]byte(magic))
	var count uint64
	var lenb [binary.MaxVarintLen64]byte
	record := func(kind byte, body []byte) {
		out.Write([]byte{kind})
		out.Write(lenb[:binary.PutUvarint(lenb[:], uint64(len(body)))])
		out.Write(body)
		count++
	}
	r := bytes.NewReader(seed[len(magic):])
	for {
		kind, err := r.ReadByte()
		if err != nil {
			return fmt.Errorf("seed snapshot truncated")
		}
		if kind == kindEnd {
			break
		}
		n, err := binary.ReadUvarint(r)
		if err != nil {
			return err
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return err
		}
		if kind != kindTask {
			record(kind, body)
			continue
		}
		code, m := binary.Uvarint(body)
		if m <= 0 || code < literal || uint64(len(body)-m) < code-literal {
			return fmt.Errorf("task record does not start with its id")
		}
		id, rest := body[m:m+int(code-literal)], body[m+int(code-literal):]
		for j := 0; j < k; j++ {
			nid := fmt.Appendf(append([]byte(nil), id...), "-r%04d", j)
			nb := binary.AppendUvarint(make([]byte, 0, len(body)+8), literal+uint64(len(nid)))
			nb = append(append(nb, nid...), rest...)
			record(kindTask, nb)
		}
	}
	var trailer [13]byte
	trailer[0] = kindEnd
	binary.BigEndian.PutUint64(trailer[1:9], count)
	out.Write(trailer[:9])
	binary.BigEndian.PutUint32(trailer[9:], crc.Sum32())
	bw.Write(trailer[9:])
	return bw.Flush()
}
