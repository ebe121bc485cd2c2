package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
)

// Event streams have limits: one anonymous GET /v1/events with an old
// Last-Event-ID used to replay the whole ring with full task bodies (187 MB),
// and thousands of open streams each rescanned the ring on every change.
//
//   - A client behind by more than ReplayEvents events or ReplayBytes bytes
//     (after its filters) gets a reset event instead of the backlog, with
//     the id of the newest event: re-read the state (GET), then follow.
//   - Events carry what changed, not the task (TaskChange).
//   - Open streams are capped per node and per client (token subject, or
//     IP without authentication); one past a cap is refused before the
//     stream opens: 503 for the node's cap, 429 for the client's.
//   - A stream counts against its caller's rate limit: opening it is one
//     request, and every EventsPerToken events it delivers take one more
//     token; when the bucket is empty the stream waits (and a client that
//     falls too far behind meanwhile gets a reset).

// EventLimits bound the event streams of one node.
type EventLimits struct {
	ReplayEvents     int
	ReplayBytes      int
	Streams          int
	StreamsPerClient int
	EventsPerToken   int
}

// DefaultEventLimits are the limits NewEventHub starts with.
func DefaultEventLimits() EventLimits {
	return EventLimits{ReplayEvents: 1000, ReplayBytes: 1 << 20, Streams: 1000, StreamsPerClient: 8, EventsPerToken: 100}
}

// Codes of the refusals.
const (
	CodeTooManyStreams = "too_many_streams"
)

// openStream takes a stream slot for client. It returns a release func, or
// the HTTP status and message of the refusal.
func (h *EventHub) openStream(client string) (func(), int, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	lim := h.limits
	switch {
	case lim.Streams > 0 && h.open >= lim.Streams:
		return nil, http.StatusServiceUnavailable, fmt.Sprintf("this node serves %d event streams, its limit; retry later or on another node", lim.Streams)
	case lim.StreamsPerClient > 0 && h.perClient[client] >= lim.StreamsPerClient:
		return nil, http.StatusTooManyRequests, fmt.Sprintf("%d event streams are open for this caller on this node, the limit; close one first", lim.StreamsPerClient)
	}
	h.open++
	h.perClient[client]++
	return func() {
		h.mu.Lock()
		h.open--
		if h.perClient[client]--; h.perClient[client] <= 0 {
			delete(h.perClient, client)
		}
		h.mu.Unlock()
	}, 0, ""
}

// SetLimits replaces the hub's limits (zero fields: no limit).
func (h *EventHub) SetLimits(l EventLimits) {
	h.mu.Lock()
	h.limits = l
	h.mu.Unlock()
}

// OpenStreams is how many event streams are open on this node.
func (h *EventHub) OpenStreams() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.open
}

func (h *EventHub) getLimits() EventLimits {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.limits
}

// streamClient names the caller whose streams and rate a stream counts
// against: its token's subject, else its IP.
func (s *Server) streamClient(c *gin.Context) (key string, limiter *rateLimiter) {
	if p, ok := caller(c); ok && p.Subject != "" {
		return "token:" + p.Subject, s.tokenLimit
	}
	host, _, err := net.SplitHostPort(c.Request.RemoteAddr)
	if err != nil {
		host = c.Request.RemoteAddr
	}
	if s.cfg.Auth.Len() > 0 {
		return "ip:" + host, nil
	}
	return "ip:" + host, s.ipLimit
}

// eventBatch is what one wake-up of a stream sends, bounded by the limits.
type eventBatch struct {
	lim      EventLimits
	buf      bytes.Buffer
	events   int
	bytes    int
	overflow bool
}

func newEventBatch(lim EventLimits) *eventBatch { return &eventBatch{lim: lim} }

// add encodes e, unless the batch is over its bounds (then it is dropped
// whole: the client gets a reset).
func (b *eventBatch) add(e *Event) {
	if b.overflow {
		return
	}
	b.events++
	b.bytes += e.size()
	if (b.lim.ReplayEvents > 0 && b.events > b.lim.ReplayEvents) || (b.lim.ReplayBytes > 0 && b.bytes > b.lim.ReplayBytes) {
		b.overflow = true
		b.buf.Reset()
		return
	}
	data, _ := json.Marshal(e)
	b.buf.WriteString("id: ")
	b.buf.WriteString(e.ID)
	b.buf.WriteString("\nevent: ")
	b.buf.WriteString(e.Type)
	b.buf.WriteString("\ndata: ")
	b.buf.Write(data)
	b.buf.WriteString("\n\n")
}

// writeTo writes the batch: a reset (with the id of the newest event, so
// that a reconnection resumes after it) when the client missed events the
// ring no longer holds or the batch is over its bounds, then the events.
func (b *eventBatch) writeTo(w io.Writer, complete bool, newest string) {
	switch {
	case b.overflow:
		fmt.Fprintf(w, "id: %s\nevent: reset\ndata: {\"reason\":\"more than %d events or %d bytes behind; re-read the state\"}\n\n", newest, b.lim.ReplayEvents, b.lim.ReplayBytes)
		return
	case !complete:
		fmt.Fprintf(w, "event: reset\ndata: {\"reason\":\"events were missed; re-read the state\"}\n\n")
	}
	_, _ = b.buf.WriteTo(w)
}

// sent is how many events the batch delivers.
func (b *eventBatch) sent() int {
	if b.overflow {
		return 0
	}
	return b.events
}

// streamCharge takes a rate-limit token per EventsPerToken events sent.
type streamCharge struct {
	limiter *rateLimiter
	key     string
	per     int
	pending int
}

// charge counts n events, and waits for tokens while the caller's bucket
// is empty. It returns false if done closes first.
func (sc *streamCharge) charge(n int, done <-chan struct{}) bool {
	if sc.limiter == nil || sc.per <= 0 {
		return true
	}
	sc.pending += n
	for sc.pending >= sc.per {
		ok, wait := sc.limiter.allow(sc.key, time.Now())
		if ok {
			sc.pending -= sc.per
			continue
		}
		select {
		case <-done:
			return false
		case <-time.After(wait):
		}
	}
	return true
}

func eventID(index uint64, pos int) string {
	return strconv.FormatUint(index, 10) + "-" + strconv.Itoa(pos)
}
