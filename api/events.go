package api

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/tdf-project/tdf/fsm"
)

// Event is one entry of the live event stream: a task or node whose state
// changed at a raft index. Its id, "<index>-<n>", is the same on every node
// (every replica applies the same log), so a client can resume on any node
// with Last-Event-ID.
type Event struct {
	ID    string      `json:"id"`
	Index uint64      `json:"index"`
	Type  string      `json:"type"` // "task" or "node"
	Task  *TaskChange `json:"task,omitempty"`
	Node  *NodeChange `json:"node,omitempty"`
	At    time.Time   `json:"at"`
	pos   int
}

// EventHub keeps the recent changes of the local FSM in a ring and fans
// them out to stream subscribers. It is fed from inside Apply, so adding
// never blocks: a subscriber that falls behind re-reads from the ring.
type EventHub struct {
	mu      sync.Mutex
	ring    []Event
	start   int // index in ring of the oldest event
	n       int
	lastIdx uint64
	lastPos int
	// dropped is the newest event pushed out of the ring (zero: none).
	droppedIdx uint64
	droppedPos int
	dropped    bool
	subs       map[chan struct{}]struct{}
	// limits, and the open streams per client (eventlimits.go).
	limits    EventLimits
	open      int
	perClient map[string]int
}

// NewEventHub keeps the last size events, with DefaultEventLimits.
func NewEventHub(size int) *EventHub {
	return &EventHub{ring: make([]Event, size), subs: map[chan struct{}]struct{}{},
		limits: DefaultEventLimits(), perClient: map[string]int{}}
}

// Observe is the FSM change-feed observer.
func (h *EventHub) Observe(c fsm.Change) {
	e := Event{Index: c.Index, Task: TaskChangeOf(c.Task), Node: nodeChange(c.Node), Type: "task"}
	if c.Node != nil {
		e.Type = "node"
	}
	h.mu.Lock()
	if c.Index == h.lastIdx {
		h.lastPos++
	} else {
		h.lastIdx, h.lastPos = c.Index, 0
	}
	e.pos = h.lastPos
	e.ID = strconv.FormatUint(e.Index, 10) + "-" + strconv.Itoa(e.pos) // per change: no Sprintf
	e.At = time.Now().UTC()
	if h.n < len(h.ring) {
		h.ring[(h.start+h.n)%len(h.ring)] = e
		h.n++
	} else {
		old := h.ring[h.start]
		h.droppedIdx, h.droppedPos, h.dropped = old.Index, old.pos, true
		h.ring[h.start] = e
		h.start = (h.start + 1) % len(h.ring)
	}
	for ch := range h.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	h.mu.Unlock()
}

func (h *EventHub) subscribe() chan struct{} {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	return ch
}

func (h *EventHub) unsubscribe(ch chan struct{}) {
	h.mu.Lock()
	delete(h.subs, ch)
	h.mu.Unlock()
}

// after returns the events after (index, pos), and whether none of them
// has been pushed out of the ring (if one has, the client missed it).
func (h *EventHub) after(index uint64, pos int) ([]Event, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	covered := !h.dropped || h.droppedIdx < index || (h.droppedIdx == index && h.droppedPos <= pos)
	// The ring is in (index, pos) order: find the first event after.
	first := sort.Search(h.n, func(i int) bool {
		e := &h.ring[(h.start+i)%len(h.ring)]
		return e.Index > index || (e.Index == index && e.pos > pos)
	})
	if first == h.n {
		return nil, covered
	}
	out := make([]Event, 0, h.n-first)
	for i := first; i < h.n; i++ {
		out = append(out, h.ring[(h.start+i)%len(h.ring)])
	}
	return out, covered
}

func parseEventID(s string) (uint64, int, bool) {
	a, b, ok := strings.Cut(s, "-")
	idx, err1 := strconv.ParseUint(a, 10, 64)
	pos, err2 := strconv.Atoi(b)
	return idx, pos, ok && err1 == nil && err2 == nil
}

// events streams changes as server-sent events, optionally for one task,
// resuming after Last-Event-ID. A client that resumes from further back
// than the hub remembers gets a "reset" event: re-read the state, then
// follow the stream.
func (s *Server) events(c *gin.Context) {
	hub := s.cfg.Events
	if hub == nil {
		abortError(c, http.StatusServiceUnavailable, CodeUnavailable, "the event stream is not enabled")
		return
	}
	taskID := c.Query("task_id")
	if err := checkID("task_id", taskID, false); err != nil {
		abortError(c, http.StatusBadRequest, CodeInvalidField, err.Error())
		return
	}
	var idx uint64
	var pos int
	if last := c.GetHeader("Last-Event-ID"); last != "" {
		var ok bool
		if idx, pos, ok = parseEventID(last); !ok {
			abortError(c, http.StatusBadRequest, CodeInvalidField, fmt.Sprintf("Last-Event-ID %q is not an event id", last))
			return
		}
	} else {
		idx, pos = s.cfg.Node.FSM().AppliedIndex(), 1<<30
	}
	visible := eventVisible(c)
	client, limiter := s.streamClient(c)
	release, status, msg := hub.openStream(client)
	if release == nil {
		if status == http.StatusTooManyRequests {
			c.Header("Retry-After", "10")
		}
		abortError(c, status, CodeTooManyStreams, msg)
		return
	}
	defer release()
	lim := hub.getLimits()
	charge := &streamCharge{limiter: limiter, key: client, per: lim.EventsPerToken}
	// The stream lives as long as its client: lift the server's read and
	// write timeouts for this connection (they bound every other request;
	// the server cancels streams itself when it shuts down).
	rc := http.NewResponseController(c.Writer)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	ch := hub.subscribe()
	defer hub.unsubscribe(ch)
	w := c.Writer
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "retry: 1000\n\n")
	w.Flush()
	keepAlive := time.NewTicker(15 * time.Second)
	defer keepAlive.Stop()
	ctx := c.Request.Context()
	for {
		evs, complete := hub.after(idx, pos)
		batch := newEventBatch(lim)
		for _, e := range evs {
			idx, pos = e.Index, e.pos
			if taskID != "" && (e.Task == nil || e.Task.ID != taskID) {
				continue
			}
			// A user follows only its own tasks and nodes (tenancy.go).
			if !visible(&e) {
				continue
			}
			batch.add(&e)
		}
		batch.writeTo(w, complete, eventID(idx, pos))
		w.Flush()
		if !charge.charge(batch.sent(), ctx.Done()) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-s.streamsDone:
			return
		case <-ch:
		case <-keepAlive.C:
			fmt.Fprintf(w, ": keep-alive\n\n")
			w.Flush()
		}
	}
}
