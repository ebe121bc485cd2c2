package fsm

import "fmt"

// Status is a task's user-visible status.
type Status string

// The task statuses of REFERENCE.md.
const (
	StatusDraft      Status = "draft"
	StatusReady      Status = "ready"
	StatusQueued     Status = "queued"
	StatusDelegated  Status = "delegated"
	StatusInProgress Status = "in_progress"
	StatusCompleted  Status = "completed"
	StatusFailed     Status = "failed"
	StatusCancelled  Status = "cancelled"
)

// AllStatuses lists every status in lifecycle order.
var AllStatuses = []Status{
	StatusDraft, StatusReady, StatusQueued, StatusDelegated,
	StatusInProgress, StatusCompleted, StatusFailed, StatusCancelled,
}

// transitions is the whole table of allowed status changes. A change to the
// same status is always allowed and is a no-op (see CanTransition).
var transitions = map[Status][]Status{
	StatusDraft:      {StatusReady, StatusCancelled},
	StatusReady:      {StatusQueued, StatusDelegated, StatusCancelled},
	StatusQueued:     {StatusDelegated, StatusFailed, StatusCancelled},
	StatusDelegated:  {StatusInProgress, StatusFailed, StatusCancelled},
	StatusInProgress: {StatusCompleted, StatusFailed, StatusCancelled},
	StatusCompleted:  {},
	StatusFailed:     {StatusReady, StatusCancelled},
	StatusCancelled:  {StatusReady},
}

// Valid reports whether s is a known status.
func (s Status) Valid() bool {
	_, ok := transitions[s]
	return ok
}

// Terminal reports whether s ends a run: completed, failed or cancelled.
// Failed and cancelled tasks may still be re-opened to ready by a user.
func (s Status) Terminal() bool {
	return s == StatusCompleted || s == StatusFailed || s == StatusCancelled
}

// ParseStatus returns the status named s.
func ParseStatus(s string) (Status, error) {
	st := Status(s)
	if !st.Valid() {
		return "", fmt.Errorf("unknown status %q", s)
	}
	return st, nil
}

// CanTransition reports whether a task may move from one status to another.
// Moving to the same status is allowed (a no-op).
func CanTransition(from, to Status) bool {
	if from == to {
		return from.Valid()
	}
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// UserSettable reports whether a status may be set directly (SetStatus,
// CancelTask): re-opening (ready), re-running (queued) and cancelling.
// delegated, in_progress, completed and failed mean the pipeline reached a
// point, so only pipeline commands enter them.
func UserSettable(s Status) bool {
	return s == StatusReady || s == StatusQueued || s == StatusCancelled
}
