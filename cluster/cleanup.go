package cluster

import (
	"context"
	"sort"
	"time"

	"github.com/hashicorp/raft"
)

// Dead-server cleanup: the leader removes a voter it has not reached for
// DeadServerAfter, but only when a replacement has already joined.
//
// Why not hashicorp/raft-autopilot (v0.3.0 resolves against raft v1.7.3):
// its cleanup needs a Delegate that fetches every server's stats over an
// RPC of our own, and its promoter expects new servers to join as
// non-voters and be promoted, which would change how tdf joins. The rule we
// want is small, and raft's leader already reports failed and resumed
// heartbeats per peer (FailedHeartbeatObservation), so this file
// implements the rule itself with the same guard autopilot has
// (MinQuorum): never shrink the healthy voters below it.

// deadServerPolicy decides which dead voter, if any, to remove now.
type deadServerPolicy struct {
	// After is how long a voter must have been unreachable.
	After time.Duration
	// MinQuorum is the number of healthy voters that must remain. With
	// the default 3, a three-voter cluster with one dead voter keeps it
	// (removing it would leave two, with no margin): an operator, or a
	// replacement joining, decides. Once a fourth server has joined, the
	// dead one goes.
	MinQuorum int
}

// pick returns the voter to remove, or "" when none may go. unreachable
// maps a peer to the time it was last reached; self is never removed, and
// at most one server goes per call, so the rule is applied to the new
// configuration before the next removal.
func (p deadServerPolicy) pick(servers []raft.Server, self string, unreachable map[string]time.Time, now time.Time) (id string, healthy int) {
	var dead []string
	for _, s := range servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		id := string(s.ID)
		since, down := unreachable[id]
		switch {
		case id == self || !down:
			healthy++
		case now.Sub(since) >= p.After:
			dead = append(dead, id)
		}
	}
	if len(dead) == 0 {
		return "", healthy
	}
	voters := 0
	for _, s := range servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	// After the removal the healthy voters must be at least MinQuorum and
	// a majority of the voters left (a suspect voter, unreachable for less
	// than After, counts against them).
	if healthy < max(p.MinQuorum, 1) || 2*healthy <= voters-1 {
		return "", healthy
	}
	sort.Strings(dead)
	return dead[0], healthy
}

// cleanupDeadServers is a leader hook: it follows raft's heartbeat
// observations and removes dead voters by the policy.
func (n *Node) cleanupDeadServers(ctx context.Context, term uint64) {
	p := deadServerPolicy{After: n.cfg.DeadServerAfter, MinQuorum: n.cfg.MinQuorum}
	ch := make(chan raft.Observation, 64)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation:
			return true
		}
		return false
	})
	n.raft.RegisterObserver(obs)
	defer n.raft.DeregisterObserver(obs)
	unreachable := map[string]time.Time{}
	tick := time.NewTicker(max(p.After/4, 100*time.Millisecond))
	defer tick.Stop()
	kept := ""
	for {
		select {
		case <-ctx.Done():
			return
		case o := <-ch:
			switch d := o.Data.(type) {
			case raft.FailedHeartbeatObservation:
				if _, seen := unreachable[string(d.PeerID)]; !seen {
					// Raft's replication starts with "now" as the
					// last contact; a zero time would be older still.
					since := d.LastContact
					if since.IsZero() {
						since = time.Now()
					}
					unreachable[string(d.PeerID)] = since
				}
			case raft.ResumedHeartbeatObservation:
				delete(unreachable, string(d.PeerID))
			}
		case <-tick.C:
			cf := n.raft.GetConfiguration()
			if cf.Error() != nil {
				continue
			}
			servers := cf.Configuration().Servers
			for id := range unreachable {
				if !inConfig(servers, id) {
					delete(unreachable, id)
				}
			}
			id, healthy := p.pick(servers, n.cfg.NodeID, unreachable, time.Now())
			if id == "" {
				if d := n.deadLongEnough(p, unreachable); d != "" && d != kept {
					kept = d
					n.log.Warn("dead server kept: removing it would leave too few healthy voters; join a replacement or remove it by hand",
						"id", d, "healthy_voters", healthy, "min_quorum", p.MinQuorum)
				}
				continue
			}
			n.log.Warn("removing dead server", "id", id, "unreachable_since", unreachable[id].Format(time.RFC3339), "healthy_voters", healthy, "term", term)
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := n.Remove(rctx, id)
			cancel()
			if err != nil {
				n.log.Warn("dead server removal failed", "id", id, "error", err)
				continue
			}
			delete(unreachable, id)
		}
	}
}

// deadLongEnough returns a voter unreachable for longer than the policy's
// threshold, for the log line explaining why it stays.
func (n *Node) deadLongEnough(p deadServerPolicy, unreachable map[string]time.Time) string {
	var ids []string
	for id, since := range unreachable {
		if time.Since(since) >= p.After {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	if len(ids) == 0 {
		return ""
	}
	return ids[0]
}

func inConfig(servers []raft.Server, id string) bool {
	for _, s := range servers {
		if string(s.ID) == id {
			return true
		}
	}
	return false
}
