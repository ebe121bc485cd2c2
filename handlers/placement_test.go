package handlers_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tdf-project/tdf/cloud"
	"github.com/tdf-project/tdf/cloud/fakecloud"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/handlers"
)

// A 429 waits for the rate limit's reset: the task polls, spends no retry
// and is not failed.
func TestProvisionRateLimitedWaits(t *testing.T) {
	w := newWorld(t, worldOpts{fake: fakecloud.Options{Faults: []fakecloud.Fault{
		{Endpoint: fakecloud.EndpointCreateServer, Kind: fakecloud.FaultRateLimit}}}})
	w.submit("t-x", taskSpec())
	cl := w.claim("t-x")
	out := w.run(cl)
	if out.Err != nil || out.PollAfter <= 0 {
		t.Fatalf("429: result %+v, want a poll after the reset", out)
	}
	if cur := w.commit(cl, out); cur.Retries != 0 || cur.Status != fsm.StatusQueued {
		t.Fatalf("429: task %s with %d retries, want queued with none", cur.Status, cur.Retries)
	}
}

// A full location: the server is created in the first fallback that has
// room, and the task's timeline says so.
func TestProvisionFallsBackToAnotherLocation(t *testing.T) {
	w := newWorld(t, worldOpts{fake: fakecloud.Options{Unavailable: map[string][]string{"fsn1": nil}}})
	w.cfg.FallbackLocations = []string{"nbg1", "hel1"}
	w.submit("t-x", taskSpec())
	cl := w.claim("t-x")
	out := w.run(cl)
	if out.Err != nil {
		t.Fatal(out.Err)
	}
	cur := w.commit(cl, out)
	vms := w.fake.Servers()
	if len(vms) != 1 || vms[0].Location != "nbg1" {
		t.Fatalf("servers %+v, want one in nbg1", vms)
	}
	note := cur.Steps[len(cur.Steps)-1].Note
	if !strings.Contains(note, "placed in nbg1") || !strings.Contains(note, "fsn1 answered resource_unavailable") {
		t.Fatalf("timeline note %q does not tell the fallback", note)
	}
	// A create that runs again (a re-dispatch after a lost answer) adopts
	// the same server, wherever the fallback put it.
	n, _ := w.f.Node(cur.NodeID)
	again, _, err := w.cloud.CreateServer(context.Background(), cloud.ServerSpec{Name: n.ServerName, ServerType: "cx23",
		Location: "fsn1", FallbackLocations: w.cfg.FallbackLocations, Labels: map[string]string{handlers.LabelNode: n.ID}})
	if err != nil || again.ID != vms[0].ID || len(w.fake.Servers()) != 1 {
		t.Fatalf("create again: %+v, %v, %d servers; want the same server adopted", again, err, len(w.fake.Servers()))
	}
}

// The submit check: sizes from configuration, types and locations from the
// provider's catalog.
func TestCheckPlacement(t *testing.T) {
	w := newWorld(t, worldOpts{fake: fakecloud.Options{Unavailable: map[string][]string{"hel1": nil}}})
	w.cfg.ServerTypes = map[string]string{"small": "cx23", "arm": "cax11", "bogus": "zz99"}
	ctx := context.Background()
	for _, c := range []struct{ size, loc, want string }{
		{"small", "fsn1", ""},
		{"huge", "fsn1", "not configured"},
		{"bogus", "fsn1", "unknown server type"},
		{"small", "mars1", "unknown location"},
		{"small", "ash", "not offered"},
		{"small", "hel1", "unavailable"},
	} {
		err := w.cfg.CheckPlacement(ctx, c.size, c.loc)
		if (err == nil) != (c.want == "") || err != nil && !strings.Contains(err.Error(), c.want) {
			t.Errorf("CheckPlacement(%s, %s) = %v, want %q", c.size, c.loc, err, c.want)
		}
	}
	w.cfg.FallbackLocations = []string{"nbg1"}
	if err := w.cfg.CheckPlacement(ctx, "small", "hel1"); err != nil {
		t.Errorf("with a fallback that has room: %v", err)
	}
}
