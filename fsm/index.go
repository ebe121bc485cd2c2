package fsm

import "github.com/google/btree"

// Secondary indexes, so that node selection and node release cost
// O(log n + the node's or user's records) instead of a scan of every task,
// node or workspace (a scan of all tasks per cleanup made Apply O(tasks):
// ≈ 20 ms per task at 20k tasks, see BENCHMARKS.md). They are derived
// data: not in snapshots (rebuilt by load), not in Hash. Entries are only
// added; a lookup re-reads the record and checks it still matches, so an
// entry left behind by a record that moved is harmless.

// ref is an index entry: a record's id under a key (a node or user id).
type ref struct{ key, id string }

func lessRef(a, b ref) bool {
	if a.key != b.key {
		return a.key < b.key
	}
	return a.id < b.id
}

func newRefIndex() *btree.BTreeG[ref] { return btree.NewG(btreeDegree, lessRef) }

// indexes are the state's secondary indexes.
type indexes struct {
	tasksByNode      *btree.BTreeG[ref]
	workspacesByNode *btree.BTreeG[ref]
	nodesByUser      *btree.BTreeG[ref]
}

func newIndexes() indexes {
	return indexes{tasksByNode: newRefIndex(), workspacesByNode: newRefIndex(), nodesByUser: newRefIndex()}
}

func (x indexes) clone() indexes {
	return indexes{tasksByNode: x.tasksByNode.Clone(), workspacesByNode: x.workspacesByNode.Clone(), nodesByUser: x.nodesByUser.Clone()}
}

func addRef(idx *btree.BTreeG[ref], key, id string) {
	if key == "" {
		return
	}
	r := ref{key, id}
	if !idx.Has(r) {
		idx.ReplaceOrInsert(r)
	}
}

// indexTask records a task under its node. Every place a task gets a node
// must call it (ApplyCommand does for the task of each command's result).
func (s *state) indexTask(t *Task) { addRef(s.idx.tasksByNode, t.NodeID, t.ID) }

func (s *state) indexWorkspace(w *Workspace) { addRef(s.idx.workspacesByNode, w.NodeID, w.ID) }

func (s *state) indexNode(n *Node) { addRef(s.idx.nodesByUser, n.UserID, n.ID) }

// eachRef calls fn for the id of every entry under key, in id order, until
// fn returns false.
func eachRef(idx *btree.BTreeG[ref], key string, fn func(id string) bool) {
	idx.AscendRange(ref{key, ""}, ref{key + "\x00", ""}, func(r ref) bool { return fn(r.id) })
}

// tasksOnNodeIdx lists the tasks currently assigned to a node.
func (s *state) eachTaskOnNode(nodeID string, fn func(*Task) bool) {
	eachRef(s.idx.tasksByNode, nodeID, func(id string) bool {
		if t, ok := s.tasks.Get(&Task{ID: id}); ok && t.NodeID == nodeID {
			return fn(t)
		}
		return true
	})
}

func (s *state) eachWorkspaceOnNode(nodeID string, fn func(*Workspace) bool) {
	eachRef(s.idx.workspacesByNode, nodeID, func(id string) bool {
		if w, ok := s.workspaces.Get(&Workspace{ID: id}); ok && w.NodeID == nodeID {
			return fn(w)
		}
		return true
	})
}

// eachUserNode visits a user's nodes in id order, as a scan of all nodes
// filtered by user would.
func (s *state) eachUserNode(userID string, fn func(*Node) bool) {
	eachRef(s.idx.nodesByUser, userID, func(id string) bool {
		if n, ok := s.nodes.Get(&Node{ID: id}); ok && n.UserID == userID {
			return fn(n)
		}
		return true
	})
}
