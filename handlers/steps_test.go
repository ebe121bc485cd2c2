package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/tdf-project/tdf/cloud"
	"github.com/tdf-project/tdf/cloud/fakecloud"
	"github.com/tdf-project/tdf/cloudinit"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/handlers"
	"github.com/tdf-project/tdf/runner"
	"github.com/tdf-project/tdf/tokens"
	"github.com/tdf-project/tdf/vmagent"
	"github.com/tdf-project/tdf/vmagent/sim"
)

// The step handlers against the real fakes: fakecloud through hcloud-go,
// the simulated agent through the vmagent client, the FSM driven with
// commands into the state each handler expects.

func ourLabels(nodeID string) map[string]string {
	return map[string]string{handlers.LabelManagedBy: handlers.ManagedBy, handlers.LabelCluster: testCluster, handlers.LabelNode: nodeID}
}

// provisionUntilDone claims and runs node_provisioning until it is done,
// committing every poll, and returns the last result.
func (w *world) provisionUntilDone(id string) runner.Result {
	w.t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		c := w.claim(id)
		out := w.run(c)
		w.commit(c, out)
		switch {
		case out.Err != nil:
			w.t.Fatalf("provision: %v", out.Err)
		case out.PollAfter == 0:
			return out
		case out.PollAfter != w.cfg.ActionPoll:
			w.t.Fatalf("provision polls after %s, want ActionPoll %s", out.PollAfter, w.cfg.ActionPoll)
		case time.Now().After(deadline):
			w.t.Fatalf("provisioning not done after %s", waitFor)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestProvisionCreatesServerAndPollsUntilRunning(t *testing.T) {
	w := newWorld(t, worldOpts{})
	spec := taskSpec()
	spec.VMSize, spec.VMLocation = "medium", "nbg1"
	task := w.submit("t-p1", spec)
	if task.Step != fsm.StepNodeProvisioning || task.NodeID != "n-p1" {
		t.Fatalf("task at %s on %q", task.Step, task.NodeID)
	}

	c := w.claim("t-p1")
	out := w.run(c)
	if out.Err != nil || out.PollAfter != w.cfg.ActionPoll || out.Data.ServerID == 0 || out.Data.ActionID == 0 {
		t.Fatalf("first attempt = %+v, want a poll carrying the server and action ids", out)
	}
	vms := w.fake.Servers()
	if len(vms) != 1 {
		t.Fatalf("servers = %+v, want one", vms)
	}
	vm := vms[0]
	if vm.ID != out.Data.ServerID || vm.Name != "node-n-p1" || vm.ServerType != "cx33" || vm.Location != "nbg1" || vm.Image != "ubuntu-24.04" {
		t.Fatalf("server = %+v", vm)
	}
	if !maps.Equal(vm.Labels, ourLabels("n-p1")) {
		t.Fatalf("labels = %v, want %v", vm.Labels, ourLabels("n-p1"))
	}
	boot, err := cloudinit.Parse(vm.UserData)
	if err != nil {
		t.Fatalf("user data: %v", err)
	}
	for k, want := range map[string]string{
		"NODE_ID": "n-p1", "CONTROL_PLANE_URL": testCPURL, "JWKS_ENDPOINT": testCPURL + "/.well-known/jwks.json",
		"CONTROL_PLANE_URLS": "", "CALLBACK_TOKEN_FILE": cloudinit.TokenPath,
		"VM_AGENT_PORT": strconv.Itoa(w.cfg.AgentPort), "TASK_ID": "t-p1", "PROJECT_ID": "p1",
	} {
		if boot.Env[k] != want {
			t.Errorf("cloud-init %s = %q, want %q", k, boot.Env[k], want)
		}
	}
	if _, err := w.issuer.VerifyCallback(boot.CallbackToken, tokens.ScopeNode, "n-p1"); err != nil {
		t.Fatalf("cloud-init token is not n-p1's node callback token: %v", err)
	}
	if _, err := w.issuer.VerifyCallback(boot.CallbackToken, tokens.ScopeWorkspace, "n-p1"); !errors.Is(err, tokens.ErrWrongAuth) {
		t.Fatalf("node token accepted on a workspace route: %v", err)
	}

	// The ids are committed with the first poll, before any waiting.
	w.commit(c, out)
	if n, _ := w.f.Node("n-p1"); n.ServerID != vm.ID || n.ActionID != out.Data.ActionID {
		t.Fatalf("node after the first poll: server %d action %d", n.ServerID, n.ActionID)
	}
	done := w.provisionUntilDone("t-p1")
	if done.Data.IPv4 != vm.IPv4.String() {
		t.Fatalf("done with ipv4 %q, want %s", done.Data.IPv4, vm.IPv4)
	}
	cur, _ := w.f.Task("t-p1")
	n, _ := w.f.Node("n-p1")
	if cur.Step != fsm.StepNodeAgentReady || n.IPv4 != vm.IPv4.String() || n.ServerID != vm.ID {
		t.Fatalf("after provisioning: task at %s, node ipv4 %q server %d", cur.Step, n.IPv4, n.ServerID)
	}
	if srv, _ := w.cloud.GetServer(context.Background(), vm.ID); srv == nil || srv.Status != cloud.StatusRunning {
		t.Fatalf("server = %+v, want running", srv)
	}
	if got := countEvents(w.fake.Ledger(), fakecloud.EventServerCreate); got != 1 {
		t.Fatalf("servers created = %d, want 1", got)
	}
}

// TestProvisionRetryAdoptsServer: an attempt whose result was lost is
// re-dispatched; the retry finds the server by name instead of creating a
// second one.
func TestProvisionRetryAdoptsServer(t *testing.T) {
	w := newWorld(t, worldOpts{fake: fakecloud.Options{CreateDuration: time.Second}})
	w.submit("t-p2", taskSpec())
	first := w.run(w.claim("t-p2"))
	if first.Err != nil || first.Data.ServerID == 0 {
		t.Fatalf("first attempt = %+v", first)
	}
	// No result committed: the claim times out and a new attempt runs.
	c := w.claim("t-p2")
	if c.Attempt != 2 {
		t.Fatalf("re-dispatched attempt %d, want 2", c.Attempt)
	}
	second := w.run(c)
	// Still being created: a poll of its create action (or, on a machine
	// slow enough that it runs already, done).
	if second.Err != nil || second.Data.ServerID != first.Data.ServerID ||
		(second.PollAfter > 0 && second.Data.ActionID == 0) || (second.PollAfter == 0 && second.Data.IPv4 == "") {
		t.Fatalf("retry while the server is created = %+v, want the same server %d", second, first.Data.ServerID)
	}
	// Lost again; by the next attempt the server runs: adopted, done at once.
	until(t, "the server to run", func() bool {
		vms := w.fake.Servers()
		return len(vms) == 1 && vms[0].Status == cloud.StatusRunning
	})
	c = w.claim("t-p2")
	third := w.run(c)
	if third.Err != nil || third.PollAfter != 0 || third.Data.ServerID != first.Data.ServerID || third.Data.IPv4 == "" {
		t.Fatalf("retry of a running server = %+v, want done with its address", third)
	}
	if cur := w.commit(c, third); cur.Step != fsm.StepNodeAgentReady {
		t.Fatalf("task at %s", cur.Step)
	}
	if n, _ := w.f.Node("n-p2"); n.ServerID != first.Data.ServerID || n.IPv4 != third.Data.IPv4 {
		t.Fatalf("node server %d ipv4 %q", n.ServerID, n.IPv4)
	}
	if got := countEvents(w.fake.Ledger(), fakecloud.EventServerCreate); got != 1 || len(w.fake.Servers()) != 1 {
		t.Fatalf("servers created = %d (live %d), want 1", got, len(w.fake.Servers()))
	}
}

// TestProvisionServerVanished: a server deleted behind our back while it
// was polled is reported gone (transient), so the next attempt creates it
// anew.
func TestProvisionServerVanished(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.submit("t-p4", taskSpec())
	c := w.claim("t-p4")
	out := w.run(c)
	w.commit(c, out)
	if _, err := w.cloud.WaitAction(context.Background(), out.Data.ActionID); err != nil {
		t.Fatal(err)
	}
	if err := w.cloud.DeleteServer(context.Background(), out.Data.ServerID); err != nil {
		t.Fatal(err)
	}
	until(t, "the server to be gone", func() bool { return len(w.fake.Servers()) == 0 })
	c = w.claim("t-p4")
	gone := w.run(c)
	wantClass(t, "vanished server", gone.Err, fsm.ClassTransient)
	if !gone.Data.ServerGone {
		t.Fatalf("result = %+v, want ServerGone", gone)
	}
	w.commit(c, gone)
	if n, _ := w.f.Node("n-p4"); n.ServerID != 0 {
		t.Fatalf("node keeps server %d", n.ServerID)
	}
	w.provisionUntilDone("t-p4")
	if got := countEvents(w.fake.Ledger(), fakecloud.EventServerCreate); got != 2 {
		t.Fatalf("servers created = %d, want 2", got)
	}
}

// TestProvisionFailedCreateAction: a failed create action can leave a
// server behind; the handler deletes it and says so (ServerGone, transient),
// and the next attempt creates a new one.
func TestProvisionFailedCreateAction(t *testing.T) {
	w := newWorld(t, worldOpts{fake: fakecloud.Options{
		Faults: []fakecloud.Fault{{Endpoint: fakecloud.EndpointCreateServer, Kind: fakecloud.FaultActionError, Count: 1}},
	}})
	w.submit("t-p3", taskSpec())
	c := w.claim("t-p3")
	out := w.run(c)
	if out.Err != nil || out.Data.ServerID == 0 {
		t.Fatalf("create = %+v", out)
	}
	w.commit(c, out)
	failedID := out.Data.ServerID

	var failed runner.Result
	until(t, "the failed create action", func() bool {
		c = w.claim("t-p3")
		failed = w.run(c)
		if failed.Err == nil && failed.PollAfter > 0 {
			w.commit(c, failed)
			return false
		}
		return true
	})
	wantClass(t, "failed create action", failed.Err, fsm.ClassTransient)
	if !failed.Data.ServerGone {
		t.Fatalf("result data = %+v, want ServerGone", failed.Data)
	}
	ledger := w.fake.Ledger()
	if countEvents(ledger, fakecloud.EventServerCreateFailed) != 1 || countEvents(ledger, fakecloud.EventServerDelete) != 1 {
		t.Fatalf("ledger = %+v, want the failed create and its delete", ledger)
	}
	if cur := w.commit(c, failed); cur.Step != fsm.StepNodeProvisioning || cur.Retries != 1 {
		t.Fatalf("after the failed create: step %s retries %d", cur.Step, cur.Retries)
	}
	if n, _ := w.f.Node("n-p3"); n.ServerID != 0 || n.ActionID != 0 {
		t.Fatalf("node keeps server %d action %d, want them cleared", n.ServerID, n.ActionID)
	}
	until(t, "the failed server to be gone", func() bool { return len(w.fake.Servers()) == 0 })

	done := w.provisionUntilDone("t-p3")
	n, _ := w.f.Node("n-p3")
	if done.Data.IPv4 == "" || n.ServerID == 0 || n.ServerID == failedID {
		t.Fatalf("after the retry: node server %d (failed was %d), ipv4 %q", n.ServerID, failedID, done.Data.IPv4)
	}
	if got := countEvents(w.fake.Ledger(), fakecloud.EventServerCreate); got != 2 {
		t.Fatalf("servers created = %d, want 2", got)
	}
}

func TestProvisionErrorClasses(t *testing.T) {
	fault := func(kind fakecloud.FaultKind) []fakecloud.Fault {
		return []fakecloud.Fault{{Endpoint: fakecloud.EndpointCreateServer, Kind: kind}}
	}
	for _, c := range []struct {
		name  string
		opts  worldOpts
		spec  func(*fsm.TaskSpec)
		setup func(t *testing.T, w *world)
		want  fsm.ErrorClass
	}{
		{name: "503 unavailable", opts: worldOpts{fake: fakecloud.Options{Faults: fault(fakecloud.FaultUnavailable)}}, want: fsm.ClassTransient},
		{name: "412 resource unavailable", opts: worldOpts{fake: fakecloud.Options{Faults: fault(fakecloud.FaultResourceUnavailable)}}, want: fsm.ClassTransient},
		{name: "409 conflict", opts: worldOpts{fake: fakecloud.Options{Faults: fault(fakecloud.FaultConflict)}}, want: fsm.ClassTransient},
		{name: "500 server error", opts: worldOpts{fake: fakecloud.Options{Faults: fault(fakecloud.FaultServerError)}}, want: fsm.ClassTransient},
		{name: "504 timeout", opts: worldOpts{fake: fakecloud.Options{Faults: fault(fakecloud.FaultTimeout)}}, want: fsm.ClassTransient},
		{name: "401 bad token", opts: worldOpts{token: "not-the-token"}, want: fsm.ClassPermanent},
		{name: "403 forbidden", opts: worldOpts{fake: fakecloud.Options{Faults: []fakecloud.Fault{
			{Endpoint: fakecloud.EndpointAll, Kind: fakecloud.FaultError, Status: http.StatusForbidden, Code: "forbidden"}}}},
			want: fsm.ClassPermanent},
		{name: "403 server quota", opts: worldOpts{fake: fakecloud.Options{MaxServers: 1}},
			setup: func(t *testing.T, w *world) {
				if _, _, err := w.cloud.CreateServer(context.Background(), cloud.ServerSpec{Name: "other", ServerType: "cx23",
					Location: "fsn1", Labels: map[string]string{"owner": "someone-else"}}); err != nil {
					t.Fatal(err)
				}
			}, want: fsm.ClassPermanent},
		{name: "422 unknown location", spec: func(s *fsm.TaskSpec) { s.VMLocation = "mars1" }, want: fsm.ClassPermanent},
		{name: "unknown VM size", spec: func(s *fsm.TaskSpec) { s.VMSize = "huge" }, want: fsm.ClassPermanent},
		{name: "name taken by a server that is not ours",
			setup: func(t *testing.T, w *world) {
				if _, _, err := w.cloud.CreateServer(context.Background(), cloud.ServerSpec{Name: "node-n-x", ServerType: "cx23",
					Location: "fsn1", Labels: map[string]string{handlers.LabelManagedBy: handlers.ManagedBy, handlers.LabelCluster: "another"}}); err != nil {
					t.Fatal(err)
				}
			}, want: fsm.ClassPermanent},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t, c.opts)
			if c.setup != nil {
				c.setup(t, w)
			}
			spec := taskSpec()
			if c.spec != nil {
				c.spec(&spec)
			}
			before := len(w.fake.Servers())
			w.submit("t-x", spec)
			cl := w.claim("t-x")
			out := w.run(cl)
			wantClass(t, c.name, out.Err, c.want)
			if after := len(w.fake.Servers()); after != before {
				t.Fatalf("servers %d → %d: a failed create left one", before, after)
			}
			cur := w.commit(cl, out)
			if c.want == fsm.ClassPermanent && cur.Status != fsm.StatusFailed {
				t.Fatalf("permanent error: task %s, want failed", cur.Status)
			}
			if c.want == fsm.ClassTransient && (cur.Status != fsm.StatusQueued || cur.Retries != 1) {
				t.Fatalf("transient error: task %s retries %d, want a retry", cur.Status, cur.Retries)
			}
		})
	}
}

// toAgentReady puts a task at node_agent_ready with its node's address at
// the test's agent (127.0.0.1).
func (w *world) toAgentReady(id string) *fsm.Task {
	w.t.Helper()
	w.submit(id, taskSpec())
	task := w.succeedStep(id, fsm.StepData{ServerID: 4242, IPv4: "127.0.0.1"})
	if task.Step != fsm.StepNodeAgentReady {
		w.t.Fatalf("task at %s, want node_agent_ready", task.Step)
	}
	return task
}

func TestAgentReady(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.cfg.NodeReadyGrace = time.Hour
	task := w.toAgentReady("t-a1")
	w.startAgent(task.NodeID, nil)
	c := w.claim("t-a1")

	w.agentDown.Store(true)
	if out := w.run(c); out.Err != nil || out.PollAfter != w.cfg.AgentPoll {
		t.Fatalf("agent down: %+v, want a poll", out)
	}
	w.agentDown.Store(false)
	if out := w.run(c); out.Err != nil || out.PollAfter != w.cfg.AgentPoll {
		t.Fatalf("healthy, no node-ready callback: %+v, want a poll", out)
	}
	w.apply(fsm.NodeReady{NodeID: task.NodeID, At: time.Now()})
	c = w.claim("t-a1") // re-read: the node is ready now
	out := w.run(c)
	if out.Err != nil || out.PollAfter != 0 {
		t.Fatalf("healthy and ready: %+v, want done", out)
	}
	if cur := w.commit(c, out); cur.Step != fsm.StepWorkspaceCreate {
		t.Fatalf("task at %s, want workspace_creation", cur.Step)
	}

	t.Run("no address yet", func(t *testing.T) {
		w := newWorld(t, worldOpts{})
		w.submit("t-a2", taskSpec())
		w.succeedStep("t-a2", fsm.StepData{ServerID: 1})
		if out := w.run(w.claim("t-a2")); out.Err != nil || out.PollAfter != w.cfg.AgentPoll {
			t.Fatalf("no ipv4: %+v, want a poll", out)
		}
	})
	t.Run("node being destroyed", func(t *testing.T) {
		w := newWorld(t, worldOpts{})
		task := w.toAgentReady("t-a3")
		n, _ := w.f.Node(task.NodeID)
		w.apply(fsm.NodeAlarmFired{NodeID: n.ID, Due: n.Alarm.Due, At: n.Alarm.Due})
		wantClass(t, "destroying node", w.run(w.claim("t-a3")).Err, fsm.ClassPermanent)
	})
}

// TestAgentReadyGraceWithoutCallback: node ready is sent once and never
// retried; after NodeReadyGrace of healthy polls the node counts as ready.
// The grace runs from the step's first attempt, across attempts.
func TestAgentReadyGraceWithoutCallback(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.cfg.NodeReadyGrace = 300 * time.Millisecond
	task := w.toAgentReady("t-g1")
	w.startAgent(task.NodeID, nil)
	var first time.Time
	attempts := 0
	var out runner.Result
	until(t, "the grace to pass", func() bool {
		c := w.claim("t-g1")
		if attempts == 0 {
			first = c.Steps[len(c.Steps)-1].Started
		}
		attempts++
		out = w.run(c)
		w.commit(c, out)
		return out.Err != nil || out.PollAfter == 0
	})
	elapsed := time.Since(first)
	if out.Err != nil || attempts < 2 || elapsed < w.cfg.NodeReadyGrace {
		t.Fatalf("done after %d attempts and %s (err %v), want polls for at least %s", attempts, elapsed, out.Err, w.cfg.NodeReadyGrace)
	}
	if out.Data.Recovered == "" {
		t.Fatal("the step passed without noting that the node-ready callback was missing")
	}
	// Once the agent has answered past the grace, the node counts as ready
	// (it joins the warm pool and takes more tasks) despite the lost callback.
	if n, _ := w.f.Node(task.NodeID); !n.Ready {
		t.Fatal("the node is still not ready after its agent-ready step succeeded")
	}
	if cur, _ := w.f.Task("t-g1"); cur.Step != fsm.StepWorkspaceCreate {
		t.Fatalf("task at %s", cur.Step)
	}
}

// toWorkspaceCreation puts a task at workspace_creation, its node ready and
// its agent started.
func (w *world) toWorkspaceCreation(id string, mod func(*sim.Config)) *fsm.Task {
	w.t.Helper()
	task := w.toAgentReady(id)
	w.startAgent(task.NodeID, mod)
	w.apply(fsm.NodeReady{NodeID: task.NodeID, At: time.Now()})
	task = w.succeedStep(id, fsm.StepData{})
	if task.Step != fsm.StepWorkspaceCreate || task.WorkspaceID == "" {
		w.t.Fatalf("task at %s with workspace %q", task.Step, task.WorkspaceID)
	}
	return task
}

func TestCreateWorkspace(t *testing.T) {
	w := newWorld(t, worldOpts{})
	task := w.toWorkspaceCreation("t-w1", nil)
	c := w.claim("t-w1")
	out := w.run(c)
	if out.Err != nil || out.PollAfter != 0 || out.Data.WorkspaceID != task.WorkspaceID {
		t.Fatalf("create = %+v", out)
	}
	calls := w.rec.find(http.MethodPost, "/workspaces")
	if len(calls) != 1 || calls[0].Status != http.StatusAccepted {
		t.Fatalf("POST /workspaces calls = %+v, want one 202", calls)
	}
	var body vmagent.CreateWorkspaceRequest
	if err := json.Unmarshal(calls[0].Body, &body); err != nil {
		t.Fatal(err)
	}
	if body.WorkspaceID != task.WorkspaceID || body.Repository != "github.com/acme/app" || body.TaskID != "t-w1" ||
		body.ProjectID != "p1" || body.GitUserName == "" || body.GitUserEmail == "" {
		t.Fatalf("request = %+v", body)
	}
	if _, err := w.issuer.VerifyCallback(body.CallbackToken, tokens.ScopeWorkspace, task.WorkspaceID); err != nil {
		t.Fatalf("callback token is not the workspace's: %v", err)
	}
	if _, err := w.issuer.VerifyCallback(body.CallbackToken, tokens.ScopeNode, task.NodeID); !errors.Is(err, tokens.ErrWrongAuth) {
		t.Fatalf("workspace token accepted as a node token: %v", err)
	}
	// A replay once the workspace runs: the agent answers 200, still done.
	until(t, "the workspace to run", func() bool {
		ws := w.agent.Workspaces()
		return len(ws) == 1 && ws[0].Status == vmagent.StatusRunning
	})
	if again := w.run(c); again.Err != nil || again.PollAfter != 0 {
		t.Fatalf("replay of a running workspace = %+v, want done", again)
	}
	if calls := w.rec.find(http.MethodPost, "/workspaces"); len(calls) != 2 || calls[1].Status != http.StatusOK {
		t.Fatalf("replay answered %+v, want 200", calls)
	}
	if n := countAgentEvents(w.agent.Events(), sim.EventWorkspaceCreate); n != 1 {
		t.Fatalf("workspaces created on the agent = %d, want 1", n)
	}
	cur := w.commit(c, out)
	if cur.Status != fsm.StatusDelegated || cur.Step != fsm.StepWorkspaceReady {
		t.Fatalf("task %s/%s, want delegated/workspace_ready", cur.Status, cur.Step)
	}
}

func TestCreateWorkspaceReplayWhileProvisioning(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.toWorkspaceCreation("t-w2", func(c *sim.Config) { c.Faults.NeverReady = true })
	c := w.claim("t-w2")
	for i := 0; i < 2; i++ {
		if out := w.run(c); out.Err != nil || out.PollAfter != 0 {
			t.Fatalf("call %d = %+v, want done", i, out)
		}
	}
	calls := w.rec.find(http.MethodPost, "/workspaces")
	if len(calls) != 2 || calls[0].Status != http.StatusAccepted || calls[1].Status != http.StatusAccepted {
		t.Fatalf("calls = %+v, want two 202", calls)
	}
	if n := countAgentEvents(w.agent.Events(), sim.EventWorkspaceCreate); n != 1 {
		t.Fatalf("workspaces created on the agent = %d, want 1", n)
	}
}

func TestCreateWorkspaceRefusals(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(t *testing.T, w *world, task *fsm.Task)
		is    error
	}{
		{"409 conflict: another repository", func(t *testing.T, w *world, task *fsm.Task) {
			base := "http://127.0.0.1:" + strconv.Itoa(w.cfg.AgentPort)
			if _, err := w.cfg.Agents.CreateWorkspace(context.Background(), base, task.NodeID, "u1", vmagent.CreateWorkspaceRequest{
				WorkspaceID: task.WorkspaceID, Repository: "github.com/acme/other"}); err != nil {
				t.Fatal(err)
			}
		}, vmagent.ErrWorkspaceConflict},
		{"409 not creatable: stopped", func(t *testing.T, w *world, task *fsm.Task) {
			base := "http://127.0.0.1:" + strconv.Itoa(w.cfg.AgentPort)
			ctx := context.Background()
			if _, err := w.cfg.Agents.CreateWorkspace(ctx, base, task.NodeID, "u1", vmagent.CreateWorkspaceRequest{
				WorkspaceID: task.WorkspaceID, Repository: task.Repository}); err != nil {
				t.Fatal(err)
			}
			if err := w.cfg.Agents.StopWorkspace(ctx, base, task.NodeID, "u1", task.WorkspaceID); err != nil {
				t.Fatal(err)
			}
		}, vmagent.ErrWorkspaceNotCreatable},
		{"401 token signed by another key", func(t *testing.T, w *world, _ *fsm.Task) {
			other, err := tokens.GenerateKey()
			if err != nil {
				t.Fatal(err)
			}
			w.cfg.Agents = vmagent.NewClient(vmagent.Options{Tokens: &tokens.Issuer{URL: testCPURL,
				Keys: func() []tokens.Key { return []tokens.Key{other} }, Now: time.Now}})
		}, vmagent.ErrUnauthorized},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t, worldOpts{})
			task := w.toWorkspaceCreation("t-w3", nil)
			c.setup(t, w, task)
			cl := w.claim("t-w3")
			out := w.run(cl)
			wantClass(t, c.name, out.Err, fsm.ClassPermanent)
			if !errors.Is(out.Err, c.is) {
				t.Fatalf("error %v, want %v", out.Err, c.is)
			}
			if cur := w.commit(cl, out); cur.Status != fsm.StatusFailed {
				t.Fatalf("task %s, want failed", cur.Status)
			}
		})
	}
	t.Run("agent down is transient", func(t *testing.T) {
		w := newWorld(t, worldOpts{})
		w.toWorkspaceCreation("t-w4", nil)
		w.agentDown.Store(true)
		wantClass(t, "agent down", w.run(w.claim("t-w4")).Err, fsm.ClassTransient)
	})
}

// A creation that failed on the agent while the call was unanswered (the
// FSM kept its provisioning-failed on the workspace) is started over: the
// next attempt deletes the failed workspace on the agent and creates it
// again.
func TestCreateWorkspaceStartsOverAFailedCreation(t *testing.T) {
	w := newWorld(t, worldOpts{})
	task := w.toWorkspaceCreation("t-w5", func(c *sim.Config) { c.Faults.FailWorkspaces = true })
	cl := w.claim("t-w5")
	if out := w.run(cl); out.Err != nil {
		t.Fatalf("first create = %+v", out)
	}
	until(t, "the workspace to fail on the agent", func() bool {
		ws := w.agent.Workspaces()
		return len(ws) == 1 && ws[0].Status == vmagent.StatusError
	})
	if r := w.apply(fsm.WorkspaceFailed{WorkspaceID: task.WorkspaceID, Message: "clone cut off", At: time.Now()}); r.Task.Status.Terminal() {
		t.Fatalf("failure during creation ended the task: %s", r.Task.ErrorMessage)
	}
	w.agent.SetFaults(sim.Faults{})
	out := w.run(cl) // the re-dispatched attempt
	if out.Err != nil || out.Data.WorkspaceID != task.WorkspaceID {
		t.Fatalf("second create = %+v, want done", out)
	}
	if d := w.rec.find(http.MethodDelete, "/workspaces/"+task.WorkspaceID); len(d) != 1 || d[0].Status != http.StatusOK {
		t.Fatalf("DELETE calls = %+v, want one 200", d)
	}
	if n := countAgentEvents(w.agent.Events(), sim.EventWorkspaceCreate); n != 2 {
		t.Fatalf("workspaces created on the agent = %d, want 2", n)
	}
}

// toAgentSession puts a task at agent_session: its workspace created on the
// agent by the handler and reported ready.
func (w *world) toAgentSession(id string) *fsm.Task {
	w.t.Helper()
	task := w.toWorkspaceCreation(id, nil)
	c := w.claim(id)
	w.commit(c, w.run(c))
	r := w.apply(fsm.WorkspaceReady{WorkspaceID: task.WorkspaceID, Status: fsm.WorkspaceRunning, At: time.Now()})
	if r.Task.Step != fsm.StepAgentSession {
		w.t.Fatalf("task at %s, want agent_session", r.Task.Step)
	}
	return r.Task
}

func TestStartSessionIsIdempotent(t *testing.T) {
	w := newWorld(t, worldOpts{})
	task := w.toAgentSession("t-s1")
	sid := handlers.SessionID(task)
	c := w.claim("t-s1")
	var out runner.Result
	for i := 0; i < 2; i++ {
		if out = w.run(c); out.Err != nil || out.Data.SessionID != sid {
			t.Fatalf("call %d = %+v, want session %s", i, out, sid)
		}
	}
	// A re-dispatched attempt asks for the same session with the same key.
	c2 := w.claim("t-s1")
	if out = w.run(c2); out.Err != nil || out.Data.SessionID != sid {
		t.Fatalf("re-dispatched attempt = %+v", out)
	}
	if ss := w.agent.Sessions(task.WorkspaceID); len(ss) != 1 || ss[0].ID != sid {
		t.Fatalf("sessions on the agent = %+v, want one %s", ss, sid)
	}
	ev := w.agent.Events()
	if countAgentEvents(ev, sim.EventSessionCreate) != 1 || countAgentEvents(ev, sim.EventSessionStart) != 1 {
		t.Fatalf("agent events = %+v, want one session created and started", ev)
	}
	starts := w.rec.find(http.MethodPost, "/workspaces/"+task.WorkspaceID+"/agent-sessions/"+sid+"/start")
	if len(starts) != 3 || starts[0].Status != http.StatusAccepted || starts[1].Status != http.StatusOK {
		t.Fatalf("start calls = %+v, want 202 then replays", starts)
	}
	var body vmagent.StartSessionRequest
	if err := json.Unmarshal(starts[0].Body, &body); err != nil {
		t.Fatal(err)
	}
	if body.DeliveryID != "t-s1:agent_session" || body.TaskID != "t-s1" || body.ProjectID != "p1" ||
		body.InitialPrompt != handlers.TaskPrompt(task, handlers.OutputBranch(w.cfg.OutputBranchPrefix, task)) || body.AgentType != w.cfg.AgentType {
		t.Fatalf("start request = %+v", body)
	}
	cur := w.commit(c2, out)
	if cur.Status != fsm.StatusInProgress || cur.Step != fsm.StepRunning || cur.AgentSessionID != sid {
		t.Fatalf("task %s/%s session %q", cur.Status, cur.Step, cur.AgentSessionID)
	}
}

func TestCleanupStopsWorkspace(t *testing.T) {
	w := newWorld(t, worldOpts{})
	task := w.toAgentSession("t-c1")
	w.apply(fsm.CancelTask{TaskID: "t-c1", Actor: fsm.Actor{Type: fsm.ActorUser, ID: "u1"}, At: time.Now()})
	c := w.claim("t-c1")
	if c.RunnableStep() != fsm.StepCleanup {
		t.Fatalf("runnable %s, want cleanup", c.RunnableStep())
	}
	out := w.run(c)
	if out.Err != nil || !out.Data.WorkspaceStopped {
		t.Fatalf("cleanup = %+v, want the workspace stopped", out)
	}
	if ws := w.agent.Workspaces(); len(ws) != 1 || ws[0].Status != vmagent.StatusStopped {
		t.Fatalf("agent workspaces = %+v, want stopped", ws)
	}
	// Again: the agent answers 409 invalid_transition, which is done.
	if again := w.run(c); again.Err != nil || !again.Data.WorkspaceStopped {
		t.Fatalf("second stop = %+v, want done", again)
	}
	stops := w.rec.find(http.MethodPost, "/workspaces/"+task.WorkspaceID+"/stop")
	if len(stops) != 2 || stops[0].Status != http.StatusOK || stops[1].Status != http.StatusConflict {
		t.Fatalf("stop calls = %+v, want 200 then 409", stops)
	}
	if n := countAgentEvents(w.agent.Events(), sim.EventWorkspaceStop); n != 1 {
		t.Fatalf("workspace stops = %d, want 1", n)
	}
	done := w.commit(c, out)
	if done.Cleanup || done.Alarm != nil {
		t.Fatalf("after cleanup: cleanup=%v alarm=%+v", done.Cleanup, done.Alarm)
	}
	ws, _ := w.f.Workspace(task.WorkspaceID)
	n, _ := w.f.Node(task.NodeID)
	if ws.Status != fsm.WorkspaceStopped || n.Status != fsm.NodeWarm {
		t.Fatalf("after cleanup: workspace %s node %s, want stopped and warm", ws.Status, n.Status)
	}
}

func TestCleanupEdgeCases(t *testing.T) {
	cancel := func(w *world, id string) *fsm.Task {
		w.apply(fsm.CancelTask{TaskID: id, Actor: fsm.Actor{Type: fsm.ActorUser}, At: time.Now()})
		return w.claim(id)
	}
	t.Run("no workspace yet", func(t *testing.T) {
		w := newWorld(t, worldOpts{})
		w.submit("t-c2", taskSpec())
		if out := w.run(cancel(w, "t-c2")); out.Err != nil || out.Data.WorkspaceStopped {
			t.Fatalf("cleanup = %+v, want done with nothing to stop", out)
		}
	})
	t.Run("workspace unknown to the agent (404)", func(t *testing.T) {
		w := newWorld(t, worldOpts{})
		w.toWorkspaceCreation("t-c3", nil) // recorded, never created on the VM
		if out := w.run(cancel(w, "t-c3")); out.Err != nil || !out.Data.WorkspaceStopped {
			t.Fatalf("cleanup = %+v, want done", out)
		}
	})
	t.Run("agent down is transient", func(t *testing.T) {
		w := newWorld(t, worldOpts{})
		w.toAgentSession("t-c4")
		w.agentDown.Store(true)
		c := cancel(w, "t-c4")
		out := w.run(c)
		wantClass(t, "agent down", out.Err, fsm.ClassTransient)
		if cur := w.commit(c, out); !cur.Cleanup || cur.Retries != 1 {
			t.Fatalf("cleanup=%v retries=%d, want a retry", cur.Cleanup, cur.Retries)
		}
	})
}

func TestDestroy(t *testing.T) {
	ctx := context.Background()
	t.Run("by server id, then not found is success", func(t *testing.T) {
		w := newWorld(t, worldOpts{})
		w.submit("t-d1", taskSpec())
		w.provisionUntilDone("t-d1")
		n, _ := w.f.Node("n-d1")
		destroy := handlers.DestroyNode(w.cfg)
		if err := destroy(ctx, n); err != nil {
			t.Fatalf("destroy: %v", err)
		}
		if err := destroy(ctx, n); err != nil { // while deleting
			t.Fatalf("second destroy: %v", err)
		}
		until(t, "the server to be gone", func() bool { return len(w.fake.Servers()) == 0 })
		if err := destroy(ctx, n); err != nil { // not found
			t.Fatalf("destroy of a gone server: %v", err)
		}
		if got := countEvents(w.fake.Ledger(), fakecloud.EventServerDelete); got != 1 {
			t.Fatalf("deletes = %d, want 1", got)
		}
	})
	t.Run("by name when the server id was never committed", func(t *testing.T) {
		w := newWorld(t, worldOpts{})
		w.submit("t-d2", taskSpec())
		if out := w.run(w.claim("t-d2")); out.Err != nil || out.Data.ServerID == 0 {
			t.Fatalf("create = %+v", out)
		}
		// The result was lost; the task is cancelled; the node never got
		// ready, so it is destroyed, without a server id.
		w.apply(fsm.CancelTask{TaskID: "t-d2", Actor: fsm.Actor{Type: fsm.ActorUser}, At: time.Now()})
		c := w.claim("t-d2")
		w.commit(c, w.run(c))
		n, _ := w.f.Node("n-d2")
		if n.Status != fsm.NodeDestroying || n.ServerID != 0 {
			t.Fatalf("node %s server %d, want destroying without a server id", n.Status, n.ServerID)
		}
		if err := handlers.DestroyNode(w.cfg)(ctx, n); err != nil {
			t.Fatalf("destroy: %v", err)
		}
		if got := countEvents(w.fake.Ledger(), fakecloud.EventServerDelete); got != 1 {
			t.Fatalf("deletes = %d, want the server found by name deleted", got)
		}
	})
	t.Run("a server of that name that is not ours is left alone", func(t *testing.T) {
		w := newWorld(t, worldOpts{})
		if _, _, err := w.cloud.CreateServer(ctx, cloud.ServerSpec{Name: "node-n-d3", ServerType: "cx23", Location: "fsn1",
			Labels: map[string]string{handlers.LabelManagedBy: handlers.ManagedBy, handlers.LabelCluster: "another", handlers.LabelNode: "n-d3"}}); err != nil {
			t.Fatal(err)
		}
		if err := handlers.DestroyNode(w.cfg)(ctx, &fsm.Node{ID: "n-d3", ServerName: "node-n-d3"}); err != nil {
			t.Fatalf("destroy: %v", err)
		}
		if countEvents(w.fake.Ledger(), fakecloud.EventServerDelete) != 0 || len(w.fake.Servers()) != 1 {
			t.Fatal("another cluster's server was deleted")
		}
	})
	t.Run("no server at all", func(t *testing.T) {
		w := newWorld(t, worldOpts{})
		if err := handlers.DestroyNode(w.cfg)(ctx, &fsm.Node{ID: "n-d4", ServerName: "node-n-d4"}); err != nil {
			t.Fatalf("destroy: %v", err)
		}
	})
	t.Run("a cloud error is returned for a retry", func(t *testing.T) {
		w := newWorld(t, worldOpts{fake: fakecloud.Options{Faults: []fakecloud.Fault{
			{Endpoint: fakecloud.EndpointDeleteServer, Kind: fakecloud.FaultUnavailable, Count: 1}}}})
		srv, _, err := w.cloud.CreateServer(ctx, cloud.ServerSpec{Name: "node-n-d5", ServerType: "cx23", Location: "fsn1", Labels: ourLabels("n-d5")})
		if err != nil {
			t.Fatal(err)
		}
		n := &fsm.Node{ID: "n-d5", ServerName: "node-n-d5", ServerID: srv.ID}
		if err := handlers.DestroyNode(w.cfg)(ctx, n); err == nil {
			t.Fatal("destroy hid a 503")
		}
		if err := handlers.DestroyNode(w.cfg)(ctx, n); err != nil {
			t.Fatalf("retry: %v", err)
		}
	})
}
