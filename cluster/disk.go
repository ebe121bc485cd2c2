package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
)

// Disk trouble is loud and safe.
//
// A node that cannot write its raft log must say so at once, and must not
// lead. raft steps a leader down when its own log write fails, but stands
// for election again a heartbeat timeout later and, with a disk that is
// still full, wins and fails over and over. raft has no knob to keep a
// server from campaigning, and failing the stable store's writes is no
// option (raft panics when it cannot save its term). So:
//
//   - every log write goes through diskLog, which records a failure and,
//     while the disk is failed, fails the next ones at once (raft handles a
//     failed log write: a leader steps down, a follower rejects the entries);
//   - a probe writes a key to the stable store every DiskProbeInterval and
//     reads the free space of the data dir; a failed write marks the disk
//     failed, the first write that succeeds again clears it;
//   - while the disk is failed the transport sends no vote or pre-vote
//     request (gatedTransport): with pre-vote, the node never even raises
//     its term, so it never stands for election; a leader hands over;
//   - readiness, health, the member table and the metrics report it
//     (DiskStatus), and clients get a generic 503 (ErrDiskFailed), never
//     the store's error, which names the data dir.

// ErrDiskFailed is why an apply failed on a node that cannot write its log:
// nothing was appended; retry on the leader.
var ErrDiskFailed = errors.New("this node cannot write to its disk")

// diskError wraps a store error: errors.Is(err, ErrDiskFailed), while the
// message (logged, never sent to clients) keeps the cause.
type diskError struct{ err error }

func (e *diskError) Error() string { return "disk write failed: " + e.err.Error() }
func (e *diskError) Unwrap() []error {
	return []error{ErrDiskFailed, e.err}
}

// DiskFaults injects write failures for tests (Config.DiskFaults): while
// Fail is set, every log write and probe fails with ENOSPC.
type DiskFaults struct{ fail atomic.Bool }

// Fail makes writes fail (true) or go through (false).
func (f *DiskFaults) Fail(on bool) { f.fail.Store(on) }

func (f *DiskFaults) err(path string) error {
	if f != nil && f.fail.Load() {
		return fmt.Errorf("write %s: %w", path, syscall.ENOSPC)
	}
	return nil
}

// DiskStatus is what the node reports about its data dir's disk.
type DiskStatus struct {
	// OK is false while the node cannot write its log.
	OK bool `json:"ok"`
	// Since is when the current failure began.
	Since *time.Time `json:"since,omitempty"`
	// FreeBytes and TotalBytes are the data dir's filesystem (0 if unknown).
	FreeBytes  uint64 `json:"free_bytes"`
	TotalBytes uint64 `json:"total_bytes"`
	// Warning is set while free space is below the warning level.
	Warning string `json:"warning,omitempty"`
	// Failures counts failed writes since the node started.
	Failures uint64 `json:"failures"`
}

// diskHealth is the node's record of its disk.
type diskHealth struct {
	mu       sync.Mutex
	failed   bool
	since    time.Time
	lastErr  error
	failures uint64
	free     uint64
	total    uint64
	warning  string
	// onChange is told of every transition (the node steps down).
	onChange func(failed bool)
}

func (d *diskHealth) isFailed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.failed
}

func (d *diskHealth) fail(err error) {
	d.mu.Lock()
	d.failures++
	d.lastErr = err
	changed := !d.failed
	if changed {
		d.failed, d.since = true, time.Now()
	}
	cb := d.onChange
	d.mu.Unlock()
	if changed && cb != nil {
		cb(true)
	}
}

func (d *diskHealth) ok() {
	d.mu.Lock()
	changed := d.failed
	d.failed, d.lastErr = false, nil
	cb := d.onChange
	d.mu.Unlock()
	if changed && cb != nil {
		cb(false)
	}
}

func (d *diskHealth) status() DiskStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := DiskStatus{OK: !d.failed, FreeBytes: d.free, TotalBytes: d.total, Warning: d.warning, Failures: d.failures}
	if d.failed {
		t := d.since
		s.Since = &t
	}
	return s
}

// diskLog is the raft LogStore with failures recorded (see above).
type diskLog struct {
	raft.LogStore
	health *diskHealth
	faults *DiskFaults
	path   string
}

func (l *diskLog) write(f func() error) error {
	if l.health.isFailed() {
		return &diskError{fmt.Errorf("the disk failed a write earlier and has not passed the write probe since")}
	}
	err := l.faults.err(l.path)
	if err == nil {
		err = f()
	}
	if err != nil {
		l.health.fail(err)
		return &diskError{err}
	}
	return nil
}

// StoreLog implements raft.LogStore.
func (l *diskLog) StoreLog(log *raft.Log) error {
	return l.write(func() error { return l.LogStore.StoreLog(log) })
}

// StoreLogs implements raft.LogStore.
func (l *diskLog) StoreLogs(logs []*raft.Log) error {
	return l.write(func() error { return l.LogStore.StoreLogs(logs) })
}

// DeleteRange implements raft.LogStore.
func (l *diskLog) DeleteRange(min, max uint64) error {
	return l.write(func() error { return l.LogStore.DeleteRange(min, max) })
}

// gatedTransport sends no vote or pre-vote request while the disk is
// failed, so that the node does not stand for election.
type gatedTransport struct {
	*raft.NetworkTransport
	health *diskHealth
	seen   *seenTransport
}

var errNoCampaign = errors.New("not standing for election: this node cannot write to its disk")

// RequestVote implements raft.Transport.
func (t *gatedTransport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	if t.health.isFailed() {
		return errNoCampaign
	}
	return t.NetworkTransport.RequestVote(id, target, args, resp)
}

// RequestPreVote implements raft.WithPreVote.
func (t *gatedTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if t.health.isFailed() {
		return errNoCampaign
	}
	return t.NetworkTransport.RequestPreVote(id, target, args, resp)
}

// inmemGatedTransport is gatedTransport over raft's in-memory transport
// (tests).
type inmemGatedTransport struct {
	*raft.InmemTransport
	health *diskHealth
	seen   *seenTransport
}

// RequestVote implements raft.Transport.
func (t *inmemGatedTransport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	if t.health.isFailed() {
		return errNoCampaign
	}
	return t.InmemTransport.RequestVote(id, target, args, resp)
}

// RequestPreVote implements raft.WithPreVote.
func (t *inmemGatedTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if t.health.isFailed() {
		return errNoCampaign
	}
	return t.InmemTransport.RequestPreVote(id, target, args, resp)
}

// gateTransport wraps the transports it knows; others go through as they are.
// It also records peers' answers and the RPCs received (contact.go).
func gateTransport(t raft.Transport, h *diskHealth, seen *seenTransport) raft.Transport {
	switch t := t.(type) {
	case *raft.NetworkTransport:
		return &gatedTransport{NetworkTransport: t, health: h, seen: seen.over(t)}
	case *raft.InmemTransport:
		return &inmemGatedTransport{InmemTransport: t, health: h, seen: seen.over(t)}
	}
	return t
}

// keyDiskProbe is the stable-store key the write probe rewrites.
var keyDiskProbe = []byte("tdf_disk_probe")

// probeDisk writes the probe key and reads the free space once.
func (n *Node) probeDisk() {
	free, total, serr := diskSpace(n.cfg.DataDir)
	err := n.cfg.DiskFaults.err(n.cfg.DataDir)
	if err == nil {
		err = n.stable.Set(keyDiskProbe, []byte(time.Now().UTC().Format(time.RFC3339Nano)))
	}
	if err == nil {
		err = probeFile(n.cfg.DataDir)
	}
	d := n.disk
	d.mu.Lock()
	if serr == nil {
		d.free, d.total = free, total
	}
	wasWarning := d.warning
	d.warning = ""
	if serr == nil && n.cfg.DiskWarnFreeBytes > 0 && free < n.cfg.DiskWarnFreeBytes {
		d.warning = fmt.Sprintf("free disk space %d MiB is below the warning level of %d MiB", free>>20, n.cfg.DiskWarnFreeBytes>>20)
	}
	warning := d.warning
	d.mu.Unlock()
	if warning != "" && wasWarning == "" {
		n.log.Warn("low disk space under the data dir: the node stops accepting writes when it is full", "free_bytes", free, "warn_below", n.cfg.DiskWarnFreeBytes)
	} else if warning == "" && wasWarning != "" {
		n.log.Info("disk space is above the warning level again", "free_bytes", free)
	}
	if err != nil {
		d.fail(err)
		return
	}
	d.ok()
}

// probeSize is what the file probe writes: bbolt reuses free pages inside
// raft.db, so a stable-store write may pass on a full disk; new blocks of
// a file of this size do not.
const probeSize = 64 << 10

// probeFile writes, syncs and removes a file in dir.
func probeFile(dir string) error {
	path := filepath.Join(dir, ".disk-probe")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.Write(make([]byte, probeSize))
	if werr == nil {
		werr = f.Sync()
	}
	cerr := f.Close()
	rerr := os.Remove(path)
	return errors.Join(werr, cerr, rerr)
}

// watchDisk runs the write probe until shutdown.
func (n *Node) watchDisk() {
	t := time.NewTicker(n.cfg.DiskProbeInterval)
	defer t.Stop()
	for {
		n.probeDisk()
		select {
		case <-n.shutdownCh:
			return
		case <-t.C:
		}
	}
}

// diskChanged is told of every failure and recovery.
func (n *Node) diskChanged(failed bool) {
	if !failed {
		n.log.Info("disk writes succeed again: this node is ready and may stand for election again")
		return
	}
	n.log.Error("DISK WRITE FAILED: this node is not ready, does not stand for election and hands leadership over until a write probe succeeds",
		"error", n.disk.lastError(), "data_dir", n.cfg.DataDir)
	if n.raft != nil && n.IsLeader() {
		go n.TransferLeadership()
	}
}

func (d *diskHealth) lastError() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lastErr
}

// DiskStatus reports the data dir's disk: whether the node can write its
// log, and the free space.
func (n *Node) DiskStatus() DiskStatus { return n.disk.status() }

// AppendEntries implements raft.Transport.
func (t *gatedTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	return t.seen.appendEntries(id, target, args, resp)
}

// Consumer implements raft.Transport.
func (t *gatedTransport) Consumer() <-chan raft.RPC { return t.seen.consumer() }

// AppendEntries implements raft.Transport.
func (t *inmemGatedTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	return t.seen.appendEntries(id, target, args, resp)
}

// Consumer implements raft.Transport.
func (t *inmemGatedTransport) Consumer() <-chan raft.RPC { return t.seen.consumer() }
