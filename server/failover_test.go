package server_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/runner"
	"github.com/tdf-project/tdf/server"
)

// provider is a double of an external system: it performs one effect per
// idempotency key however often it is asked, and its first call blocks
// until released, so a test can cut the leader off mid-step.
type provider struct {
	mu      sync.Mutex
	keys    []string
	effects map[string]int
	started chan struct{}
	release chan struct{}
}

func newProvider() *provider {
	return &provider{effects: map[string]int{}, started: make(chan struct{}), release: make(chan struct{})}
}

func (p *provider) Run(ctx context.Context, t *fsm.Task, key string) runner.Result {
	p.mu.Lock()
	p.keys = append(p.keys, key)
	first := len(p.keys) == 1
	p.mu.Unlock()
	if first {
		close(p.started)
		select {
		case <-p.release:
		case <-ctx.Done():
			return runner.Failed(ctx.Err())
		}
	}
	p.mu.Lock()
	if p.effects[key] == 0 {
		p.effects[key] = 1
	}
	p.mu.Unlock()
	return runner.Done(fsm.StepData{ServerID: 7, IPv4: "127.0.0.1"})
}

// waitFor polls cond until it holds, failing the test at server.TestWait.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	server.WaitFor(t, server.TestWait, what, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}

var errNotYet = errors.New("not yet")

func (p *provider) calls() ([]string, map[string]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	eff := map[string]int{}
	for k, v := range p.effects {
		eff[k] = v
	}
	return append([]string(nil), p.keys...), eff
}

// TestFailoverRedispatchesTheInFlightStep: the leader is cut off while a
// step with an external effect is in flight. The new leader re-dispatches
// exactly that step as the next attempt (no earlier step runs again), the
// provider sees the same idempotency key twice and performs the effect
// once, and the task finishes.
func TestFailoverRedispatchesTheInFlightStep(t *testing.T) {
	prov := newProvider()
	done := runner.HandlerFunc(func(context.Context, *fsm.Task, string) runner.Result { return runner.Done(fsm.StepData{}) })
	c := server.NewTestCluster(t, server.TestOptions{
		Handlers: map[fsm.Step]runner.Handler{
			fsm.StepNodeProvisioning: prov, fsm.StepNodeAgentReady: done, fsm.StepWorkspaceCreate: done,
			fsm.StepAgentSession: done, fsm.StepCleanup: done,
		},
		API: func(ac *api.Config) { ac.Policy.IdleTimeout = time.Second },
	})
	old, followers := c.Followers()
	r := c.Do(followers[0], http.MethodPost, "/v1/tasks", submitBody("u1", "failover"), map[string]string{"Idempotency-Key": "fo-1"})
	if r.Status != http.StatusAccepted {
		t.Fatalf("submit = %d %s", r.Status, r.Body)
	}
	id := decodeTask(t, r).ID
	select {
	case <-prov.started:
	case <-time.After(server.TestWait):
		t.Fatalf("the provisioning step never started")
	}

	c.Partition(old)
	leader := c.WaitLeaderNot(old)
	var task *fsm.Task
	waitFor(t, "the new leader to re-dispatch node_provisioning", func() bool {
		task, _ = leader.FSM.Task(id)
		return task.Step != fsm.StepNodeProvisioning || task.Attempt >= 2
	})
	close(prov.release)

	// The waiting steps are advanced by the agent's callbacks.
	apply := func(cmd fsm.Command) {
		t.Helper()
		waitFor(t, "a callback to commit", func() bool {
			l := c.WaitLeader(followers...)
			res, err := l.Node.ApplyIdempotent(context.Background(), cmd)
			return err == nil && res.Err == nil
		})
	}
	waitFor(t, "workspace_ready", func() bool { task, _ = leader.FSM.Task(id); return task.Step == fsm.StepWorkspaceReady })
	apply(fsm.WorkspaceReady{WorkspaceID: task.WorkspaceID, Status: fsm.WorkspaceRunning, At: time.Now().UTC()})
	waitFor(t, "running", func() bool { task, _ = leader.FSM.Task(id); return task.Step == fsm.StepRunning })
	apply(fsm.TaskStatusCallback{TaskID: id, ExecutionStep: fsm.StepAwaitingFollowup, At: time.Now().UTC()})
	waitFor(t, "completion", func() bool { task, _ = leader.FSM.Task(id); return task.Status == fsm.StatusCompleted && !task.Cleanup })

	keys, effects := prov.calls()
	if len(keys) != 2 || keys[0] != keys[1] || keys[0] != id+"/node_provisioning" {
		t.Fatalf("provider calls = %v, want the same (task, step) key twice", keys)
	}
	if len(effects) != 1 || effects[keys[0]] != 1 {
		t.Fatalf("effects = %v, want exactly one", effects)
	}
	var provisioning []fsm.StepAttempt
	selections := 0
	for _, s := range task.Steps {
		switch s.Step {
		case fsm.StepNodeProvisioning:
			provisioning = append(provisioning, s)
		case fsm.StepNodeSelection:
			selections++
		}
	}
	if selections != 1 {
		t.Fatalf("node_selection ran %d times, want once: an earlier step was re-run", selections)
	}
	if len(provisioning) != 2 || provisioning[0].Attempt != 1 || provisioning[1].Attempt != 2 ||
		provisioning[0].Leader != old.ID || provisioning[1].Leader == old.ID || provisioning[0].Finished != nil {
		t.Fatalf("node_provisioning attempts = %+v, want attempt 1 on %s unfinished, attempt 2 on the new leader", provisioning, old.ID)
	}
	c.Heal()
	c.WaitConverged()
}
