package api

import (
	"testing"

	"github.com/tdf-project/tdf/fsm"
)

func TestEventHubResume(t *testing.T) {
	h := NewEventHub(4)
	for i := uint64(1); i <= 3; i++ {
		h.Observe(fsm.Change{Index: i, Task: &fsm.Task{ID: "t1"}})
	}
	h.Observe(fsm.Change{Index: 3, Node: &fsm.Node{ID: "n1"}}) // a second change at one index
	evs, covered := h.after(1, 0)
	if !covered || len(evs) != 3 || evs[0].ID != "2-0" || evs[2].ID != "3-1" || evs[2].Type != "node" {
		t.Fatalf("after(1-0) = %+v covered=%v", evs, covered)
	}
	h.Observe(fsm.Change{Index: 4, Task: &fsm.Task{ID: "t2"}})
	h.Observe(fsm.Change{Index: 5, Task: &fsm.Task{ID: "t3"}}) // the ring drops 1-0 and 2-0
	if _, covered := h.after(1, 0); covered {
		t.Fatalf("resuming from an evicted event is reported as complete")
	}
	evs, covered = h.after(3, 1)
	if !covered || len(evs) != 2 || evs[0].ID != "4-0" {
		t.Fatalf("after(3-1) = %+v covered=%v", evs, covered)
	}
	if _, _, ok := parseEventID("12-x"); ok {
		t.Fatalf("parseEventID accepted a malformed id")
	}
}
