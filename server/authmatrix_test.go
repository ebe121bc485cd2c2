package server_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/server"
	"github.com/tdf-project/tdf/tokens"
)

// The authorization matrix: every route of the router's own table, called
// by every kind of caller, with the status each must get. A route without
// a rule here fails the test: whoever adds one decides who may call it.

// rule is who may call a route.
type rule int

const (
	ruleOpen   rule = iota + 1 // anyone (probes, JWKS, the dashboard's files)
	ruleUser                   // any API token; a user sees only its own
	ruleOwnA                   // a user route about user A's task or node: B gets 404
	ruleSubmit                 // POST /v1/tasks with user A's user_id: B impersonating A gets 403
	ruleAdmin                  // admin tokens only
	ruleNodeCB                 // an agent's node-scoped callback token
	ruleWSCB                   // an agent's workspace-scoped callback token
)

var routeRules = map[string]rule{
	"GET /healthz": ruleOpen, "GET /readyz": ruleOpen, "GET /.well-known/jwks.json": ruleOpen,
	"GET /": ruleOpen, "GET /ui": ruleOpen, "GET /ui/*file": ruleOpen, "HEAD /ui/*file": ruleOpen,
	"DELETE /v1/session": ruleOpen,

	"POST /v1/tasks": ruleSubmit, "GET /v1/tasks": ruleUser, "GET /v1/events": ruleUser,
	"GET /v1/tasks/:id": ruleOwnA, "GET /v1/tasks/:id/messages": ruleOwnA,
	"POST /v1/tasks/:id/cancel": ruleOwnA, "POST /v1/tasks/:id/idle-reset": ruleOwnA, "POST /v1/tasks/:id/rerun": ruleOwnA, "POST /v1/tasks/:id/prompt": ruleOwnA,
	"GET /v1/nodes": ruleUser, "GET /v1/nodes/:id": ruleOwnA,
	"POST /v1/session": ruleUser, "GET /v1/whoami": ruleUser,

	"GET /metrics": ruleAdmin, "GET /v1/cluster": ruleAdmin, "GET /v1/cluster/state-hash": ruleAdmin,
	"GET /v1/cluster/control-plane": ruleAdmin, "PUT /v1/cluster/control-plane": ruleAdmin,
	"POST /v1/cluster/join": ruleAdmin, "DELETE /v1/cluster/members/:id": ruleAdmin,
	"POST /v1/cluster/transfer-leadership": ruleAdmin, "GET /v1/cluster/snapshot": ruleAdmin,
	"POST /v1/cluster/restore": ruleAdmin, "POST /v1/import": ruleAdmin, "GET /v1/errors": ruleAdmin,
	"GET /v1/costs": ruleAdmin, "GET /v1/credentials": ruleAdmin,
	"PUT /v1/credentials/:kind/:scope/:id": ruleAdmin, "DELETE /v1/credentials/:kind/:scope/:id": ruleAdmin,
	"PUT /v1/credentials/:kind/:scope/:id/:agent": ruleAdmin, "DELETE /v1/credentials/:kind/:scope/:id/:agent": ruleAdmin,
	"POST /v1/tokens": ruleAdmin, "GET /v1/tokens": ruleAdmin, "DELETE /v1/tokens/:id": ruleAdmin,
	"POST /v1/nodes/:id/cordon": ruleAdmin, "POST /v1/nodes/:id/uncordon": ruleAdmin,
	"POST /v1/nodes/:id/drain": ruleAdmin, "POST /v1/nodes/:id/destroy": ruleAdmin,

	"POST /v1/nodes/:id/ready": ruleNodeCB, "POST /v1/nodes/:id/heartbeat": ruleNodeCB, "POST /v1/nodes/:id/errors": ruleNodeCB,
	"POST /api/nodes/:id/ready": ruleNodeCB, "POST /api/nodes/:id/heartbeat": ruleNodeCB, "POST /api/nodes/:id/errors": ruleNodeCB,
	"POST /api/projects/:pid/node-acp-heartbeat":                          ruleNodeCB,
	"POST /api/nodes/:id/diagnostic-incidents/:iid/artifacts":             ruleNodeCB,
	"PUT /api/nodes/:id/diagnostic-incidents/:iid/artifacts/:aid/content": ruleNodeCB,

	"POST /v1/workspaces/:id/ready": ruleWSCB, "POST /v1/workspaces/:id/provisioning-failed": ruleWSCB,
	"POST /api/workspaces/:id/ready": ruleWSCB, "POST /api/workspaces/:id/provisioning-failed": ruleWSCB,
	"POST /api/workspaces/:id/messages": ruleWSCB, "POST /v1/tasks/:id/status": ruleWSCB,
	"POST /api/projects/:pid/tasks/:id/status/callback": ruleWSCB,
	"POST /api/workspaces/:id/git-token":                ruleWSCB, "POST /api/workspaces/:id/agent-key": ruleWSCB,
	"GET /api/workspaces/:id/runtime-assets": ruleWSCB, "GET /api/workspaces/:id/runtime": ruleWSCB,
	"POST /api/workspaces/:id/agent-settings": ruleWSCB, "GET /api/workspaces/:id/agent-settings": ruleWSCB,
	"POST /api/workspaces/:id/agent-credential-sync": ruleWSCB, "POST /api/workspaces/:id/boot-log": ruleWSCB,
	"POST /api/projects/:pid/acp-sessions/:sid/activity": ruleWSCB,
}

// The kinds of caller.
const (
	callerNone      = "none"
	callerForged    = "forged"
	callerExpired   = "expired"
	callerOtherNode = "other node's token"
	callerOtherWS   = "other workspace's token"
	callerUserB     = "user B"
	callerUserA     = "user A"
	callerAdmin     = "admin"
)

// Users before the admin, B before A: A cancels its own task and the
// admin may destroy A's node, which must not change B's answers.
var callers = []string{callerNone, callerForged, callerExpired, callerOtherNode, callerOtherWS, callerUserB, callerUserA, callerAdmin}

// pass marks a cell whose caller gets through authorization: any answer
// but 401 and 403 (the handler's own: 200, 202, 400 for the matrix's
// placeholder bodies, 409, …).
const pass = 0

func expected(r rule, who string) int {
	switch who {
	case callerNone, callerForged, callerExpired:
		if r == ruleOpen {
			return pass
		}
		return http.StatusUnauthorized
	case callerOtherNode, callerOtherWS:
		switch r {
		case ruleOpen:
			return pass
		case ruleNodeCB, ruleWSCB:
			return http.StatusForbidden
		}
		return http.StatusUnauthorized
	}
	// API tokens: admin, user A, user B.
	switch r {
	case ruleOpen, ruleUser:
		return pass
	case ruleNodeCB, ruleWSCB:
		return http.StatusUnauthorized
	case ruleAdmin:
		if who == callerAdmin {
			return pass
		}
		return http.StatusForbidden
	case ruleOwnA:
		if who == callerUserB {
			return http.StatusNotFound
		}
		return pass
	case ruleSubmit:
		if who == callerUserB {
			return http.StatusForbidden
		}
		return pass
	}
	panic(fmt.Sprintf("rule %d", r))
}

func TestAuthorizationMatrix(t *testing.T) {
	c := server.NewTestCluster(t, server.TestOptions{Nodes: 1, Secure: true})
	n := c.Nodes[0]
	admin := c.AdminToken()
	userA := newToken(t, c, admin, api.TokenRequest{Scope: api.ScopeUser, Subject: "alice"})
	userB := newToken(t, c, admin, api.TokenRequest{Scope: api.ScopeUser, Subject: "bob"})
	expired := newToken(t, c, admin, api.TokenRequest{Scope: api.ScopeUser, Subject: "alice", TTL: "1ms"})
	server.WaitFor(t, 10*time.Second, "the short-lived token to expire", func() error {
		if r := c.Do(n, http.MethodGet, "/v1/whoami", nil, bearer(expired)); r.Status != http.StatusUnauthorized {
			return errStatus(n.ID, r)
		}
		return nil
	})
	r := c.Do(n, http.MethodPost, "/v1/tasks", submitBody("alice", "matrix"), bearer(userA))
	if r.Status != http.StatusAccepted {
		t.Fatalf("alice's task = %d %s", r.Status, r.Body)
	}
	taskA := decodeTask(t, r).ID
	var nodeA string
	server.WaitFor(t, 10*time.Second, "alice's task to have a node", func() error {
		if tk, ok := n.FSM.Task(taskA); ok && tk.NodeID != "" {
			nodeA = tk.NodeID
			return nil
		}
		return fmt.Errorf("no node yet")
	})
	server.WaitFor(t, 10*time.Second, "signing keys", func() error {
		if len(n.FSM.SigningKeys()) == 0 {
			return fmt.Errorf("none")
		}
		return nil
	})
	is := n.Tokens
	otherKey, _ := tokens.GenerateKey()
	forger := &tokens.Issuer{URL: is.ControlPlaneURL(), Keys: func() []tokens.Key { return []tokens.Key{otherKey} }, Now: time.Now}
	past := &tokens.Issuer{URL: is.ControlPlaneURL(), Keys: is.Keys, Now: func() time.Time { return time.Now().Add(-25 * time.Hour) }}
	const wsA = "ws-alice"
	mint := func(i *tokens.Issuer, s tokens.Scope, id string) string {
		tok, err := i.CallbackToken(s, id)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	// tokenOf is the token a caller presents on a route of rule r about
	// the path's own node or workspace.
	tokenOf := func(who string, r rule) string {
		scope, id := tokens.ScopeWorkspace, wsA
		if r == ruleNodeCB {
			scope, id = tokens.ScopeNode, nodeA
		}
		cb := r == ruleNodeCB || r == ruleWSCB
		switch who {
		case callerForged:
			if cb {
				return mint(forger, scope, id)
			}
			return api.TokenPrefix + "bm90LWEtdG9rZW4tb2YtdGhpcy1jbHVzdGVyLWF0LWFsbA"
		case callerExpired:
			if cb {
				return mint(past, scope, id)
			}
			return expired
		case callerOtherNode:
			return mint(is, tokens.ScopeNode, "n-other")
		case callerOtherWS:
			return mint(is, tokens.ScopeWorkspace, "ws-other")
		case callerUserA:
			return userA
		case callerUserB:
			return userB
		case callerAdmin:
			return admin
		}
		return ""
	}
	routes := n.API.Handler().(*gin.Engine).Routes()
	sort.Slice(routes, func(i, j int) bool { return routes[i].Method+routes[i].Path < routes[j].Method+routes[j].Path })
	seen := map[string]bool{}
	for _, rt := range routes {
		key := rt.Method + " " + rt.Path
		seen[key] = true
		if _, ok := routeRules[key]; !ok {
			t.Errorf("route %s has no rule in the authorization matrix: add one to routeRules (who may call it?)", key)
		}
	}
	client := &http.Client{Timeout: 30 * time.Second}
	for _, who := range callers {
		for _, rt := range routes {
			key := rt.Method + " " + rt.Path
			r, ok := routeRules[key]
			if !ok {
				continue
			}
			path := fillPath(rt.Path, taskA, nodeA, wsA)
			body := []byte("{}")
			switch key {
			case "POST /v1/tasks":
				body = submitBody("alice", "matrix "+who)
			case "POST /api/projects/:pid/node-acp-heartbeat":
				body = []byte(`{"nodeId":"` + nodeA + `"}`)
			}
			if rt.Method == http.MethodGet || rt.Method == http.MethodHead {
				body = nil
			}
			status := call(t, client, n.URL, rt.Method, path, body, tokenOf(who, r))
			want := expected(r, who)
			if (want == pass && (status == http.StatusUnauthorized || status == http.StatusForbidden)) || (want != pass && status != want) {
				t.Errorf("%s as %s (%s): %d, want %s", key, who, path, status, wantText(want))
			}
		}
	}
	var stale []string
	for k := range routeRules {
		if !seen[k] {
			stale = append(stale, k)
		}
	}
	if len(stale) > 0 {
		t.Logf("rules for routes this build does not serve: %v", stale)
	}
}

func wantText(s int) string {
	if s == pass {
		return "anything but 401 and 403"
	}
	return fmt.Sprint(s)
}

// fillPath puts the matrix's ids into a route's parameters: user A's task
// and node, a workspace, placeholders elsewhere.
func fillPath(route, taskA, nodeA, wsA string) string {
	parts := strings.Split(route, "/")
	for i, p := range parts {
		if !strings.HasPrefix(p, ":") && !strings.HasPrefix(p, "*") {
			continue
		}
		prev := ""
		if i > 0 {
			prev = parts[i-1]
		}
		switch {
		case p == "*file":
			parts[i] = "index.html"
		case p == ":id" && prev == "tasks":
			parts[i] = taskA
		case p == ":id" && prev == "nodes":
			parts[i] = nodeA
		case p == ":id" && prev == "workspaces":
			parts[i] = wsA
		case p == ":pid":
			parts[i] = "p1"
		case p == ":scope":
			parts[i] = "user"
		default:
			parts[i] = "x1"
		}
	}
	return strings.Join(parts, "/")
}

// call sends one request and returns its status; an event stream is
// closed as soon as its headers arrive.
func call(t *testing.T, client *http.Client, base, method, path string, body []byte, tok string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rd *bytes.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	var req *http.Request
	var err error
	if rd != nil {
		req, err = http.NewRequestWithContext(ctx, method, base+path, rd)
		req.Header.Set("Content-Type", "application/json")
	} else {
		req, err = http.NewRequestWithContext(ctx, method, base+path, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
