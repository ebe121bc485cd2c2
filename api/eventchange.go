package api

import (
	"time"

	"github.com/tdf-project/tdf/fsm"
)

// TaskChange is what a task event carries: what changed, not the task.
// The stream used to send whole tasks (history and steps included), which
// made one replay of the ring hundreds of megabytes; a client that wants
// the rest GETs /v1/tasks/{id}.
type TaskChange struct {
	ID            string     `json:"id"`
	ProjectID     string     `json:"project_id"`
	UserID        string     `json:"user_id"`
	Status        fsm.Status `json:"status"`
	ExecutionStep fsm.Step   `json:"execution_step"`
	NodeID        string     `json:"node_id,omitempty"`
	WorkspaceID   string     `json:"workspace_id,omitempty"`
	// ErrorMessage is cut to maxEventError bytes (the task has it whole).
	ErrorMessage string `json:"error_message,omitempty"`
	// Cleanup is as on Task.
	Cleanup   string    `json:"cleanup,omitempty"`
	Attempts  int       `json:"attempts"`
	UpdatedAt time.Time `json:"updated_at"`
	// Owner selects who may see the event; never sent.
	Owner string `json:"-"`
}

// NodeChange is what a node event carries.
type NodeChange struct {
	ID     string         `json:"id"`
	UserID string         `json:"user_id"`
	Status fsm.NodeStatus `json:"status"`
	Ready  bool           `json:"ready"`
	// TaskID is the task that provisioned the node.
	TaskID    string    `json:"task_id,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// maxEventError bounds the error message an event carries.
const maxEventError = 256

// TaskChangeOf is the change a task event carries for t.
func TaskChangeOf(t *fsm.Task) *TaskChange {
	if t == nil {
		return nil
	}
	c := &TaskChange{ID: t.ID, ProjectID: t.ProjectID, UserID: t.UserID, Status: t.Status, ExecutionStep: t.Step,
		NodeID: t.NodeID, WorkspaceID: t.WorkspaceID, ErrorMessage: cutUTF8(t.ErrorMessage, maxEventError),
		Attempts: t.Attempts, UpdatedAt: t.UpdatedAt, Owner: t.Owner}
	switch {
	case t.Cleanup:
		c.Cleanup = CleanupPending
	case t.Status.Terminal():
		c.Cleanup = CleanupDone
	}
	return c
}

func nodeChange(n *fsm.Node) *NodeChange {
	if n == nil {
		return nil
	}
	return &NodeChange{ID: n.ID, UserID: n.UserID, Status: n.Status, Ready: n.Ready, TaskID: n.TaskID, UpdatedAt: n.UpdatedAt}
}

// cutUTF8 shortens s to at most n bytes without splitting a character.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xc0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}

// size estimates the event's encoded size (for the replay bound) without
// encoding it.
func (e *Event) size() int {
	n := 120 + len(e.ID)
	if t := e.Task; t != nil {
		n += 160 + len(t.ID) + len(t.ProjectID) + len(t.UserID) + len(t.Status) + len(t.ExecutionStep) +
			len(t.NodeID) + len(t.WorkspaceID) + len(t.ErrorMessage)
	}
	if nd := e.Node; nd != nil {
		n += 100 + len(nd.ID) + len(nd.UserID) + len(nd.Status) + len(nd.TaskID)
	}
	return n
}
