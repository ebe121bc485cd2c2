package fsm

import (
	"sort"
	"time"
)

// Retention: finished tasks (with their timelines and messages), deleted
// nodes (with their event logs) and stopped workspaces leave the state
// once older than the cluster's retention, so that memory, snapshot size
// and restart time depend on the retention window, not on history.
//
// The leader decides what to forget (ForgetCandidates) and commits the ids
// with the cutoff in a Forget command. Apply re-checks each id against the
// cutoff, so a record that changed since (a task re-opened) stays: the
// outcome depends on the log only. Before dropping the records, Apply hands
// them to the archive hook (SetArchiveHook), which every replica runs on
// its own copy: each node keeps its own archive of what its FSM forgot,
// and serves archived reads from it. The hook cannot fail the command and
// must not call back into the FSM.

// CmdForget is Forget's type (task retention).
const CmdForget CommandType = 45

// Forget drops the listed records that are older than Cutoff: tasks
// finished and cleaned up before it, nodes deleted before it, workspaces
// stopped before it whose task is not in a run.
type Forget struct {
	Cutoff       time.Time `json:"cutoff"`
	TaskIDs      []string  `json:"task_ids,omitempty"`
	NodeIDs      []string  `json:"node_ids,omitempty"`
	WorkspaceIDs []string  `json:"workspace_ids,omitempty"`
	At           time.Time `json:"at"`
}

// Type implements Command.
func (Forget) Type() CommandType { return CmdForget }

// Forgotten is what one Forget command drops, handed to the archive hook
// before it leaves the state. Tasks are loaded (timelines in place).
type Forgotten struct {
	Index      uint64
	At         time.Time
	Tasks      []*Task
	Messages   map[string]*TaskMessages // by task id
	Nodes      []*Node
	NodeEvents map[string][]NodeEvent // by node id
	Workspaces []*Workspace
}

// Empty reports whether nothing was forgotten.
func (f Forgotten) Empty() bool { return len(f.Tasks)+len(f.Nodes)+len(f.Workspaces) == 0 }

// SetArchiveHook installs the function Apply calls with the records a
// Forget command drops, just before dropping them (nil: none). It runs
// under the apply lock: it must not block for long or call into the FSM.
func (f *FSM) SetArchiveHook(hook func(Forgotten)) {
	f.mu.Lock()
	f.archive = hook
	f.mu.Unlock()
}

func (t *Task) forgettable(cutoff time.Time) bool {
	return t.dormant() && t.CompletedAt != nil && t.CompletedAt.Before(cutoff)
}

func (n *Node) forgettable(cutoff time.Time) bool {
	return n.Status == NodeDeleted && n.DeletedAt != nil && n.DeletedAt.Before(cutoff)
}

func (s *state) workspaceForgettable(w *Workspace, cutoff time.Time) bool {
	if w.Live() || !w.UpdatedAt.Before(cutoff) {
		return false
	}
	t, ok := s.tasks.Get(&Task{ID: w.TaskID})
	return !ok || t.WorkspaceID != w.ID || t.dormant()
}

// ForgetCandidates is the leader's choice for a Forget command: up to max
// ids of each kind (0: no limit) older than cutoff, in id order.
func (f *FSM) ForgetCandidates(cutoff time.Time, max int) Forget {
	f.mu.RLock()
	defer f.mu.RUnlock()
	c := Forget{Cutoff: cutoff}
	full := func(ids []string) bool { return max > 0 && len(ids) >= max }
	f.st.tasks.Ascend(func(t *Task) bool {
		if t.forgettable(cutoff) {
			c.TaskIDs = append(c.TaskIDs, t.ID)
		}
		return !full(c.TaskIDs)
	})
	f.st.nodes.Ascend(func(n *Node) bool {
		if n.forgettable(cutoff) {
			c.NodeIDs = append(c.NodeIDs, n.ID)
		}
		return !full(c.NodeIDs)
	})
	f.st.workspaces.Ascend(func(w *Workspace) bool {
		if f.st.workspaceForgettable(w, cutoff) {
			c.WorkspaceIDs = append(c.WorkspaceIDs, w.ID)
		}
		return !full(c.WorkspaceIDs)
	})
	return c
}

func (f *FSM) applyForget(c Forget, res *Result) {
	out := Forgotten{Index: f.st.index, At: c.At, Messages: map[string]*TaskMessages{}, NodeEvents: map[string][]NodeEvent{}}
	// Workspaces first: their check reads their task, still in place.
	for _, id := range sortedUnique(c.WorkspaceIDs) {
		if w, ok := f.st.workspaces.Get(&Workspace{ID: id}); ok && f.st.workspaceForgettable(w, c.Cutoff) {
			out.Workspaces = append(out.Workspaces, w)
		}
	}
	for _, id := range sortedUnique(c.TaskIDs) {
		if t, ok := f.st.tasks.Get(&Task{ID: id}); ok && t.forgettable(c.Cutoff) {
			out.Tasks = append(out.Tasks, t.loaded())
			if m, ok := f.st.messages.Get(&TaskMessages{TaskID: id}); ok {
				out.Messages[id] = m
			}
		}
	}
	for _, id := range sortedUnique(c.NodeIDs) {
		if n, ok := f.st.nodes.Get(&Node{ID: id}); ok && n.forgettable(c.Cutoff) {
			out.Nodes = append(out.Nodes, n)
			if l, ok := f.st.nodeEvents.Get(&nodeEventLog{NodeID: id}); ok {
				out.NodeEvents[id] = l.Events
			}
		}
	}
	if out.Empty() {
		res.Unchanged = true
		return
	}
	if f.archive != nil {
		f.archive(out)
	}
	for _, w := range out.Workspaces {
		f.st.workspaces.Delete(w)
		f.st.idx.workspacesByNode.Delete(ref{w.NodeID, w.ID})
	}
	for _, t := range out.Tasks {
		f.st.tasks.Delete(t)
		f.st.messages.Delete(&TaskMessages{TaskID: t.ID})
		f.st.idx.tasksByNode.Delete(ref{t.NodeID, t.ID})
	}
	for _, n := range out.Nodes {
		f.st.nodes.Delete(n)
		f.st.nodeEvents.Delete(&nodeEventLog{NodeID: n.ID})
		f.st.idx.nodesByUser.Delete(ref{n.UserID, n.ID})
	}
}

// sortedUnique returns ids sorted without repeats, so that the order of
// the leader's list does not matter.
func sortedUnique(ids []string) []string {
	out := append([]string(nil), ids...)
	sort.Strings(out)
	j := 0
	for i, id := range out {
		if i == 0 || id != out[j-1] {
			out[j] = id
			j++
		}
	}
	return out[:j]
}
