package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/server"
)

// Operators cordon, uncordon, drain and destroy a node; only an admin
// token may; a node that cannot take the action gets 409.
func TestNodeActions(t *testing.T) {
	c, n := singleNode(t, server.TestOptions{API: func(ac *api.Config) { ac.Auth = testTokens(t) }})
	r := c.Do(n, http.MethodPost, "/v1/tasks", body("alice", "needs a node"), bearer(aliceToken))
	if r.Status != http.StatusAccepted {
		t.Fatalf("submit = %d %s", r.Status, r.Body)
	}
	task := decodeTask(t, r)
	var nodeID string
	server.WaitFor(t, server.TestWait, "the task's node recorded", func() error {
		cur, _ := n.FSM.Task(task.ID)
		if nodeID = cur.NodeID; nodeID == "" {
			return fmt.Errorf("task at %s without a node", cur.Step)
		}
		return nil
	})
	path := func(action string) string { return "/v1/nodes/" + nodeID + "/" + action }
	do := func(action, token string) (server.TestResponse, *fsm.Node) {
		r := c.Do(n, http.MethodPost, path(action), nil, bearer(token))
		var v struct{ *fsm.Node }
		if r.Status == http.StatusOK {
			if err := json.Unmarshal(r.Body, &v); err != nil || v.Node == nil {
				t.Fatalf("%s answer %s: %v", action, r.Body, err)
			}
		}
		return r, v.Node
	}

	checkError(t, "a user token cordons", c.Do(n, http.MethodPost, path("cordon"), nil, bearer(aliceToken)), http.StatusForbidden, api.CodeForbidden, "admin")
	checkError(t, "no token", c.Do(n, http.MethodPost, path("drain"), nil, nil), http.StatusUnauthorized, api.CodeUnauthorized, "token")
	checkError(t, "unknown node", c.Do(n, http.MethodPost, "/v1/nodes/n-nope/cordon", nil, bearer(adminToken)), http.StatusNotFound, api.CodeNotFound, "n-nope")

	if r, node := do("cordon", adminToken); r.Status != http.StatusOK || !node.Cordoned {
		t.Fatalf("cordon = %d %s", r.Status, r.Body)
	}
	if r, node := do("uncordon", adminToken); r.Status != http.StatusOK || node.Cordoned {
		t.Fatalf("uncordon = %d %s", r.Status, r.Body)
	}
	// Draining a node with a task on it cordons it and waits.
	if r, node := do("drain", adminToken); r.Status != http.StatusOK || !node.Cordoned || node.Status != fsm.NodeActive {
		t.Fatalf("drain = %d %s", r.Status, r.Body)
	}
	// Destroying it fails the task, naming who did it.
	if r, node := do("destroy", adminToken); r.Status != http.StatusOK || node.Status != fsm.NodeDestroying {
		t.Fatalf("destroy = %d %s", r.Status, r.Body)
	}
	if cur, _ := n.FSM.Task(task.ID); cur.Status != fsm.StatusFailed || cur.ErrorMessage != "node "+nodeID+" destroyed by user ops" {
		t.Fatalf("task %s %q after its node was destroyed", cur.Status, cur.ErrorMessage)
	}
	checkError(t, "cordon a destroying node", c.Do(n, http.MethodPost, path("cordon"), nil, bearer(adminToken)), http.StatusConflict, api.CodeInvalidTrans, "node "+nodeID+" is")
}
