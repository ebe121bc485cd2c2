package chaos_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tdf-project/tdf/chaos"
	"github.com/tdf-project/tdf/e2e"
)

// TestCheckerCatchesStaleResultsWithoutFencing shows the checker can fail.
// The nodes are built with -tags nofence: the FSM applies every step
// result, and a runner that lost leadership keeps its in-flight step's
// result and commits it once it leads again. Then:
//
//  1. the fake cloud answers every server creation 4s late, so a
//     node_provisioning claim stays in flight;
//  2. the leader A is paused (SIGSTOP) while it has such a claim in flight;
//     a new leader B re-dispatches the claim as attempt 2;
//  3. A is resumed (it learns it was deposed: its handler's result is now
//     stale) and leadership is transferred back to A, which commits the
//     stale result of attempt 1.
//
// With fencing, the FSM would reject that result (claim term and attempt
// do not match). Without it, the result is applied after attempt 2 was
// claimed, and CheckTimelines must report it.
func TestCheckerCatchesStaleResultsWithoutFencing(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	victim, tk := staleResultScenario(t, e2e.BuildTagged(t, "nofence"), true)
	vs := chaos.CheckTimelines([]chaos.Task{tk})
	if len(vs) == 0 {
		t.Fatalf("task %s: the checker reports nothing", victim)
	}
	for _, v := range vs {
		t.Logf("the checker reports: %s", v)
	}
}

// TestStaleResultScenarioWithFencing is the same scenario on the normal
// build: the deposed leader's result is dropped, the task completes and
// the checker finds nothing wrong with it.
func TestStaleResultScenarioWithFencing(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	victim, tk := staleResultScenario(t, "", false)
	if vs := chaos.CheckTimelines([]chaos.Task{tk}); len(vs) > 0 {
		t.Errorf("task %s: %v", victim, vs)
	}
}

// staleResultScenario runs the scenario on bin ("" for the normal build).
// With wantStale it waits until the checker reports a stale result in the
// victim task's timeline; without, until the task completed. It returns
// the task's id and its last read.
func staleResultScenario(t *testing.T, bin string, wantStale bool) (string, chaos.Task) {
	target := chaos.StartProcessTarget(t, e2e.Options{Binary: bin})
	c := target.C
	probe := chaos.NewProbe(target)
	nodes := target.Nodes()
	a, err := probe.WaitLeader(nodes, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	leaderA := c.Node(a)

	resp, err := c.Do(context.Background(), c.Cloud.Node, http.MethodPost, "/fake/faults", nil,
		map[string]any{"faults": []map[string]any{{"endpoint": "create_server", "kind": "slow_answer", "delay": "4s"}}})
	if err != nil || resp.Status != http.StatusOK {
		t.Fatalf("install the slow answer: %v %v", err, resp)
	}

	// Submit until the leader has a node_provisioning claim in flight.
	var victim string
	for i := 0; victim == "" && i < 5; i++ {
		key := fmt.Sprintf("nofence-%d", i)
		resp, err := c.Do(context.Background(), leaderA, http.MethodPost, "/v1/tasks", http.Header{"Idempotency-Key": {key}},
			map[string]string{"project_id": "p-nofence", "user_id": fmt.Sprintf("u%d", i), "prompt": key, "repository": "github.com/acme/app"})
		if err != nil || resp.Status != http.StatusAccepted {
			t.Fatalf("submit: %v %v", err, resp)
		}
		_ = e2e.Poll(30*time.Second, func() error {
			id, err := provisioningInFlight(c, leaderA)
			if err != nil {
				return err
			}
			victim = id
			return nil
		})
	}
	if victim == "" {
		t.Fatal("no node_provisioning claim in flight on the leader")
	}
	t.Logf("%s has node_provisioning of %s in flight; pausing it", a, victim)

	if err := target.Pause(a); err != nil {
		t.Fatal(err)
	}
	var others []string
	for _, n := range nodes {
		if n != a {
			others = append(others, n)
		}
	}
	b, err := probe.WaitLeader(others, time.Minute)
	if err != nil {
		_ = target.Resume(a)
		t.Fatal(err)
	}
	// B re-dispatches the claim as attempt 2.
	err = e2e.Poll(time.Minute, func() error {
		tk, err := getTask(c, c.Node(b), victim)
		if err != nil {
			return err
		}
		for _, s := range tk.Steps {
			if s.Step == "node_provisioning" && s.Attempt >= 2 {
				return nil
			}
		}
		return fmt.Errorf("no second node_provisioning attempt yet: %+v", tk.Steps)
	})
	if rerr := target.Resume(a); rerr != nil {
		t.Fatal(rerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s leads and re-claimed the step; %s resumed", b, a)

	// Leadership back to A, which then commits its stale result.
	c.WaitFor(2*time.Minute, "leadership back to "+a, func() error {
		lead, _, err := probe.Leader(context.Background(), nodes)
		if err != nil {
			return err
		}
		if lead == a {
			return nil
		}
		resp, err := c.Do(context.Background(), c.Node(lead), http.MethodPost, "/v1/cluster/transfer-leadership", nil, map[string]string{"to": a})
		if err != nil {
			return err
		}
		return fmt.Errorf("%s still leads (transfer: %d %s)", lead, resp.Status, strings.TrimSpace(string(resp.Body)))
	})

	var last chaos.Task
	what := "the task completes"
	if wantStale {
		what = "the checker reports the stale result"
	}
	c.WaitFor(2*time.Minute, what, func() error {
		tk, err := getTask(c, leaderA, victim)
		if err != nil {
			return err
		}
		last = tk
		if !wantStale {
			if tk.Status != "completed" {
				return fmt.Errorf("task %s is %s", victim, tk.Status)
			}
			return nil
		}
		for _, v := range chaos.CheckTimelines([]chaos.Task{tk}) {
			if strings.Contains(v.Detail, "a stale result") {
				return nil
			}
		}
		return fmt.Errorf("timeline of %s has no stale result yet: %+v", victim, tk.Steps)
	})
	return victim, last
}

// provisioningInFlight returns a task whose node_provisioning claim is in
// flight on n.
func provisioningInFlight(c *e2e.Cluster, n *e2e.Node) (string, error) {
	var out struct {
		Tasks []struct {
			ID    string `json:"id"`
			Step  string `json:"execution_step"`
			Steps []struct {
				Step     string     `json:"step"`
				Finished *time.Time `json:"finished"`
			} `json:"steps"`
		} `json:"tasks"`
	}
	if err := c.GetJSON(n, "/v1/tasks?limit=500", &out); err != nil {
		return "", err
	}
	for _, tk := range out.Tasks {
		// Its claim is the newest attempt, not finished yet.
		if n := len(tk.Steps); tk.Step == "node_provisioning" && n > 0 && tk.Steps[n-1].Step == tk.Step && tk.Steps[n-1].Finished == nil {
			return tk.ID, nil
		}
	}
	return "", fmt.Errorf("no node_provisioning claim in flight among %d tasks", len(out.Tasks))
}

func getTask(c *e2e.Cluster, n *e2e.Node, id string) (chaos.Task, error) {
	var out struct {
		Task chaos.Task `json:"task"`
	}
	err := c.GetJSON(n, "/v1/tasks/"+id, &out)
	return out.Task, err
}
