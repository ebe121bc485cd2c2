package fsm

import (
	"fmt"
	"math/rand"
	"testing"
	"time"
)

// checkIndexes fails the test unless every record that has a node (or a
// user, for nodes) is in the derived index under it: a record missing from
// an index would be invisible to node selection and node release.
func checkIndexes(t *testing.T, f *FSM, where string) {
	t.Helper()
	s := f.st
	s.tasks.Ascend(func(task *Task) bool {
		if task.NodeID != "" && !s.idx.tasksByNode.Has(ref{task.NodeID, task.ID}) {
			t.Fatalf("%s: task %s on node %s is not in the tasks-by-node index", where, task.ID, task.NodeID)
		}
		return true
	})
	s.workspaces.Ascend(func(w *Workspace) bool {
		if w.NodeID != "" && !s.idx.workspacesByNode.Has(ref{w.NodeID, w.ID}) {
			t.Fatalf("%s: workspace %s on node %s is not in the workspaces-by-node index", where, w.ID, w.NodeID)
		}
		return true
	})
	s.nodes.Ascend(func(n *Node) bool {
		if n.UserID != "" && !s.idx.nodesByUser.Has(ref{n.UserID, n.ID}) {
			t.Fatalf("%s: node %s of user %s is not in the nodes-by-user index", where, n.ID, n.UserID)
		}
		return true
	})
}

// TestIndexesCoverEveryRecord drives imports at every step, submissions
// and random step commands, and checks the derived indexes after each.
func TestIndexesCoverEveryRecord(t *testing.T) {
	for seed := int64(1); seed <= 5; seed++ {
		rng := rand.New(rand.NewSource(seed))
		a := newApplier(t)
		term := uint64(1)
		var ids []string
		for _, s := range AllSteps {
			id := fmt.Sprintf("imp-%s", s)
			a.apply(importCmd(id, s))
			ids = append(ids, id)
			checkIndexes(t, a.f, "import at "+string(s))
		}
		at := t0
		for i := 0; i < 1500; i++ {
			at = at.Add(time.Duration(rng.Intn(5000)) * time.Millisecond)
			if rng.Intn(10) == 0 {
				id := fmt.Sprintf("t%d", i)
				ids = append(ids, id)
				a.apply(SubmitTask{TaskID: id, Spec: spec("u1"), At: at})
			} else {
				cur, _ := a.f.Task(ids[rng.Intn(len(ids))])
				a.apply(randomStepCommand(rng, cur, &term, at))
			}
			checkIndexes(t, a.f, fmt.Sprintf("seed %d command %d", seed, i))
		}
	}
}
