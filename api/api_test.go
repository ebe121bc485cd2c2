package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/cluster"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/runner"
	"github.com/tdf-project/tdf/server"
)

const validBody = `{"project_id":"p1","user_id":"u1","prompt":"fix the bug","repository":"github.com/acme/app"}`

func body(user, prompt string) []byte {
	b, _ := json.Marshal(api.SubmitRequest{ProjectID: "p1", UserID: user, Prompt: prompt, Repository: "github.com/acme/app"})
	return b
}

// singleNode starts a one-node cluster. A single voter cannot lose an
// election or its lease, so short raft timeouts are safe here and make the
// start fast.
func singleNode(t testing.TB, opts server.TestOptions) (*server.TestCluster, *server.TestNode) {
	t.Helper()
	opts.Nodes = 1
	opts.Cluster = func(c *cluster.Config) {
		c.HeartbeatTimeout = 100 * time.Millisecond
		c.ElectionTimeout = 100 * time.Millisecond
		c.LeaderLeaseTimeout = 100 * time.Millisecond
	}
	c := server.NewTestCluster(t, opts)
	return c, c.Nodes[0]
}

// checkError asserts the error contract: the status, a JSON content type,
// a body that is exactly {"error":{"code":…,"message":…}} with the code
// and a message containing msgHas, and the node headers.
func checkError(t *testing.T, what string, r server.TestResponse, status int, code, msgHas string) api.ErrorDetail {
	t.Helper()
	if r.Status != status {
		t.Errorf("%s: status %d, want %d; body %s", what, r.Status, status, r.Body)
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		t.Errorf("%s: Content-Type %q, want application/json", what, r.Header.Get("Content-Type"))
	}
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(r.Body, &outer); err != nil || len(outer) != 1 || outer["error"] == nil {
		t.Errorf("%s: body %s is not {\"error\":{…}} (%v)", what, r.Body, err)
		return api.ErrorDetail{}
	}
	var inner map[string]any
	if err := json.Unmarshal(outer["error"], &inner); err != nil || len(inner) != 2 {
		t.Errorf("%s: error object %s must hold exactly code and message (%v)", what, outer["error"], err)
	}
	var d api.ErrorDetail
	_ = json.Unmarshal(outer["error"], &d)
	if d.Code != code {
		t.Errorf("%s: code %q, want %q (message %q)", what, d.Code, code, d.Message)
	}
	if d.Message == "" || !strings.Contains(d.Message, msgHas) {
		t.Errorf("%s: message %q, want it to contain %q", what, d.Message, msgHas)
	}
	return d
}

// checkNodeHeaders asserts X-Tdf-Node and X-Tdf-Leader (leader "" means
// none is known, so the header must be absent). Each appears once.
func checkNodeHeaders(t *testing.T, what string, r server.TestResponse, node, leader string) {
	t.Helper()
	if got := r.Header.Values("X-Tdf-Node"); len(got) != 1 || got[0] != node {
		t.Errorf("%s: X-Tdf-Node = %q, want [%s]", what, got, node)
	}
	got := r.Header.Values("X-Tdf-Leader")
	switch {
	case leader == "" && len(got) != 0:
		t.Errorf("%s: X-Tdf-Leader = %q, want none (no leader known)", what, got)
	case leader != "" && (len(got) != 1 || got[0] != leader):
		t.Errorf("%s: X-Tdf-Leader = %q, want [%s]", what, got, leader)
	}
}

func decodeTask(t *testing.T, r server.TestResponse) *api.Task {
	t.Helper()
	var tr api.TaskResponse
	if err := json.Unmarshal(r.Body, &tr); err != nil || tr.Task == nil {
		t.Fatalf("task answer %d %s: %v", r.Status, r.Body, err)
	}
	return tr.Task
}

func submit(t *testing.T, c *server.TestCluster, n *server.TestNode, b []byte) *api.Task {
	t.Helper()
	r := c.Do(n, "POST", "/v1/tasks", b, nil)
	if r.Status != http.StatusAccepted {
		t.Fatalf("POST /v1/tasks on %s = %d %s, want 202", n.ID, r.Status, r.Body)
	}
	return decodeTask(t, r)
}

// Every way a request can be wrong gets a 4xx with the error contract and
// the node headers, and changes nothing.
func TestBadInput(t *testing.T) {
	c, n := singleNode(t, server.TestOptions{})
	existing := submit(t, c, n, body("u1", "existing task"))
	before := n.FSM.TaskCount()

	long := func(n int) string { return strings.Repeat("x", n) }
	withField := func(field string, v any) []byte {
		m := map[string]any{"project_id": "p1", "user_id": "u1", "prompt": "fix the bug", "repository": "github.com/acme/app"}
		m[field] = v
		b, _ := json.Marshal(m)
		return b
	}
	type tc struct {
		name         string
		method, path string
		body         []byte
		hdr          map[string]string
		status       int
		code, msgHas string
	}
	post := func(name string, b []byte, status int, code, msgHas string) tc {
		return tc{name, "POST", "/v1/tasks", b, nil, status, code, msgHas}
	}
	tests := []tc{
		// Malformed JSON.
		post("truncated object", []byte(`{"project_id":`), 400, api.CodeInvalidJSON, "malformed JSON"),
		post("missing colon", []byte(`{"project_id" "p1"}`), 400, api.CodeInvalidJSON, "malformed JSON"),
		post("single quotes", []byte(`{'project_id':'p1'}`), 400, api.CodeInvalidJSON, "malformed JSON"),
		post("bare word", []byte(`hello`), 400, api.CodeInvalidJSON, "malformed JSON"),
		post("array", []byte(`[1,2]`), 400, api.CodeInvalidJSON, "must be a JSON object"),
		post("string", []byte(`"task"`), 400, api.CodeInvalidJSON, "must be a JSON object"),
		post("number", []byte(`42`), 400, api.CodeInvalidJSON, "must be a JSON object"),
		post("deeply nested", []byte(strings.Repeat("[", 20000)+strings.Repeat("]", 20000)), 400, api.CodeInvalidJSON, ""),
		// Unknown fields and wrong types: the message names the field.
		post("unknown field", withField("colour", "red"), 400, api.CodeInvalidJSON, `unknown field "colour"`),
		post("prompt as number", withField("prompt", 5), 400, api.CodeInvalidJSON, "prompt"),
		post("user_id as bool", withField("user_id", true), 400, api.CodeInvalidJSON, "user_id"),
		post("vm_size as object", withField("vm_size", map[string]any{"a": 1}), 400, api.CodeInvalidJSON, "vm_size"),
		post("repository as array", withField("repository", []string{"a"}), 400, api.CodeInvalidJSON, "repository"),
		// Empty body and trailing data.
		post("empty body", nil, 400, api.CodeInvalidJSON, "empty"),
		post("whitespace body", []byte(" \n\t "), 400, api.CodeInvalidJSON, "empty"),
		post("two objects", []byte(validBody+validBody), 400, api.CodeInvalidJSON, "data after"),
		post("trailing garbage", []byte(validBody+" x"), 400, api.CodeInvalidJSON, "data after"),
		post("trailing comma", []byte(validBody+","), 400, api.CodeInvalidJSON, "data after"),
		// Field validation.
		post("null", []byte(`null`), 400, api.CodeInvalidField, "project_id"),
		post("empty object", []byte(`{}`), 400, api.CodeInvalidField, "project_id"),
		post("missing prompt", withField("prompt", ""), 400, api.CodeInvalidField, "prompt"),
		post("blank prompt", withField("prompt", "  \n "), 400, api.CodeInvalidField, "prompt"),
		post("prompt with NUL", withField("prompt", "a\x00b"), 400, api.CodeInvalidField, "prompt"),
		post("prompt too long", withField("prompt", long(64<<10+1)), 400, api.CodeInvalidField, "prompt"),
		post("repository too long", withField("repository", long(513)), 400, api.CodeInvalidField, "repository"),
		post("bad project_id", withField("project_id", "-p1"), 400, api.CodeInvalidField, "project_id"),
		post("long user_id", withField("user_id", long(129)), 400, api.CodeInvalidField, "user_id"),
		post("bad vm_size", withField("vm_size", "huge"), 400, api.CodeInvalidField, "vm_size"),
		post("bad vm_location", withField("vm_location", "FSN1"), 400, api.CodeInvalidField, "vm_location"),
		post("bad branch", withField("branch", "a branch"), 400, api.CodeInvalidField, "branch"),
		post("bad preferred_node_id", withField("preferred_node_id", "n/1"), 400, api.CodeInvalidField, "preferred_node_id"),
		{"long Idempotency-Key", "POST", "/v1/tasks", []byte(validBody), map[string]string{"Idempotency-Key": long(256)}, 400, api.CodeInvalidField, "Idempotency-Key"},
		{"Idempotency-Key with a space", "POST", "/v1/tasks", []byte(validBody), map[string]string{"Idempotency-Key": "a b"}, 400, api.CodeInvalidField, "Idempotency-Key"},
		{"non-ASCII Idempotency-Key", "POST", "/v1/tasks", []byte(validBody), map[string]string{"Idempotency-Key": "clé"}, 400, api.CodeInvalidField, "Idempotency-Key"},
		// Bodies over the 1 MiB limit.
		post("body of 1 MiB + 1", append([]byte(validBody), bytes.Repeat([]byte(" "), 1<<20+1-len(validBody))...), 413, api.CodeBodyTooLarge, "exceeds"),
		{"cancel body over the limit", "POST", "/v1/tasks/" + existing.ID + "/cancel", bytes.Repeat([]byte(" "), 1<<20+1), nil, 413, api.CodeBodyTooLarge, "exceeds"},
		{"join body over the limit", "POST", "/v1/cluster/join", bytes.Repeat([]byte(" "), 1<<20+1), nil, 413, api.CodeBodyTooLarge, "exceeds"},
		// Invalid ids.
		{"id starting with a dash", "GET", "/v1/tasks/-t1", nil, nil, 400, api.CodeInvalidID, "not a valid task id"},
		{"id with a space", "GET", "/v1/tasks/t%201", nil, nil, 400, api.CodeInvalidID, "not a valid task id"},
		{"id with a percent", "GET", "/v1/tasks/t%25", nil, nil, 400, api.CodeInvalidID, "not a valid task id"},
		{"id too long", "GET", "/v1/tasks/" + long(129), nil, nil, 400, api.CodeInvalidID, "not a valid task id"},
		{"cancel invalid id", "POST", "/v1/tasks/..x/cancel", nil, nil, 400, api.CodeInvalidID, "not a valid task id"},
		{"remove invalid member id", "DELETE", "/v1/cluster/members/-n1", nil, nil, 400, api.CodeInvalidID, "member id"},
		{"unknown task", "GET", "/v1/tasks/t-nope", nil, nil, 404, api.CodeNotFound, "t-nope"},
		{"cancel unknown task", "POST", "/v1/tasks/t-nope/cancel", nil, nil, 404, api.CodeNotFound, "t-nope"},
		// Cancel bodies.
		{"cancel unknown field", "POST", "/v1/tasks/" + existing.ID + "/cancel", []byte(`{"why":"x"}`), nil, 400, api.CodeInvalidJSON, `unknown field "why"`},
		{"cancel reason as number", "POST", "/v1/tasks/" + existing.ID + "/cancel", []byte(`{"reason":1}`), nil, 400, api.CodeInvalidJSON, "reason"},
		{"cancel reason too long", "POST", "/v1/tasks/" + existing.ID + "/cancel", []byte(`{"reason":"` + long(1025) + `"}`), nil, 400, api.CodeInvalidField, "reason"},
		{"cancel bad user_id", "POST", "/v1/tasks/" + existing.ID + "/cancel", []byte(`{"user_id":"a b"}`), nil, 400, api.CodeInvalidField, "user_id"},
		// Join bodies.
		{"join without body", "POST", "/v1/cluster/join", nil, nil, 400, api.CodeInvalidJSON, "empty"},
		{"join bad api_addr", "POST", "/v1/cluster/join", []byte(`{"id":"n9","raft_addr":"127.0.0.1:1","api_addr":"ftp://x"}`), nil, 400, api.CodeInvalidField, "api_addr"},
		{"join bad id", "POST", "/v1/cluster/join", []byte(`{"id":"n 9","raft_addr":"127.0.0.1:1","api_addr":"http://x"}`), nil, 400, api.CodeInvalidField, "id"},
		// Query parameters.
		{"unknown status", "GET", "/v1/tasks?status=bogus", nil, nil, 400, api.CodeInvalidField, "status"},
		{"limit 0", "GET", "/v1/tasks?limit=0", nil, nil, 400, api.CodeInvalidField, "limit"},
		{"limit -1", "GET", "/v1/tasks?limit=-1", nil, nil, 400, api.CodeInvalidField, "limit"},
		{"limit 501", "GET", "/v1/tasks?limit=501", nil, nil, 400, api.CodeInvalidField, "limit"},
		{"limit word", "GET", "/v1/tasks?limit=ten", nil, nil, 400, api.CodeInvalidField, "limit"},
		{"limit fraction", "GET", "/v1/tasks?limit=1.5", nil, nil, 400, api.CodeInvalidField, "limit"},
		{"bad cursor", "GET", "/v1/tasks?cursor=-x", nil, nil, 400, api.CodeInvalidField, "cursor"},
		{"long cursor", "GET", "/v1/tasks?cursor=" + long(129), nil, nil, 400, api.CodeInvalidField, "cursor"},
		{"bad user_id filter", "GET", "/v1/tasks?user_id=a%20b", nil, nil, 400, api.CodeInvalidField, "user_id"},
		{"bad consistent", "GET", "/v1/tasks?consistent=maybe", nil, nil, 400, api.CodeInvalidField, "consistent"},
		{"bad consistent on a task", "GET", "/v1/tasks/" + existing.ID + "?consistent=2", nil, nil, 400, api.CodeInvalidField, "consistent"},
		// Unknown routes.
		{"unknown top-level path", "GET", "/nope", nil, nil, 404, api.CodeNotFound, "no route"},
		{"unknown path", "GET", "/nope", nil, nil, 404, api.CodeNotFound, "/nope"},
		{"unknown version", "POST", "/v2/tasks", []byte(validBody), nil, 404, api.CodeNotFound, "/v2/tasks"},
		{"below a task", "GET", "/v1/tasks/t1/steps", nil, nil, 404, api.CodeNotFound, "no route"},
		{"unknown task action", "POST", "/v1/tasks/t1/explode", nil, nil, 404, api.CodeNotFound, "no route"},
		// Wrong methods.
		{"DELETE tasks", "DELETE", "/v1/tasks", nil, nil, 405, api.CodeMethodNotAllow, "DELETE"},
		{"PUT a task", "PUT", "/v1/tasks/t1", []byte(validBody), nil, 405, api.CodeMethodNotAllow, "PUT"},
		{"GET cancel", "GET", "/v1/tasks/t1/cancel", nil, nil, 405, api.CodeMethodNotAllow, "GET"},
		{"PATCH cluster", "PATCH", "/v1/cluster", nil, nil, 405, api.CodeMethodNotAllow, "PATCH"},
		{"GET join", "GET", "/v1/cluster/join", nil, nil, 405, api.CodeMethodNotAllow, "GET"},
		{"POST healthz", "POST", "/healthz", nil, nil, 405, api.CodeMethodNotAllow, "POST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.Do(n, tt.method, tt.path, tt.body, tt.hdr)
			checkError(t, tt.method+" "+tt.path, r, tt.status, tt.code, tt.msgHas)
			checkNodeHeaders(t, tt.name, r, n.ID, n.ID)
		})
	}
	if got := n.FSM.TaskCount(); got != before {
		t.Errorf("TaskCount() after bad requests = %d, want %d", got, before)
	}
	if got, _ := n.FSM.Task(existing.ID); got.Status != existing.Status {
		t.Errorf("existing task's status = %s after bad cancels, want %s", got.Status, existing.Status)
	}
}

// The body limit is exact: 1 MiB is accepted, larger bodies are refused
// with 413 whether they arrive over the network or are much larger.
func TestBodyLimit(t *testing.T) {
	c, n := singleNode(t, server.TestOptions{})
	exact := append([]byte(validBody), bytes.Repeat([]byte(" "), 1<<20-len(validBody))...)
	if r := c.Do(n, "POST", "/v1/tasks", exact, nil); r.Status != http.StatusAccepted {
		t.Errorf("POST of exactly 1 MiB = %d %s, want 202", r.Status, r.Body)
	}
	// 8 MiB in process: the handler stops reading at the limit.
	req := httptest.NewRequest("POST", "/v1/tasks", bytes.NewReader(bytes.Repeat([]byte("{"), 8<<20)))
	rec := httptest.NewRecorder()
	n.API.Handler().ServeHTTP(rec, req)
	r := server.TestResponse{Status: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
	checkError(t, "POST of 8 MiB", r, 413, api.CodeBodyTooLarge, fmt.Sprint(1<<20))
}

// Listing filters by status and user and pages with a cursor; every page
// is in id (submission) order and no task is skipped or repeated.
func TestListFiltersAndPaging(t *testing.T) {
	c, n := singleNode(t, server.TestOptions{})
	var u1, u2, cancelled []string
	for i := 0; i < 5; i++ {
		u1 = append(u1, submit(t, c, n, body("u1", fmt.Sprint("u1 task ", i))).ID)
	}
	for i := 0; i < 2; i++ {
		u2 = append(u2, submit(t, c, n, body("u2", fmt.Sprint("u2 task ", i))).ID)
	}
	for _, id := range []string{u1[0], u1[3]} {
		if r := c.Do(n, "POST", "/v1/tasks/"+id+"/cancel", nil, nil); r.Status != 200 {
			t.Fatalf("cancel %s = %d %s", id, r.Status, r.Body)
		}
		cancelled = append(cancelled, id)
	}
	slices.Sort(u1)
	slices.Sort(u2)
	slices.Sort(cancelled)
	all := slices.Sorted(slices.Values(append(slices.Clone(u1), u2...)))
	queuedU1 := slices.DeleteFunc(slices.Clone(u1), func(id string) bool { return slices.Contains(cancelled, id) })

	list := func(query string) (ids []string, next string) {
		t.Helper()
		r := c.Do(n, "GET", "/v1/tasks?order=asc&"+query, nil, nil)
		if r.Status != 200 {
			t.Fatalf("GET /v1/tasks?%s = %d %s", query, r.Status, r.Body)
		}
		checkNodeHeaders(t, query, r, n.ID, n.ID)
		var page api.TaskListResponse
		if err := json.Unmarshal(r.Body, &page); err != nil {
			t.Fatalf("GET /v1/tasks?%s: %v in %s", query, err, r.Body)
		}
		if page.Tasks == nil || !bytes.Contains(r.Body, []byte(`"tasks":[`)) {
			t.Errorf("GET /v1/tasks?%s: tasks is not a JSON array: %.200s", query, r.Body)
		}
		for _, t := range page.Tasks {
			ids = append(ids, t.ID)
		}
		return ids, page.NextCursor
	}
	pageAll := func(query string, limit int) (ids []string, pages int) {
		t.Helper()
		cursor := ""
		for {
			q := fmt.Sprintf("%s&limit=%d", query, limit)
			if cursor != "" {
				q += "&cursor=" + cursor
			}
			page, next := list(q)
			pages++
			if len(page) > limit || (next != "" && len(page) != limit) {
				t.Fatalf("page %d of %q: %d tasks, next %q (limit %d)", pages, query, len(page), next, limit)
			}
			if next != "" && next != page[len(page)-1] {
				t.Fatalf("page %d of %q: next_cursor %q, want the last id %q", pages, query, next, page[len(page)-1])
			}
			ids = append(ids, page...)
			if next == "" || pages > 20 {
				return ids, pages
			}
			cursor = next
		}
	}

	tests := []struct {
		query string
		limit int
		want  []string
		pages int
	}{
		{"user_id=u1", 2, u1, 3},
		{"user_id=u1", 5, u1, 1},
		{"user_id=u1", 500, u1, 1},
		{"user_id=u2", 1, u2, 2},
		{"status=cancelled", 1, cancelled, 2},
		{"status=queued&user_id=u1", 2, queuedU1, 2},
		{"status=cancelled&user_id=u2", 3, nil, 1},
		{"user_id=nobody", 3, nil, 1},
		{"status=queued", 3, append(slices.Clone(u2), queuedU1...), 2},
		{"consistent=true", 4, all, 2},
		{"cursor=" + all[len(all)-1], 10, nil, 1},
		{"cursor=" + all[2], 10, all[3:], 1},
	}
	for _, tt := range tests {
		got, pages := pageAll(tt.query, tt.limit)
		want := slices.Sorted(slices.Values(tt.want))
		if !slices.Equal(got, want) || pages != tt.pages {
			t.Errorf("paging %q by %d = %v in %d pages, want %v in %d", tt.query, tt.limit, got, pages, want, tt.pages)
		}
	}
	if ids, next := list(""); len(ids) != len(all) || next != "" {
		t.Errorf("GET /v1/tasks = %d tasks, next %q; want %d, none", len(ids), next, len(all))
	}
}

// Cancelling twice is a no-op the second time; cancelling an unknown
// task is 404.
func TestCancelTwice(t *testing.T) {
	c, n := singleNode(t, server.TestOptions{})
	task := submit(t, c, n, body("u1", "to cancel"))
	r := c.Do(n, "POST", "/v1/tasks/"+task.ID+"/cancel", []byte(`{"reason":"changed my mind","user_id":"u1"}`), nil)
	if r.Status != 200 {
		t.Fatalf("first cancel = %d %s, want 200", r.Status, r.Body)
	}
	first := decodeTask(t, r)
	last := first.History[len(first.History)-1]
	if first.Status != fsm.StatusCancelled || last.To != fsm.StatusCancelled || last.Reason != "changed my mind" || last.Actor.ID != "u1" {
		t.Errorf("first cancel: status %s, last event %+v", first.Status, last)
	}
	r = c.Do(n, "POST", "/v1/tasks/"+task.ID+"/cancel", nil, nil)
	if r.Status != 200 {
		t.Fatalf("second cancel = %d %s, want 200", r.Status, r.Body)
	}
	second := decodeTask(t, r)
	if second.Status != fsm.StatusCancelled || len(second.History) != len(first.History) {
		t.Errorf("second cancel: status %s with %d events, want cancelled with %d (a no-op)", second.Status, len(second.History), len(first.History))
	}
	checkNodeHeaders(t, "cancel", r, n.ID, n.ID)
}

// A completed task cannot be cancelled: 409 invalid_transition, and the
// task stays completed. The task is completed the way production does it:
// the leader's runner runs every effect step (handlers that succeed at
// once) and the test commits the VM callbacks the waiting steps need.
func TestCancelCompletedTask(t *testing.T) {
	succeed := runner.HandlerFunc(func(context.Context, *fsm.Task, string) runner.Result {
		return runner.Done(fsm.StepData{ServerID: 1, SessionID: "s-1"})
	})
	hs := map[fsm.Step]runner.Handler{}
	for _, s := range fsm.AllSteps {
		if fsm.KindOf(s) == fsm.KindEffect {
			hs[s] = succeed
		}
	}
	c, n := singleNode(t, server.TestOptions{Handlers: hs})
	task := submit(t, c, n, body("u1", "run to completion"))
	apply := func(cmd fsm.Command) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), server.TestWait)
		defer cancel()
		if _, err := n.Node.ApplyIdempotent(ctx, cmd); err != nil {
			t.Fatalf("apply %T = %v", cmd, err)
		}
	}
	server.WaitFor(t, server.TestWait, "the task to complete", func() error {
		cur, _ := n.FSM.Task(task.ID)
		now := time.Now().UTC()
		switch {
		case cur.Status == fsm.StatusCompleted:
			return nil
		case cur.Status.Terminal():
			t.Fatalf("task ended %s at %q: %s", cur.Status, cur.Step, cur.ErrorMessage)
		case cur.Step == fsm.StepNodeAgentReady && cur.NodeID != "":
			apply(fsm.NodeReady{NodeID: cur.NodeID, At: now})
		case cur.Step == fsm.StepWorkspaceReady:
			apply(fsm.WorkspaceReady{WorkspaceID: cur.WorkspaceID, Status: fsm.WorkspaceRunning, At: now})
		case cur.Step == fsm.StepRunning:
			apply(fsm.TaskStatusCallback{TaskID: task.ID, WorkspaceID: cur.WorkspaceID, ToStatus: fsm.StatusCompleted, At: now})
		}
		return fmt.Errorf("task is %s at %q", cur.Status, cur.Step)
	})

	r := c.Do(n, "POST", "/v1/tasks/"+task.ID+"/cancel", nil, nil)
	checkError(t, "cancel a completed task", r, 409, api.CodeInvalidTrans, "completed")
	checkNodeHeaders(t, "cancel a completed task", r, n.ID, n.ID)
	if got, _ := n.FSM.Task(task.ID); got.Status != fsm.StatusCompleted {
		t.Errorf("status after the refused cancel = %s, want completed", got.Status)
	}
}

// fakeCluster is a one-replica api.Cluster without raft: it applies
// commands straight to a real FSM, and intercept can replace the FSM's
// answer to a command.
type fakeCluster struct {
	mu        sync.Mutex
	f         *fsm.FSM
	index     uint64
	intercept func(fsm.Command) (*fsm.Result, error)
}

var _ api.Cluster = (*fakeCluster)(nil)

func (c *fakeCluster) ID() string               { return "fake1" }
func (c *fakeCluster) IsLeader() bool           { return true }
func (c *fakeCluster) Leader() (string, string) { return "fake1", "fake1:7001" }
func (c *fakeCluster) LeaderAPI() (string, string, bool) {
	return "fake1", "http://fake1.invalid", true
}
func (c *fakeCluster) ConsistentRead(context.Context) error { return nil }
func (c *fakeCluster) Status() cluster.Status {
	return cluster.Status{NodeID: "fake1", State: "leader"}
}
func (c *fakeCluster) Join(context.Context, cluster.JoinRequest) error {
	return nil
}
func (c *fakeCluster) Remove(context.Context, string) error                { return nil }
func (c *fakeCluster) TransferLeadershipTo(string) error                   { return nil }
func (c *fakeCluster) WaitLeaderReady(context.Context, time.Duration) bool { return true }
func (c *fakeCluster) FSM() *fsm.FSM                                       { return c.f }

func (c *fakeCluster) ApplyIdempotent(_ context.Context, cmd fsm.Command) (*fsm.Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.intercept != nil {
		if res, err := c.intercept(cmd); res != nil || err != nil {
			return res, err
		}
	}
	b, err := fsm.Encode(cmd)
	if err != nil {
		return nil, err
	}
	c.index++
	return c.f.ApplyCommand(c.index, b), nil
}

func serveFake(t *testing.T, h http.Handler, method, path string, b []byte) server.TestResponse {
	t.Helper()
	var rd *bytes.Reader
	if b != nil {
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, rd))
	return server.TestResponse{Status: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
}

// Domain and cluster errors from a commit map onto their statuses and
// codes, whatever command produced them (the fake answers for the FSM).
func TestCommitErrorMapping(t *testing.T) {
	fc := &fakeCluster{f: fsm.New()}
	srv, err := api.New(api.Config{Node: fc})
	if err != nil {
		t.Fatalf("api.New = %v", err)
	}
	h := srv.Handler()
	r := serveFake(t, h, "POST", "/v1/tasks", []byte(validBody))
	if r.Status != 202 {
		t.Fatalf("submit on fake = %d %s", r.Status, r.Body)
	}
	task := decodeTask(t, r)

	tests := []struct {
		name   string
		err    error // the result's domain error
		cerr   error // or the commit's error
		status int
		code   string
	}{
		{"completed task", fmt.Errorf("%w: completed → cancelled", fsm.ErrInvalidTransition), nil, 409, api.CodeInvalidTrans},
		{"not found", fmt.Errorf("%w: task x", fsm.ErrNotFound), nil, 404, api.CodeNotFound},
		{"exists", fmt.Errorf("%w: task x", fsm.ErrExists), nil, 409, api.CodeConflict},
		{"invalid", fmt.Errorf("%w: bad", fsm.ErrInvalid), nil, 400, api.CodeInvalidField},
		{"idempotency", fmt.Errorf("%w: k", fsm.ErrIdempotencyMismatch), nil, 422, api.CodeIdempotencyKey},
		{"no leader", nil, cluster.ErrNoLeader, 503, api.CodeNoLeader},
		{"shutdown", nil, cluster.ErrShutdown, 503, api.CodeUnavailable},
		{"deadline", nil, context.DeadlineExceeded, 503, api.CodeUnavailable},
		{"unexpected", nil, errors.New("disk on fire"), 500, api.CodeInternal},
	}
	for _, tt := range tests {
		fc.mu.Lock()
		fc.intercept = func(cmd fsm.Command) (*fsm.Result, error) {
			if _, ok := cmd.(fsm.CancelTask); !ok {
				return nil, nil
			}
			if tt.cerr != nil {
				return nil, tt.cerr
			}
			return &fsm.Result{Err: tt.err}, nil
		}
		fc.mu.Unlock()
		r := serveFake(t, h, "POST", "/v1/tasks/"+task.ID+"/cancel", nil)
		checkError(t, tt.name, r, tt.status, tt.code, "")
		checkNodeHeaders(t, tt.name, r, "fake1", "fake1")
		if tt.status == 503 && r.Header.Get("Retry-After") == "" {
			t.Errorf("%s: 503 without Retry-After", tt.name)
		}
	}
	if got, _ := fc.f.Task(task.ID); got.Status != fsm.StatusQueued {
		t.Errorf("task status after refused cancels = %s, want queued", got.Status)
	}
}

// A consistent read on a follower is answered by the leader, so a task is
// visible there the moment its submission is acknowledged; a default read
// is local. Forwarded answers carry the node headers once.
func TestConsistentReadOnFollower(t *testing.T) {
	c := server.NewTestCluster(t, server.TestOptions{})
	leader, followers := c.Followers()
	task := submit(t, c, leader, body("u1", "read me consistently"))
	for _, f := range followers {
		r := c.Do(f, "GET", "/v1/tasks/"+task.ID+"?consistent=true", nil, nil)
		if r.Status != 200 {
			t.Fatalf("consistent GET on %s = %d %s, want 200", f.ID, r.Status, r.Body)
		}
		if got := decodeTask(t, r); got.ID != task.ID || got.Prompt != task.Prompt {
			t.Errorf("consistent GET on %s = %+v, want %s", f.ID, got, task.ID)
		}
		lr := c.Do(f, "GET", "/v1/tasks?consistent=true&user_id=u1", nil, nil)
		var page api.TaskListResponse
		if err := json.Unmarshal(lr.Body, &page); lr.Status != 200 || err != nil || len(page.Tasks) != 1 || page.Tasks[0].ID != task.ID {
			t.Errorf("consistent list on %s = %d %s, want [%s]", f.ID, lr.Status, lr.Body, task.ID)
		}
		if now := c.Leader(); now != leader {
			t.Logf("leadership moved to %s; not checking forwarding headers", now.ID)
			continue
		}
		if got := r.Header.Get("X-Tdf-Forwarded-To"); got != leader.ID {
			t.Errorf("consistent GET on %s: X-Tdf-Forwarded-To = %q, want %s", f.ID, got, leader.ID)
		}
		checkNodeHeaders(t, "consistent GET on "+f.ID, r, f.ID, leader.ID)
		checkNodeHeaders(t, "consistent list on "+f.ID, lr, f.ID, leader.ID)

		local := c.Do(f, "GET", "/v1/tasks?consistent=false", nil, nil)
		if local.Status != 200 || local.Header.Get("X-Tdf-Forwarded-To") != "" {
			t.Errorf("consistent=false list on %s = %d, forwarded to %q; want a local 200", f.ID, local.Status, local.Header.Get("X-Tdf-Forwarded-To"))
		}
		checkNodeHeaders(t, "local list on "+f.ID, local, f.ID, leader.ID)
	}
	// A write through a follower also carries each node header once.
	r := c.Do(followers[0], "POST", "/v1/tasks", body("u1", "forwarded write"), nil)
	if r.Status != 202 {
		t.Fatalf("POST on follower = %d %s", r.Status, r.Body)
	}
	if c.Leader() == leader {
		checkNodeHeaders(t, "forwarded POST", r, followers[0].ID, leader.ID)
	}
}

// With no leader, a write is held for the hold timeout and then refused
// with 503, Retry-After and no_leader; local reads still work.
func TestNoLeader(t *testing.T) {
	const hold = 300 * time.Millisecond
	// One node of a two-voter configuration whose other voter never
	// starts: it can never win an election.
	c := server.NewTestCluster(t, server.TestOptions{Nodes: 1, Absent: 1, NoWait: true,
		API: func(a *api.Config) { a.HoldTimeout = hold }})
	n := c.Nodes[0]

	held := []struct{ method, path, body string }{
		{"POST", "/v1/tasks", validBody},
		{"POST", "/v1/tasks/t-1/cancel", ""},
		{"GET", "/v1/tasks/t-1?consistent=true", ""},
		{"GET", "/v1/tasks?consistent=true", ""},
	}
	for _, h := range held {
		var b []byte
		if h.body != "" {
			b = []byte(h.body)
		}
		start := time.Now()
		r := c.Do(n, h.method, h.path, b, nil)
		took := time.Since(start)
		what := h.method + " " + h.path
		checkError(t, what, r, 503, api.CodeNoLeader, "leader")
		checkNodeHeaders(t, what, r, n.ID, "")
		if r.Header.Get("Retry-After") == "" {
			t.Errorf("%s: no Retry-After", what)
		}
		if took < hold || took > hold+10*time.Second {
			t.Errorf("%s answered after %s, want about the hold timeout %s", what, took, hold)
		}
	}
	r := c.Do(n, "GET", "/readyz", nil, nil)
	checkError(t, "readyz", r, 503, api.CodeNoLeader, "leader")
	// Without a leader a plain read cannot be called fresh: it waits for
	// one like a write. ?stale=true answers from the node's own state and
	// says it knows no leader.
	if r := c.Do(n, "GET", "/v1/tasks", nil, nil); r.Status != 503 {
		t.Errorf("plain list without a leader = %d %s, want 503", r.Status, r.Body)
	}
	r = c.Do(n, "GET", "/v1/tasks?stale=true", nil, nil)
	if r.Status != 200 || !bytes.Contains(r.Body, []byte(`"tasks":[]`)) {
		t.Errorf("stale list without a leader = %d %s, want 200 with no tasks", r.Status, r.Body)
	}
	if got := r.Header.Get("X-Tdf-Known-Leader"); got != "false" {
		t.Errorf("stale list without a leader: X-Tdf-Known-Leader = %q, want false", got)
	}
	if r := c.Do(n, "GET", "/healthz", nil, nil); r.Status != 200 {
		t.Errorf("healthz without a leader = %d %s", r.Status, r.Body)
	}
	if got := n.FSM.TaskCount(); got != 0 {
		t.Errorf("TaskCount() = %d without a leader, want 0", got)
	}
}
