package fsm

import "github.com/google/btree"

// taskTree is the task table with a count of tasks per status kept as
// tasks are inserted, replaced and deleted, so that the per-status gauges
// cost O(statuses) per scrape, not a scan of every task. Like the indexes
// it is derived data: not in snapshots, rebuilt as a restore inserts.
type taskTree struct {
	*btree.BTreeG[*Task]
	byStatus map[Status]int
	// ended counts the tasks that entered each terminal status in this
	// state: the runs' outcomes (a restore counts the restored tasks).
	ended map[Status]uint64
}

func newTaskTree() *taskTree {
	return &taskTree{
		BTreeG:   btree.NewG(btreeDegree, func(a, b *Task) bool { return a.ID < b.ID }),
		byStatus: map[Status]int{},
		ended:    map[Status]uint64{},
	}
}

// ReplaceOrInsert stores t, moving the count from the replaced task's
// status to t's.
func (tt *taskTree) ReplaceOrInsert(t *Task) (*Task, bool) {
	old, replaced := tt.BTreeG.ReplaceOrInsert(t)
	if replaced {
		tt.byStatus[old.Status]--
	}
	tt.byStatus[t.Status]++
	if t.Status.Terminal() && (!replaced || old.Status != t.Status) {
		tt.ended[t.Status]++
	}
	return old, replaced
}

// Delete removes the task with t's id and its count.
func (tt *taskTree) Delete(t *Task) (*Task, bool) {
	old, found := tt.BTreeG.Delete(t)
	if found {
		tt.byStatus[old.Status]--
	}
	return old, found
}

// Clone is a copy-on-write copy with its own counts.
func (tt *taskTree) Clone() *taskTree {
	c := &taskTree{BTreeG: tt.BTreeG.Clone(), byStatus: make(map[Status]int, len(tt.byStatus)), ended: make(map[Status]uint64, len(tt.ended))}
	for s, n := range tt.byStatus {
		c.byStatus[s] = n
	}
	for s, n := range tt.ended {
		c.ended[s] = n
	}
	return c
}

// TaskCounts is the number of tasks in each status (every status of
// AllStatuses present, zero or not), read in O(statuses).
func (f *FSM) TaskCounts() map[Status]int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make(map[Status]int, len(AllStatuses))
	for _, s := range AllStatuses {
		out[s] = f.st.tasks.byStatus[s]
	}
	return out
}

// TaskOutcomes counts, per terminal status, the tasks that entered it since
// this node's state was built (at start from its snapshot and log, or by a
// restore): a counter whose rate is the rate of completions, failures and
// cancellations.
func (f *FSM) TaskOutcomes() map[Status]uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := map[Status]uint64{}
	for _, s := range AllStatuses {
		if s.Terminal() {
			out[s] = f.st.tasks.ended[s]
		}
	}
	return out
}
