package server_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/cloud/apicheck"
	"github.com/tdf-project/tdf/cloud/fakecloud"
	"github.com/tdf-project/tdf/cloud/hetzner"
	"github.com/tdf-project/tdf/fakeworld"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/handlers"
	"github.com/tdf-project/tdf/runner"
	"github.com/tdf-project/tdf/server"
	"github.com/tdf-project/tdf/vmagent/sim"
)

// TestHetznerConformance runs whole tasks on a three-node cluster against
// the fake cloud while every exchange between tdf and the cloud is checked
// against Hetzner's API description. fsn1 answers resource_unavailable to
// half of the creates: every task completes all the same, through the
// fallback location, once each; the fallbacks are on the tasks' timelines.
// A tenth of all requests answer 429 on top: no task fails for it. Every
// server has the cluster's firewall from its creation, before its agent is
// called, and no rule admits the agent port from everywhere.
func TestHetznerConformance(t *testing.T) {
	chk, err := apicheck.New()
	if err != nil {
		t.Fatal(err)
	}
	const clusterName = "conformance"
	co := fakecloud.DefaultOptions()
	co.CreateDuration, co.DeleteDuration = 300*time.Millisecond, 100*time.Millisecond
	co.Seed = 7
	co.Faults = []fakecloud.Fault{
		{Endpoint: fakecloud.EndpointCreateServer, Location: "fsn1", Kind: fakecloud.FaultResourceUnavailable, Probability: 0.5},
		// And a tenth of every request is refused with 429 (with the
		// RateLimit headers): absorbed, never a failed task.
		{Kind: fakecloud.FaultRateLimit, Probability: 0.1},
	}
	first := netip.AddrFrom4([4]byte{127, byte(100 + rand.IntN(150)), byte(rand.IntN(250)), 1})
	co.Addresses = fakecloud.NewSequentialAllocator(first, netip.MustParsePrefix("127.0.0.0/8"))
	ac := sim.DefaultConfig()
	ac.BootDelay, ac.WorkspaceReadyDelay, ac.AgentWorkDuration, ac.HeartbeatInterval = 300*time.Millisecond, 200*time.Millisecond, 1500*time.Millisecond, time.Second
	agentPort := server.FreePorts(t, 1)[0]
	world := fakeworld.New(fakeworld.Options{Cloud: co, Agent: ac, AgentPort: agentPort, VerifyTokens: true})
	ts := httptest.NewServer(world.Handler())
	tr := http.DefaultTransport.(*http.Transport).Clone()
	fw := &hetzner.FirewallOptions{AgentPort: agentPort, AgentSources: []string{"127.0.0.0/8"},
		Labels: map[string]string{handlers.LabelManagedBy: handlers.ManagedBy, handlers.LabelCluster: clusterName}}
	provider, err := hetzner.New(hetzner.Options{Endpoint: ts.URL + "/v1", Token: fakecloud.DefaultToken, PollInterval: 100 * time.Millisecond,
		Timeout: 10 * time.Second, Transport: chk.Transport(tr), Firewall: fw})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	closeWorld := func() {
		once.Do(func() {
			world.Close()
			ts.Close()
			provider.Close()
			tr.CloseIdleConnections()
		})
	}
	t.Cleanup(closeWorld)
	pc := handlers.DefaultConfig()
	pc.Cloud, pc.Cluster, pc.AgentPort, pc.FallbackLocations = provider, clusterName, agentPort, []string{"nbg1"}
	pc.ActionPoll, pc.AgentPoll, pc.NodeReadyGrace = 200*time.Millisecond, 200*time.Millisecond, 3*time.Second
	var urls []string
	for _, p := range server.FreePorts(t, 3) {
		urls = append(urls, fmt.Sprintf("http://127.0.0.1:%d", p))
	}
	c := server.NewTestCluster(t, server.TestOptions{
		API: func(c *api.Config) {
			c.Policy.IdleTimeout = 2 * time.Second
			c.Placement, c.Pricing = pc.CheckPlacement, pc.HourlyPrice
		},
		Runner: func(c *runner.Config) { c.RetryBase, c.RetryMax = 200*time.Millisecond, 2*time.Second },
		Server: func(c *server.Config) {
			i := slices.Index([]string{"n1", "n2", "n3"}, c.Cluster.NodeID)
			c.HTTPAddr = strings.TrimPrefix(urls[i], "http://")
			p := pc
			c.Pipeline = &p
			c.ControlPlaneURL = urls[0]
			c.AgentTimeout = 10 * time.Second
			c.ReconcileInterval, c.ReconcileGrace = time.Hour, time.Hour
			c.Settings = fsm.DefaultSettings()
			c.Settings.NodeWarmTimeout, c.Settings.HeartbeatStale = 2*time.Second, 5*time.Second
		},
	})
	t.Cleanup(closeWorld) // agents stop before the nodes
	leader := c.Leader()
	follower := c.Others(leader)[0]

	// What the cloud cannot serve is refused at submit, saying why.
	for _, bad := range []struct{ size, loc, want string }{
		{"small", "mars1", "unknown location"}, {"huge", "fsn1", "vm_size"},
	} {
		b, _ := json.Marshal(api.SubmitRequest{ProjectID: "p1", UserID: "u-bad", Prompt: "x", Repository: "github.com/acme/app",
			VMSize: bad.size, VMLocation: bad.loc})
		r := c.Do(follower, http.MethodPost, "/v1/tasks", b, nil)
		if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), bad.want) {
			t.Errorf("submit %s in %s = %d %s, want 400 naming %q", bad.size, bad.loc, r.Status, r.Body, bad.want)
		}
	}

	const tasks = 8
	var ids []string
	for i := range tasks {
		ids = append(ids, submitTask(t, c, c.Others()[i%3], fmt.Sprintf("user-%d", i), fmt.Sprintf("task %d", i)).ID)
	}
	server.WaitFor(t, 120*time.Second, "every task to complete", func() error {
		for _, id := range ids {
			task, ok := c.Leader().FSM.Task(id)
			switch {
			case !ok:
				return fmt.Errorf("%s missing", id)
			case task.Status == fsm.StatusFailed || task.Status == fsm.StatusCancelled:
				t.Fatalf("%s is %s: %s; steps %+v", id, task.Status, task.ErrorMessage, task.Steps)
			case task.Status != fsm.StatusCompleted:
				return fmt.Errorf("%s is %s at %q", id, task.Status, task.RunnableStep())
			}
		}
		return nil
	})

	// Fallbacks are on the timelines.
	fallbacks := 0
	for _, id := range ids {
		task, _ := c.Leader().FSM.Task(id)
		for _, a := range task.Steps {
			if a.Step == fsm.StepNodeProvisioning && strings.Contains(a.Note, "placed in nbg1") {
				fallbacks++
				t.Logf("%s: %s", id, a.Note)
			}
		}
	}
	if fallbacks == 0 {
		t.Error("no task's timeline shows a fallback placement")
	}

	checkCosts(t, c, follower)

	ledger := world.Cloud.Ledger()
	checkOnce(t, ledger)
	checkFirewalls(t, world.Cloud, ledger, agentPort)

	devs := chk.Deviations()
	for _, d := range devs {
		t.Errorf("outside Hetzner's API description: %s", d)
	}
	t.Logf("%d exchanges checked, %d outside the description, %d tasks, %d fallbacks; operations: %v",
		chk.Exchanges(), len(devs), tasks, fallbacks, chk.Operations())
}

// checkOnce: every server, workspace, session and session start happened
// once.
func checkOnce(t *testing.T, events []fakecloud.Event) {
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
}

// checkFirewalls: one firewall, admitting the agent port only from the
// configured ranges; applied to each server when it was created, before
// any effect of its agent.
func checkFirewalls(t *testing.T, cl *fakecloud.Server, events []fakecloud.Event, agentPort int) {
	t.Helper()
	fws := cl.Firewalls()
	if len(fws) != 1 {
		t.Fatalf("%d firewalls, want 1: %+v", len(fws), fws)
	}
	for _, r := range fws[0].Rules {
		for _, src := range r.SourceIPs {
			if p, err := netip.ParsePrefix(src); err != nil || p.Bits() == 0 {
				t.Errorf("rule %+v admits port %v from %s", r, r.Port, src)
			}
		}
	}
	protected := map[int64]bool{}
	for _, e := range events {
		switch {
		case e.Kind == fakecloud.EventFirewallApply:
			protected[e.ServerID] = true
		case e.Kind == string(sim.EventWorkspaceCreate) || e.Kind == string(sim.EventSessionCreate):
			if !protected[e.ServerID] {
				t.Errorf("server %d's agent was called (%s) before its firewall was applied", e.ServerID, e.Kind)
			}
		}
	}
	created := 0
	for _, e := range events {
		if e.Kind == fakecloud.EventServerCreate {
			created++
			if !protected[e.ServerID] {
				t.Errorf("server %s (%d) never got the firewall", e.Name, e.ServerID)
			}
		}
	}
	t.Logf("%d servers created, each with firewall %s (agent port %d from %v)", created, fws[0].Name, agentPort, fws[0].Rules[0].SourceIPs)
}

// checkCosts: every node shows its hourly price and accrued cost (the
// fake's cx23 costs 0.0056 EUR an hour), the fleet's total is served at
// /v1/costs and exported as tdf_fleet_cost_euros.
func checkCosts(t *testing.T, c *server.TestCluster, via *server.TestNode) {
	t.Helper()
	var nodes struct {
		Nodes []api.NodeView `json:"nodes"`
	}
	r := c.Do(via, http.MethodGet, "/v1/nodes", nil, nil)
	if err := json.Unmarshal(r.Body, &nodes); err != nil || len(nodes.Nodes) == 0 {
		t.Fatalf("GET /v1/nodes = %d %s", r.Status, r.Body)
	}
	for _, n := range nodes.Nodes {
		if n.Cost == nil || n.Cost.Hourly != 0.0056 || n.Cost.Currency != "EUR" || n.Cost.Accrued <= 0 {
			t.Errorf("node %s cost %+v, want 0.0056 EUR an hour and something accrued", n.ID, n.Cost)
		}
	}
	var fleet api.FleetCost
	r = c.Do(via, http.MethodGet, "/v1/costs", nil, nil)
	if err := json.Unmarshal(r.Body, &fleet); err != nil || fleet.Accrued <= 0 || len(fleet.Nodes) != len(nodes.Nodes) {
		t.Errorf("GET /v1/costs = %d %s", r.Status, r.Body)
	}
	r = c.Do(via, http.MethodGet, "/metrics", nil, nil)
	if !strings.Contains(string(r.Body), "tdf_fleet_cost_euros ") {
		t.Errorf("/metrics lacks tdf_fleet_cost_euros")
	}
	t.Logf("fleet: %.4f %s an hour, %.6f %s accrued over %d nodes", fleet.Hourly, fleet.Currency, fleet.Accrued, fleet.Currency, len(fleet.Nodes))
}
