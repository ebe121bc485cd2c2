package fsm

import (
	"bytes"
	"io"
	"testing"
)

// countByScan is what TaskCounts replaced: a scan of every task.
func countByScan(f *FSM) map[Status]int {
	out := map[Status]int{}
	for _, s := range AllStatuses {
		out[s] = 0
	}
	f.ForEachTask(func(t *Task) bool { out[t.Status]++; return true })
	return out
}

func sameCounts(a, b map[Status]int) bool {
	if len(a) != len(b) {
		return false
	}
	for s, n := range a {
		if b[s] != n {
			return false
		}
	}
	return true
}

// The counts kept per status equal a scan after a random log of submits,
// cancels and status changes, and after a snapshot is restored.
func TestTaskCountsMatchAScan(t *testing.T) {
	a := newApplier(t)
	for i, c := range randomLog(7, 3000) {
		a.apply(c)
		if i%250 == 0 {
			if got, want := a.f.TaskCounts(), countByScan(a.f); !sameCounts(got, want) {
				t.Fatalf("after %d commands: counts %v, a scan %v", i+1, got, want)
			}
		}
	}
	if got, want := a.f.TaskCounts(), countByScan(a.f); !sameCounts(got, want) {
		t.Fatalf("counts %v, a scan %v", got, want)
	}
	restored := New()
	if err := restored.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, a.f)))); err != nil {
		t.Fatal(err)
	}
	if got, want := restored.TaskCounts(), countByScan(a.f); !sameCounts(got, want) {
		t.Fatalf("restored counts %v, the original's scan %v", got, want)
	}
}

// Each task that ends counts once under its outcome; a re-run that ends
// again counts again.
func TestTaskOutcomes(t *testing.T) {
	a := newApplier(t)
	submit(a, "t1")
	submit(a, "t2")
	a.apply(CancelTask{TaskID: "t1", At: t0})
	a.apply(CancelTask{TaskID: "t1", At: t0})
	if got := a.f.TaskOutcomes()[StatusCancelled]; got != 1 {
		t.Fatalf("cancelled = %d after one cancel (and a no-op one), want 1", got)
	}
	a.apply(SetStatus{TaskID: "t1", To: StatusReady, At: t0})
	a.apply(SetStatus{TaskID: "t1", To: StatusQueued, At: t0})
	a.apply(CancelTask{TaskID: "t1", At: t0})
	if got := a.f.TaskOutcomes(); got[StatusCancelled] != 2 || got[StatusFailed] != 0 || got[StatusCompleted] != 0 {
		t.Fatalf("outcomes %v, want 2 cancelled", got)
	}
}
