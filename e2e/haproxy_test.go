package e2e_test

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tdf-project/tdf/e2e"
)

// TestHAProxyFrontSurvivesLeaderKill runs tasks through a cluster whose
// agents know one URL, haproxy running docs/haproxy.cfg, as a production
// cluster would: tasks are submitted through haproxy too, the leader is
// killed (SIGKILL) while agents are working and left dead, and every task
// still completes, each once (pipeRun.checkEnd), with every task status
// callback delivered through haproxy.
func TestHAProxyFrontSurvivesLeaderKill(t *testing.T) {
	began := time.Now()
	c, hp := e2e.StartClusterBehindHAProxy(t, e2e.Options{
		ExtraArgs: pipeServerArgs,
		FakeCloud: &e2e.FakeCloudOptions{Args: slices.Clone(pipeCloudArgs)},
	})
	c.Leader()
	c.WaitSigningKeys()
	r := newPipeRun(t, c)
	const tasks = 24
	done := make(chan error, 1)
	go func() { done <- r.submitAll(r.specs(0, tasks), 3, 250*time.Millisecond, []*e2e.Node{hp.Node}) }()

	// Kill the leader once agents are at work, so that callbacks are due
	// while it is gone.
	c.WaitFor(2*time.Minute, "agents at work", func() error {
		events, err := c.Ledger()
		if err != nil {
			return err
		}
		n := 0
		for _, e := range events {
			if e.Kind == "session_create" {
				n++
			}
		}
		if n < 3 {
			return fmt.Errorf("%d sessions created, want 3", n)
		}
		return nil
	})
	victim := c.Leader()
	r.logProgress("kill of the leader " + victim.ID)
	c.Kill(victim)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	c.Leader()
	r.waitCompleted(pipeCompleteWait)
	r.logStats()
	r.checkEnd()
	if !hp.Running() {
		t.Fatalf("haproxy exited (see %s)", hp.LogPath)
	}
	// haproxy saw the death: its health checks took the victim out.
	if log, err := os.ReadFile(hp.LogPath); err != nil || !strings.Contains(string(log), "tdf_ready/"+victim.ID+" is DOWN") {
		t.Errorf("haproxy's log does not show %s taken out (tdf_ready/%s is DOWN): %v", victim.ID, victim.ID, err)
	}

	// Every task status callback that arrived went through haproxy.
	events, err := c.Ledger()
	if err != nil {
		t.Fatal(err)
	}
	delivered := 0
	for _, e := range events {
		if e.Kind == "callback_delivered" {
			delivered++
			if !strings.HasPrefix(e.Detail, hp.URL+"/") {
				t.Errorf("task %s's status callback went to %s, not through haproxy (%s)", e.TaskID, e.Detail, hp.URL)
			}
		}
	}
	if delivered < tasks {
		t.Errorf("%d task status callbacks delivered, want at least %d", delivered, tasks)
	}
	c.Start(victim)
	c.WaitConverged(c.Nodes, 0)
	t.Logf("total %s", time.Since(began).Round(time.Millisecond))
}
