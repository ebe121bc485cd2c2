package fsm

import (
	"strings"
	"time"

	"github.com/google/btree"
)

// A node's event log: everything its agent reports on the errors route,
// whatever the level. The agent reports lifecycle events there too ("Agent
// ready" at level info), so only error-level reports also go to the error
// database; the log keeps the rest, bounded per node.

// MaxNodeEvents bounds each node's event log; the oldest event goes first.
const MaxNodeEvents = 200

// nonErrorLevels are the report levels that are not errors. The agent
// sends error, warn and info (an empty level it sends as error); the other
// names are the usual ones below warning. Any other level, unknown ones
// included, counts as an error: a report that may be one is not hidden.
var nonErrorLevels = map[string]bool{
	"warn": true, "warning": true, "info": true, "notice": true, "debug": true, "trace": true,
}

// IsErrorLevel reports whether a report of this level belongs in the error
// database: error, fatal, critical, an empty or an unknown level.
func IsErrorLevel(level string) bool {
	return !nonErrorLevels[strings.ToLower(strings.TrimSpace(level))]
}

// NodeEvent is one report in a node's event log, with the time it was
// committed.
type NodeEvent struct {
	NodeError
	At time.Time `json:"at"`
}

// nodeEventLog is a node's event log. Immutable once stored: a change
// stores a new one.
type nodeEventLog struct {
	NodeID string      `json:"node_id"`
	Events []NodeEvent `json:"events"`
}

func newNodeEventTree() *btree.BTreeG[*nodeEventLog] {
	return btree.NewG(btreeDegree, func(a, b *nodeEventLog) bool { return a.NodeID < b.NodeID })
}

// appendNodeEvents adds events to a node's log, dropping the oldest past
// MaxNodeEvents.
func (s *state) appendNodeEvents(nodeID string, events []NodeEvent) {
	if len(events) == 0 {
		return
	}
	var old []NodeEvent
	if l, ok := s.nodeEvents.Get(&nodeEventLog{NodeID: nodeID}); ok {
		old = l.Events
	}
	all := make([]NodeEvent, 0, min(len(old)+len(events), MaxNodeEvents))
	if drop := len(old) + len(events) - MaxNodeEvents; drop > 0 {
		if drop >= len(old) {
			events, old = events[drop-len(old):], nil
		} else {
			old = old[drop:]
		}
	}
	all = append(append(all, old...), events...)
	s.nodeEvents.ReplaceOrInsert(&nodeEventLog{NodeID: nodeID, Events: all})
}

// nodeIncidents returns the incident ids a node reported recently: those
// in its event log and in the newest error records (reports from before
// the log existed), for deduplicating the agent's re-sent outbox.
func (s *state) nodeIncidents(nodeID string) map[string]bool {
	seen := map[string]bool{}
	if l, ok := s.nodeEvents.Get(&nodeEventLog{NodeID: nodeID}); ok {
		for _, e := range l.Events {
			if e.IncidentID != "" {
				seen[e.IncidentID] = true
			}
		}
	}
	n := 0
	s.errors.Descend(func(e *ErrorRecord) bool {
		if e.NodeID == nodeID && e.IncidentID != "" {
			seen[e.IncidentID] = true
		}
		n++
		return n < 500
	})
	return seen
}

// NodeEvents returns a node's event log, oldest first. The slice is shared:
// callers must not modify it.
func (f *FSM) NodeEvents(nodeID string) []NodeEvent {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if l, ok := f.st.nodeEvents.Get(&nodeEventLog{NodeID: nodeID}); ok {
		return l.Events
	}
	return nil
}
