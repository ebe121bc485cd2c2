package cluster_test

// Data safety, in process: backup and restore into a fresh cluster, and
// the start-up check that refuses a corrupt snapshot or raft log.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/tdf-project/tdf/cluster"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/server"
)

// A backup from one cluster restored into a fresh one: the restored state
// hash equals the backup's, every replica converges on it, the member
// table names the new cluster's nodes, and the cluster goes on working.
func TestBackupRestoreIntoFreshCluster(t *testing.T) {
	src := server.NewTestCluster(t, server.TestOptions{})
	ctx := ctxT(t)
	leader, followers := src.Followers()
	for i := range 20 {
		if _, err := leader.Node.Apply(ctx, submitCmd(fmt.Sprint("r", i), fmt.Sprint("t-", i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := followers[0].Node.Backup(ctx, &bytes.Buffer{}); !errors.Is(err, cluster.ErrNotLeader) {
		t.Errorf("Backup on a follower = %v, want %v", err, cluster.ErrNotLeader)
	}
	var backup bytes.Buffer
	info, err := leader.Node.Backup(ctx, &backup)
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	// The backup's SHA-256 is the state hash at its index.
	check := fsm.New()
	if err := check.Restore(readCloser(backup.Bytes())); err != nil {
		t.Fatalf("backup does not decode: %v", err)
	}
	idx, sum, _ := check.Hash()
	if idx != info.Index || sum != info.Hash || int64(backup.Len()) != info.Bytes || check.TaskCount() != 20 {
		t.Fatalf("backup info %+v; decoded: index %d hash %s, %d bytes, %d tasks", info, idx, sum, backup.Len(), check.TaskCount())
	}

	dst := server.NewTestCluster(t, server.TestOptions{})
	dleader, dfollowers := dst.Followers()
	if _, err := dfollowers[0].Node.Restore(ctx, bytes.NewReader(backup.Bytes()), false); !errors.Is(err, cluster.ErrNotLeader) {
		t.Errorf("Restore on a follower = %v, want %v", err, cluster.ErrNotLeader)
	}
	// A damaged backup is refused before raft sees it.
	bad := bytes.Clone(backup.Bytes())
	bad[len(bad)/2] ^= 0xFF
	if _, err := dleader.Node.Restore(ctx, bytes.NewReader(bad), false); !errors.Is(err, fsm.ErrInvalid) || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("Restore(damaged backup) = %v, want an invalid, corrupt-snapshot error", err)
	}
	if _, err := dleader.Node.Restore(ctx, bytes.NewReader(backup.Bytes()[:backup.Len()-3]), false); !errors.Is(err, fsm.ErrInvalid) {
		t.Errorf("Restore(truncated backup) = %v, want %v", err, fsm.ErrInvalid)
	}
	if dleader.FSM.TaskCount() != 0 {
		t.Fatalf("a refused restore left %d tasks", dleader.FSM.TaskCount())
	}

	ri, err := dleader.Node.Restore(ctx, bytes.NewReader(backup.Bytes()), false)
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if ri.RestoredHash != info.Hash || ri.Backup != info {
		t.Fatalf("Restore = %+v, want the backup %+v restored with its hash", ri, info)
	}
	dst.WaitConverged()
	dst.WaitMembers()
	// The backup carried the source cluster's id; the restored cluster
	// keeps its own (its leader puts it back), on every node.
	srcID := leader.Node.ClusterID()
	waitFor(t, "the restored cluster to hold its own id again", func() bool {
		own := dleader.Node.ClusterID()
		for _, n := range dst.Nodes {
			if own == "" || own == srcID || n.FSM.ClusterID() != own || n.Node.ClusterID() != own {
				return false
			}
		}
		return true
	})
	for _, n := range dst.Nodes {
		if got := n.FSM.TaskCount(); got != 20 {
			t.Errorf("%s holds %d tasks after the restore, want 20", n.ID, got)
		}
		if ms := n.FSM.Members(); len(ms) != len(dst.Nodes) {
			t.Errorf("%s's member table after the restore: %+v, want only the new cluster's nodes", n.ID, ms)
		}
	}
	if _, err := dleader.Node.Restore(ctx, bytes.NewReader(backup.Bytes()), false); !errors.Is(err, cluster.ErrNotEmpty) {
		t.Errorf("second Restore without force = %v, want %v", err, cluster.ErrNotEmpty)
	}
	// A registered node repairs its record with register_only, which
	// never adds a voter: a node an operator removed stays removed.
	err = dleader.Node.Join(ctx, cluster.JoinRequest{ID: "n9", RaftAddr: "127.0.0.1:1", APIAddr: "http://127.0.0.1:1", RegisterOnly: true})
	if !errors.Is(err, fsm.ErrNotFound) {
		t.Errorf("Join(register_only, not a voter) = %v, want %v", err, fsm.ErrNotFound)
	}
	if v := voterIDs(t, dleader.Node.Raft()); len(v) != 3 || v["n9"] {
		t.Errorf("voters after a register_only join of n9: %v", v)
	}
	// The restored cluster takes writes, and its leader still leads duties.
	lead := dst.Leader()
	res, err := lead.Node.Apply(ctx, submitCmd("after", "t-after"))
	if err != nil || res.Err != nil {
		t.Fatalf("Apply after restore = %+v, %v", res, err)
	}
	dst.WaitConverged()
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

func readCloser(b []byte) nopCloser { return nopCloser{bytes.NewReader(b)} }

// single is a one-node cluster over an in-memory transport, reopened on the
// same data dir.
type single struct {
	t   *testing.T
	dir string
	cfg func(*cluster.Config)
}

func (s single) open() (*cluster.Node, *fsm.FSM, error) {
	cfg := server.TestClusterConfig()
	cfg.NodeID, cfg.DataDir, cfg.APIURL = "n1", s.dir, "http://127.0.0.1:1"
	cfg.Logger = server.TestLogger(s.t)
	_, tr := raft.NewInmemTransport("n1")
	cfg.Transport = tr
	cfg.Bootstrap = []raft.Server{{Suffrage: raft.Voter, ID: "n1", Address: tr.LocalAddr()}}
	if s.cfg != nil {
		s.cfg(&cfg)
	}
	f := fsm.New()
	n, err := cluster.Open(cfg, f)
	if err != nil {
		return nil, nil, err
	}
	n.Start()
	return n, f, nil
}

// fill commits entries with two snapshots among them, closes the node, and
// returns the state hash it had.
func (s single) fill() string {
	s.t.Helper()
	n, f, err := s.open()
	if err != nil {
		s.t.Fatal(err)
	}
	ctx := ctxT(s.t)
	for round := range 2 {
		for i := range 10 {
			if _, err := applyWhenLeader(ctx, n, submitCmd(fmt.Sprint("r", round, i), fmt.Sprint("t-", round, "-", i))); err != nil {
				s.t.Fatal(err)
			}
		}
		if err := n.Raft().Snapshot().Error(); err != nil {
			s.t.Fatalf("snapshot: %v", err)
		}
	}
	if _, err := n.Apply(ctx, submitCmd("last", "t-last")); err != nil {
		s.t.Fatal(err)
	}
	_, sum, _ := f.Hash()
	if err := n.Close(); err != nil {
		s.t.Fatal(err)
	}
	return sum
}

func applyWhenLeader(ctx context.Context, n *cluster.Node, cmd fsm.Command) (*fsm.Result, error) {
	for {
		res, err := n.Apply(ctx, cmd)
		if !errors.Is(err, cluster.ErrNotLeader) {
			return res, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// snapshotDirs lists the node's snapshots, newest first.
func snapshotDirs(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, filepath.Join(dir, "snapshots", e.Name()))
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(out)))
	if len(out) != 2 {
		t.Fatalf("%d snapshots in %s, want 2", len(out), dir)
	}
	return out
}

func flipByte(t *testing.T, path string, at func(size int) int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[at(len(data))] ^= 0xFF
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A corrupt newest snapshot with the log still covering the older one:
// the node starts from the older snapshot and the log, with every entry.
func TestCorruptSnapshotFallsBack(t *testing.T) {
	s := single{t: t, dir: t.TempDir()}
	want := s.fill()
	flipByte(t, filepath.Join(snapshotDirs(t, s.dir)[0], "state.bin"), func(n int) int { return n / 2 })
	n, f, err := s.open()
	if err != nil {
		t.Fatalf("open with a corrupt newest snapshot but a usable older one = %v, want a start", err)
	}
	defer n.Close()
	server.WaitFor(t, server.TestWait, "state replayed", func() error {
		if _, sum, _ := f.Hash(); sum != want {
			return fmt.Errorf("hash %.12s, want %.12s (applied %d)", sum, want, f.AppliedIndex())
		}
		return nil
	})
}

// Without the log to stand in (every entry compacted into the snapshot), a
// corrupt snapshot stops the start with an error naming the file and the
// way out; so does a damaged raft.db. No panic, no half-started node.
func TestCorruptDataRefused(t *testing.T) {
	compact := func(c *cluster.Config) { c.TrailingLogs = 0 }
	t.Run("snapshot", func(t *testing.T) {
		s := single{t: t, dir: t.TempDir(), cfg: compact}
		s.fill()
		newest := snapshotDirs(t, s.dir)[0]
		flipByte(t, filepath.Join(newest, "state.bin"), func(n int) int { return n / 2 })
		_, _, err := s.open()
		wantRefusal(t, err, newest, "CRC")
	})
	t.Run("raft.db truncated", func(t *testing.T) {
		s := single{t: t, dir: t.TempDir()}
		s.fill()
		db := filepath.Join(s.dir, "raft.db")
		if err := os.Truncate(db, 1000); err != nil {
			t.Fatal(err)
		}
		_, _, err := s.open()
		wantRefusal(t, err, db, "")
	})
	t.Run("raft.db pages overwritten", func(t *testing.T) {
		s := single{t: t, dir: t.TempDir()}
		s.fill()
		db := filepath.Join(s.dir, "raft.db")
		data, err := os.ReadFile(db)
		if err != nil {
			t.Fatal(err)
		}
		// Keep bbolt's two meta pages, damage everything after them.
		for i := 2 * 4096; i < len(data); i++ {
			data[i] ^= 0x5A
		}
		if err := os.WriteFile(db, data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, _, err = s.open()
		wantRefusal(t, err, db, "")
	})
}

func wantRefusal(t *testing.T, err error, path, detail string) {
	t.Helper()
	if !errors.Is(err, cluster.ErrCorruptData) {
		t.Fatalf("open = %v, want %v", err, cluster.ErrCorruptData)
	}
	for _, want := range []string{path, detail, "--join", "tdf cluster remove n1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	t.Logf("refused: %v", err)
}

// A snapshot whose meta.json is gone is invisible to raft; with the log
// compacted past it, the node must refuse rather than replay from a gap.
func TestSnapshotMetaLostRefused(t *testing.T) {
	s := single{t: t, dir: t.TempDir(), cfg: func(c *cluster.Config) { c.TrailingLogs = 0 }}
	s.fill()
	for _, d := range snapshotDirs(t, s.dir) {
		if err := os.Remove(filepath.Join(d, "meta.json")); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err := s.open()
	wantRefusal(t, err, filepath.Join(s.dir, "snapshots"), "meta.json missing or unreadable")
}

// A restart decodes the newest snapshot once: the start-up check restores
// it into the node's FSM and raft is told not to restore it again.
func TestRestartRestoresNewestSnapshotOnce(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	s := single{t: t, dir: t.TempDir()}
	want := s.fill()
	s.cfg = func(c *cluster.Config) {
		c.Logger = hclog.New(&hclog.LoggerOptions{Output: &lockedWriter{mu: &mu, w: &logs}, Level: hclog.Info})
	}
	n, f, err := s.open()
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	server.WaitFor(t, server.TestWait, "state replayed", func() error {
		if _, sum, _ := f.Hash(); sum != want {
			return fmt.Errorf("hash %.12s, want %.12s (applied %d)", sum, want, f.AppliedIndex())
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if out := logs.String(); !strings.Contains(out, "snapshot verified and restored") || strings.Contains(out, "starting restore from snapshot") {
		t.Fatalf("want the snapshot restored by the start-up check only; log:\n%s", out)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
