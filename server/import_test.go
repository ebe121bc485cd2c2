package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/cloud/fakecloud"
	"github.com/tdf-project/tdf/cloud/hetzner"
	"github.com/tdf-project/tdf/cloudinit"
	"github.com/tdf-project/tdf/fakeworld"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/handlers"
	"github.com/tdf-project/tdf/importer"
	"github.com/tdf-project/tdf/runner"
	"github.com/tdf-project/tdf/server"
	"github.com/tdf-project/tdf/tokens"
	"github.com/tdf-project/tdf/vmagent/sim"
)

// importWorld is a three-node cluster running the real pipeline against
// the simulated cloud, as `tdf dev` wires it, with short timers.
type importWorld struct {
	c         *server.TestCluster
	world     *fakeworld.World
	urls      []string
	agentPort int
}

func startImportWorld(t *testing.T) *importWorld {
	t.Helper()
	co := fakecloud.DefaultOptions()
	co.CreateDuration, co.DeleteDuration, co.RateLimit = 300*time.Millisecond, 100*time.Millisecond, -1
	// A loopback range of our own, apart from other tests' agents.
	first := netip.AddrFrom4([4]byte{127, byte(100 + rand.IntN(150)), byte(rand.IntN(250)), 1})
	co.Addresses = fakecloud.NewSequentialAllocator(first, netip.MustParsePrefix("127.0.0.0/8"))
	ac := sim.DefaultConfig()
	ac.BootDelay, ac.WorkspaceReadyDelay, ac.AgentWorkDuration, ac.HeartbeatInterval = 300*time.Millisecond, 200*time.Millisecond, 1500*time.Millisecond, time.Second
	w := &importWorld{agentPort: server.FreePorts(t, 1)[0]}
	w.world = fakeworld.New(fakeworld.Options{Cloud: co, Agent: ac, AgentPort: w.agentPort, VerifyTokens: true})
	ts := httptest.NewServer(w.world.Handler())
	provider, err := hetzner.New(hetzner.Options{Endpoint: ts.URL + "/v1", Token: fakecloud.DefaultToken, PollInterval: 100 * time.Millisecond, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	closeWorld := func() {
		once.Do(func() {
			w.world.Close()
			ts.Close()
			provider.Close()
		})
	}
	t.Cleanup(closeWorld)
	for _, p := range server.FreePorts(t, 3) {
		w.urls = append(w.urls, fmt.Sprintf("http://127.0.0.1:%d", p))
	}
	w.c = server.NewTestCluster(t, server.TestOptions{
		API:    func(c *api.Config) { c.Policy.IdleTimeout = 2 * time.Second },
		Runner: func(c *runner.Config) { c.RetryBase, c.RetryMax = 200*time.Millisecond, 2*time.Second },
		Server: func(c *server.Config) {
			i := slices.Index([]string{"n1", "n2", "n3"}, c.Cluster.NodeID)
			c.HTTPAddr = strings.TrimPrefix(w.urls[i], "http://")
			pc := handlers.DefaultConfig()
			pc.Cloud, pc.Cluster, pc.AgentPort = provider, "import-test", w.agentPort
			pc.ActionPoll, pc.AgentPoll, pc.NodeReadyGrace = 200*time.Millisecond, 200*time.Millisecond, 3*time.Second
			c.Pipeline = &pc
			c.ControlPlaneURL = w.urls[0]
			c.AgentTimeout = 10 * time.Second
			c.ReconcileInterval, c.ReconcileGrace = time.Hour, time.Hour
			c.Settings = fsm.DefaultSettings()
			c.Settings.NodeWarmTimeout, c.Settings.HeartbeatStale = 2*time.Second, 5*time.Second
		},
	})
	t.Cleanup(closeWorld) // agents stop before the nodes
	return w
}

// sampleExport is docs/import-sample.jsonl.
func sampleExport(t *testing.T) []byte {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "docs", "import-sample.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// seedOld creates what the old system left running for the sample export:
// VMs whose agents call tdf back (the cutover points them at tdf, and
// their tokens verify against its keys), with the workspaces and sessions
// the sample's tasks had. Servers 52000010 and 52000012 are gone.
func (w *importWorld) seedOld(t *testing.T, is *tokens.Issuer) {
	t.Helper()
	wsTok := func(id string) string {
		tok, err := is.CallbackToken(tokens.ScopeWorkspace, id)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	ws := func(task, id, status string, s *sim.SeedSession) sim.SeedWorkspace {
		return sim.SeedWorkspace{ID: id, Repository: "github.com/acme/web", Branch: "main", Status: status,
			CallbackToken: wsTok(id), ProjectID: "p-web", TaskID: task, Session: s}
	}
	vms := []struct {
		node, task string
		id         int64
		ws         []sim.SeedWorkspace
	}{
		{"old-n03", "old-003", 52000003, nil},
		{"old-n04", "old-004", 52000004, nil},
		{"old-n05", "old-005", 52000005, nil},
		{"old-n06", "old-006", 52000006, []sim.SeedWorkspace{func() sim.SeedWorkspace {
			s := ws("old-006", "old-ws06", "creating", nil)
			s.ReadyAfter = 4 * time.Second // the ready callback comes after the import
			return s
		}()}},
		{"old-n07", "old-007", 52000007, []sim.SeedWorkspace{ws("old-007", "old-ws07", "running", nil)}},
		{"old-n08", "old-008", 52000008, []sim.SeedWorkspace{ws("old-008", "old-ws08", "running", nil)}},
		{"old-n09", "old-009", 52000009, []sim.SeedWorkspace{ws("old-009", "old-ws09", "running",
			&sim.SeedSession{ID: "old-s09", Prompt: "task 9", Running: true, RunAfter: 10 * time.Second})}},
		{"old-n11", "old-011", 52000011, []sim.SeedWorkspace{ws("old-011", "old-ws11", "running", &sim.SeedSession{ID: "old-s11", Prompt: "task 11"})}},
		{"old-n14", "old-014", 52000014, []sim.SeedWorkspace{ws("old-014", "old-ws14", "stopped", nil)}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), server.TestWait)
	defer cancel()
	for _, vm := range vms {
		nodeTok, err := is.CallbackToken(tokens.ScopeNode, vm.node)
		if err != nil {
			t.Fatal(err)
		}
		ud, err := cloudinit.Render(cloudinit.Boot{CallbackToken: nodeTok, Env: map[string]string{
			"NODE_ID": vm.node, "CONTROL_PLANE_URL": w.urls[0],
			"JWKS_ENDPOINT": w.urls[0] + "/.well-known/jwks.json", "CALLBACK_TOKEN_FILE": cloudinit.TokenPath,
			"VM_AGENT_PORT": fmt.Sprint(w.agentPort), "PROJECT_ID": "p-web", "TASK_ID": vm.task,
		}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = w.world.Seed(ctx, fakeworld.SeedVM{
			Server:     fakecloud.SeedServer{ID: vm.id, Name: "node-" + vm.node, UserData: ud, Labels: map[string]string{"managed-by": "sam"}},
			Workspaces: vm.ws,
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func postImport(t *testing.T, c *server.TestCluster, n *server.TestNode, query string, body []byte) (server.TestResponse, importer.Report) {
	t.Helper()
	r := c.Do(n, http.MethodPost, "/v1/import"+query, body, map[string]string{"Content-Type": "application/x-ndjson"})
	var rep importer.Report
	if r.Status == http.StatusOK {
		if err := json.Unmarshal(r.Body, &rep); err != nil {
			t.Fatalf("report: %v: %s", err, r.Body)
		}
	}
	return r, rep
}

// TestImportSampleFinishesWithoutDuplicates is the acceptance test of the
// migration: the sample export, with tasks at every step and finished
// ones, imported against what the old system left running. A dry run
// writes nothing; the import adopts every in-flight task at its step and
// keeps the finished ones as history; importing again is a no-op; every
// in-flight task then completes — across a leader change in the middle of
// the adoptions — with no server, workspace or session created twice (the
// fake cloud's ledger), and no server is left behind.
func TestImportSampleFinishesWithoutDuplicates(t *testing.T) {
	w := startImportWorld(t)
	c := w.c
	leader := c.Leader()
	server.WaitFor(t, server.TestWait, "a signing key", func() error {
		if len(leader.FSM.SigningKeys()) == 0 {
			return fmt.Errorf("none yet")
		}
		return nil
	})
	w.seedOld(t, leader.Tokens)
	export := sampleExport(t)
	follower := c.Others(leader)[0]

	// Dry run, through a follower: the full report, nothing written.
	r, dry := postImport(t, c, follower, "?dry_run=true", export)
	if r.Status != http.StatusOK || !dry.DryRun {
		t.Fatalf("dry run = %d %s", r.Status, r.Body)
	}
	want := map[string]string{
		"old-001": "adopt at step node_selection", "old-002": "adopt at step node_provisioning", "old-003": "adopt at step node_provisioning",
		"old-004": "adopt at step node_agent_ready", "old-005": "adopt at step workspace_creation", "old-006": "adopt at step workspace_ready",
		"old-007": "adopt at step workspace_ready", "old-008": "adopt at step agent_session", "old-009": "adopt at step running",
		"old-010": "adopt at step running", "old-011": "adopt at step awaiting_followup", "old-012": "adopt at step awaiting_followup",
		"old-013": "adopt at step workspace_creation", "old-014": "import as history (completed)", "old-015": "import as history (failed)",
		"old-016": "import as history (cancelled)", "old-017": "import as draft (not started)",
	}
	checkReport(t, "dry run", dry, want)
	for _, n := range c.Nodes {
		if got := n.FSM.TaskCount(); got != 0 {
			t.Fatalf("dry run wrote %d tasks on %s", got, n.ID)
		}
	}

	// The import itself.
	r, rep := postImport(t, c, follower, "", export)
	if r.Status != http.StatusOK || rep.DryRun {
		t.Fatalf("import = %d %s", r.Status, r.Body)
	}
	checkReport(t, "import", rep, want)

	// Importing again changes nothing.
	tasksBefore := leader.FSM.TaskCount()
	r, again := postImport(t, c, leader, "", export)
	if r.Status != http.StatusOK || again.Counts[importer.ActionSkip] != 17 || len(again.Results) != 17 {
		t.Fatalf("second import = %d %s", r.Status, r.Body)
	}
	for _, res := range again.Results {
		if !strings.HasSuffix(res.String(), "skip: already imported") {
			t.Fatalf("second import line %q", res)
		}
	}
	if leader.FSM.TaskCount() != tasksBefore {
		t.Fatalf("second import changed the task count")
	}

	// The leader is cut off while the adoptions and the first steps run:
	// the next leader re-dispatches what was in flight, and the effects'
	// idempotency keys keep every effect single.
	c.Partition(leader)
	c.WaitLeaderNot(leader)
	c.Heal()
	leader = c.Leader()
	t.Logf("leader after the partition: %s", leader.ID)

	inFlight := []string{"old-001", "old-002", "old-003", "old-004", "old-005", "old-006", "old-007", "old-008", "old-009",
		"old-010", "old-011", "old-012", "old-013"}
	server.WaitFor(t, 90*time.Second, "every adopted task to complete", func() error {
		for _, id := range inFlight {
			task, ok := leader.FSM.Task(id)
			switch {
			case !ok:
				return fmt.Errorf("%s missing", id)
			case task.Status == fsm.StatusFailed || task.Status == fsm.StatusCancelled:
				t.Fatalf("%s is %s: %s; steps %+v", id, task.Status, task.ErrorMessage, task.Steps)
			case task.Status != fsm.StatusCompleted || task.Cleanup:
				return fmt.Errorf("%s is %s at %q (adopting %v)", id, task.Status, task.RunnableStep(), task.Adopting)
			}
		}
		return nil
	})
	for id, st := range map[string]fsm.Status{"old-014": fsm.StatusCompleted, "old-015": fsm.StatusFailed, "old-016": fsm.StatusCancelled, "old-017": fsm.StatusDraft} {
		task, _ := leader.FSM.Task(id)
		if task.Status != st || task.Alarm != nil || task.Cleanup || len(task.Steps) != 0 {
			t.Errorf("history task %s = %s, alarm %v, cleanup %v, %d steps", id, task.Status, task.Alarm, task.Cleanup, len(task.Steps))
		}
	}
	checkAdoptNotes(t, leader)
	for _, id := range inFlight {
		task, _ := leader.FSM.Task(id)
		var trail []string
		for _, a := range task.Steps {
			trail = append(trail, fmt.Sprintf("%s#%d:%s", a.Step, a.Attempt, a.Outcome))
		}
		t.Logf("%s: %s", id, strings.Join(trail, " "))
	}

	// Every node goes warm and is destroyed: no server is left.
	server.WaitFor(t, 60*time.Second, "every server deleted", func() error {
		if vms := w.world.Cloud.Servers(); len(vms) > 0 {
			return fmt.Errorf("%d servers left, first %s (%s)", len(vms), vms[0].Name, vms[0].Status)
		}
		return nil
	})
	checkLedger(t, w.world.Cloud.Ledger())
	c.WaitConverged()
	kinds := map[fsm.ErrorKind]int{}
	recs, _ := leader.FSM.Errors(fsm.ErrorFilter{})
	for _, e := range recs {
		kinds[e.Kind]++
	}
	t.Logf("error records by kind: %v", kinds)
}

func checkReport(t *testing.T, what string, rep importer.Report, want map[string]string) {
	t.Helper()
	if len(rep.Results) != len(want) {
		t.Fatalf("%s: %d results, want %d: %+v", what, len(rep.Results), len(want), rep.Results)
	}
	for _, res := range rep.Results {
		if w := want[res.ID]; !strings.HasSuffix(res.String(), ": "+w) {
			t.Errorf("%s: %q, want %q", what, res, w)
		}
	}
}

// checkAdoptNotes: each adopted task's timeline says what reality showed.
func checkAdoptNotes(t *testing.T, n *server.TestNode) {
	t.Helper()
	for id, note := range map[string]string{
		"old-004": "agent healthy", "old-005": "is not on the VM", "old-006": "is creating", "old-007": "start the agent session",
		"old-008": "has no agent session on record", "old-009": "with agent session old-s09: wait at running", "old-010": "server 52000010 is gone",
		"old-011": "with agent session old-s11: wait at awaiting_followup", "old-012": "the run had finished",
	} {
		task, _ := n.FSM.Task(id)
		i := slices.IndexFunc(task.Steps, func(a fsm.StepAttempt) bool {
			return a.Step == fsm.StepAdopt && a.Outcome == string(fsm.OutcomeSuccess)
		})
		if i < 0 || !strings.Contains(task.Steps[i].Note, note) {
			t.Errorf("%s: adopt timeline %+v, want a note with %q", id, task.Steps, note)
		}
	}
}

// checkLedger: one server per node name, one workspace per workspace id,
// one session per workspace and one start per session — seeded (the old
// system's) and tdf's effects together.
func checkLedger(t *testing.T, events []fakecloud.Event) {
	t.Helper()
	count := map[string]int{}
	for _, e := range events {
		switch e.Kind {
		case fakecloud.EventServerCreate:
			count["server "+e.Name]++
		case string(sim.EventWorkspaceCreate):
			count["workspace "+e.WorkspaceID]++
		case string(sim.EventSessionCreate):
			count["session of "+e.WorkspaceID]++
		case string(sim.EventSessionStart):
			count["start of "+e.SessionID]++
		}
	}
	for k, n := range count {
		if n != 1 {
			t.Errorf("ledger: %s happened %d times", k, n)
		}
	}
	for _, k := range []string{"server node-old-n02", "server node-old-n10", "workspace old-ws05", "workspace old-ws10",
		"workspace old-ws13", "session of old-ws08", "session of old-ws09", "session of old-ws10"} {
		if count[k] != 1 {
			t.Errorf("ledger: %s happened %d times, want once", k, count[k])
		}
	}
	if count["server node-old-n12"] != 0 {
		t.Errorf("the finished task whose server was gone got a new server")
	}
}
