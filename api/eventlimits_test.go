package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/server"
)

// stream is an open GET /v1/events.
type stream struct {
	resp   *http.Response
	sc     *bufio.Scanner
	cancel context.CancelFunc
	bytes  int
}

func openStream(t *testing.T, base, lastID string) (*stream, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), server.TestWait)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/events", nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		return nil, resp.StatusCode
	}
	s := &stream{resp: resp, sc: bufio.NewScanner(resp.Body), cancel: cancel}
	s.sc.Buffer(make([]byte, 64<<10), 1<<20)
	t.Cleanup(s.close)
	return s, resp.StatusCode
}

func (s *stream) close() { s.cancel(); s.resp.Body.Close() }

// next reads one event: its id, name and data.
func (s *stream) next(t *testing.T) (id, name, data string) {
	t.Helper()
	for s.sc.Scan() {
		line := s.sc.Text()
		s.bytes += len(line) + 1
		switch {
		case line == "" && name != "":
			return id, name, data
		case strings.HasPrefix(line, "id: "):
			id = line[4:]
		case strings.HasPrefix(line, "event: "):
			name = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		}
	}
	t.Fatalf("stream ended: %v", s.sc.Err())
	return
}

// A replay from far back is a reset carrying the newest id instead of the
// backlog; a short one is the events, each small (what changed, without
// the prompt or the history); streams are capped per client and per node.
func TestEventStreamLimits(t *testing.T) {
	hub := api.NewEventHub(10000)
	hub.SetLimits(api.EventLimits{ReplayEvents: 20, ReplayBytes: 256 << 10, Streams: 3, StreamsPerClient: 2, EventsPerToken: 100})
	c, n := singleNode(t, server.TestOptions{API: func(ac *api.Config) { ac.Events = hub }})
	prompt := strings.Repeat("a long prompt ", 300) // 4 KiB: the old events carried it
	for i := range 40 {
		submit(t, c, n, body("u1", fmt.Sprint(i, prompt)))
	}
	s, _ := openStream(t, n.URL, "1-0")
	id, name, _ := s.next(t)
	if name != "reset" || id == "" {
		t.Fatalf("a replay of 40 tasks' events past a bound of 20 began with %q (id %q), want a reset with the newest id", name, id)
	}
	t.Logf("replay from 1-0: a reset at %s after %d bytes", id, s.bytes)
	s.close()

	// From the reset's id on, the stream is live: the next tasks' events.
	s, _ = openStream(t, n.URL, id)
	for i := range 3 {
		submit(t, c, n, body("u1", fmt.Sprint("after ", i, prompt)))
	}
	seen := map[string]bool{}
	var sizes []int
	for len(seen) < 3 {
		_, name, data := s.next(t)
		if name != "task" {
			continue
		}
		if len(data) > 1024 || strings.Contains(data, "long prompt") || strings.Contains(data, "history") {
			t.Fatalf("task event of %d bytes: %.200s", len(data), data)
		}
		var ev api.EventMessage
		if err := json.Unmarshal([]byte(data), &ev); err != nil || ev.Task == nil || ev.Task.Status == "" {
			t.Fatalf("task event %s: %v", data, err)
		}
		seen[ev.Task.ID] = true
		sizes = append(sizes, len(data))
	}
	t.Logf("task event sizes (data line, bytes) for tasks with a 4 KiB prompt: %v", sizes)

	// Two streams per client: a third is 429.
	s2, _ := openStream(t, n.URL, "")
	if _, status := openStream(t, n.URL, ""); status != http.StatusTooManyRequests {
		t.Fatalf("third stream of one client = %d, want 429", status)
	}
	s2.close()
	waitOpen(t, hub, 1)
	// Three per node: with the per-client cap lifted, a fourth is 503.
	hub.SetLimits(api.EventLimits{ReplayEvents: 20, ReplayBytes: 256 << 10, Streams: 3, StreamsPerClient: 10})
	openStream(t, n.URL, "")
	openStream(t, n.URL, "")
	if _, status := openStream(t, n.URL, ""); status != http.StatusServiceUnavailable {
		t.Fatalf("fourth stream of the node = %d, want 503", status)
	}
}

func waitOpen(t *testing.T, hub *api.EventHub, want int) {
	t.Helper()
	deadline := time.Now().Add(server.TestWait)
	for hub.OpenStreams() != want {
		if time.Now().After(deadline) {
			t.Fatalf("open streams = %d, want %d", hub.OpenStreams(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
