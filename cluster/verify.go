package cluster

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/tdf-project/tdf/fsm"
)

// ErrCorruptData marks a data directory that failed the start-up check: a
// snapshot whose checksum does not match, or a raft log that cannot be
// read or decoded. The node refuses to start rather than panic later in
// raft (a missing log entry) or in the FSM (an undecodable command), which
// under a supervisor would be a crash loop.
var ErrCorruptData = errors.New("corrupt data")

// corruptAdvice is what to do about a corrupt data directory: the cluster
// still holds every committed entry, so this node's copy can be dropped.
func corruptAdvice(cfg Config) string {
	return fmt.Sprintf("this node's copy of the state cannot be trusted; the other members still hold it. "+
		"Move %s aside, remove the member (tdf cluster remove %s), and start the node again with an empty data dir and --join <URL of a member> "+
		"(docs/operations.md, \"Corrupt data\")", cfg.DataDir, cfg.NodeID)
}

// verifyData checks the snapshots and the raft log before raft reads them.
//
// The state is rebuilt from the newest snapshot that verifies plus the log
// entries after it, so that snapshot must reach the log: the log may not
// start after snapshot index + 1. raft itself falls back to an older
// snapshot when the newest fails its CRC, but it does not check that the
// log still holds the entries after the older one; if not, it panics when
// it reaches the gap. So a corrupt snapshot is accepted (with an error and
// a warning in the log) only when an older one verifies and connects to
// the log; otherwise the node refuses to start.
//
// The check restores the snapshot it accepts, and when that is the newest
// (the one raft would restore) it restores it into f itself and reports
// restored: raft is then told not to restore it again, which halves a
// restart's work (a million tasks take seconds to decode).
func verifyData(cfg Config, log hclog.Logger, store *raftboltdb.BoltStore, snaps raft.SnapshotStore, f *fsm.FSM) (restored bool, err error) {
	first, last, err := verifyLog(store)
	if err != nil {
		return false, fmt.Errorf("%w: raft log %s: %v; %s", ErrCorruptData, filepath.Join(cfg.DataDir, "raft.db"), err, corruptAdvice(cfg))
	}
	snapDir := filepath.Join(cfg.DataDir, "snapshots")
	metas, err := snaps.List()
	if err != nil {
		return false, fmt.Errorf("%w: list snapshots in %s: %v; %s", ErrCorruptData, snapDir, err, corruptAdvice(cfg))
	}
	problems := unlistedSnapshots(snapDir, metas)
	for _, p := range problems {
		log.Error("snapshot without a readable meta.json is ignored", "problem", p)
	}
	connects := func(index uint64) bool { return last == 0 || first <= index+1 }
	for i, m := range metas {
		path := filepath.Join(snapDir, m.ID)
		into := f // the newest is what raft would restore: restore it once, here
		if i > 0 {
			into = fsm.New()
		}
		start := time.Now()
		if verr := verifySnapshot(snaps, m.ID, into); verr != nil {
			log.Error("snapshot is corrupt", "path", path, "error", verr)
			problems = append(problems, fmt.Sprintf("snapshot %s: %v", path, verr))
			continue
		}
		if !connects(m.Index) {
			problems = append(problems, fmt.Sprintf("snapshot %s (index %d) does not reach the log, which starts at entry %d", path, m.Index, first))
			continue
		}
		if i > 0 {
			log.Warn("starting from an older snapshot; the log holds every entry after it", "path", path, "index", m.Index)
			return false, nil
		}
		log.Info("snapshot verified and restored", "path", path, "index", m.Index, "took", time.Since(start))
		return true, nil
	}
	if len(metas) == 0 && connects(0) {
		// No snapshot raft would read: the log holds every entry.
		return false, nil
	}
	if len(metas) == 0 {
		problems = append(problems, fmt.Sprintf("no snapshot in %s holds the entries before the log's first, %d", snapDir, first))
	}
	return false, fmt.Errorf("%w: %s; no snapshot plus the log (entries %d..%d) can rebuild the state; %s",
		ErrCorruptData, strings.Join(problems, "; "), first, last, corruptAdvice(cfg))
}

// unlistedSnapshots names snapshot directories raft's store skips (it
// lists only those whose meta.json it can read).
func unlistedSnapshots(dir string, metas []*raft.SnapshotMeta) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	listed := map[string]bool{}
	for _, m := range metas {
		listed[m.ID] = true
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && !strings.HasSuffix(e.Name(), ".tmp") && !listed[e.Name()] {
			out = append(out, fmt.Sprintf("snapshot %s: meta.json missing or unreadable", filepath.Join(dir, e.Name())))
		}
	}
	return out
}

// verifySnapshot reads one snapshot through raft's CRC check and the FSM's
// own decoder (which checks its CRC-32C trailer) into f; on error f is left
// as it was.
func verifySnapshot(snaps raft.SnapshotStore, id string, f *fsm.FSM) error {
	_, rc, err := snaps.Open(id)
	if err != nil {
		return err
	}
	defer rc.Close()
	return f.Restore(io.NopCloser(rc))
}

// verifyLog reads every entry of the raft log and decodes every command in
// it. Reading walks every page of the log bucket, so a damaged page turns
// up here (bbolt panics on some; that is recovered into an error) instead
// of in the middle of replication.
func verifyLog(store *raftboltdb.BoltStore) (first, last uint64, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("reading the log failed: %v", p)
		}
	}()
	if first, err = store.FirstIndex(); err != nil {
		return 0, 0, err
	}
	if last, err = store.LastIndex(); err != nil {
		return 0, 0, err
	}
	if last == 0 {
		return first, last, nil
	}
	var l raft.Log
	for i := first; i <= last; i++ {
		if err := store.GetLog(i, &l); err != nil {
			return first, last, fmt.Errorf("entry %d of %d..%d: %v", i, first, last, err)
		}
		if l.Index != i {
			return first, last, fmt.Errorf("entry %d is stored as index %d", i, l.Index)
		}
		if l.Type == raft.LogCommand {
			if _, derr := fsm.Decode(l.Data); derr != nil && (len(l.Data) == 0 || fsm.CommandType(l.Data[0])&fsm.IgnoreUnknown == 0) {
				return first, last, fmt.Errorf("entry %d does not decode: %v", i, derr)
			}
		}
	}
	if _, err := store.GetUint64(keyCurrentTerm); err != nil && !errors.Is(err, raftboltdb.ErrKeyNotFound) {
		return first, last, fmt.Errorf("stable store: %v", err)
	}
	return first, last, nil
}

// keyCurrentTerm is where raft keeps its term in the stable store.
var keyCurrentTerm = []byte("CurrentTerm")

// openStore opens raft.db, turning a panic of bbolt on a damaged file into
// an error that names the file and what to do.
func openStore(cfg Config) (store *raftboltdb.BoltStore, err error) {
	path := filepath.Join(cfg.DataDir, "raft.db")
	defer func() {
		if p := recover(); p != nil {
			store, err = nil, fmt.Errorf("%w: raft log %s: %v; %s", ErrCorruptData, path, p, corruptAdvice(cfg))
		}
	}()
	store, err = raftboltdb.New(raftboltdb.Options{Path: path})
	if err != nil {
		return nil, fmt.Errorf("%w: open raft log %s: %v; %s", ErrCorruptData, path, err, corruptAdvice(cfg))
	}
	return store, nil
}
