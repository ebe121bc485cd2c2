package archive_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tdf-project/tdf/archive"
	"github.com/tdf-project/tdf/fsm"
)

func task(id string, done time.Time) *fsm.Task {
	return &fsm.Task{ID: id, TaskSpec: fsm.TaskSpec{UserID: "u1", Prompt: "p"}, Status: fsm.StatusCompleted, CompletedAt: &done,
		History: []fsm.StatusEvent{{From: fsm.StatusInProgress, To: fsm.StatusCompleted, At: done}},
		Steps:   []fsm.StepAttempt{{Step: fsm.StepRunning, Attempt: 1, Started: done}}}
}

// Records are filed by the day they ended, read back by id, and not
// written twice when the same Forget is applied again (a log replay).
func TestWriteAndReadBack(t *testing.T) {
	dir := t.TempDir()
	a, err := archive.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	d1 := time.Date(2026, 3, 1, 23, 0, 0, 0, time.UTC)
	d2 := d1.Add(2 * time.Hour)
	var tasks []*fsm.Task
	for i := range 70 { // more than one gzip member a day
		tasks = append(tasks, task("t-"+string(rune('a'+i%26))+string(rune('a'+i/26)), d1))
	}
	tasks = append(tasks, task("t-late", d2))
	deleted := d2
	f := fsm.Forgotten{Index: 9, At: d2, Tasks: tasks, Nodes: []*fsm.Node{{ID: "n-1", Status: fsm.NodeDeleted, DeletedAt: &deleted}},
		Workspaces: []*fsm.Workspace{{ID: "ws-1", Status: fsm.WorkspaceStopped, UpdatedAt: d1}}}
	a.Write(f)
	a.Write(f) // replayed
	for _, name := range []string{"2026-03-01.jsonl.gz", "2026-03-02.jsonl.gz", "2026-03-01.ids", "2026-03-02.ids"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	for _, want := range tasks {
		got, ok, err := a.Task(want.ID)
		if err != nil || !ok || got.ID != want.ID || len(got.History) != 1 || len(got.Steps) != 1 || !got.CompletedAt.Equal(*want.CompletedAt) {
			t.Fatalf("Task(%s) = %+v, %v, %v", want.ID, got, ok, err)
		}
	}
	// An API id carries its submission time: the lookup starts there.
	sub := d1.Add(-50 * time.Hour)
	apiID := fmt.Sprintf("t-%012x%s", sub.UnixMilli(), "0a1b2c3d4e5f")
	a.Write(fsm.Forgotten{Tasks: []*fsm.Task{task(apiID, d1)}})
	if got, ok, err := a.Task(apiID); err != nil || !ok || got.ID != apiID {
		t.Fatalf("Task(%s) = %v, %v, %v", apiID, got, ok, err)
	}
	tasks = append(tasks, task(apiID, d1))
	if _, ok, err := a.Task("t-nope"); ok || err != nil {
		t.Fatalf("unknown id: ok=%v err=%v", ok, err)
	}
	counts := map[string]int{}
	days, _ := a.Days()
	for _, d := range days {
		if err := a.ScanDay(d, func(r archive.Record) bool { counts[r.Kind]++; return true }); err != nil {
			t.Fatal(err)
		}
	}
	if counts[archive.KindTask] != len(tasks) || counts[archive.KindNode] != 1 || counts[archive.KindWorkspace] != 1 {
		t.Fatalf("records %v, want %d tasks, 1 node, 1 workspace (each once)", counts, len(tasks))
	}
	// A reopened archive (a restart) still knows what it holds.
	b, _ := archive.Open(dir, nil)
	b.Write(f)
	if got, _ := b.Days(); len(got) != 2 {
		t.Fatalf("days %v", got)
	}
	n := 0
	_ = b.ScanDay("2026-03-02", func(r archive.Record) bool { n++; return true })
	if n != 2 { // t-late and n-1, once
		t.Fatalf("2026-03-02 holds %d records after a reopened archive wrote them again, want 2", n)
	}
}

// A write that fails (the directory is gone) is counted and logged, never
// a panic or an error to the FSM.
func TestWriteFailureIsCounted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "arc")
	var logged int
	a, err := archive.Open(dir, func(string, ...any) { logged++ })
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil { // a file where the directory was
		t.Fatal(err)
	}
	a.Write(fsm.Forgotten{Tasks: []*fsm.Task{task("t-1", time.Now())}})
	if a.Errors() != 1 || logged != 1 {
		t.Fatalf("errors %d, logged %d, want 1 and 1", a.Errors(), logged)
	}
}
