package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/runner"
	"github.com/tdf-project/tdf/server"
	"github.com/tdf-project/tdf/tokens"
)

// TestMetricsPromtoolClean runs tasks through every step outcome (success,
// poll, retry, fail), callbacks and a forwarded request, so that the
// histograms and labelled counters have samples, then pipes each node's
// /metrics — the leader's first — through `promtool check metrics`, which
// must find nothing to complain about.
//
// promtool comes from Debian's prometheus package; CI installs it. Without
// it on PATH the test is skipped, and fails under CI=true.
func TestMetricsPromtoolClean(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool is not on PATH (apt-get install -y prometheus) and CI=true")
		}
		t.Skip("promtool is not on PATH (apt-get install -y prometheus); skipping the /metrics lint")
	}
	done := runner.HandlerFunc(func(context.Context, *fsm.Task, string) runner.Result { return runner.Done(fsm.StepData{}) })
	provisioning := runner.HandlerFunc(func(_ context.Context, tk *fsm.Task, _ string) runner.Result {
		switch tk.Prompt {
		case "metrics fail":
			return runner.Failed(runner.Permanentf("no capacity"))
		case "metrics retry":
			if tk.Retries == 0 {
				return runner.Failed(runner.Transient(errors.New("try again")))
			}
			return runner.PollIn(5 * time.Minute)
		case "metrics poll":
			return runner.PollIn(5 * time.Minute)
		}
		return runner.Done(fsm.StepData{ServerID: 9, IPv4: "127.0.0.1"})
	})
	c := server.NewTestCluster(t, server.TestOptions{
		Handlers: map[fsm.Step]runner.Handler{
			fsm.StepNodeProvisioning: provisioning, fsm.StepNodeAgentReady: done, fsm.StepWorkspaceCreate: done, fsm.StepAgentSession: done,
		},
		Runner: func(rc *runner.Config) { rc.RetryBase, rc.RetryMax = 20*time.Millisecond, 100*time.Millisecond },
		Server: sharedControlPlane,
	})
	leader, followers := c.Followers()

	ok := submitTask(t, c, followers[0], "u1", "metrics ok") // forwarded: tdf_forwarded_requests_total
	fail := submitTask(t, c, followers[1], "u2", "metrics fail")
	retry := submitTask(t, c, leader, "u3", "metrics retry")
	poll := submitTask(t, c, leader, "u4", "metrics poll")
	waitTask(t, leader, ok.ID, "waiting for its workspace", func(tk *fsm.Task) bool { return tk.Step == fsm.StepWorkspaceReady })
	waitTask(t, leader, fail.ID, "failed", func(tk *fsm.Task) bool { return tk.Status == fsm.StatusFailed })
	waitTask(t, leader, retry.ID, "retried, then parked", func(tk *fsm.Task) bool { return tk.Retries > 0 && parkedAt(tk, fsm.StepNodeProvisioning) })
	waitTask(t, leader, poll.ID, "parked", func(tk *fsm.Task) bool { return parkedAt(tk, fsm.StepNodeProvisioning) })
	// Callbacks: one accepted, one unauthorized.
	waitKeys(t, c)
	tk, _ := leader.FSM.Task(ok.ID)
	if r := callback(t, c, leader, "/v1/nodes/"+tk.NodeID+"/ready", tokens.ScopeNode, tk.NodeID, `{"agentVersion":"t"}`); r.Status/100 != 2 {
		t.Fatalf("node ready callback = %d %s", r.Status, r.Body)
	}
	if r := c.Do(leader, http.MethodPost, "/v1/nodes/"+tk.NodeID+"/heartbeat", []byte(`{"activeWorkspaces":0}`), nil); r.Status != http.StatusUnauthorized {
		t.Fatalf("tokenless heartbeat = %d %s, want 401", r.Status, r.Body)
	}

	// The leader that ran the steps has their samples.
	if c.Leader() != leader {
		t.Logf("leadership moved from %s during the test", leader.ID)
	}
	var body string
	server.WaitFor(t, server.TestWait, "samples in "+leader.ID+"'s /metrics", func() error {
		body = scrape(t, c, leader)
		for _, want := range []struct {
			name   string
			labels map[string]string
		}{
			{"tdf_step_duration_seconds_count", map[string]string{"step": "node_provisioning", "outcome": "success"}},
			{"tdf_step_duration_seconds_count", map[string]string{"step": "node_provisioning", "outcome": "fail"}},
			{"tdf_step_duration_seconds_count", map[string]string{"step": "node_provisioning", "outcome": "retry"}},
			{"tdf_step_duration_seconds_count", map[string]string{"step": "node_provisioning", "outcome": "poll"}},
			{"tdf_step_duration_seconds_count", map[string]string{"step": "workspace_creation", "outcome": "success"}},
			{"tdf_alarm_firing_lateness_seconds_count", nil},
			{"tdf_raft_apply_seconds_count", nil},
			{"tdf_callbacks_total", map[string]string{"kind": "node_ready", "result": "accepted"}},
			{"tdf_callbacks_total", map[string]string{"kind": "node_heartbeat", "result": "unauthorized"}},
			{"tdf_step_claims_total", nil},
			{"tdf_tasks", map[string]string{"status": "failed"}},
			{"tdf_tasks_ended_total", map[string]string{"status": "failed"}},
			{"tdf_build_info", nil},
			{"tdf_http_requests_total", map[string]string{"method": "POST", "route": "/v1/tasks", "code": "202"}},
			{"tdf_http_request_duration_seconds_count", map[string]string{"method": "POST", "route": "/v1/tasks"}},
			// Raft's own, through go-metrics.
			{"tdf_raft_commit_time_seconds_count", nil},
			{"tdf_raft_apply_total", nil},
			{"tdf_nodes", map[string]string{"status": "active"}},
		} {
			if v, found := metricValue(body, want.name, want.labels); !found || v < 1 {
				return fmt.Errorf("%s%v = %v (found %v)", want.name, want.labels, v, found)
			}
		}
		if v, _ := metricValue(body, "tdf_is_leader", nil); v != 1 {
			return fmt.Errorf("tdf_is_leader = %v", v)
		}
		return nil
	})
	promCheck(t, promtool, leader.ID, body)

	// The followers' metrics too (the forwarding counter lives there).
	for _, n := range followers {
		body := scrape(t, c, n)
		promCheck(t, promtool, n.ID, body)
	}
	if v, found := metricValue(scrape(t, c, followers[0]), "tdf_forwarded_requests_total", map[string]string{"method": "POST", "code": "202"}); !found || v < 1 {
		t.Errorf(`%s: tdf_forwarded_requests_total{method="POST",code="202"} = %v (found %v)`, followers[0].ID, v, found)
	}
}

// promCheck pipes a scrape through `promtool check metrics` and fails the
// test on any complaint.
func promCheck(t *testing.T, promtool, node, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil || strings.TrimSpace(out.String()) != "" {
		t.Errorf("promtool check metrics on %s's /metrics: %v\n%s", node, err, out.String())
	}
}
