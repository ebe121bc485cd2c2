package server_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/runner"
	"github.com/tdf-project/tdf/server"
	"github.com/tdf-project/tdf/tokens"
)

// sentPrompt is a follow-up prompt as the agent would get it.
type sentPrompt struct{ task, session, prompt, delivery string }

// TestFollowUpPrompt: POST /v1/tasks/{id}/prompt is refused (409) unless
// the task awaits a follow-up; then it reaches the task's agent session
// with the prompt, answers 202 and restarts the idle timer. A retry with
// the same Idempotency-Key carries the same delivery id (a replay at the
// agent), through a follower as through the leader.
func TestFollowUpPrompt(t *testing.T) {
	var mu sync.Mutex
	var sent []sentPrompt
	record := func(_ context.Context, tk *fsm.Task, prompt, delivery string) error {
		mu.Lock()
		defer mu.Unlock()
		sent = append(sent, sentPrompt{tk.ID, tk.AgentSessionID, prompt, delivery})
		return nil
	}
	done := runner.HandlerFunc(func(context.Context, *fsm.Task, string) runner.Result { return runner.Done(fsm.StepData{}) })
	provisioning := runner.HandlerFunc(func(context.Context, *fsm.Task, string) runner.Result {
		return runner.Done(fsm.StepData{ServerID: 3, IPv4: "127.0.0.1"})
	})
	session := runner.HandlerFunc(func(context.Context, *fsm.Task, string) runner.Result {
		return runner.Done(fsm.StepData{SessionID: "s-1"})
	})
	c := server.NewTestCluster(t, server.TestOptions{
		Server: func(cfg *server.Config) { sharedControlPlane(cfg); cfg.API.FollowUp = record },
		Handlers: map[fsm.Step]runner.Handler{
			fsm.StepNodeProvisioning: provisioning, fsm.StepNodeAgentReady: done, fsm.StepWorkspaceCreate: done, fsm.StepAgentSession: session,
		}})
	leader, followers := c.Followers()
	f := followers[0]
	run := submitTask(t, c, f, "u1", "follow me up")
	task := waitTask(t, leader, run.ID, "waiting for its workspace", func(tk *fsm.Task) bool { return tk.Step == fsm.StepWorkspaceReady })
	prompt := []byte(`{"prompt":"now add a test"}`)
	r := c.Do(f, http.MethodPost, "/v1/tasks/"+run.ID+"/prompt", prompt, nil)
	if e := decodeError(t, r); r.Status != http.StatusConflict || e.Code != api.CodeInvalidTrans || !strings.Contains(e.Message, "awaiting follow-up") {
		t.Fatalf("follow-up before the run = %d %s, want 409 invalid_transition", r.Status, r.Body)
	}

	waitKeys(t, c)
	if r := callback(t, c, f, "/v1/workspaces/"+task.WorkspaceID+"/ready", tokens.ScopeWorkspace, task.WorkspaceID, `{"status":"running"}`); r.Status/100 != 2 {
		t.Fatalf("workspace ready callback = %d %s", r.Status, r.Body)
	}
	waitTask(t, leader, run.ID, "running", func(tk *fsm.Task) bool { return tk.Step == fsm.StepRunning })
	if r := callback(t, c, f, "/v1/tasks/"+run.ID+"/status", tokens.ScopeWorkspace, task.WorkspaceID, `{"executionStep":"awaiting_followup"}`); r.Status/100 != 2 {
		t.Fatalf("task status callback = %d %s", r.Status, r.Body)
	}
	task = waitTask(t, leader, run.ID, "awaiting follow-up", func(tk *fsm.Task) bool { return tk.Step == fsm.StepAwaitingFollowup && tk.Alarm != nil })
	before := task.Alarm.Due

	key := map[string]string{"Idempotency-Key": "follow-up-1"}
	for _, via := range []*server.TestNode{f, leader} {
		r := c.Do(via, http.MethodPost, "/v1/tasks/"+run.ID+"/prompt", prompt, key)
		if r.Status != http.StatusAccepted {
			t.Fatalf("follow-up via %s = %d %s, want 202", via.ID, r.Status, r.Body)
		}
		if got := decodeTask(t, r); got.ExecutionStep != fsm.StepAwaitingFollowup || got.StepDeadline == nil || !got.StepDeadline.After(before) {
			t.Errorf("after the follow-up via %s: step %s deadline %v, want the idle deadline after %s", via.ID, got.ExecutionStep, got.StepDeadline, before)
		}
	}
	mu.Lock()
	got := append([]sentPrompt(nil), sent...)
	mu.Unlock()
	if len(got) != 2 || got[0].task != run.ID || got[0].session != "s-1" || got[0].prompt != "now add a test" || got[0].delivery == "" || got[1].delivery != got[0].delivery {
		t.Fatalf("the agent got %+v, want the prompt twice under one delivery id for session s-1", got)
	}
	r = c.Do(f, http.MethodPost, "/v1/tasks/"+run.ID+"/prompt", []byte(`{"prompt":""}`), nil)
	if e := decodeError(t, r); r.Status != http.StatusBadRequest || e.Code != api.CodeInvalidField {
		t.Errorf("an empty follow-up = %d %s, want 400 invalid_field", r.Status, r.Body)
	}
}
