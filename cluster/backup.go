package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/hashicorp/raft"

	"github.com/tdf-project/tdf/fsm"
)

// A backup is the FSM's snapshot stream exactly as raft's snapshots hold
// it (fsm/snapshot.go: header, records, CRC-32C trailer). Its SHA-256 is
// the state hash (GET /v1/cluster/state-hash) at the backup's index, so a
// restore is checked by comparing hashes.

// BackupInfo describes a backup written by Backup.
type BackupInfo struct {
	Index uint64 `json:"index"`
	Bytes int64  `json:"bytes"`
	Hash  string `json:"hash"`
}

// ErrNotEmpty refuses a restore into a cluster that already holds tasks.
var ErrNotEmpty = errors.New("cluster is not empty")

// Backup streams a consistent copy of the state to w. Leader only: it first
// confirms leadership and waits until every committed entry is applied,
// then writes a copy-on-write view, so the backup holds every write
// acknowledged before the call.
func (n *Node) Backup(ctx context.Context, w io.Writer) (BackupInfo, error) {
	if err := n.ConsistentRead(ctx); err != nil {
		return BackupInfo{}, err
	}
	h := sha256.New()
	cw := &countingWriter{w: io.MultiWriter(w, h)}
	idx, err := n.fsm.WriteSnapshotAt(cw)
	if err != nil {
		return BackupInfo{}, err
	}
	info := BackupInfo{Index: idx, Bytes: cw.n, Hash: hex.EncodeToString(h.Sum(nil))}
	n.log.Info("backup written", "index", info.Index, "bytes", info.Bytes, "hash", info.Hash)
	return info, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	k, err := c.w.Write(p)
	c.n += int64(k)
	return k, err
}

// RestoreInfo is the outcome of Restore: the backup's description and the
// state hash of this node right after the restore (equal to the backup's).
type RestoreInfo struct {
	Backup       BackupInfo `json:"backup"`
	RestoredHash string     `json:"restored_hash"`
}

// Restore replaces the cluster's state with a backup read from r. Leader
// only, and only into a cluster without tasks unless force is set: a
// restore discards every entry committed since the backup.
//
// The backup is first spooled to a file in the data dir and decoded in
// full (which checks its CRC): raft's user restore panics if the FSM
// rejects a snapshot it has already stored, so a bad file must never reach
// it. raft then installs it as a snapshot at a new index past the log, and
// followers fault over to InstallSnapshot. The leader's duties (runner,
// reconciler, …) are stopped around it and start again on the new state.
// Afterwards the member table is put back to this cluster's members (the
// backup carries the old cluster's addresses).
func (n *Node) Restore(ctx context.Context, r io.Reader, force bool) (RestoreInfo, error) {
	if err := n.ConsistentRead(ctx); err != nil {
		return RestoreInfo{}, err
	}
	if c := n.fsm.TaskCount(); c > 0 && !force {
		return RestoreInfo{}, fmt.Errorf("%w: it holds %d tasks; restore into a fresh cluster (or force it, discarding them)", ErrNotEmpty, c)
	}
	spool, info, err := n.spoolBackup(r)
	if err != nil {
		return RestoreInfo{}, err
	}
	defer os.Remove(spool.Name())
	defer spool.Close()
	members := n.fsm.Members()
	// The cluster keeps its own id through a restore (the backup's names
	// the cluster it came from): known before, put back right after.
	if err := n.settleClusterID(ctx); err != nil {
		return RestoreInfo{}, err
	}
	if !n.suspendLeaderDuties() {
		return RestoreInfo{}, ErrShutdown
	}
	defer n.resumeLeaderDuties()
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: info.Index, Size: info.Bytes}
	if err := n.raft.Restore(meta, spool, n.cfg.ApplyTimeout); err != nil {
		return RestoreInfo{}, fmt.Errorf("raft restore: %w", mapRaftErr(err))
	}
	_, restored, err := n.fsm.Hash()
	if err != nil {
		return RestoreInfo{}, err
	}
	n.log.Info("backup restored", "index", info.Index, "hash", restored)
	if own := n.ClusterID(); n.fsm.ClusterID() != own {
		if _, err := n.ApplyIdempotent(ctx, fsm.SetClusterID{ID: own, Replace: true}); err != nil {
			return RestoreInfo{}, fmt.Errorf("restored, but the cluster id could not be put back (the leader retries): %w", err)
		}
	}
	if err := n.reconcileMembers(ctx, members); err != nil {
		return RestoreInfo{}, fmt.Errorf("restored, but the member table could not be repaired (restart the nodes to re-register): %w", err)
	}
	return RestoreInfo{Backup: info, RestoredHash: restored}, nil
}

// spoolBackup copies the upload to a temporary file while decoding it.
func (n *Node) spoolBackup(r io.Reader) (*os.File, BackupInfo, error) {
	f, err := os.CreateTemp(n.cfg.DataDir, "restore-*.tmp")
	if err != nil {
		return nil, BackupInfo{}, err
	}
	h := sha256.New()
	cw := &countingWriter{w: io.MultiWriter(f, h)}
	check := fsm.New()
	derr := check.Restore(io.NopCloser(io.TeeReader(r, cw)))
	if derr == nil {
		// The decoder stops at the CRC; anything after it is not ours.
		var extra [1]byte
		if k, _ := r.Read(extra[:]); k > 0 {
			derr = fmt.Errorf("%w: data after the checksum", fsm.ErrCorruptSnapshot)
		}
	}
	if derr == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if derr != nil || err != nil {
		f.Close()
		os.Remove(f.Name())
		if derr != nil {
			return nil, BackupInfo{}, fmt.Errorf("%w: %v", fsm.ErrInvalid, derr)
		}
		return nil, BackupInfo{}, err
	}
	return f, BackupInfo{Index: check.AppliedIndex(), Bytes: cw.n, Hash: hex.EncodeToString(h.Sum(nil))}, nil
}

// reconcileMembers makes the member table match the raft configuration
// again after a restore, from the records held before it.
func (n *Node) reconcileMembers(ctx context.Context, before []fsm.Member) error {
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	inConfig := map[string]bool{}
	for _, s := range cf.Configuration().Servers {
		inConfig[string(s.ID)] = true
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	known := map[string]bool{}
	for _, m := range before {
		if !inConfig[m.ID] {
			continue
		}
		known[m.ID] = true
		if cur, ok := n.fsm.Member(m.ID); ok && cur == m {
			continue
		}
		if _, err := n.ApplyIdempotent(ctx, fsm.RegisterMember{Member: m}); err != nil {
			return err
		}
	}
	// Every other record is the old cluster's: a member of ours that had
	// not registered yet must not be reached at the old cluster's address.
	// It registers itself again (registerSelf keeps checking its record).
	for _, m := range n.fsm.Members() {
		if known[m.ID] {
			continue
		}
		if _, err := n.ApplyIdempotent(ctx, fsm.RemoveMember{ID: m.ID}); err != nil {
			return err
		}
	}
	return nil
}
