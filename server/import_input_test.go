package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/importer"
	"github.com/tdf-project/tdf/runner"
	"github.com/tdf-project/tdf/server"
)

// parkedHandlers park every effect step and the adopt step, so imported
// tasks stay where the import put them.
func parkedHandlers() map[fsm.Step]runner.Handler {
	hs := server.TestHandlers()
	hs[fsm.StepAdopt] = runner.HandlerFunc(func(context.Context, *fsm.Task, string) runner.Result { return runner.PollIn(time.Hour) })
	return hs
}

const goodLine = `{"id":"old-1","status":"queued","execution_step":"node_agent_ready","project_id":"p","user_id":"u","prompt":"x","repository":"r","node_id":"n-old","hetzner_server_id":7,"created_at":"2026-11-25T10:00:00Z"}`

// TestImportBadInput: an export with a bad line is refused whole (422,
// every bad line named with its field), a dry run of it reports every
// line, and request-level mistakes are 400s. Nothing is ever written.
func TestImportBadInput(t *testing.T) {
	c := server.NewTestCluster(t, server.TestOptions{Nodes: 1, Handlers: parkedHandlers()})
	n := c.Nodes[0]
	r := c.Do(n, http.MethodPost, "/v1/tasks", submitBody("u", "mine"), nil)
	if r.Status != http.StatusAccepted {
		t.Fatalf("submit = %d %s", r.Status, r.Body)
	}
	mine := decodeTask(t, r).ID
	second := strings.Replace(goodLine, `"old-1"`, `"old-2"`, 1)
	mixed := goodLine + "\n" + strings.Replace(second, `,"hetzner_server_id":7`, "", 1) + "\n" +
		strings.Replace(goodLine, `"old-1"`, `"`+mine+`"`, 1) + "\n{\"id\":\n"
	wantErrors := []importer.Result{
		{Line: 2, ID: "old-2", Action: importer.ActionError, Field: "hetzner_server_id"},
		{Line: 3, ID: mine, Action: importer.ActionError, Field: "id"},
		{Line: 4, Action: importer.ActionError},
	}

	r = c.Do(n, http.MethodPost, "/v1/import", []byte(mixed), nil)
	if r.Status != http.StatusUnprocessableEntity {
		t.Fatalf("import = %d %s", r.Status, r.Body)
	}
	var body api.ImportErrorBody
	if err := json.Unmarshal(r.Body, &body); err != nil || body.Error.Code != api.CodeInvalidImport ||
		!strings.Contains(body.Error.Message, "3 bad lines; nothing was imported") {
		t.Fatalf("422 body = %s (%v)", r.Body, err)
	}
	checkErrorLines(t, body.Report.Results, wantErrors)
	if got := n.FSM.TaskCount(); got != 1 {
		t.Fatalf("a refused import wrote: %d tasks", got)
	}

	r = c.Do(n, http.MethodPost, "/v1/import?dry_run=true", []byte(mixed), nil)
	var rep importer.Report
	if r.Status != http.StatusOK || json.Unmarshal(r.Body, &rep) != nil {
		t.Fatalf("dry run = %d %s", r.Status, r.Body)
	}
	if len(rep.Results) != 4 || rep.Results[0].String() != "line 1 old-1: adopt at step node_agent_ready" {
		t.Fatalf("dry run report = %+v", rep.Results)
	}
	checkErrorLines(t, rep.Results[1:], wantErrors)
	if n.FSM.TaskCount() != 1 {
		t.Fatal("a dry run wrote")
	}

	for _, tc := range []struct {
		name, query, body string
		status            int
		msg               string
	}{
		{"empty", "", "\n \n", http.StatusBadRequest, "the export is empty"},
		{"bad dry_run", "?dry_run=maybe", goodLine, http.StatusBadRequest, "dry_run"},
		{"bad first_line", "?first_line=0", goodLine, http.StatusBadRequest, "first_line"},
	} {
		r := c.Do(n, http.MethodPost, "/v1/import"+tc.query, []byte(tc.body), nil)
		var e api.ErrorBody
		if r.Status != tc.status || json.Unmarshal(r.Body, &e) != nil || !strings.Contains(e.Error.Message, tc.msg) {
			t.Errorf("%s: %d %s", tc.name, r.Status, r.Body)
		}
	}
	if n.FSM.TaskCount() != 1 {
		t.Fatal("a bad request wrote")
	}

	// The good lines alone import; numbering from first_line.
	r = c.Do(n, http.MethodPost, "/v1/import?first_line=10", []byte(goodLine+"\n"+second), nil)
	if r.Status != http.StatusOK || json.Unmarshal(r.Body, &rep) != nil || rep.Counts[importer.ActionAdopt] != 2 ||
		rep.Results[1].Line != 11 {
		t.Fatalf("import = %d %s", r.Status, r.Body)
	}
	task, _ := n.FSM.Task("old-1")
	if !task.Adopting || task.Imported == nil || task.History[0].Actor != fsm.ImportActor {
		t.Fatalf("imported task = %+v", task)
	}
}

func checkErrorLines(t *testing.T, got, want []importer.Result) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("error lines = %+v, want %d", got, len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Line != w.Line || g.ID != w.ID || g.Action != w.Action || g.Field != w.Field || g.Detail == "" {
			t.Errorf("line %d: %+v, want %+v", w.Line, g, w)
		}
	}
}
