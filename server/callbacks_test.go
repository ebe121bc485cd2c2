package server_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/runner"
	"github.com/tdf-project/tdf/server"
	"github.com/tdf-project/tdf/tokens"
)

// TestCallbackAuthorization drives every callback path, under tdf's /v1
// routes and the agent's own /api paths, with every kind of token: only a
// valid token of the right scope for that very node or workspace gets in
// (401 for an invalid token, 403 for a valid one about something else).
func TestCallbackAuthorization(t *testing.T) {
	done := runner.HandlerFunc(func(context.Context, *fsm.Task, string) runner.Result { return runner.Done(fsm.StepData{}) })
	c := server.NewTestCluster(t, server.TestOptions{Nodes: 1, Handlers: map[fsm.Step]runner.Handler{
		fsm.StepNodeProvisioning: done, fsm.StepNodeAgentReady: done, fsm.StepWorkspaceCreate: done,
		// The session step never finishes, so the task stays in its run.
		fsm.StepAgentSession: runner.HandlerFunc(func(context.Context, *fsm.Task, string) runner.Result { return runner.PollIn(time.Hour) }),
	}})
	n := c.Nodes[0]
	r := c.Do(n, http.MethodPost, "/v1/tasks", submitBody("u1", "auth"), nil)
	if r.Status != http.StatusAccepted {
		t.Fatalf("submit = %d %s", r.Status, r.Body)
	}
	id := decodeTask(t, r).ID
	var task *fsm.Task
	waitFor(t, "the task to wait for its workspace", func() bool {
		task, _ = n.FSM.Task(id)
		return task.Step == fsm.StepWorkspaceReady && len(n.FSM.SigningKeys()) > 0
	})
	nodeID, wsID := task.NodeID, task.WorkspaceID

	is := n.Tokens
	past := &tokens.Issuer{URL: is.ControlPlaneURL(), Keys: is.Keys, Now: func() time.Time { return time.Now().Add(-25 * time.Hour) }}
	otherKey, _ := tokens.GenerateKey()
	forger := &tokens.Issuer{URL: is.ControlPlaneURL(), Keys: func() []tokens.Key { return []tokens.Key{otherKey} }, Now: time.Now}
	mint := func(i *tokens.Issuer, s tokens.Scope, id string) string {
		tok, err := i.CallbackToken(s, id)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	mgmt, _ := is.ManagementToken(nodeID, wsID, "u1")
	type variant struct {
		name, token string
		want        int // 0: the route's success
	}
	nodeVariants := []variant{
		{"no token", "", 401}, {"expired", mint(past, tokens.ScopeNode, nodeID), 401},
		{"wrong audience", mgmt, 401}, {"forged", mint(forger, tokens.ScopeNode, nodeID), 401},
		{"wrong scope", mint(is, tokens.ScopeWorkspace, nodeID), 403}, {"other node", mint(is, tokens.ScopeNode, "n-other"), 403},
		{"valid", mint(is, tokens.ScopeNode, nodeID), 0},
	}
	wsVariants := []variant{
		{"no token", "", 401}, {"expired", mint(past, tokens.ScopeWorkspace, wsID), 401},
		{"wrong audience", mgmt, 401}, {"forged", mint(forger, tokens.ScopeWorkspace, wsID), 401},
		{"node token", mint(is, tokens.ScopeNode, wsID), 403}, {"other workspace", mint(is, tokens.ScopeWorkspace, "ws-other"), 403},
		{"valid", mint(is, tokens.ScopeWorkspace, wsID), 0},
	}
	type route struct {
		path, body string
		variants   []variant
	}
	var routes []route
	for _, p := range []string{"/v1", "/api"} {
		routes = append(routes,
			route{p + "/nodes/" + nodeID + "/ready", `{"agentVersion":"t"}`, nodeVariants},
			route{p + "/nodes/" + nodeID + "/heartbeat", `{"activeWorkspaces":1,"metrics":{"cpuLoadAvg1":0.5,"memoryPercent":20}}`, nodeVariants},
			route{p + "/nodes/" + nodeID + "/errors", `{"errors":[{"incidentId":"i1","message":"disk full"}]}`, nodeVariants},
			route{p + "/workspaces/" + wsID + "/ready", `{"status":"running"}`, wsVariants},
		)
	}
	routes = append(routes,
		route{"/api/workspaces/" + wsID + "/messages", `{"messages":[{"messageId":"m1","sessionId":"c1","role":"assistant","content":"hi","timestamp":"2026-11-25T12:00:00Z","sequence":1}]}`, wsVariants},
		route{"/v1/tasks/" + id + "/status", `{"executionStep":"awaiting_followup"}`, wsVariants},
		route{"/api/projects/p1/tasks/" + id + "/status/callback", `{"executionStep":"awaiting_followup"}`, wsVariants},
		// Last: a valid one fails the task.
		route{"/api/workspaces/" + wsID + "/provisioning-failed", `{"errorMessage":"boom"}`, wsVariants},
	)
	for _, rt := range routes {
		for _, v := range rt.variants {
			hdr := map[string]string{"Content-Type": "application/json"}
			if v.token != "" {
				hdr["Authorization"] = "Bearer " + v.token
			}
			res := c.Do(n, http.MethodPost, rt.path, []byte(rt.body), hdr)
			ok := res.Status/100 == 2
			if (v.want == 0 && !ok) || (v.want != 0 && res.Status != v.want) {
				t.Errorf("%s with %s token: %d %s, want %s", rt.path, v.name, res.Status, res.Body, want(v.want))
			}
			if v.want != 0 {
				decodeError(t, res)
			}
		}
	}
	task, _ = n.FSM.Task(id)
	if task.Status != fsm.StatusFailed || task.ErrorMessage != "workspace provisioning failed: boom" {
		t.Fatalf("after a valid provisioning-failed callback the task is %s, want failed", task.Status)
	}
}

func want(code int) string {
	if code == 0 {
		return "2xx"
	}
	return fmt.Sprint(code)
}
