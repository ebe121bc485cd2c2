package fsm

import (
	"slices"
	"time"
)

// Read accessors. They take the read lock only long enough to find records;
// the records themselves are immutable and may be used after it is released.

// AppliedIndex is the log index of the last command applied.
func (f *FSM) AppliedIndex() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.index
}

// Task returns the task with the given id.
func (f *FSM) Task(id string) (*Task, bool) {
	f.mu.RLock()
	t, ok := f.st.tasks.Get(&Task{ID: id})
	f.mu.RUnlock()
	if !ok {
		return nil, false
	}
	return t.loaded(), true
}

// TaskCount is the number of tasks stored.
func (f *FSM) TaskCount() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.tasks.Len()
}

// TaskFilter selects tasks for ListTasks. Zero fields match everything.
type TaskFilter struct {
	Status Status
	UserID string
	// Owner, if set, keeps only the tasks of this API token subject.
	Owner string
	// Projects, if any, keeps only the tasks of these projects.
	Projects []string
	// After is a cursor: only tasks whose id sorts after it are listed
	// (before it, with Desc).
	After string
	// Desc lists the newest first (descending id order).
	Desc bool
	// CreatedFrom and CreatedBefore, if set, keep the tasks created in
	// [CreatedFrom, CreatedBefore).
	CreatedFrom, CreatedBefore time.Time
	// Limit caps the page; 0 means no cap.
	Limit int
}

// ListTasks returns tasks in id order (ids are time-ordered, so this is
// submission order; Desc: newest first) matching the filter, and the cursor for the next page
// ("" when there is none).
func (f *FSM) ListTasks(flt TaskFilter) (page []*Task, next string) {
	page, next = f.listStored(flt)
	for i, t := range page {
		page[i] = t.loaded()
	}
	return page, next
}

// listStored is ListTasks on the stored (maybe packed) tasks.
func (f *FSM) listStored(flt TaskFilter) (page []*Task, next string) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	visit := func(t *Task) bool {
		if flt.After != "" && ((!flt.Desc && t.ID <= flt.After) || (flt.Desc && t.ID >= flt.After)) {
			return true
		}
		if !flt.matches(t) {
			return true
		}
		if flt.Limit > 0 && len(page) == flt.Limit {
			next = page[len(page)-1].ID
			return false
		}
		page = append(page, t)
		return true
	}
	switch {
	case flt.Desc && flt.After != "":
		f.st.tasks.DescendLessOrEqual(&Task{ID: flt.After}, visit)
	case flt.Desc:
		f.st.tasks.Descend(visit)
	case flt.After != "":
		f.st.tasks.AscendGreaterOrEqual(&Task{ID: flt.After}, visit)
	default:
		f.st.tasks.Ascend(visit)
	}
	return page, next
}

// matches reports whether a task passes the filter's field conditions.
func (flt *TaskFilter) matches(t *Task) bool {
	switch {
	case flt.Status != "" && t.Status != flt.Status,
		flt.UserID != "" && t.UserID != flt.UserID,
		flt.Owner != "" && t.Owner != flt.Owner,
		len(flt.Projects) > 0 && !slices.Contains(flt.Projects, t.ProjectID),
		!flt.CreatedFrom.IsZero() && t.CreatedAt.Before(flt.CreatedFrom),
		!flt.CreatedBefore.IsZero() && !t.CreatedAt.Before(flt.CreatedBefore):
		return false
	}
	return true
}

// Members returns the member table in id order.
func (f *FSM) Members() []Member {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]Member, 0, f.st.members.Len())
	f.st.members.Ascend(func(m Member) bool { out = append(out, m); return true })
	return out
}

// Member returns one member's record.
func (f *FSM) Member(id string) (Member, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.members.Get(Member{ID: id})
}

// Node returns the node with the given id.
func (f *FSM) Node(id string) (*Node, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.nodes.Get(&Node{ID: id})
}

// IdempotencyKeys is the number of request ids remembered.
func (f *FSM) IdempotencyKeys() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.idem.Len()
}

// ForEachTask calls fn for every task in id order until fn returns false.
// It holds the read lock throughout: fn must be quick. The tasks are as
// stored: a finished task's History and Steps are empty (packed, see
// compact.go); Task(id) returns it whole.
func (f *FSM) ForEachTask(fn func(*Task) bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	f.st.tasks.Ascend(fn)
}

// RejectedCount is how many stale step claims and results fencing refused.
func (f *FSM) RejectedCount() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.rejected
}

// ErrorFilter selects error records. Zero fields match everything.
type ErrorFilter struct {
	TaskID string
	NodeID string
	Step   Step
	Kind   ErrorKind
	Since  time.Time
	// After is a cursor: only records with a larger sequence number.
	After uint64
	Limit int
}

// Errors returns error records, oldest first, matching the filter, and the
// cursor of the next page (0 when there is none).
func (f *FSM) Errors(flt ErrorFilter) (page []*ErrorRecord, next uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	f.st.errors.AscendGreaterOrEqual(&ErrorRecord{Seq: flt.After + 1}, func(e *ErrorRecord) bool {
		if (flt.TaskID != "" && e.TaskID != flt.TaskID) || (flt.NodeID != "" && e.NodeID != flt.NodeID) ||
			(flt.Step != "" && e.Step != flt.Step) || (flt.Kind != "" && e.Kind != flt.Kind) || e.At.Before(flt.Since) {
			return true
		}
		if flt.Limit > 0 && len(page) == flt.Limit {
			next = page[len(page)-1].Seq
			return false
		}
		page = append(page, e)
		return true
	})
	return page, next
}

// Nodes returns the nodes with a status (all if empty) and of a user (all
// if empty), in id order.
func (f *FSM) Nodes(status NodeStatus, userID string) []*Node {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []*Node
	f.st.nodes.Ascend(func(n *Node) bool {
		if (status == "" || n.Status == status) && (userID == "" || n.UserID == userID) {
			out = append(out, n)
		}
		return true
	})
	return out
}

// Workspace returns the workspace with the given id.
func (f *FSM) Workspace(id string) (*Workspace, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.workspaces.Get(&Workspace{ID: id})
}
