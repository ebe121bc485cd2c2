package server_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/cloud/fakecloud"
	"github.com/tdf-project/tdf/cloud/hetzner"
	"github.com/tdf-project/tdf/fakeworld"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/handlers"
	"github.com/tdf-project/tdf/runner"
	"github.com/tdf-project/tdf/server"
	"github.com/tdf-project/tdf/vmagent/sim"
)

// A node reaches its max lifetime while its task runs (the agent works
// longer than the node may live): the task completes normally, then the
// node is destroyed — and its server deleted only after the session
// ended. Three nodes, the real pipeline, the simulated cloud and agents.
func TestBusyNodeOutlivesMaxLifetimeUntilItsTaskEnds(t *testing.T) {
	const lifetime, work = 3 * time.Second, 8 * time.Second
	co := fakecloud.DefaultOptions()
	co.CreateDuration, co.DeleteDuration, co.RateLimit = 300*time.Millisecond, 100*time.Millisecond, -1
	first := netip.AddrFrom4([4]byte{127, byte(100 + rand.IntN(150)), byte(rand.IntN(250)), 1})
	co.Addresses = fakecloud.NewSequentialAllocator(first, netip.MustParsePrefix("127.0.0.0/8"))
	ac := sim.DefaultConfig()
	ac.BootDelay, ac.WorkspaceReadyDelay, ac.AgentWorkDuration, ac.HeartbeatInterval = 300*time.Millisecond, 200*time.Millisecond, work, time.Second
	agentPort := server.FreePorts(t, 1)[0]
	world := fakeworld.New(fakeworld.Options{Cloud: co, Agent: ac, AgentPort: agentPort, VerifyTokens: true})
	ts := httptest.NewServer(world.Handler())
	provider, err := hetzner.New(hetzner.Options{Endpoint: ts.URL + "/v1", Token: fakecloud.DefaultToken, PollInterval: 100 * time.Millisecond, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	closeWorld := func() { world.Close(); ts.Close(); provider.Close() }
	var urls []string
	for _, p := range server.FreePorts(t, 3) {
		urls = append(urls, fmt.Sprintf("http://127.0.0.1:%d", p))
	}
	c := server.NewTestCluster(t, server.TestOptions{
		API:    func(c *api.Config) { c.Policy.IdleTimeout = time.Second },
		Runner: func(c *runner.Config) { c.RetryBase, c.RetryMax = 200*time.Millisecond, 2*time.Second },
		Server: func(c *server.Config) {
			i := slices.Index([]string{"n1", "n2", "n3"}, c.Cluster.NodeID)
			c.HTTPAddr = strings.TrimPrefix(urls[i], "http://")
			pc := handlers.DefaultConfig()
			pc.Cloud, pc.Cluster, pc.AgentPort = provider, "lifetime-test", agentPort
			pc.ActionPoll, pc.AgentPoll, pc.NodeReadyGrace = 200*time.Millisecond, 200*time.Millisecond, 3*time.Second
			c.Pipeline = &pc
			c.ControlPlaneURL = urls[0]
			c.AgentTimeout = 10 * time.Second
			c.ReconcileInterval, c.ReconcileGrace = time.Hour, time.Hour
			c.Settings = fsm.DefaultSettings()
			c.Settings.MaxNodeLifetime, c.Settings.NodeHardLifetime = lifetime, time.Minute
			c.Settings.NodeWarmTimeout, c.Settings.HeartbeatStale = time.Minute, 5*time.Second
		},
	})
	t.Cleanup(closeWorld) // agents stop before the nodes

	leader := c.Leader()
	// The settings are committed by the leader's duties; wait for them
	// before submitting, so the node gets the short lifetime.
	server.WaitFor(t, server.TestWait, "short node lifetime in force", func() error {
		if got := leader.FSM.Settings().MaxNodeLifetime; got != lifetime {
			return fmt.Errorf("max node lifetime %s", got)
		}
		return nil
	})
	r := c.Do(leader, http.MethodPost, "/v1/tasks", submitBody("u1", "outlive the node"), nil)
	if r.Status != http.StatusAccepted {
		t.Fatalf("submit = %d %s", r.Status, r.Body)
	}
	id := decodeTask(t, r).ID

	// The node passes its max lifetime while the agent still works: it is
	// cordoned, not destroyed, and the task is still running.
	var nodeID string
	server.WaitFor(t, server.TestWait, "node cordoned at its max lifetime with the task running", func() error {
		task, _ := leader.FSM.Task(id)
		if task == nil || task.NodeID == "" {
			return fmt.Errorf("no node yet")
		}
		nodeID = task.NodeID
		n, _ := leader.FSM.Node(nodeID)
		if !n.Cordoned || !n.PastLifetime {
			return fmt.Errorf("node %s cordoned=%v past lifetime=%v (task %s/%s)", n.Status, n.Cordoned, n.PastLifetime, task.Status, task.Step)
		}
		if task.Status.Terminal() || n.Status != fsm.NodeActive {
			return fmt.Errorf("task %s %q, node %s: the node was pulled from under its task", task.Status, task.ErrorMessage, n.Status)
		}
		return nil
	})

	// The task completes; then the node is destroyed.
	server.WaitFor(t, 2*server.TestWait, "task completed, then node deleted", func() error {
		task, _ := leader.FSM.Task(id)
		if task.Status == fsm.StatusFailed || task.Status == fsm.StatusCancelled {
			return fmt.Errorf("task %s: %s", task.Status, task.ErrorMessage) // WaitFor fails on timeout; show why
		}
		n, _ := leader.FSM.Node(nodeID)
		if task.Status != fsm.StatusCompleted || task.Cleanup || n.Status != fsm.NodeDeleted {
			return fmt.Errorf("task %s cleanup=%v, node %s", task.Status, task.Cleanup, n.Status)
		}
		return nil
	})
	task, _ := leader.FSM.Task(id)
	if task.ErrorMessage != "" {
		t.Fatalf("task completed with error %q", task.ErrorMessage)
	}
	n, _ := leader.FSM.Node(nodeID)
	if n.DeletedAt == nil || n.DeletedAt.Before(*task.CompletedAt) {
		t.Fatalf("node deleted at %v, task completed at %v: want the node gone after the task", n.DeletedAt, task.CompletedAt)
	}
	// Its server was deleted only after the task completed.
	var deleted time.Time
	for _, e := range world.Cloud.Ledger() {
		if e.Kind == fakecloud.EventServerDelete && e.Name == n.ServerName {
			deleted = e.Time
		}
	}
	if deleted.IsZero() || deleted.Before(*task.CompletedAt) {
		t.Fatalf("server %s deleted at %v, task completed at %v", n.ServerName, deleted, task.CompletedAt)
	}
}
