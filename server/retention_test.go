package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/server"
)

// A finished task forgotten by a Forget command is archived by every node
// as it applies the command, and GET /v1/tasks/{id} on any node still
// answers it from that node's archive, marked archived.
func TestForgottenTaskIsReadFromEveryNodesArchive(t *testing.T) {
	c := server.NewTestCluster(t, server.TestOptions{})
	leader := c.Leader()
	r := c.Do(leader, http.MethodPost, "/v1/tasks", submitBody("u1", "to be archived"), nil)
	if r.Status != http.StatusAccepted {
		t.Fatalf("submit = %d %s", r.Status, r.Body)
	}
	id := decodeTask(t, r).ID
	if r := c.Do(leader, http.MethodPost, "/v1/tasks/"+id+"/cancel", nil, nil); r.Status != http.StatusOK {
		t.Fatalf("cancel = %d %s", r.Status, r.Body)
	}
	var done *fsm.Task
	server.WaitFor(t, server.TestWait, "task cancelled and cleaned up", func() error {
		done, _ = leader.FSM.Task(id)
		if done.Status != fsm.StatusCancelled || done.Cleanup {
			return fmt.Errorf("task %s cleanup=%v", done.Status, done.Cleanup)
		}
		return nil
	})
	cutoff := done.CompletedAt.Add(time.Second)
	forget := leader.FSM.ForgetCandidates(cutoff, 0)
	if len(forget.TaskIDs) != 1 || forget.TaskIDs[0] != id {
		t.Fatalf("candidates %+v, want %s", forget, id)
	}
	forget.At = cutoff
	ctx, cancel := context.WithTimeout(context.Background(), server.TestWait)
	defer cancel()
	if res, err := leader.Node.Apply(ctx, forget); err != nil || res.Err != nil {
		t.Fatalf("forget: %v %v", err, res)
	}
	c.WaitConverged()
	for _, n := range c.Nodes {
		if _, ok := n.FSM.Task(id); ok {
			t.Fatalf("%s still holds %s", n.ID, id)
		}
		day := done.CompletedAt.UTC().Format("2006-01-02")
		if _, err := os.Stat(filepath.Join(n.DataDir, "archive", day+".jsonl.gz")); err != nil {
			t.Fatalf("%s: archive file: %v", n.ID, err)
		}
		r := c.Do(n, http.MethodGet, "/v1/tasks/"+id, nil, nil)
		var tr api.TaskResponse
		if err := json.Unmarshal(r.Body, &tr); err != nil || r.Status != http.StatusOK || !tr.Archived || tr.Task == nil ||
			tr.Task.ID != id || tr.Task.Status != fsm.StatusCancelled || len(tr.Task.History) == 0 || len(tr.Task.Steps) == 0 {
			t.Fatalf("%s: GET archived task = %d %s", n.ID, r.Status, r.Body)
		}
		if r := c.Do(n, http.MethodGet, "/v1/tasks/t-never", nil, nil); r.Status != http.StatusNotFound {
			t.Fatalf("%s: unknown task = %d %s", n.ID, r.Status, r.Body)
		}
	}
}
