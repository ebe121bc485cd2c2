package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/fsm"
)

// task watch follows the small events (what changed, not the task), and
// after a reset reads the task itself: here the end of the task arrives
// only through that read.
func TestWatchFollowsChangesAndResets(t *testing.T) {
	var gets atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/tasks/t-1", func(w http.ResponseWriter, r *http.Request) {
		tk := &api.Task{ID: "t-1", Status: fsm.StatusInProgress, ExecutionStep: fsm.StepRunning, Attempts: 1}
		if gets.Add(1) > 1 {
			tk.Status, tk.ExecutionStep, tk.Cleanup = fsm.StatusCompleted, fsm.StepNone, api.CleanupDone
		}
		_ = json.NewEncoder(w).Encode(api.TaskResponse{Task: tk})
	})
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("task_id") != "t-1" {
			http.Error(w, "want task_id", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		ch := &api.TaskChange{ID: "t-1", Status: fsm.StatusCompleted, ExecutionStep: fsm.StepNone, Cleanup: api.CleanupPending, Attempts: 1}
		b, _ := json.Marshal(api.EventMessage{ID: "9-0", Index: 9, Type: "task", Task: ch})
		fmt.Fprintf(w, "retry: 1000\n\nid: 9-0\nevent: task\ndata: %s\n\n", b)
		fmt.Fprintf(w, "id: 99-0\nevent: reset\ndata: {\"reason\":\"test\"}\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c, err := newClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out strings.Builder
	if err := watchTask(ctx, c, "t-1", &out); err != nil {
		t.Fatalf("watch: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "in_progress") || !strings.Contains(lines[1], "(cleaning up)") || !strings.Contains(lines[2], "completed") || strings.Contains(lines[2], "cleaning") {
		t.Fatalf("watch printed:\n%s", out.String())
	}
}
