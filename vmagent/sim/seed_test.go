package sim_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tdf-project/tdf/vmagent"
	"github.com/tdf-project/tdf/vmagent/sim"
)

// TestSeed: seeded workspaces and sessions look to the API as if created
// through it, and live on: a creating workspace sends its ready callback
// once ReadyAfter has passed, a running session its task status callback.
// A replayed create of a seeded workspace is the idempotent answer, and a
// session is never created twice.
func TestSeed(t *testing.T) {
	e := newEnv(t, nil)
	seeded := time.Now()
	for _, ws := range []sim.SeedWorkspace{
		{ID: "ws-c", Repository: "r", Status: "creating", CallbackToken: wsToken, ProjectID: "p", TaskID: "t-c", ReadyAfter: 200 * time.Millisecond},
		{ID: "ws-r", Repository: "r", Status: "running", CallbackToken: wsToken, ProjectID: "p", TaskID: "t-r",
			Session: &sim.SeedSession{ID: "s-r", Prompt: "go", Running: true, RunAfter: 100 * time.Millisecond}},
		{ID: "ws-s", Repository: "r", Status: "stopped"},
	} {
		if err := e.agent.Seed(ws); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.agent.Seed(sim.SeedWorkspace{ID: "ws-r", Status: "running"}); err == nil {
		t.Fatal("seeding an existing workspace succeeded")
	}
	if err := e.agent.Seed(sim.SeedWorkspace{ID: "ws-x", Status: "creating", Session: &sim.SeedSession{ID: "s"}}); err == nil {
		t.Fatal("a session on a creating workspace was seeded")
	}
	if err := e.agent.Seed(sim.SeedWorkspace{ID: "ws-y", Status: "paused"}); err == nil {
		t.Fatal("an unknown status was seeded")
	}

	list, err := e.client.ListWorkspaces(e.ctx, e.srv.URL, node, user)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, w := range list {
		// sessions counts terminal sessions, as on the real agent: none,
		// though ws-r has an agent session.
		got[w.ID] = w.Status + "/" + strings.Repeat("s", w.Sessions)
	}
	if got["ws-c"] != "creating/" || got["ws-r"] != "running/" || got["ws-s"] != "stopped/" || len(got) != 3 {
		t.Fatalf("workspaces = %v", got)
	}
	// The seeded session was created without an Idempotency-Key, as the
	// old system does: creating it again under any key says it exists.
	_, err = e.client.CreateAgentSession(e.ctx, e.srv.URL, node, user, "ws-r", vmagent.CreateSessionRequest{SessionID: "s-r"}, "k")
	if !vmagent.IsSessionExists(err, "s-r") {
		t.Fatalf("create of the seeded session = %v, want 400 session already exists", err)
	}
	res, err := e.client.CreateWorkspace(e.ctx, e.srv.URL, node, user, vmagent.CreateWorkspaceRequest{WorkspaceID: "ws-r", Repository: "r", CallbackToken: wsToken})
	if err != nil || res.Status != "running" {
		t.Fatalf("create of the seeded running workspace = %+v, %v", res, err)
	}

	waitFor(t, "the seeded workspace's ready callback", func() bool { return len(e.cp.on(vmagent.WorkspaceReadyPath("ws-c"))) == 1 })
	if a := e.cp.on(vmagent.WorkspaceReadyPath("ws-c"))[0]; a.Time.Sub(seeded) < 200*time.Millisecond || a.Auth != "Bearer "+wsToken {
		t.Fatalf("ready callback after %v with %q", a.Time.Sub(seeded), a.Auth)
	}
	waitFor(t, "the seeded session's status callback", func() bool { return len(e.cp.on(vmagent.TaskStatusPath("p", "t-r"))) == 1 })
	kinds := map[sim.EventKind]int{}
	for _, ev := range e.agent.Events() {
		if ev.Detail == "seeded" {
			kinds[ev.Kind]++
		}
	}
	if kinds[sim.EventWorkspaceCreate] != 3 || kinds[sim.EventSessionCreate] != 1 || kinds[sim.EventSessionStart] != 1 {
		t.Fatalf("seeded events = %v", kinds)
	}
}
