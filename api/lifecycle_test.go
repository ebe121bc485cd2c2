package api_test

import (
	"encoding/json"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/server"
)

// A cancelled task re-run is queued again at the first step (through
// ready, as the lifecycle says); a task that is still running, or a
// completed one, cannot be re-run (409), an unknown one is 404.
func TestRerunCancelledTask(t *testing.T) {
	c, n := singleNode(t, server.TestOptions{})
	task := submit(t, c, n, body("u1", "re-run me"))
	checkError(t, "re-run a queued task", c.Do(n, "POST", "/v1/tasks/"+task.ID+"/rerun", nil, nil), 409, api.CodeInvalidTrans, "ready")
	if r := c.Do(n, "POST", "/v1/tasks/"+task.ID+"/cancel", nil, nil); r.Status != 200 {
		t.Fatalf("cancel = %d %s", r.Status, r.Body)
	}
	r := c.Do(n, "POST", "/v1/tasks/"+task.ID+"/rerun", []byte(`{"reason":"try again"}`), nil)
	if r.Status != 200 {
		t.Fatalf("re-run = %d %s", r.Status, r.Body)
	}
	got := decodeTask(t, r)
	if got.Status != fsm.StatusQueued || got.ErrorMessage != "" {
		t.Fatalf("after re-run: status %s error %q, want queued and no error", got.Status, got.ErrorMessage)
	}
	var path []fsm.Status
	for _, h := range got.History {
		path = append(path, h.To)
	}
	if !slices.Equal(path[len(path)-3:], []fsm.Status{fsm.StatusCancelled, fsm.StatusReady, fsm.StatusQueued}) {
		t.Errorf("history = %v, want … cancelled, ready, queued", path)
	}
	checkError(t, "re-run an unknown task", c.Do(n, "POST", "/v1/tasks/t-none/rerun", nil, nil), 404, api.CodeNotFound, "t-none")
}

// The list is newest first unless order=asc, pages either way without a
// gap, and filters by project and creation time.
func TestListOrderProjectAndTime(t *testing.T) {
	c, n := singleNode(t, server.TestOptions{})
	var ids []string
	for i, p := range []string{"p1", "p2", "p1", "p2", "p1"} {
		b, _ := json.Marshal(api.SubmitRequest{ProjectID: p, UserID: "u1", Prompt: "task " + string(rune('a'+i)), Repository: "github.com/acme/app"})
		ids = append(ids, submit(t, c, n, b).ID)
	}
	list := func(query string) (out []string) {
		t.Helper()
		cursor := ""
		for range 10 {
			r := c.Do(n, "GET", "/v1/tasks?limit=2&"+query+"&cursor="+cursor, nil, nil)
			if r.Status != 200 {
				t.Fatalf("GET ?%s = %d %s", query, r.Status, r.Body)
			}
			var page api.TaskListResponse
			_ = json.Unmarshal(r.Body, &page)
			for _, tk := range page.Tasks {
				out = append(out, tk.ID)
			}
			if cursor = page.NextCursor; cursor == "" {
				return out
			}
		}
		t.Fatalf("GET ?%s: more than 10 pages", query)
		return nil
	}
	asc := slices.Sorted(slices.Values(ids))
	desc := slices.Clone(asc)
	slices.Reverse(desc)
	// Oldest first by default, as v1 always listed (clients page with
	// cursors); newest first on request.
	if got := list(""); !slices.Equal(got, asc) {
		t.Errorf("default order = %v, want oldest first %v", got, asc)
	}
	if got := list("order=desc"); !slices.Equal(got, desc) {
		t.Errorf("order=desc = %v, want %v", got, desc)
	}
	p1 := []string{desc[0], desc[2], desc[4]}
	if got := list("order=desc&project_id=p1"); !slices.Equal(got, p1) {
		t.Errorf("project_id=p1 = %v, want %v", got, p1)
	}
	first, _ := n.FSM.Task(asc[0])
	last, _ := n.FSM.Task(asc[4])
	after := url.QueryEscape(first.CreatedAt.Add(time.Nanosecond).Format(time.RFC3339Nano))
	before := url.QueryEscape(last.CreatedAt.Format(time.RFC3339Nano))
	if got := list("created_after=" + after + "&created_before=" + before); len(got) > 3 || slices.Contains(got, asc[4]) {
		t.Errorf("created range (%s, %s) = %v: want neither the first nor the last", after, before, got)
	}
	checkError(t, "bad order", c.Do(n, "GET", "/v1/tasks?order=sideways", nil, nil), 400, api.CodeInvalidField, "order")
	checkError(t, "bad time", c.Do(n, "GET", "/v1/tasks?created_after=yesterday", nil, nil), 400, api.CodeInvalidField, "created_after")
}
