package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// MemberHealth is the leader's view of one member (contact.go).
type MemberHealth struct {
	Healthy bool `json:"healthy"`
	// Reason says why a member is unhealthy.
	Reason string `json:"reason,omitempty"`
	// LastContactSeconds is how long ago the member last answered the
	// leader (0 for the leader itself; since leadership began if never).
	LastContactSeconds float64 `json:"last_contact_seconds"`
	// Lag is how many entries the member's log is behind the leader's.
	Lag uint64 `json:"lag"`
}

func (n *Node) unhealthyAfter() time.Duration {
	if n.cfg.MemberUnhealthyAfter > 0 {
		return n.cfg.MemberUnhealthyAfter
	}
	return n.cfg.HeartbeatTimeout * 3 / 2
}

func (n *Node) maxLag() uint64 {
	if n.cfg.MemberMaxLag > 0 {
		return n.cfg.MemberMaxLag
	}
	return 1024
}

// memberHealth is this leader's view of one configured server.
func (n *Node) memberHealth(s raft.Server, now time.Time) *MemberHealth {
	if string(s.ID) == n.cfg.NodeID {
		return &MemberHealth{Healthy: true}
	}
	since := time.Unix(0, n.leaderSince.Load())
	c, ok := n.contacts.get(s.ID)
	at := since
	if ok && c.at.After(since) {
		at = c.at
	}
	h := &MemberHealth{Healthy: true, LastContactSeconds: now.Sub(at).Seconds()}
	if last := n.raft.LastIndex(); ok && c.lastLog < last {
		h.Lag = last - c.lastLog
	}
	switch age := now.Sub(at); {
	case !ok && age > n.unhealthyAfter():
		h.Healthy, h.Reason = false, fmt.Sprintf("not reached since this node became leader %s ago", age.Round(time.Millisecond))
	case age > n.unhealthyAfter():
		h.Healthy, h.Reason = false, fmt.Sprintf("no answer for %s (limit %s)", age.Round(time.Millisecond), n.unhealthyAfter())
	case h.Lag > n.maxLag():
		h.Healthy, h.Reason = false, fmt.Sprintf("%d entries behind the leader (limit %d)", h.Lag, n.maxLag())
	}
	return h
}

// Ready reports whether this node may serve reads: a leader is known and
// this node has applied what the cluster had committed when it came back
// (the commit index of its first leader contact), or it is the leader and
// has applied every earlier entry. reason says what is missing.
func (n *Node) Ready() (ok bool, reason string) {
	id, _ := n.Leader()
	if id == "" {
		return false, "no leader known"
	}
	if n.IsLeader() {
		if ready, _ := n.LeaderReady(); !ready {
			return false, "leader still applying the entries of earlier terms"
		}
		return true, ""
	}
	target, known := n.contacts.join()
	if !known {
		return false, "waiting for the leader's first contact"
	}
	if !n.CaughtUpTo(target) {
		return false, fmt.Sprintf("catching up: applied %d of %d", n.raft.AppliedIndex(), target)
	}
	// A node cut off for a while, then back, is as far behind as one
	// that restarted.
	if lc, applied := n.contacts.leaderCommit.Load(), n.raft.AppliedIndex(); lc > applied+n.maxLag() {
		return false, fmt.Sprintf("catching up: applied %d, the leader has committed %d", applied, lc)
	}
	return true, ""
}

// LastContact is how long ago this node last heard from the leader: 0 on
// the leader, -1 if never.
func (n *Node) LastContact() time.Duration {
	if n.IsLeader() {
		return 0
	}
	t := n.raft.LastContact()
	if t.IsZero() {
		return -1
	}
	return time.Since(t)
}

// CommitIndex is the highest log index this node knows to be committed:
// the leader's word, which raft's own commit index on a follower is not
// while its log is shorter.
func (n *Node) CommitIndex() uint64 {
	if n.IsLeader() {
		return n.raft.CommitIndex()
	}
	return max(n.raft.CommitIndex(), n.contacts.leaderCommit.Load())
}

// CaughtUpTo reports whether this node's FSM reflects every entry up to
// index. Raft's own applied index counts entries handed to the FSM (and
// entries the FSM never sees: a term's no-op, configuration changes), so
// the FSM's index is compared with the last command at or before index.
func (n *Node) CaughtUpTo(index uint64) bool {
	if n.fsm.AppliedIndex() >= index {
		return true
	}
	if n.raft.AppliedIndex() < index {
		return false
	}
	return n.fsm.AppliedIndex() >= n.lastCommandAtOrBefore(index, n.fsm.AppliedIndex())
}

// lastCommandAtOrBefore is the index of the last command entry in
// (floor, index], or floor if there is none (or the entries are in a
// snapshot, which the FSM has restored).
func (n *Node) lastCommandAtOrBefore(index, floor uint64) uint64 {
	var l raft.Log
	for i := index; i > floor; i-- {
		if err := n.logs.GetLog(i, &l); err != nil {
			return floor
		}
		if l.Type == raft.LogCommand {
			return i
		}
	}
	return floor
}

// WaitCaughtUp waits until CaughtUpTo(index) or ctx ends.
func (n *Node) WaitCaughtUp(ctx context.Context, index uint64) error {
	delay := time.Millisecond
	for !n.CaughtUpTo(index) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.shutdownCh:
			return ErrShutdown
		case <-time.After(delay):
		}
		delay = min(2*delay, 10*time.Millisecond)
	}
	return nil
}
