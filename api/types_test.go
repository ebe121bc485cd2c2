package api_test

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/fsm"
)

var updateGolden = flag.Bool("update", false, "rewrite the API shape golden files")

// fullTask is an FSM task with every field set, the bookkeeping included.
func fullTask() *fsm.Task {
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	later := at.Add(time.Minute)
	return &fsm.Task{ID: "t-1", TaskSpec: fsm.TaskSpec{ProjectID: "p1", UserID: "u1", Prompt: "fix it", Repository: "github.com/acme/app",
		Branch: "main", VMSize: "small", VMLocation: "fsn1", PreferredNodeID: "n-0"},
		Owner: "user:u1", Status: fsm.StatusInProgress, Step: fsm.StepRunning, NodeID: "n-1", WorkspaceID: "ws-1", AgentSessionID: "s-1",
		ErrorMessage: "", CreatedAt: at, UpdatedAt: later, StartedAt: &later,
		Output: fsm.Output{Branch: "sam/fix", PRURL: "https://example.test/pr/1", Summary: "done",
			Push: &fsm.PushResult{Pushed: true, CommitSHA: "abc", BranchName: "sam/fix", PRNumber: 1}, AgentError: ""},
		Attempts: 4,
		History: []fsm.StatusEvent{{From: fsm.StatusQueued, To: fsm.StatusDelegated, Actor: fsm.Actor{Type: fsm.ActorSystem},
			Reason: "workspace creation accepted", At: at}},
		Steps:  []fsm.StepAttempt{{Step: fsm.StepAgentSession, Attempt: 1, Leader: "n2", Started: at, Finished: &later, Outcome: "success"}},
		Policy: fsm.DefaultPolicy(), Attempt: 1, Retries: 1, InFlight: true, ClaimTerm: 7,
		Alarm:    &fsm.Alarm{Due: later.Add(4 * time.Hour), Kind: fsm.AlarmDeadline},
		Imported: &fsm.ImportInfo{At: at, Status: fsm.StatusDelegated, Step: fsm.StepWorkspaceReady, ServerID: 42},
		Adopting: true, FollowupEarly: true}
}

// TestTaskV1Shape pins the JSON of a task in API v1: a change to it is a
// change of the API (testdata/task_v1.json; -update rewrites it after a
// deliberate change).
func TestTaskV1Shape(t *testing.T) {
	got, err := json.MarshalIndent(api.TaskResponse{Task: api.TaskView(fullTask())}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "task_v1.json")
	if *updateGolden {
		if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if strings.TrimSpace(string(want)) != string(got) {
		t.Errorf("the v1 task JSON changed:\n got %s\nwant %s", got, want)
	}
}

// TestTaskJSONHasNoFSMBookkeeping: none of the FSM's own fields reaches the
// API, in a task answer or in an event.
func TestTaskJSONHasNoFSMBookkeeping(t *testing.T) {
	task, err := json.Marshal(api.TaskView(fullTask()))
	if err != nil {
		t.Fatal(err)
	}
	event, err := json.Marshal(api.Event{ID: "9-0", Index: 9, Type: "task", Task: api.TaskChangeOf(fullTask())})
	if err != nil {
		t.Fatal(err)
	}
	internal := []string{"in_flight", "claim_term", "alarm", "cleanup_pending", "adopting", "followup_early",
		"policy", "attempt", "retries"}
	for what, b := range map[string][]byte{"task": task, "event": event} {
		var top map[string]json.RawMessage
		if err := json.Unmarshal(b, &top); err != nil {
			t.Fatal(err)
		}
		if what == "event" {
			if err := json.Unmarshal(top["task"], &top); err != nil {
				t.Fatalf("event without its task: %s", b)
			}
		}
		for _, k := range internal {
			if _, ok := top[k]; ok {
				t.Errorf("%s JSON has the FSM's field %q: %s", what, k, b)
			}
		}
	}
}

// TestTaskViewCleanupAndDeadline: the public cleanup state and step
// deadline follow the FSM's bookkeeping.
func TestTaskViewCleanupAndDeadline(t *testing.T) {
	tk := fullTask()
	v := api.TaskView(tk)
	if v.Cleanup != "" || v.StepDeadline == nil || !v.StepDeadline.Equal(tk.Alarm.Due) {
		t.Errorf("running task: cleanup %q deadline %v, want none and %v", v.Cleanup, v.StepDeadline, tk.Alarm.Due)
	}
	tk.Status, tk.Step, tk.Cleanup = fsm.StatusCompleted, fsm.StepNone, true
	if v := api.TaskView(tk); v.Cleanup != api.CleanupPending || v.StepDeadline != nil {
		t.Errorf("ended task: cleanup %q deadline %v, want pending and none", v.Cleanup, v.StepDeadline)
	}
	tk.Cleanup = false
	if v := api.TaskView(tk); v.Cleanup != api.CleanupDone {
		t.Errorf("cleaned task: cleanup %q, want done", v.Cleanup)
	}
	if v := api.TaskView(&fsm.Task{ID: "t"}); v.History == nil || v.Steps == nil {
		t.Errorf("lists must be [] rather than null: %+v", v)
	}
}
