package main

import (
	"flag"
	"fmt"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/server"
)

// eventFlags are the limits of GET /v1/events (docs/api.md, "The event
// stream").
type eventFlags struct{ lim api.EventLimits }

func (e *eventFlags) bind(fs *flag.FlagSet) {
	e.lim = api.DefaultEventLimits()
	fs.IntVar(&e.lim.ReplayEvents, "event-replay-max-events", e.lim.ReplayEvents, "a stream client further behind than this many events gets a reset instead of the backlog (0: no bound)")
	fs.IntVar(&e.lim.ReplayBytes, "event-replay-max-bytes", e.lim.ReplayBytes, "the same bound in bytes of events (0: no bound)")
	fs.IntVar(&e.lim.Streams, "event-streams-max", e.lim.Streams, "open event streams this node serves; one more is 503 (0: no cap)")
	fs.IntVar(&e.lim.StreamsPerClient, "event-streams-per-client", e.lim.StreamsPerClient, "open event streams per token subject (or client IP without authentication) on this node; one more is 429 (0: no cap)")
	fs.IntVar(&e.lim.EventsPerToken, "events-per-rate-token", e.lim.EventsPerToken, "a stream takes one token of its caller's rate limit per this many events it delivers (0: only the request itself counts)")
}

func (e *eventFlags) apply(cfg *server.Config) error {
	l := e.lim
	if l.ReplayEvents < 0 || l.ReplayBytes < 0 || l.Streams < 0 || l.StreamsPerClient < 0 || l.EventsPerToken < 0 {
		return fmt.Errorf("--event-replay-max-events, --event-replay-max-bytes, --event-streams-max, --event-streams-per-client and --events-per-rate-token must not be negative (0 turns a limit off)")
	}
	hub := api.NewEventHub(10000)
	hub.SetLimits(l)
	cfg.API.Events = hub
	return nil
}
