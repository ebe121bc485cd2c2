package fsm

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
	defer f.mu.RUnlock()
	return f.st.tasks.Get(&Task{ID: id})
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
	// After is a cursor: only tasks whose id sorts after it are listed.
	After string
	// Limit caps the page; 0 means no cap.
	Limit int
}

// ListTasks returns tasks in id order (ids are time-ordered, so this is
// submission order) matching the filter, and the cursor for the next page
// ("" when there is none).
func (f *FSM) ListTasks(flt TaskFilter) (page []*Task, next string) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	visit := func(t *Task) bool {
		if t.ID <= flt.After && flt.After != "" {
			return true
		}
		if (flt.Status != "" && t.Status != flt.Status) || (flt.UserID != "" && t.UserID != flt.UserID) {
			return true
		}
		if flt.Limit > 0 && len(page) == flt.Limit {
			next = page[len(page)-1].ID
			return false
		}
		page = append(page, t)
		return true
	}
	if flt.After != "" {
		f.st.tasks.AscendGreaterOrEqual(&Task{ID: flt.After}, visit)
	} else {
		f.st.tasks.Ascend(visit)
	}
	return page, next
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
