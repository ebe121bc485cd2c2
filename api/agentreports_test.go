package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/server"
	"github.com/tdf-project/tdf/tokens"
)

// The agents' reports through the API: node reports split by level, the
// push result of the task status callback, chat messages, and where each
// is read back.

type reportServer struct {
	h      http.Handler
	fc     *fakeCluster
	fx     fuzzFixture
	issuer *tokens.Issuer
}

func newReportServer(t *testing.T) *reportServer {
	t.Helper()
	f, fx, index := buildFuzzFixture(t)
	fc := &fakeCluster{f: f, index: index}
	key, err := tokens.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	issuer := &tokens.Issuer{URL: "http://tdf.test", Keys: func() []tokens.Key { return []tokens.Key{key} },
		Now: func() time.Time { return fuzzT0 }}
	srv, err := api.New(api.Config{Node: fc, Logger: hclog.NewNullLogger(), Tokens: issuer,
		Now: func() time.Time { return fuzzT0.Add(time.Minute) }})
	if err != nil {
		t.Fatal(err)
	}
	return &reportServer{h: srv.Handler(), fc: fc, fx: fx, issuer: issuer}
}

// do sends a request, with a callback token of scope for id if scope is
// set.
func (s *reportServer) do(t *testing.T, method, path string, body any, scope tokens.Scope, id string) server.TestResponse {
	t.Helper()
	var b []byte
	switch v := body.(type) {
	case nil:
	case string:
		b = []byte(v)
	default:
		b, _ = json.Marshal(v)
	}
	req := httptest.NewRequest(method, path, bytes.NewReader(b))
	if scope != "" {
		tok, err := s.issuer.CallbackToken(scope, id)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, req)
	return server.TestResponse{Status: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
}

func decodeInto(t *testing.T, r server.TestResponse, v any) {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("answer %d %s, want 200", r.Status, r.Body)
	}
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("answer %s: %v", r.Body, err)
	}
}

func TestNodeReportsByLevelThroughAPI(t *testing.T) {
	s := newReportServer(t)
	node := s.fx.node
	batch := map[string]any{"errors": []map[string]any{
		{"incidentId": "01JREADY00000000000000000A", "level": "info", "message": "Agent ready", "source": "agent", "timestamp": "2026-11-25T12:00:01Z"},
		{"incidentId": "01JWARN000000000000000000B", "level": "warn", "message": "disk 91 %", "source": "resourcemon"},
		{"incidentId": "01JERROR00000000000000000C", "level": "error", "message": "docker died", "source": "docker",
			"stack": "goroutine 1 [running]", "workspaceId": s.fx.runningWS, "context": map[string]any{"exit": 1, "cmd": "docker ps"}},
		{"incidentId": "01JNOLEVEL000000000000000D", "message": "no level given", "source": "agent"},
	}}
	r := s.do(t, "POST", "/api/nodes/"+node+"/errors", batch, tokens.ScopeNode, node)
	var acc struct{ Accepted int }
	decodeInto(t, r, &acc)
	if acc.Accepted != 4 {
		t.Fatalf("accepted %d, want 4", acc.Accepted)
	}
	// The re-sent outbox adds nothing.
	s.do(t, "POST", "/api/nodes/"+node+"/errors", batch, tokens.ScopeNode, node)

	var errs struct{ Errors []fsm.ErrorRecord }
	decodeInto(t, s.do(t, "GET", "/v1/errors?kind=node_error&node_id="+node, nil, "", ""), &errs)
	if len(errs.Errors) != 2 || errs.Errors[0].Message != "docker: docker died" || errs.Errors[1].Message != "agent: no level given" {
		t.Fatalf("error database holds %+v, want the error and the report without a level only", errs.Errors)
	}
	var nr api.NodeResponse
	decodeInto(t, s.do(t, "GET", "/v1/nodes/"+node, nil, "", ""), &nr)
	if nr.ID != node || nr.Health == "" || len(nr.Events) != 4 {
		t.Fatalf("GET /v1/nodes/%s = node %q health %q with %d events, want 4", node, nr.ID, nr.Health, len(nr.Events))
	}
	levels := []string{}
	for _, e := range nr.Events {
		levels = append(levels, e.Level)
	}
	if got := strings.Join(levels, ","); got != "info,warn,error,error" {
		t.Fatalf("event levels %s, want info,warn,error,error", got)
	}
	if e := nr.Events[2]; e.Stack != "goroutine 1 [running]" || e.Context != `{"cmd":"docker ps","exit":1}` || e.WorkspaceID != s.fx.runningWS {
		t.Fatalf("error event = %+v", e)
	}
	if e := nr.Events[0]; e.ReportedAt != "2026-11-25T12:00:01Z" || !e.At.Equal(fuzzT0.Add(time.Minute)) {
		t.Fatalf("info event = %+v", e)
	}
	checkError(t, "unknown node", s.do(t, "GET", "/v1/nodes/n-nope", nil, "", ""), 404, api.CodeNotFound, "n-nope")
	checkError(t, "bad node id", s.do(t, "GET", "/v1/nodes/bad%20id", nil, "", ""), 400, api.CodeInvalidID, "node id")
}

func TestTaskStatusCallbackKeepsPushResult(t *testing.T) {
	s := newReportServer(t)
	body := `{"executionStep":"awaiting_followup","gitPushResult":{"pushed":false,"commitSha":"abc123","branchName":"main",` +
		`"prUrl":"","prNumber":0,"hasUncommittedChanges":true,"error":"auto-commit push blocked: HEAD is still on the project default branch"}}`
	r := s.do(t, "POST", "/api/projects/p1/tasks/"+s.fx.running+"/status/callback", body, tokens.ScopeWorkspace, s.fx.runningWS)
	task := decodeTask(t, r)
	p := task.Output.Push
	if r.Status != 200 || task.Status != fsm.StatusInProgress || task.ExecutionStep != fsm.StepAwaitingFollowup || p == nil {
		t.Fatalf("callback = %d, task %s/%s, push %+v", r.Status, task.Status, task.ExecutionStep, p)
	}
	if p.Pushed || p.CommitSHA != "abc123" || p.BranchName != "main" || !p.HasUncommittedChanges || !strings.Contains(p.Error, "push blocked") {
		t.Fatalf("push result kept as %+v", p)
	}
	var errs struct{ Errors []fsm.ErrorRecord }
	decodeInto(t, s.do(t, "GET", "/v1/errors?kind=push_failed", nil, "", ""), &errs)
	if len(errs.Errors) != 1 || errs.Errors[0].TaskID != s.fx.running {
		t.Fatalf("push_failed records = %+v", errs.Errors)
	}
	// A successful push after a follow-up: kept too, with its PR.
	body = `{"executionStep":"awaiting_followup","gitPushResult":{"pushed":true,"commitSha":"def","branchName":"sam/fix","prUrl":"https://github.com/acme/app/pull/9","prNumber":9,"hasUncommittedChanges":false,"error":""}}`
	task = decodeTask(t, s.do(t, "POST", "/v1/tasks/"+s.fx.running+"/status", body, tokens.ScopeWorkspace, s.fx.runningWS))
	if p := task.Output.Push; p == nil || !p.Pushed || p.PRNumber != 9 || p.Error != "" || task.Output.Branch != "sam/fix" || task.Output.PRURL != "https://github.com/acme/app/pull/9" {
		t.Fatalf("output after a successful push = %+v push %+v", task.Output, task.Output.Push)
	}
	// A prompt error that does not fail the run stays in the output.
	body = `{"executionStep":"awaiting_followup","errorMessage":"prompt failed: rate limited","gitPushResult":{"pushed":false,"error":""}}`
	task = decodeTask(t, s.do(t, "POST", "/v1/tasks/"+s.fx.running+"/status", body, tokens.ScopeWorkspace, s.fx.runningWS))
	if task.Output.AgentError != "prompt failed: rate limited" || task.Status != fsm.StatusInProgress {
		t.Fatalf("agent error: output %+v status %s", task.Output, task.Status)
	}
}

func message(id, session, role, content string) map[string]any {
	return map[string]any{"messageId": id, "sessionId": session, "role": role, "content": content,
		"timestamp": "2026-11-25T12:00:00Z", "sequence": 1}
}

func TestWorkspaceMessagesKeptPerTask(t *testing.T) {
	s := newReportServer(t)
	ws, task := s.fx.runningWS, s.fx.running
	path := "/api/workspaces/" + ws + "/messages"
	batch := map[string]any{"messages": []map[string]any{
		message("m1", "c-running", "user", "fix the bug"),
		message("m2", "c-running", "assistant", "on it"),
		{"messageId": "m3", "sessionId": "c-running", "role": "tool", "content": "ran tests", "toolMetadata": `{"tool":"bash"}`,
			"timestamp": "2026-11-25T12:00:02Z", "sequence": 3, "origin": "system"},
	}}
	var ans struct{ Persisted, Duplicates int }
	decodeInto(t, s.do(t, "POST", path, batch, tokens.ScopeWorkspace, ws), &ans)
	if ans.Persisted != 3 || ans.Duplicates != 0 {
		t.Fatalf("first delivery = %+v", ans)
	}
	decodeInto(t, s.do(t, "POST", path, batch, tokens.ScopeWorkspace, ws), &ans)
	if ans.Persisted != 0 || ans.Duplicates != 3 {
		t.Fatalf("re-delivery = %+v, want all duplicates", ans)
	}
	var got api.TaskMessagesResponse
	decodeInto(t, s.do(t, "GET", "/v1/tasks/"+task+"/messages", nil, "", ""), &got)
	if got.TaskID != task || got.Total != 3 || len(got.Messages) != 3 {
		t.Fatalf("GET messages = %+v", got)
	}
	if m := got.Messages[2]; m.Role != "tool" || m.ToolMetadata != `{"tool":"bash"}` || m.Origin != "system" || m.Sequence != 3 || m.SessionID != "c-running" {
		t.Fatalf("tool message kept as %+v", m)
	}
	// The task itself stays light: no messages in it.
	if r := s.do(t, "GET", "/v1/tasks/"+task, nil, "", ""); bytes.Contains(r.Body, []byte("fix the bug\",")) || bytes.Contains(r.Body, []byte(`"messages"`)) {
		t.Fatalf("GET /v1/tasks/%s carries the messages: %s", task, r.Body)
	}
	// A task without messages answers an empty list.
	decodeInto(t, s.do(t, "GET", "/v1/tasks/"+s.fx.queued+"/messages", nil, "", ""), &got)
	if got.Messages == nil || len(got.Messages) != 0 || got.Total != 0 {
		t.Fatalf("messages of a task without any = %+v", got)
	}
	checkError(t, "unknown task", s.do(t, "GET", "/v1/tasks/t-nope/messages", nil, "", ""), 404, api.CodeNotFound, "t-nope")
}

// Refusals follow what the agent expects: a too large payload or message
// is a 400 naming a byte limit (the agent then re-sends the messages one by
// one, cut down), any other bad batch a 400, an unknown workspace a 404
// (retried), a node token a 403. None commits anything.
func TestWorkspaceMessagesRefused(t *testing.T) {
	s := newReportServer(t)
	ws := s.fx.runningWS
	path := "/api/workspaces/" + ws + "/messages"
	big := strings.Repeat("x", 100<<10+1)
	var many []map[string]any
	for i := range 101 {
		many = append(many, message(fmt.Sprintf("m%d", i), "c", "assistant", "x"))
	}
	for _, tc := range []struct {
		what   string
		body   any
		status int
		code   string
		msg    string
	}{
		{"not JSON", "{", 400, api.CodeInvalidJSON, ""},
		{"no messages", `{"messages":[]}`, 400, api.CodeInvalidField, "must not be empty"},
		{"too many", map[string]any{"messages": many}, 400, api.CodeInvalidField, "at most 100"},
		{"bad role", map[string]any{"messages": []any{message("m1", "c", "robot", "x")}}, 400, api.CodeInvalidField, "role"},
		{"no id", map[string]any{"messages": []any{message("", "c", "user", "x")}}, 400, api.CodeInvalidField, "messageId"},
		{"empty content", map[string]any{"messages": []any{message("m1", "c", "user", "")}}, 400, api.CodeInvalidField, "content"},
		{"two sessions", map[string]any{"messages": []any{message("m1", "c", "user", "x"), message("m2", "d", "user", "y")}}, 400, api.CodeInvalidField, "same sessionId"},
		{"large message", map[string]any{"messages": []any{message("m1", "c", "user", big)}}, 400, api.CodeInvalidField, "byte limit"},
		{"large payload", map[string]any{"messages": []any{message("m1", "c", "user", big[:90<<10]), message("m2", "c", "user", big[:90<<10]),
			message("m3", "c", "user", big[:90<<10])}}, 400, api.CodeBodyTooLarge, "Payload exceeds"},
	} {
		before := s.fc.index
		checkError(t, tc.what, s.do(t, "POST", path, tc.body, tokens.ScopeWorkspace, ws), tc.status, tc.code, tc.msg)
		if s.fc.index != before {
			t.Errorf("%s: committed something", tc.what)
		}
	}
	one := map[string]any{"messages": []any{message("m1", "c", "user", "x")}}
	checkError(t, "unknown workspace", s.do(t, "POST", "/api/workspaces/ws-nope/messages", one, tokens.ScopeWorkspace, "ws-nope"), 404, api.CodeNotFound, "ws-nope")
	checkError(t, "node token", s.do(t, "POST", path, one, tokens.ScopeNode, ws), 403, api.CodeForbidden, "")
}
