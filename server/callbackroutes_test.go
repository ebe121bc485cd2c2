package server_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/runner"
	"github.com/tdf-project/tdf/server"
	"github.com/tdf-project/tdf/tokens"
)

// agentCall is how the test calls one agent route: whose token, which body,
// and the answers it may get once it reached its handler (a 404 for a
// credential nobody configured is the handler's answer, not a lost call).
type agentCall struct {
	scope tokens.Scope
	// onB sends it about task B (whose workspace fails), not task A.
	onB  bool
	body string
	ok   []int
}

// agentCalls has one entry per agent route (GET /api/… and POST /v1
// callbacks included): a route the router serves without an entry here
// fails TestEveryAgentRouteOutlastsALeaderChange, so a new one is checked
// through a leader change from the day it is added.
var agentCalls = map[string]agentCall{
	"POST /nodes/:id/ready":                                               {scope: tokens.ScopeNode, body: `{"agentVersion":"test"}`, ok: []int{200}},
	"POST /nodes/:id/heartbeat":                                           {scope: tokens.ScopeNode, body: `{"nodeId":"%N","activeWorkspaces":1}`, ok: []int{200}},
	"POST /nodes/:id/errors":                                              {scope: tokens.ScopeNode, body: `{"errors":[{"incidentId":"i-hold","level":"warn","message":"held","source":"test","timestamp":"2026-12-03T12:00:00Z"}]}`, ok: []int{200}},
	"POST /workspaces/:id/ready":                                          {scope: tokens.ScopeWorkspace, body: `{"status":"running"}`, ok: []int{200}},
	"POST /workspaces/:id/provisioning-failed":                            {scope: tokens.ScopeWorkspace, onB: true, body: `{"errorMessage":"held failure"}`, ok: []int{200}},
	"POST /api/workspaces/:id/messages":                                   {scope: tokens.ScopeWorkspace, body: `{"messages":[{"messageId":"m-hold","sessionId":"s","role":"assistant","content":"hi","timestamp":"2026-12-03T12:00:00Z","sequence":1}]}`, ok: []int{200}},
	"POST /v1/tasks/:id/status":                                           {scope: tokens.ScopeWorkspace, body: `{"executionStep":"awaiting_followup"}`, ok: []int{200}},
	"POST /api/projects/:pid/tasks/:id/status/callback":                   {scope: tokens.ScopeWorkspace, body: `{"executionStep":"awaiting_followup"}`, ok: []int{200}},
	"POST /api/workspaces/:id/git-token":                                  {scope: tokens.ScopeWorkspace, body: `{}`, ok: []int{404}},
	"POST /api/workspaces/:id/agent-key":                                  {scope: tokens.ScopeWorkspace, body: `{"agentType":"claude-code"}`, ok: []int{404}},
	"GET /api/workspaces/:id/runtime-assets":                              {scope: tokens.ScopeWorkspace, ok: []int{200}},
	"GET /api/workspaces/:id/runtime":                                     {scope: tokens.ScopeWorkspace, ok: []int{200}},
	"POST /api/workspaces/:id/agent-settings":                             {scope: tokens.ScopeWorkspace, body: `{"agentType":"claude-code"}`, ok: []int{200}},
	"GET /api/workspaces/:id/agent-settings":                              {scope: tokens.ScopeWorkspace, ok: []int{200}},
	"POST /api/workspaces/:id/agent-credential-sync":                      {scope: tokens.ScopeWorkspace, body: `{"agentType":"claude-code","credentialKind":"api-key","credential":"k"}`, ok: []int{200, 404}},
	"POST /api/workspaces/:id/boot-log":                                   {scope: tokens.ScopeWorkspace, body: `{"step":"clone","status":"ok"}`, ok: []int{200}},
	"POST /api/projects/:pid/acp-sessions/:sid/activity":                  {scope: tokens.ScopeWorkspace, body: `{}`, ok: []int{200}},
	"POST /api/projects/:pid/node-acp-heartbeat":                          {scope: tokens.ScopeNode, body: `{"nodeId":"%N"}`, ok: []int{200}},
	"POST /api/nodes/:id/diagnostic-incidents/:iid/artifacts":             {scope: tokens.ScopeNode, body: `{"artifactId":"a1"}`, ok: []int{201}},
	"PUT /api/nodes/:id/diagnostic-incidents/:iid/artifacts/:aid/content": {scope: tokens.ScopeNode, body: `artifact`, ok: []int{200}},
}

// isAgentRoute reports the routes the VM agents call: every route under
// /api/ (the agent's own paths) and tdf's /v1 callbacks.
func isAgentRoute(method, path string) bool {
	switch {
	case strings.HasPrefix(path, "/api/"):
		return true
	case method != http.MethodPost:
		return false
	}
	return slices.Contains([]string{"/v1/nodes/:id/ready", "/v1/nodes/:id/heartbeat", "/v1/nodes/:id/errors",
		"/v1/workspaces/:id/ready", "/v1/workspaces/:id/provisioning-failed", "/v1/tasks/:id/status"}, path)
}

// agentCallOf finds a route's entry; /v1 and /api share theirs.
func agentCallOf(method, path string) (agentCall, bool) {
	if call, ok := agentCalls[method+" "+path]; ok {
		return call, true
	}
	for _, p := range []string{"/v1", "/api"} {
		if rest, ok := strings.CutPrefix(path, p); ok {
			if call, ok := agentCalls[method+" "+rest]; ok {
				return call, true
			}
		}
	}
	return agentCall{}, false
}

// TestEveryAgentRouteOutlastsALeaderChange: an agent sends several of its
// calls once (node ready, task status) and fails its run on others (a git
// token for the push). Every route the agents call, enumerated from the
// router, is called through a node that knows no leader (cut off from the
// other two until it has stood for election) for longer than the
// ordinary hold: each must get its handler's answer once the node is back,
// none a 503.
func TestEveryAgentRouteOutlastsALeaderChange(t *testing.T) {
	done := runner.HandlerFunc(func(context.Context, *fsm.Task, string) runner.Result { return runner.Done(fsm.StepData{}) })
	wait := runner.HandlerFunc(func(context.Context, *fsm.Task, string) runner.Result { return runner.PollIn(time.Hour) })
	c := server.NewTestCluster(t, server.TestOptions{
		Handlers: map[fsm.Step]runner.Handler{
			fsm.StepNodeProvisioning: done, fsm.StepNodeAgentReady: done, fsm.StepWorkspaceCreate: done, fsm.StepAgentSession: wait,
		},
		Server: func(c *server.Config) { c.ControlPlaneURL = "http://control-plane.test" },
	})
	leader, followers := c.Followers()
	via := followers[0]
	var tasks [2]*fsm.Task
	for i, user := range []string{"ua", "ub"} {
		r := c.Do(leader, http.MethodPost, "/v1/tasks", submitBody(user, "hold "+user), nil)
		if r.Status != http.StatusAccepted {
			t.Fatalf("submit = %d %s", r.Status, r.Body)
		}
		id := decodeTask(t, r).ID
		waitFor(t, "task "+id+" waits for its workspace on "+via.ID, func() bool {
			tasks[i], _ = via.FSM.Task(id)
			return tasks[i] != nil && tasks[i].Step == fsm.StepWorkspaceReady && len(via.FSM.SigningKeys()) > 0
		})
	}

	type sent struct {
		method, route, url string
		call               agentCall
		token              string
	}
	var calls []sent
	for _, rt := range via.API.Handler().(*gin.Engine).Routes() {
		if !isAgentRoute(rt.Method, rt.Path) {
			continue
		}
		call, ok := agentCallOf(rt.Method, rt.Path)
		if !ok {
			t.Errorf("agent route %s %s has no entry in agentCalls: add how to call it", rt.Method, rt.Path)
			continue
		}
		tk := tasks[0]
		if call.onB {
			tk = tasks[1]
		}
		path := rt.Path
		for param, v := range map[string]string{":pid": tk.ProjectID, ":sid": "s-" + tk.ID, ":iid": "inc-1", ":aid": "art-1"} {
			path = strings.ReplaceAll(path, param, v)
		}
		id := tk.WorkspaceID
		if call.scope == tokens.ScopeNode {
			id = tk.NodeID
		}
		if strings.Contains(path, "/tasks/:id/") {
			path = strings.ReplaceAll(path, ":id", tk.ID)
		}
		path = strings.ReplaceAll(path, ":id", id)
		call.body = strings.ReplaceAll(call.body, "%N", tk.NodeID)
		tok, err := via.Tokens.CallbackToken(call.scope, id)
		if err != nil {
			t.Fatal(err)
		}
		calls = append(calls, sent{method: rt.Method, route: rt.Method + " " + rt.Path, url: path, call: call, token: tok})
	}
	if t.Failed() {
		t.FailNow()
	}

	c.Partition(via)
	waitFor(t, via.ID+" knows no leader", func() bool { id, _ := via.Node.Leader(); return id == "" })
	var wg sync.WaitGroup
	answers := make([]server.TestResponse, len(calls))
	for i, s := range calls {
		var body []byte
		if s.call.body != "" {
			body = []byte(s.call.body)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := server.DoRequest(&http.Client{Timeout: time.Minute}, via.URL, s.method, s.url, body,
				map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + s.token})
			if err != nil {
				t.Errorf("%s: %v", s.route, err)
			}
			answers[i] = resp
		}()
	}
	// The partition outlasts the ordinary hold (5 s), then heals.
	time.Sleep(7 * time.Second)
	c.Heal()
	wg.Wait()
	for i, s := range calls {
		if a := answers[i]; !slices.Contains(s.call.ok, a.Status) {
			t.Errorf("%s (%s) through a leader change = %d %s, want one of %v", s.route, s.url, a.Status, a.Body, s.call.ok)
		}
	}
	t.Logf("%d agent routes answered through a leader change", len(calls))
}
