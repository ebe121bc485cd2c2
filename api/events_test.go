package api

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

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

// A batch over its bounds is dropped whole and becomes a reset carrying
// the newest id; within them it is the events.
func TestEventBatchBounds(t *testing.T) {
	lim := EventLimits{ReplayEvents: 3, ReplayBytes: 1 << 20}
	var out strings.Builder
	b := newEventBatch(lim)
	for i := range 3 {
		b.add(&Event{ID: eventID(uint64(i+1), 0), Type: "task", Task: &TaskChange{ID: "t1", Status: "queued"}})
	}
	b.writeTo(&out, true, "3-0")
	if got := strings.Count(out.String(), "event: task"); got != 3 || b.sent() != 3 || strings.Contains(out.String(), "reset") {
		t.Fatalf("within bounds: %d events, sent %d: %s", got, b.sent(), out.String())
	}
	out.Reset()
	b = newEventBatch(lim)
	for i := range 4 {
		b.add(&Event{ID: eventID(uint64(i+1), 0), Type: "task", Task: &TaskChange{ID: "t1"}})
	}
	b.writeTo(&out, true, "4-0")
	if s := out.String(); !strings.HasPrefix(s, "id: 4-0\nevent: reset\n") || strings.Contains(s, "event: task") || b.sent() != 0 {
		t.Fatalf("over the event bound: %q", s)
	}
	b = newEventBatch(EventLimits{ReplayEvents: 100, ReplayBytes: 1000})
	for i := range 10 {
		b.add(&Event{ID: eventID(uint64(i+1), 0), Type: "task", Task: &TaskChange{ID: "t1", ErrorMessage: strings.Repeat("x", 200)}})
	}
	if !b.overflow {
		t.Fatalf("10 events of about 500 bytes passed a 1000-byte bound")
	}
}

// Streams are capped per node and per client; a closed one frees its slot.
func TestOpenStreamCaps(t *testing.T) {
	h := NewEventHub(4)
	h.SetLimits(EventLimits{Streams: 3, StreamsPerClient: 2})
	r1, _, _ := h.openStream("a")
	r2, _, _ := h.openStream("a")
	if r, status, _ := h.openStream("a"); r != nil || status != 429 {
		t.Fatalf("third stream of one client: status %d", status)
	}
	r3, _, _ := h.openStream("b")
	if r, status, _ := h.openStream("c"); r != nil || status != 503 {
		t.Fatalf("fourth stream of the node: status %d", status)
	}
	r1()
	if r, _, msg := h.openStream("a"); r == nil {
		t.Fatalf("a freed slot was not reused: %s", msg)
	}
	r2()
	r3()
	if h.OpenStreams() != 1 {
		t.Fatalf("open streams = %d, want 1", h.OpenStreams())
	}
}

// A stream takes a token of its caller's bucket per EventsPerToken events
// and waits while the bucket is empty.
func TestStreamChargeWaits(t *testing.T) {
	l := newRateLimiter(0.001, 2)
	sc := &streamCharge{limiter: l, key: "ip:x", per: 100}
	if !sc.charge(250, nil) {
		t.Fatalf("two tokens' worth of events was refused")
	}
	done := make(chan struct{})
	close(done)
	if sc.charge(50, done) {
		t.Fatalf("a third token's worth went through an empty bucket")
	}
}

// Events carry what changed, not the task.
func TestTaskEventIsSmall(t *testing.T) {
	task := &fsm.Task{ID: "t1", Status: fsm.StatusQueued, ErrorMessage: strings.Repeat("é", 1000)}
	task.Prompt = strings.Repeat("p", 100000)
	task.History = make([]fsm.StatusEvent, 500)
	h := NewEventHub(4)
	h.Observe(fsm.Change{Index: 1, Task: task})
	evs, _ := h.after(0, 0)
	b, _ := json.Marshal(evs[0])
	if len(b) > 1024 || strings.Contains(string(b), "ppp") || !utf8.Valid(b) {
		t.Fatalf("task event is %d bytes: %.300s", len(b), b)
	}
	if est := evs[0].size(); est < len(b) {
		t.Fatalf("size estimate %d is below the encoded %d bytes", est, len(b))
	}
}
