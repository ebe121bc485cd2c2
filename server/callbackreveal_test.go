package server_test

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/runner"
	"github.com/tdf-project/tdf/server"
	"github.com/tdf-project/tdf/tokens"
)

// TestCallbacksRefuseBeforeTheyReveal: a callback with a token that is not
// valid for it gets exactly the same answer about a task or workspace
// that exists as about one that does not, so nobody learns which exist.
func TestCallbacksRefuseBeforeTheyReveal(t *testing.T) {
	done := runner.HandlerFunc(func(context.Context, *fsm.Task, string) runner.Result { return runner.Done(fsm.StepData{}) })
	c := server.NewTestCluster(t, server.TestOptions{Nodes: 1, Handlers: map[fsm.Step]runner.Handler{
		fsm.StepNodeProvisioning: done, fsm.StepNodeAgentReady: done, fsm.StepWorkspaceCreate: done,
		fsm.StepAgentSession: runner.HandlerFunc(func(context.Context, *fsm.Task, string) runner.Result { return runner.PollIn(time.Hour) }),
	}})
	n := c.Nodes[0]
	r := c.Do(n, http.MethodPost, "/v1/tasks", submitBody("u1", "reveal"), nil)
	if r.Status != http.StatusAccepted {
		t.Fatalf("submit = %d %s", r.Status, r.Body)
	}
	id := decodeTask(t, r).ID
	var task *fsm.Task
	waitFor(t, "the task to have its workspace", func() bool {
		task, _ = n.FSM.Task(id)
		return task.WorkspaceID != "" && len(n.FSM.SigningKeys()) > 0
	})
	is := n.Tokens
	otherKey, _ := tokens.GenerateKey()
	forger := &tokens.Issuer{URL: is.ControlPlaneURL(), Keys: func() []tokens.Key { return []tokens.Key{otherKey} }, Now: time.Now}
	past := &tokens.Issuer{URL: is.ControlPlaneURL(), Keys: is.Keys, Now: func() time.Time { return time.Now().Add(-25 * time.Hour) }}
	mint := func(i *tokens.Issuer, s tokens.Scope, id string) string {
		tok, err := i.CallbackToken(s, id)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	mgmt, _ := is.ManagementToken(task.NodeID, task.WorkspaceID, "u1")
	callers := map[string]string{
		"no token":        "",
		"garbage":         "not-a-jwt",
		"forged":          mint(forger, tokens.ScopeWorkspace, task.WorkspaceID),
		"expired":         mint(past, tokens.ScopeWorkspace, task.WorkspaceID),
		"management":      mgmt,
		"node token":      mint(is, tokens.ScopeNode, task.NodeID),
		"other workspace": mint(is, tokens.ScopeWorkspace, "ws-other"),
	}
	const missing = "t-does-not-exist"
	pairs := [][2]string{
		{"/v1/tasks/" + id + "/status", "/v1/tasks/" + missing + "/status"},
		{"/api/projects/p1/tasks/" + id + "/status/callback", "/api/projects/p1/tasks/" + missing + "/status/callback"},
		{"/api/workspaces/" + task.WorkspaceID + "/git-token", "/api/workspaces/ws-does-not-exist/git-token"},
		{"/api/workspaces/" + task.WorkspaceID + "/agent-key", "/api/workspaces/ws-does-not-exist/agent-key"},
	}
	for _, p := range pairs {
		for name, tok := range callers {
			hdr := map[string]string{"Content-Type": "application/json"}
			if tok != "" {
				hdr["Authorization"] = "Bearer " + tok
			}
			body := []byte(`{"executionStep":"awaiting_followup"}`)
			exists, absent := c.Do(n, http.MethodPost, p[0], body, hdr), c.Do(n, http.MethodPost, p[1], body, hdr)
			// The path's own id may be quoted back; nothing else may differ.
			same := bytes.ReplaceAll(absent.Body, []byte(missing), []byte(id))
			same = bytes.ReplaceAll(same, []byte("ws-does-not-exist"), []byte(task.WorkspaceID))
			if exists.Status != absent.Status || !bytes.Equal(exists.Body, same) {
				t.Errorf("%s caller: existing %s = %d %s; missing = %d %s", name, p[0], exists.Status, exists.Body, absent.Status, absent.Body)
			}
			if exists.Status/100 == 2 || exists.Status == http.StatusNotFound || exists.Status == http.StatusConflict {
				t.Errorf("%s caller on %s got %d %s, want a refusal that reveals nothing", name, p[0], exists.Status, exists.Body)
			}
		}
	}
	_ = server.AdminTokenFile
}
