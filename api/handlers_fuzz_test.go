package api_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/cluster"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/tokens"
)

// Fuzz targets for every route that reads a request body, query or path
// id (FuzzSubmitHandler, in fuzz_test.go, drives POST /v1/tasks through
// real raft). Each checks checkAnswer and checkState on every input, and
// per route what a success must mean.

// taskWriteRoutes are the user's writes about one task (and the submit,
// whose Idempotency-Key header the fuzzer then chooses).
var taskWriteRoutes = []string{"cancel", "idle-reset", "submit", "rerun"}

// FuzzTaskWriteHandlers: POST /v1/tasks/{id}/cancel, /idle-reset, /rerun, and
// POST /v1/tasks with a fuzzed Idempotency-Key, with any id and body.
func FuzzTaskWriteHandlers(f *testing.F) {
	s := newFuzzServer(f)
	ids := []string{s.fx.queued, s.fx.waiting, s.fx.running, s.fx.followup, s.fx.done, s.fx.cancelled, "t-nope", "-x", "a/b", ""}
	bodies := []string{"", `{}`, `{"reason":"not needed","user_id":"u1"}`, `{"user_id":"u1"}`, `{"reason":1}`,
		`{"why":"x"}`, `{"reason":"a\u0000b"}`, `null`, `[]`, `{"user_id":"a b"}`, `{} {}`, validBody}
	// Every id and every body once per route, not their product: a small
	// seed corpus keeps the brief runs of make fuzz brief.
	for route := range taskWriteRoutes {
		for i := range max(len(ids), len(bodies)) {
			f.Add(uint8(route), ids[i%len(ids)], []byte(bodies[i%len(bodies)]))
		}
	}
	f.Fuzz(func(t *testing.T, route uint8, id string, body []byte) {
		name := taskWriteRoutes[int(route)%len(taskWriteRoutes)]
		path, hdr := "/v1/tasks/"+url.PathEscape(id)+"/"+name, map[string]string(nil)
		if name == "submit" {
			path, hdr = "/v1/tasks", map[string]string{"Idempotency-Key": id}
		}
		what := describe("POST", path, "", body) + " " + id
		r := s.serve(t, "POST", path, "", body, hdr)
		checkAnswer(t, what, r)
		s.checkState(t, what, r)
		if r.Status >= 400 {
			return
		}
		task := decodeTask(t, r)
		switch name {
		case "cancel":
			c := committed[fsm.CancelTask](t, s, what)
			if c.TaskID != id || task.Status != fsm.StatusCancelled {
				t.Fatalf("%s = %d with task %s %s, committed a cancel of %q", what, r.Status, task.ID, task.Status, c.TaskID)
			}
		case "idle-reset":
			if c := committed[fsm.IdleReset](t, s, what); c.TaskID != id || task.ID != id {
				t.Fatalf("%s = %d with task %s, committed an idle reset of %q", what, r.Status, task.ID, c.TaskID)
			}
		case "rerun":
			c := committed[fsm.Batch](t, s, what)
			if len(c.Commands) != 2 || task.ID != id || task.Status != fsm.StatusQueued {
				t.Fatalf("%s = %d with task %s %s, committed %d commands", what, r.Status, task.ID, task.Status, len(c.Commands))
			}
		case "submit":
			c := committed[fsm.SubmitTask](t, s, what)
			if (id != "" && c.RequestID != id) || (id == "" && !strings.HasPrefix(c.RequestID, "auto-")) {
				t.Fatalf("%s committed request id %q for Idempotency-Key %q", what, c.RequestID, id)
			}
			if task.Status != fsm.StatusQueued {
				t.Fatalf("%s = %d with a task in status %s", what, r.Status, task.Status)
			}
		}
	})
}

// FuzzClusterHandlers: POST /v1/cluster/join and /transfer-leadership with
// any body, DELETE /v1/cluster/members/{id} with any id. A success must
// have handed the cluster exactly the validated request.
func FuzzClusterHandlers(f *testing.F) {
	s := newFuzzServer(f)
	seeds := []struct {
		route uint8
		id    string
		body  string
	}{
		{0, "", `{"id":"n9","raft_addr":"127.0.0.1:7009","api_addr":"http://127.0.0.1:8009"}`},
		{0, "", `{"id":"n9","raft_addr":"127.0.0.1:7009","api_addr":"ftp://x"}`},
		{0, "", `{"id":"n 9","raft_addr":"127.0.0.1:7009","api_addr":"https://x"}`},
		{0, "", `{"id":"n9","raft_addr":"","api_addr":"https://x"}`},
		{0, "", `{"id":"n9","raft_addr":"x","api_addr":"https://x","extra":1}`},
		{0, "", ``}, {0, "", `null`}, {0, "", `{"id":9}`},
		{1, "", ``}, {1, "", `{}`}, {1, "", `{"to":"n2"}`}, {1, "", `{"to":"fake1"}`}, {1, "", `{"to":"-n"}`},
		{1, "", `{"to":null}`}, {1, "", `{"to":"n2"}x`},
		{2, "n2", ``}, {2, "-n2", ``}, {2, "a/b", ``}, {2, strings.Repeat("n", 129), ``}, {2, "n2", `{"x":1}`},
	}
	for _, sd := range seeds {
		f.Add(sd.route, sd.id, []byte(sd.body))
	}
	f.Fuzz(func(t *testing.T, route uint8, id string, body []byte) {
		method, path := "POST", "/v1/cluster/join"
		switch route % 3 {
		case 1:
			path = "/v1/cluster/transfer-leadership"
		case 2:
			method, path = "DELETE", "/v1/cluster/members/"+url.PathEscape(id)
		}
		what := describe(method, path, "", body)
		r := s.serve(t, method, path, "", body, nil)
		checkAnswer(t, what, r)
		s.checkState(t, what, r)
		calls := len(s.fc.joins) + len(s.fc.removes) + len(s.fc.transfers)
		if r.Status >= 400 {
			if calls != 0 {
				t.Fatalf("%s = %d, yet it reached the cluster", what, r.Status)
			}
			return
		}
		if calls != 1 || len(s.fc.cmds) != 0 {
			t.Fatalf("%s = %d after %d cluster calls and %d commands, want one call", what, r.Status, calls, len(s.fc.cmds))
		}
		var out map[string]any
		_ = json.Unmarshal(r.Body, &out)
		switch route % 3 {
		case 0:
			j := s.fc.joins[0]
			var sent cluster.JoinRequest
			if err := json.Unmarshal(body, &sent); err != nil || sent != j || j.Validate() != nil || out["joined"] != j.ID {
				t.Fatalf("%s = %d %s joined %+v", what, r.Status, r.Body, j)
			}
		case 1:
			if to := s.fc.transfers[0]; to == "fake1" || out["to"] != to {
				t.Fatalf("%s = %d %s transferred to %q", what, r.Status, r.Body, to)
			}
		case 2:
			if rm := s.fc.removes[0]; rm != id || out["removed"] != id {
				t.Fatalf("%s = %d %s removed %q", what, r.Status, r.Body, rm)
			}
		}
	})
}

// callbackRoute is one agent callback: its path for an id, the token scope
// it wants and the fixture's record it is about.
type callbackRoute struct {
	path  string // with %s for the id
	scope tokens.Scope
	about func(fx fuzzFixture) string
	// cmd is the command a success commits (nil: none).
	cmd func(c fsm.Command) bool
}

func callbackRoutes() []callbackRoute {
	node := func(fx fuzzFixture) string { return fx.node }
	ws := func(fx fuzzFixture) string { return fx.waitingWS }
	task := func(fx fuzzFixture) string { return fx.running }
	is := func(want fsm.CommandType) func(fsm.Command) bool {
		return func(c fsm.Command) bool { return c.Type() == want }
	}
	var rs []callbackRoute
	for _, p := range []string{"/v1", "/api"} {
		rs = append(rs,
			callbackRoute{p + "/nodes/%s/ready", tokens.ScopeNode, node, is(fsm.CmdNodeReady)},
			callbackRoute{p + "/nodes/%s/heartbeat", tokens.ScopeNode, node, is(fsm.CmdNodeHeartbeat)},
			callbackRoute{p + "/nodes/%s/errors", tokens.ScopeNode, node, is(fsm.CmdNodeErrors)},
			callbackRoute{p + "/workspaces/%s/ready", tokens.ScopeWorkspace, ws, is(fsm.CmdWorkspaceReady)},
			callbackRoute{p + "/workspaces/%s/provisioning-failed", tokens.ScopeWorkspace, ws, is(fsm.CmdWorkspaceFailed)},
		)
	}
	return append(rs,
		callbackRoute{"/api/workspaces/%s/messages", tokens.ScopeWorkspace, ws, is(fsm.CmdRecordMessages | fsm.IgnoreUnknown)},
		callbackRoute{"/v1/tasks/%s/status", tokens.ScopeWorkspace, task, is(fsm.CmdTaskStatusCallback)},
		callbackRoute{"/api/projects/p1/tasks/%s/status/callback", tokens.ScopeWorkspace, task, is(fsm.CmdTaskStatusCallback)},
	)
}

// The tokens a callback is tried with.
const (
	authValid = iota
	authNone
	authWrongScope
	authOtherID
	authGarbage
	authKinds
)

// FuzzCallbackHandlers: every agent callback, under /v1 and /api, with any
// body and one of five kinds of Authorization. Only the valid token gets
// past the check (401 without a valid token, 403 for a token about
// something else), and nothing is committed for the others.
func FuzzCallbackHandlers(f *testing.F) {
	s := newFuzzServer(f)
	routes := callbackRoutes()
	bodies := []string{"", `{}`, `null`, `[]`, `{"agentVersion":"1.2.3"}`,
		`{"nodeId":"n","activeWorkspaces":2,"agentVersion":"1","metrics":{"cpuLoadAvg1":0.5,"memoryPercent":20,"diskPercent":30}}`,
		`{"activeWorkspaces":1.5}`, `{"metrics":{"cpuLoadAvg1":1e400}}`,
		`{"errors":[{"incidentId":"i1","level":"error","message":"disk full","source":"agent","workspaceId":"ws"}]}`,
		`{"errors":{}}`, `{"status":"running"}`, `{"status":"recovery"}`, `{"status":"bogus"}`,
		`{"errorMessage":"no disk"}`, `{"messages":[{"role":"user","content":"hi"}]}`, `{"messages":"x"}`,
		`{"messages":[{"messageId":"m1","sessionId":"c1","role":"assistant","content":"hi","timestamp":"2026-11-25T12:00:00Z","sequence":1}]}`,
		`{"errors":[{"incidentId":"i2","level":"info","message":"Agent ready","source":"agent","timestamp":"2026-11-25T12:00:00Z","context":{"a":1}}]}`,
		`{"executionStep":"awaiting_followup","errorMessage":"e","gitPushResult":{"pushed":false,"commitSha":"abc","branchName":"main","prNumber":0,"hasUncommittedChanges":true,"error":"push blocked"}}`,
		`{"toStatus":"completed","outputSummary":"done","outputBranch":"b","outputPrUrl":"https://x/pr/1"}`,
		`{"toStatus":"awaiting_followup","executionStep":"awaiting_followup"}`, `{"toStatus":"failed","errorMessage":"boom"}`,
		`{"toStatus":"bogus"}`, `{"executionStep":"bogus"}`, `{"gitPushResult":{"pushed":true,"branchName":"b","prUrl":"u"}}`,
		`{"unknownField":true}`, `{"status":"running"} trailing`, "\xff\xfe",
	}
	// Every route with every kind of token, and every body on two routes
	// in turn (not their product, to keep the corpus small).
	for i := range routes {
		for auth := 0; auth < authKinds; auth++ {
			f.Add(uint8(i), uint8(auth), []byte(`{}`))
		}
	}
	for i, b := range bodies {
		f.Add(uint8(i), uint8(authValid), []byte(b))
		f.Add(uint8(i+len(bodies)), uint8(authValid), []byte(b))
	}
	for _, b := range []string{`{"activeWorkspaces":-1}`, `{"metrics":{"cpuLoadAvg1":-5}}`, `{"metrics":{"memoryPercent":101}}`,
		`{"metrics":{"diskPercent":-0.5}}`} {
		f.Add(uint8(1), uint8(authValid), []byte(b)) // /v1/nodes/{id}/heartbeat
	}
	type minted struct{ valid, wrongScope, otherID string }
	toks := make([]minted, len(routes))
	for i, rt := range routes {
		other := tokens.ScopeWorkspace
		if rt.scope == tokens.ScopeWorkspace {
			other = tokens.ScopeNode
		}
		id := rt.about(s.fx)
		if rt.path == "/v1/tasks/%s/status" || strings.HasPrefix(rt.path, "/api/projects/") {
			id = s.fx.runningWS // a task status callback carries its workspace's token
		}
		toks[i] = minted{s.token(f, rt.scope, id), s.token(f, other, id), s.token(f, rt.scope, id+"-other")}
	}

	f.Fuzz(func(t *testing.T, route, auth uint8, body []byte) {
		i := int(route) % len(routes)
		rt, kind := routes[i], int(auth)%authKinds
		hdr := map[string]string{}
		switch kind {
		case authValid:
			hdr["Authorization"] = "Bearer " + toks[i].valid
		case authWrongScope:
			hdr["Authorization"] = "Bearer " + toks[i].wrongScope
		case authOtherID:
			hdr["Authorization"] = "Bearer " + toks[i].otherID
		case authGarbage:
			hdr["Authorization"] = "Bearer " + string(body)
		}
		path := strings.Replace(rt.path, "%s", rt.about(s.fx), 1)
		what := describe("POST", path, "", body)
		r := s.serve(t, "POST", path, "", body, hdr)
		code := checkAnswer(t, what, r)
		s.checkState(t, what, r)
		if kind != authValid {
			want, wantCode := 401, api.CodeUnauthorized
			if kind == authWrongScope || kind == authOtherID {
				want, wantCode = 403, api.CodeForbidden
			}
			if r.Status != want || code != wantCode || len(s.fc.cmds) != 0 {
				t.Fatalf("%s with auth kind %d = %d %s after %d commits, want %d %s and none", what, kind, r.Status, r.Body, len(s.fc.cmds), want, wantCode)
			}
			return
		}
		if r.Status == 401 || r.Status == 403 {
			t.Fatalf("%s with a valid token = %d %s", what, r.Status, r.Body)
		}
		if r.Status >= 400 {
			return
		}
		if rt.cmd == nil {
			if len(s.fc.cmds) != 0 {
				t.Fatalf("%s committed %d commands, want none", what, len(s.fc.cmds))
			}
			return
		}
		if len(s.fc.cmds) != 1 || !rt.cmd(s.fc.cmds[0]) {
			t.Fatalf("%s = %d %s having committed %v", what, r.Status, r.Body, s.fc.cmds)
		}
		if hb, ok := s.fc.cmds[0].(fsm.NodeHeartbeat); ok && !plausibleHeartbeat(hb) {
			t.Fatalf("%s = %d accepted an impossible heartbeat %+v %+v", what, r.Status, hb, hb.Metrics)
		}
	})
}

// plausibleHeartbeat: node selection trusts these numbers, so a heartbeat
// that could not come from a real machine must be refused, not stored.
func plausibleHeartbeat(hb fsm.NodeHeartbeat) bool {
	if hb.ActiveWorkspaces < 0 {
		return false
	}
	m := hb.Metrics
	return m == nil || (m.CPULoad >= 0 && m.MemoryPercent >= 0 && m.MemoryPercent <= 100 && m.DiskPercent >= 0 && m.DiskPercent <= 100)
}

// readRoutes are the GET routes that answer JSON (/metrics is Prometheus
// text, /v1/events a stream, /ui HTML), tried with any query.
var readRoutes = []string{"/v1/tasks", "/v1/tasks/%s", "/v1/errors", "/v1/nodes", "/v1/cluster",
	"/v1/cluster/state-hash", "/healthz", "/readyz", "/.well-known/jwks.json", "/v1/tasks/%s/messages", "/v1/nodes/%s"}

// FuzzReadHandlers: every GET route with any query string (and any task
// id): a 2xx or a JSON 4xx, and never a change of state or a commit.
func FuzzReadHandlers(f *testing.F) {
	s := newFuzzServer(f)
	queries := []string{"", "status=queued", "status=bogus", "user_id=u1&limit=2", "limit=0", "limit=501", "limit=x",
		"cursor=t-queued", "cursor=-x", "consistent=true", "consistent=maybe", "kind=reconciler", "kind=bogus",
		"step=running", "step=cleanup", "step=x", "since=2026-11-25T11:00:00Z", "since=yesterday", "cursor=1",
		"cursor=18446744073709551616", "task_id=t-running&node_id=" + s.fx.node, "status=warm", "status=%zz", "a=%",
		"user_id=%00", "limit=1&limit=2"}
	// Every query on the three list routes, every route once.
	for i := range readRoutes {
		f.Add(uint8(i), s.fx.running, "")
	}
	for _, q := range queries {
		for _, i := range []uint8{0, 2, 3} {
			f.Add(i, s.fx.running, q)
		}
	}
	f.Add(uint8(1), "t-nope", "")
	f.Add(uint8(1), "-x", "consistent=true")
	f.Add(uint8(1), s.fx.queued, "consistent=true")
	f.Add(uint8(len(readRoutes)-1), s.fx.node, "")
	f.Fuzz(func(t *testing.T, route uint8, id, query string) {
		path := strings.Replace(readRoutes[int(route)%len(readRoutes)], "%s", url.PathEscape(id), 1)
		what := describe("GET", path, query, nil)
		r := s.serve(t, "GET", path, query, nil, nil)
		checkAnswer(t, what, r)
		s.checkState(t, what, r)
		if len(s.fc.cmds) != 0 {
			t.Fatalf("%s committed %v", what, s.fc.cmds)
		}
		if !strings.HasPrefix(path, "/v1/tasks") || r.Status >= 400 {
			return
		}
		if strings.HasSuffix(path, "/messages") {
			var tm api.TaskMessagesResponse
			if err := json.Unmarshal(r.Body, &tm); err != nil || tm.TaskID != id || tm.Messages == nil {
				t.Fatalf("%s = %d %s, want the task's messages (%v)", what, r.Status, r.Body, err)
			}
			return
		}
		if path == "/v1/tasks" {
			var page api.TaskListResponse
			if err := json.Unmarshal(r.Body, &page); err != nil || page.Tasks == nil {
				t.Fatalf("%s = %d %s, want a page of tasks (%v)", what, r.Status, r.Body, err)
			}
			return
		}
		if task := decodeTask(t, r); task.ID != id {
			t.Fatalf("%s = %d with task %s", what, r.Status, task.ID)
		}
	})
}
