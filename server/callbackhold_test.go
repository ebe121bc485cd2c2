package server_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/runner"
	"github.com/tdf-project/tdf/server"
	"github.com/tdf-project/tdf/tokens"
)

// TestCallbackSurvivesLeaderPartition: the agent sends its node-ready and
// task-status callbacks once, without retry, so a callback must outlast a
// leader change. Sent to a follower just as the leader is cut off, it is
// forwarded to the old leader, which can no longer commit. The partition
// outlasts the ordinary 5 s hold; the callback must still be committed (by
// the new leader) and answered 2xx, not 503. Checked on the workspace-ready
// callback and on the agent's own task-status route, which it sends once.
func TestCallbackSurvivesLeaderPartition(t *testing.T) {
	for _, cb := range []struct {
		name string
		path func(task *fsm.Task) string
		body string
		took func(task *fsm.Task, ws *fsm.Workspace) bool
	}{
		{"workspace ready", func(task *fsm.Task) string { return "/api/workspaces/" + task.WorkspaceID + "/ready" },
			`{"status":"running"}`,
			func(_ *fsm.Task, ws *fsm.Workspace) bool { return ws.Status == fsm.WorkspaceRunning }},
		{"task status", func(task *fsm.Task) string {
			return "/api/projects/" + task.ProjectID + "/tasks/" + task.ID + "/status/callback"
		}, `{"executionStep":"awaiting_followup","gitPushResult":{"pushed":true,"branchName":"sam/hold"}}`,
			func(task *fsm.Task, _ *fsm.Workspace) bool { return task.Output.Branch == "sam/hold" }},
	} {
		t.Run(cb.name, func(t *testing.T) {
			callbackThroughPartition(t, cb.path, cb.body, cb.took)
		})
	}
}

func callbackThroughPartition(t *testing.T, path func(*fsm.Task) string, body string, took func(*fsm.Task, *fsm.Workspace) bool) {
	done := runner.HandlerFunc(func(context.Context, *fsm.Task, string) runner.Result { return runner.Done(fsm.StepData{}) })
	// The session step never finishes, so the task stays in its run.
	wait := runner.HandlerFunc(func(context.Context, *fsm.Task, string) runner.Result { return runner.PollIn(time.Hour) })
	c := server.NewTestCluster(t, server.TestOptions{
		Handlers: map[fsm.Step]runner.Handler{
			fsm.StepNodeProvisioning: done, fsm.StepNodeAgentReady: done, fsm.StepWorkspaceCreate: done, fsm.StepAgentSession: wait,
		},
		// One control-plane URL (the tokens' issuer) on every node, as in
		// production: whichever node leads verifies the callback.
		Server: func(c *server.Config) { c.ControlPlaneURL = "http://control-plane.test" },
	})
	leader, followers := c.Followers()
	r := c.Do(leader, http.MethodPost, "/v1/tasks", submitBody("u1", "hold"), nil)
	if r.Status != http.StatusAccepted {
		t.Fatalf("submit = %d %s", r.Status, r.Body)
	}
	id := decodeTask(t, r).ID
	var task *fsm.Task
	waitFor(t, "the task to wait for its workspace, keys replicated", func() bool {
		task, _ = followers[0].FSM.Task(id)
		return task != nil && task.Step == fsm.StepWorkspaceReady && len(followers[0].FSM.SigningKeys()) > 0
	})
	tok, err := followers[0].Tokens.CallbackToken(tokens.ScopeWorkspace, task.WorkspaceID)
	if err != nil {
		t.Fatal(err)
	}

	c.Partition(leader)
	answer := make(chan server.TestResponse, 1)
	go func() {
		resp, err := server.DoRequest(&http.Client{Timeout: time.Minute}, followers[0].URL, http.MethodPost,
			path(task), []byte(body),
			map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + tok})
		if err != nil {
			t.Errorf("callback: %v", err)
		}
		answer <- resp
	}()
	newLeader := c.WaitLeaderNot(leader)
	// The partition lasts past the ordinary hold timeout (5 s), as a
	// leader cut off for a few seconds does; only then does it heal.
	time.Sleep(7 * time.Second)
	c.Heal()

	select {
	case resp := <-answer:
		if resp.Status/100 != 2 {
			t.Fatalf("callback answered %d %s, want 2xx", resp.Status, resp.Body)
		}
	case <-time.After(server.TestWait):
		t.Fatal("the callback got no answer")
	}
	ws, _ := newLeader.FSM.Workspace(task.WorkspaceID)
	cur, _ := newLeader.FSM.Task(task.ID)
	if ws == nil || cur == nil || !took(cur, ws) {
		t.Fatalf("after the callback: task %+v, workspace %+v: the callback did not take effect", cur, ws)
	}
}
