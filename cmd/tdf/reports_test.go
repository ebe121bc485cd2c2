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

// fakeReportsAPI answers the reads the CLI makes for a task with a push
// result and messages, and for a node with an event log.
func fakeReportsAPI(t *testing.T) string {
	t.Helper()
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	task := &fsm.Task{ID: "t-1", Status: fsm.StatusInProgress, Step: fsm.StepAwaitingFollowup, CreatedAt: at,
		Output: fsm.Output{Branch: "sam/fix", Push: &fsm.PushResult{CommitSHA: "abc123", BranchName: "main", HasUncommittedChanges: true,
			Error: "auto-commit push blocked: HEAD is still on the project default branch"}, AgentError: "prompt failed"}}
	msgs := api.TaskMessagesResponse{TaskMessages: fsm.TaskMessages{TaskID: "t-1", Total: 13, Dropped: 1}}
	for i := range 12 {
		msgs.Messages = append(msgs.Messages, fsm.Message{MessageID: string(rune('a' + i)), Role: "assistant",
			Content: "line one\nline two " + strings.Repeat("x", 200), Timestamp: "2026-11-25T12:00:00Z", Sequence: int64(i)})
	}
	msgs.Messages[11] = fsm.Message{MessageID: "z", Role: "tool", Content: "ran tests", ToolMetadata: `{"tool":"bash"}`, Origin: "system", Timestamp: "2026-11-25T12:01:00Z"}
	node := api.NodeResponse{NodeView: api.NodeView{Node: &fsm.Node{ID: "n-1", Status: fsm.NodeActive}, Health: fsm.HealthHealthy},
		Events: []fsm.NodeEvent{
			{NodeError: fsm.NodeError{Level: "info", Message: "Agent ready", Source: "agent"}, At: at},
			{NodeError: fsm.NodeError{Level: "error", Message: "docker died", Source: "docker", WorkspaceID: "ws-1"}, At: at},
		}}
	answers := map[string]any{"/v1/tasks/t-1": api.TaskResponse{Task: api.TaskView(task)}, "/v1/tasks/t-1/messages": msgs, "/v1/nodes/n-1": node}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, ok := answers[r.URL.Path]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(api.ErrorBody{Error: api.ErrorDetail{Code: api.CodeNotFound, Message: r.URL.Path + " not found"}})
			return
		}
		json.NewEncoder(w).Encode(v)
	}))
	t.Cleanup(srv.Close)
	return "--addr=" + srv.URL
}

func TestTaskGetShowsPushAndMessages(t *testing.T) {
	addr := fakeReportsAPI(t)
	ctx := context.Background()
	out, _, err := capture(t, func() error { return runTask(ctx, []string{"get", addr, "t-1"}) })
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"push        not pushed  commit abc123  branch main  (had uncommitted changes)",
		"push error  auto-commit push blocked",
		"agent error  prompt failed",
		"MESSAGES (10 kept, 3 earlier dropped)", // the newest ten, one line each
		"line one line two xxx",
		"tool      (system) ran tests",
	} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("tdf task get prints no %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "line one") != 9 || strings.Contains(out, strings.Repeat("x", 150)) {
		t.Errorf("tdf task get does not cut messages to one short line each:\n%s", out)
	}

	out, _, err = capture(t, func() error { return runTask(ctx, []string{"messages", addr, "t-1"}) })
	if err != nil || strings.Count(out, "line one") != 11 || !strings.Contains(out, `tool: {"tool":"bash"}`) || !strings.Contains(out, "1 earlier dropped") {
		t.Fatalf("tdf task messages: err %v\n%s", err, out)
	}
	out, _, err = capture(t, func() error { return runTask(ctx, []string{"messages", "--json", addr, "t-1"}) })
	var tm api.TaskMessagesResponse
	if err != nil || json.Unmarshal([]byte(out), &tm) != nil || len(tm.Messages) != 12 {
		t.Fatalf("tdf task messages --json: err %v\n%s", err, out)
	}
	if _, _, err := capture(t, func() error { return runTask(ctx, []string{"messages", addr, "t-nope"}) }); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("unknown task: %v", err)
	}
}

func TestNodesShowsEventLog(t *testing.T) {
	addr := fakeReportsAPI(t)
	out, _, err := capture(t, func() error { return runNodes(context.Background(), []string{addr, "n-1"}) })
	if err != nil {
		t.Fatal(err)
	}
	flat := strings.Join(strings.Fields(out), " ")
	for _, want := range []string{"health healthy", "info agent Agent ready", "error docker ws-1 docker died"} {
		if !strings.Contains(flat, want) {
			t.Errorf("tdf nodes n-1 prints no %q:\n%s", want, out)
		}
	}
	if _, _, err := capture(t, func() error { return runNodes(context.Background(), []string{addr, "n-1", "n-2"}) }); err == nil {
		t.Fatal("two node ids accepted")
	}
}
