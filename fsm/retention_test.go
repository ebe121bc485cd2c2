package fsm

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"
)

// finishedWithDeletedNode runs task id to completed, its node to deleted;
// it returns the time everything ended.
func finishedWithDeletedNode(t *testing.T, a *applier, id string) time.Time {
	t.Helper()
	task := cbToRunning(t, a, id)
	done := finishRun(t, a, id, t0.Add(time.Minute))
	if done.Status != StatusCompleted || done.Cleanup {
		t.Fatalf("task %s cleanup=%v", done.Status, done.Cleanup)
	}
	n := fireNodeAlarm(t, a, task.NodeID)
	at := n.Alarm.Due
	if r := a.apply(NodeDestroyResult{NodeID: n.ID, Deleted: true, At: at}); r.Err != nil || r.Node.Status != NodeDeleted {
		t.Fatalf("destroy: err=%v node=%+v", r.Err, r.Node)
	}
	return at
}

func TestForgetDropsOldRecordsAndHandsThemToTheArchive(t *testing.T) {
	a := newApplier(t)
	end := finishedWithDeletedNode(t, a, "t1")
	cbToRunning(t, a, "t2") // still running: stays whatever the cutoff
	var got []Forgotten
	a.f.SetArchiveHook(func(f Forgotten) { got = append(got, f) })

	// Too early a cutoff: nothing is old enough.
	early := a.f.ForgetCandidates(end.Add(-time.Hour), 0)
	if len(early.TaskIDs)+len(early.NodeIDs)+len(early.WorkspaceIDs) != 0 {
		t.Fatalf("candidates before the end: %+v", early)
	}
	cutoff := end.Add(time.Second)
	c := a.f.ForgetCandidates(cutoff, 0)
	if len(c.TaskIDs) != 1 || c.TaskIDs[0] != "t1" || len(c.NodeIDs) != 1 || len(c.WorkspaceIDs) != 1 {
		t.Fatalf("candidates = %+v, want t1, its node and its workspace", c)
	}
	// The leader may list anything: a running task is kept.
	c.TaskIDs = append(c.TaskIDs, "t2", "t-nope")
	c.At = cutoff
	if r := a.apply(c); r.Err != nil || r.Unchanged {
		t.Fatalf("forget: err=%v unchanged=%v", r.Err, r.Unchanged)
	}
	if _, ok := a.f.Task("t1"); ok {
		t.Fatal("t1 still in the state")
	}
	if _, ok := a.f.Task("t2"); !ok {
		t.Fatal("running t2 was forgotten")
	}
	if _, ok := a.f.Node(c.NodeIDs[0]); ok {
		t.Fatal("deleted node still in the state")
	}
	if _, ok := a.f.Workspace(c.WorkspaceIDs[0]); ok {
		t.Fatal("stopped workspace still in the state")
	}
	if len(got) != 1 || len(got[0].Tasks) != 1 || got[0].Tasks[0].ID != "t1" || len(got[0].Tasks[0].History) == 0 ||
		len(got[0].Tasks[0].Steps) == 0 || len(got[0].Nodes) != 1 || len(got[0].Workspaces) != 1 {
		t.Fatalf("archive hook got %+v, want t1 with its timeline, its node and workspace", got)
	}
	// Again: nothing left to forget, no hook call.
	if r := a.apply(c); r.Err != nil || !r.Unchanged || len(got) != 1 {
		t.Fatalf("repeated forget: err=%v unchanged=%v hook calls=%d", r.Err, r.Unchanged, len(got))
	}
}

// Replicas with and without an archive hook, and one restored from a
// snapshot, end in the same state.
func TestForgetIsDeterministic(t *testing.T) {
	a, b := newApplier(t), newApplier(t)
	b.f.SetArchiveHook(func(Forgotten) {})
	var end time.Time
	for _, x := range []*applier{a, b} {
		end = finishedWithDeletedNode(t, x, "t1")
		finishedWithDeletedNode(t, x, "t2")
	}
	snap := snapshotBytes(t, a.f)
	c := a.f.ForgetCandidates(end.Add(time.Second), 1) // one of each per command
	c.At = end
	for _, x := range []*applier{a, b} {
		x.apply(c)
	}
	restored := New()
	if err := restored.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	r := &applier{t: t, f: restored, index: a.index - 1}
	r.apply(c)
	sa, sb, sr := snapshotBytes(t, a.f), snapshotBytes(t, b.f), snapshotBytes(t, r.f)
	if !bytes.Equal(sa, sb) || !bytes.Equal(sa, sr) {
		t.Fatal("replicas differ after the same Forget")
	}
	if len(sa) >= len(snap) {
		t.Fatalf("snapshot %d bytes after forgetting, %d before", len(sa), len(snap))
	}
	if a.f.TaskCount() != 1 {
		t.Fatalf("%d tasks left, want 1 (one forgotten per command)", a.f.TaskCount())
	}
}

func TestForgetDecodes(t *testing.T) {
	c := Forget{Cutoff: t0, TaskIDs: []string{"t1"}, NodeIDs: []string{"n1"}, WorkspaceIDs: []string{"w1"}, At: t0}
	b, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil || got.(Forget).TaskIDs[0] != "t1" || !got.(Forget).Cutoff.Equal(t0) {
		t.Fatalf("decode = %+v, %v", got, err)
	}
	if _, err := Decode(b[:3]); !errors.Is(err, ErrDecode) {
		t.Fatalf("truncated: %v", err)
	}
}
