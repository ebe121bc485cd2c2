package fsm

import "time"

// ErrorKind says where an error record comes from.
type ErrorKind string

// Error record kinds.
const (
	ErrKindStep       ErrorKind = "step_error"  // a transient step failure that will be retried
	ErrKindFailed     ErrorKind = "task_failed" // a task failed permanently
	ErrKindFenced     ErrorKind = "fenced"      // a stale claim or result was rejected
	ErrKindSweeper    ErrorKind = "sweeper"     // the stuck-task sweeper acted
	ErrKindCleanup    ErrorKind = "cleanup"     // cleanup gave up
	ErrKindNode       ErrorKind = "node_error"  // a node reported an error, or deleting its server failed
	ErrKindReconciler ErrorKind = "reconciler"  // the leak reconciler deleted a server no node owns
	ErrKindRecovered  ErrorKind = "recovered"   // a step recovered from a lost callback
	ErrKindPush       ErrorKind = "push_failed" // the agent finished but could not push the work
)

// ErrorKinds lists every error record kind.
var ErrorKinds = []ErrorKind{ErrKindStep, ErrKindFailed, ErrKindFenced, ErrKindSweeper, ErrKindCleanup, ErrKindNode, ErrKindReconciler, ErrKindRecovered, ErrKindPush}

// DefaultMaxErrorRecords bounds the error database by count.
const DefaultMaxErrorRecords = 10000

// ErrorRecord is one entry of the error database.
type ErrorRecord struct {
	Seq     uint64     `json:"seq"`
	Kind    ErrorKind  `json:"kind"`
	TaskID  string     `json:"task_id,omitempty"`
	NodeID  string     `json:"node_id,omitempty"`
	Step    Step       `json:"step,omitempty"`
	Attempt int        `json:"attempt,omitempty"`
	Class   ErrorClass `json:"class,omitempty"`
	Message string     `json:"message"`
	// IncidentID is the agent's id of a reported error (deduplication).
	IncidentID string    `json:"incident_id,omitempty"`
	Leader     string    `json:"leader,omitempty"`
	At         time.Time `json:"at"`
}

// recordError appends to the error database, dropping the oldest record
// past the count bound.
func (f *FSM) recordError(e ErrorRecord) {
	f.st.errSeq++
	e.Seq = f.st.errSeq
	f.st.errors.ReplaceOrInsert(&e)
	for f.st.errors.Len() > DefaultMaxErrorRecords {
		f.st.errors.DeleteMin()
	}
}

// RecordError adds a record found outside Apply's own rules: what the
// leader's reconciler did, for example.
type RecordError struct {
	Record ErrorRecord `json:"record"`
}

// Type implements Command.
func (RecordError) Type() CommandType { return CmdRecordError }

// PurgeErrors drops the error records committed before a time: the
// leader's age-based retention (the count bound applies on every insert).
type PurgeErrors struct {
	Before time.Time `json:"before"`
}

// Type implements Command.
func (PurgeErrors) Type() CommandType { return CmdPurgeErrors }

func (f *FSM) applyPurgeErrors(c PurgeErrors) {
	var old []*ErrorRecord
	f.st.errors.Ascend(func(e *ErrorRecord) bool {
		if e.At.Before(c.Before) {
			old = append(old, e)
		}
		return true
	})
	for _, e := range old {
		f.st.errors.Delete(e)
	}
}

// OldestError is the commit time of the oldest error record.
func (f *FSM) OldestError() (time.Time, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var oldest time.Time
	found := false
	f.st.errors.Ascend(func(e *ErrorRecord) bool {
		if !found || e.At.Before(oldest) {
			oldest, found = e.At, true
		}
		return true
	})
	return oldest, found
}
