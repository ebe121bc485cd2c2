package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/fsm"
)

// tdf node ACTION ID posts the action and prints the node as it is after
// it; an unknown action or a missing id is refused before any request.
func TestNodeActionCommand(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.Path)
		json.NewEncoder(w).Encode(api.NodeView{Node: &fsm.Node{ID: "n-1", Status: fsm.NodeActive, Cordoned: true, CordonReason: fsm.CordonDrain}})
	}))
	t.Cleanup(srv.Close)
	ctx := context.Background()
	out, _, err := capture(t, func() error { return runNode(ctx, []string{"drain", "--addr=" + srv.URL, "n-1"}) })
	if err != nil || !strings.Contains(out, "node n-1: active, cordoned (drained by an operator)") {
		t.Fatalf("drain: out %q err %v", out, err)
	}
	if len(got) != 1 || got[0] != "POST /v1/nodes/n-1/drain" {
		t.Fatalf("requests %v", got)
	}
	if _, _, err := capture(t, func() error { return runNode(ctx, []string{"reboot", "n-1"}) }); err != errUsage {
		t.Fatalf("unknown action: %v", err)
	}
	if _, _, err := capture(t, func() error { return runNode(ctx, []string{"cordon", "--addr=" + srv.URL}) }); err == nil || !strings.Contains(err.Error(), "exactly one node id") {
		t.Fatalf("no id: %v", err)
	}
	if len(got) != 1 {
		t.Fatalf("refused commands sent requests: %v", got)
	}
}

// tdf task get on an archived id says so (on stderr, --json unchanged).
func TestTaskGetArchived(t *testing.T) {
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/tasks/t-old" {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(api.ErrorBody{Error: api.ErrorDetail{Code: api.CodeNotFound, Message: "not found"}})
			return
		}
		json.NewEncoder(w).Encode(api.TaskResponse{Task: api.TaskView(&fsm.Task{ID: "t-old", Status: fsm.StatusCompleted, CreatedAt: at, CompletedAt: &at}), Archived: true})
	}))
	t.Cleanup(srv.Close)
	out, errOut, err := capture(t, func() error { return runTask(context.Background(), []string{"get", "--addr=" + srv.URL, "t-old"}) })
	if err != nil || !strings.Contains(out, "t-old") || !strings.Contains(errOut, "archived") {
		t.Fatalf("out %q stderr %q err %v", out, errOut, err)
	}
}
