package fakecloud

import "time"

// Event kinds the fake cloud records. The simulated VM world records its
// own kinds (workspace_create, session_create, …) with Record.
const (
	// EventServerCreate: a POST /servers created a server (once per server,
	// however often the POST was re-sent).
	EventServerCreate = "server_create"
	// EventServerRunning: a server's create or poweron action succeeded.
	EventServerRunning = "server_running"
	// EventServerCreateFailed: a server's create action failed; the server
	// is left behind, off, until deleted.
	EventServerCreateFailed = "server_create_failed"
	// EventServerPoweron: a poweron of a stopped server was accepted.
	EventServerPoweron = "server_poweron"
	// EventServerDelete: a DELETE was accepted (once per server).
	EventServerDelete = "server_delete"
	// EventFirewallCreate, EventFirewallApply and EventFirewallDelete: a
	// firewall was created, applied to a server (ServerID; at creation if
	// the create named it) or deleted. Name is the firewall's name, Detail
	// its id.
	EventFirewallCreate = "firewall_create"
	EventFirewallApply  = "firewall_apply"
	EventFirewallDelete = "firewall_delete"
)

// Event is one effect in the ledger, in DESIGN.md's format. The fake cloud
// fills ServerID and Name; the simulated VM world adds its own effects with
// the other fields.
type Event struct {
	Kind        string    `json:"kind"`
	ServerID    int64     `json:"server_id,omitempty"`
	Name        string    `json:"name,omitempty"`
	NodeID      string    `json:"node_id,omitempty"`
	WorkspaceID string    `json:"workspace_id,omitempty"`
	SessionID   string    `json:"session_id,omitempty"`
	TaskID      string    `json:"task_id,omitempty"`
	Detail      string    `json:"detail,omitempty"`
	Time        time.Time `json:"time"`
}

// LedgerResponse is the body of GET /fake/ledger.
type LedgerResponse struct {
	Events []Event `json:"events"`
}

// Record appends an event to the ledger, stamping the time if it has none.
func (s *Server) Record(e Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recordLocked(e)
}

func (s *Server) recordLocked(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	s.ledger = append(s.ledger, e)
}

// Ledger returns a copy of every event recorded so far, oldest first.
func (s *Server) Ledger() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Event, len(s.ledger))
	copy(out, s.ledger)
	return out
}
