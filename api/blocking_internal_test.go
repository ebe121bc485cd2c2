package api

import (
	"testing"
	"time"

	"github.com/tdf-project/tdf/fsm"
)

// The change window answers "did this task change after N" exactly while N
// is inside it, and "unknown" (answer at once) once N has left it.
func TestTaskChangesWindow(t *testing.T) {
	tc := &taskChanges{last: map[string]uint64{}, waiters: map[string][]chan struct{}{}, floor: 10}
	if changed, known := tc.changedAfter("a", 10); changed || !known {
		t.Fatalf("before any change: changed=%v known=%v, want false true", changed, known)
	}
	if _, known := tc.changedAfter("a", 9); known {
		t.Fatalf("index 9 is older than the window's floor 10: want unknown")
	}
	ch, withdraw := tc.wait("a")
	tc.observe(fsm.Change{Index: 11, Task: &fsm.Task{ID: "b"}})
	select {
	case <-ch:
		t.Fatal("a change of b woke a waiter of a")
	default:
	}
	tc.observe(fsm.Change{Index: 12, Task: &fsm.Task{ID: "a"}})
	select {
	case <-ch:
	case <-time.After(time.Second):
		t.Fatal("a change of a did not wake its waiter")
	}
	withdraw() // after the wake-up: a no-op
	if changed, _ := tc.changedAfter("a", 11); !changed {
		t.Fatal("a changed at 12: changedAfter(a, 11) = false")
	}
	if changed, known := tc.changedAfter("a", 12); changed || !known {
		t.Fatalf("changedAfter(a, 12) = %v %v, want false true", changed, known)
	}
	// Fill the window: the oldest entries leave it and raise the floor.
	for i := uint64(13); i < 13+changeWindow; i++ {
		tc.observe(fsm.Change{Index: i, Task: &fsm.Task{ID: "c"}})
	}
	if _, known := tc.changedAfter("a", 11); known {
		t.Fatal("index 11 left the window: want unknown")
	}
	if len(tc.last) != 1 {
		t.Fatalf("the window remembers %d tasks, want only c", len(tc.last))
	}
	_, withdraw = tc.wait("z")
	withdraw()
	if len(tc.waiters) != 0 {
		t.Fatalf("a withdrawn waiter stays registered: %v", tc.waiters)
	}
}

func TestParseWait(t *testing.T) {
	for v, want := range map[string]time.Duration{"30s": 30 * time.Second, "5": 5 * time.Second, "250ms": 250 * time.Millisecond, "0": 0} {
		if got, set, err := parseWait(v); err != nil || !set || got != want {
			t.Errorf("parseWait(%q) = %v %v %v, want %v", v, got, set, err, want)
		}
	}
	for _, v := range []string{"-1s", "2m", "soon"} {
		if _, _, err := parseWait(v); err == nil {
			t.Errorf("parseWait(%q): no error", v)
		}
	}
}
