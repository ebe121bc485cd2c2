package runner

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/tdf-project/tdf/cluster"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/timers"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// single is a one-node cluster with a runner driven by a fake clock.
type single struct {
	t      *testing.T
	fsm    *fsm.FSM
	node   *cluster.Node
	runner *Runner
	clock  *timers.FakeClock
}

func newSingle(t *testing.T, cfg Config, handlers map[fsm.Step]Handler) *single {
	t.Helper()
	f := fsm.New()
	addr, trans := raft.NewInmemTransport("n1")
	cc := cluster.DefaultConfig()
	cc.NodeID, cc.DataDir, cc.Transport, cc.APIURL = "n1", filepath.Join(t.TempDir(), "n1"), trans, "http://127.0.0.1:1"
	cc.Bootstrap = []raft.Server{{Suffrage: raft.Voter, ID: "n1", Address: addr}}
	node, err := cluster.Open(cc, f)
	if err != nil {
		t.Fatal(err)
	}
	clock := timers.NewFakeClock(t0)
	cfg.Clock = clock
	cfg.Jitter = func() float64 { return 0.5 } // no jitter: delays are exact
	r := New(cfg, f, node, handlers)
	node.OnLeader(r.Run)
	node.Start()
	t.Cleanup(func() { _ = node.Close() })
	s := &single{t: t, fsm: f, node: node, runner: r, clock: clock}
	s.waitFor("leader", func() bool { ok, _ := node.LeaderReady(); return ok })
	return s
}

func (s *single) waitFor(what string, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			s.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *single) submit(id string) {
	s.t.Helper()
	res, err := s.node.Apply(context.Background(), fsm.SubmitTask{TaskID: id, Spec: fsm.TaskSpec{ProjectID: "p", UserID: "u", Prompt: "x", Repository: "r"},
		Policy: fsm.DefaultPolicy(), At: s.clock.Now()})
	if err != nil || res.Err != nil {
		s.t.Fatalf("submit: %v %v", err, res.Err)
	}
}

func (s *single) task(id string) *fsm.Task {
	t, _ := s.fsm.Task(id)
	return t
}

// advanceUntil moves the fake clock to the task's alarm each time the task
// is idle, until cond holds.
func (s *single) advanceUntil(id, what string, cond func(*fsm.Task) bool) *fsm.Task {
	s.t.Helper()
	var t *fsm.Task
	defer func() {
		if s.t.Failed() {
			s.t.Logf("task at failure: %+v alarm=%+v clock=%s", *t, t.Alarm, s.clock.Now())
		}
	}()
	s.waitFor(what, func() bool {
		t = s.task(id)
		if cond(t) {
			return true
		}
		if t.Alarm != nil && !t.InFlight && t.Alarm.Due.After(s.clock.Now()) {
			s.clock.Set(t.Alarm.Due)
		}
		return false
	})
	return t
}

// recorder is a handler double that records the keys it was called with.
type recorder struct {
	mu   sync.Mutex
	keys []string
	fn   func(n int) Result
}

func (r *recorder) Run(_ context.Context, _ *fsm.Task, key string) Result {
	r.mu.Lock()
	r.keys = append(r.keys, key)
	n := len(r.keys)
	r.mu.Unlock()
	if r.fn == nil {
		return Done(fsm.StepData{NodeID: "node-1", WorkspaceID: "ws-1", SessionID: "s-1"})
	}
	return r.fn(n)
}

func (r *recorder) calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.keys...)
}

func TestRunnerDrivesEffectStepsAndDeadlines(t *testing.T) {
	rec := &recorder{}
	cleanup := &recorder{}
	h := map[fsm.Step]Handler{
		fsm.StepNodeProvisioning: rec, fsm.StepNodeAgentReady: rec, fsm.StepWorkspaceCreate: rec, fsm.StepCleanup: cleanup,
	}
	s := newSingle(t, Config{}, h)
	s.submit("t1")
	task := s.advanceUntil("t1", "workspace_ready", func(t *fsm.Task) bool { return t.Step == fsm.StepWorkspaceReady })
	want := "t1/node_provisioning t1/node_agent_ready t1/workspace_creation"
	if got := strings.Join(rec.calls(), " "); got != want {
		t.Fatalf("handler keys = %s, want %s", got, want)
	}
	if task.Status != fsm.StatusDelegated || task.Alarm.Kind != fsm.AlarmDeadline {
		t.Fatalf("waiting task = %s alarm %+v", task.Status, task.Alarm)
	}
	// The deadline fires when the (fake) clock reaches it, not before.
	s.clock.Set(task.Alarm.Due.Add(-time.Second))
	s.clock.Set(task.Alarm.Due)
	final := s.advanceUntil("t1", "cleanup done", func(t *fsm.Task) bool { return t.Status == fsm.StatusFailed && !t.Cleanup })
	if final.ErrorMessage != "workspace_ready timed out" || len(cleanup.calls()) != 1 {
		t.Fatalf("final = %q, cleanup calls %v", final.ErrorMessage, cleanup.calls())
	}
	if s.runner.Stats().Timeouts.Load() != 1 || s.runner.Stats().Decisions.Load() != 1 {
		t.Fatalf("stats: timeouts %d decisions %d", s.runner.Stats().Timeouts.Load(), s.runner.Stats().Decisions.Load())
	}
}

func TestTransientErrorsRetryWithGrowingDelaysThenFail(t *testing.T) {
	rec := &recorder{fn: func(int) Result { return Failed(errors.New("connection refused")) }}
	s := newSingle(t, Config{MaxRetries: 3, RetryBase: 5 * time.Second, RetryMax: 60 * time.Second}, map[fsm.Step]Handler{fsm.StepNodeProvisioning: rec})
	s.submit("t1")
	var delays []time.Duration
	seen := 0
	final := s.advanceUntil("t1", "failure", func(t *fsm.Task) bool {
		if t.Retries > seen && t.Alarm != nil {
			seen = t.Retries
			delays = append(delays, t.Alarm.Due.Sub(s.clock.Now()))
		}
		return t.Status == fsm.StatusFailed
	})
	if fmt.Sprint(delays) != "[5s 10s 20s]" {
		t.Fatalf("retry delays = %v, want [5s 10s 20s]", delays)
	}
	if len(rec.calls()) != 4 || !strings.Contains(final.ErrorMessage, "gave up after 3 retries") {
		t.Fatalf("calls = %d, error = %q", len(rec.calls()), final.ErrorMessage)
	}
	for _, k := range rec.calls() {
		if k != "t1/node_provisioning" {
			t.Fatalf("idempotency key %q varies with the attempt", k)
		}
	}
	stepErrs, _ := s.fsm.Errors(fsm.ErrorFilter{TaskID: "t1", Kind: fsm.ErrKindStep})
	failed, _ := s.fsm.Errors(fsm.ErrorFilter{TaskID: "t1", Kind: fsm.ErrKindFailed})
	if len(stepErrs) != 3 || len(failed) != 1 || failed[0].Class != fsm.ClassTransient {
		t.Fatalf("error records: %d step, %d failed", len(stepErrs), len(failed))
	}
}

func TestPermanentErrorFailsAtOnce(t *testing.T) {
	rec := &recorder{fn: func(int) Result { return Failed(Permanentf("LIMIT_EXCEEDED: user has 10 nodes")) }}
	s := newSingle(t, Config{}, map[fsm.Step]Handler{fsm.StepNodeProvisioning: rec})
	s.submit("t1")
	final := s.advanceUntil("t1", "failure", func(t *fsm.Task) bool { return t.Status == fsm.StatusFailed })
	if len(rec.calls()) != 1 || final.ErrorMessage != "LIMIT_EXCEEDED: user has 10 nodes" {
		t.Fatalf("calls = %d, error = %q", len(rec.calls()), final.ErrorMessage)
	}
}

func TestPollingUntilDone(t *testing.T) {
	rec := &recorder{fn: func(n int) Result {
		if n < 3 {
			return PollIn(10 * time.Second)
		}
		return Done(fsm.StepData{ServerID: 42, IPv4: "127.0.1.1"})
	}}
	s := newSingle(t, Config{}, map[fsm.Step]Handler{fsm.StepNodeProvisioning: rec, fsm.StepNodeAgentReady: &recorder{fn: func(int) Result { return PollIn(5 * time.Minute) }}})
	s.submit("t1")
	task := s.advanceUntil("t1", "agent ready step", func(t *fsm.Task) bool { return t.Step == fsm.StepNodeAgentReady })
	if n, _ := s.fsm.Node(task.NodeID); n == nil || n.IPv4 != "127.0.1.1" || n.ServerID != 42 || task.Retries != 0 {
		t.Fatalf("after polling: node %+v retries %d", n, task.Retries)
	}
	// Polling past the step's deadline fails the task.
	final := s.advanceUntil("t1", "agent ready timeout", func(t *fsm.Task) bool { return t.Status == fsm.StatusFailed })
	if final.ErrorMessage != "node_agent_ready timed out" {
		t.Fatalf("error = %q", final.ErrorMessage)
	}
}

func TestCancelDuringStepFencesItsResult(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	blocking := HandlerFunc(func(ctx context.Context, _ *fsm.Task, _ string) Result {
		started <- struct{}{}
		<-release
		return Done(fsm.StepData{ServerID: 42})
	})
	s := newSingle(t, Config{}, map[fsm.Step]Handler{fsm.StepNodeProvisioning: blocking})
	s.submit("t1")
	<-started
	res, err := s.node.Apply(context.Background(), fsm.CancelTask{TaskID: "t1", Actor: fsm.Actor{Type: fsm.ActorUser}, At: s.clock.Now()})
	if err != nil || res.Err != nil {
		t.Fatal(err, res.Err)
	}
	close(release)
	final := s.advanceUntil("t1", "cleanup", func(t *fsm.Task) bool { return !t.Cleanup })
	if n, _ := s.fsm.Node(final.NodeID); final.Status != fsm.StatusCancelled || n == nil || n.ServerID != 0 {
		t.Fatalf("cancelled task = %s node %+v: the late result was applied", final.Status, n)
	}
	s.waitFor("fenced count", func() bool { return s.runner.Stats().Fenced.Load() == 1 && s.fsm.RejectedCount() == 1 })
}

func TestSweeperDecisions(t *testing.T) {
	r := New(Config{SweepInterval: time.Minute, StuckQueued: 10 * time.Minute}, fsm.New(), nil, nil)
	now := t0.Add(time.Hour)
	base := fsm.Task{ID: "t", Status: fsm.StatusQueued, Step: fsm.StepNodeProvisioning, CreatedAt: t0,
		History: []fsm.StatusEvent{{To: fsm.StatusQueued, At: t0}}}
	healthy := base
	healthy.Alarm = &fsm.Alarm{Due: now.Add(time.Second), Kind: fsm.AlarmRun}
	noAlarm := base
	stalled := base
	stalled.Alarm = &fsm.Alarm{Due: now.Add(-10 * time.Minute), Kind: fsm.AlarmRun}
	recent := stalled
	recent.History = []fsm.StatusEvent{{To: fsm.StatusQueued, At: now.Add(-5 * time.Minute)}}
	done := base
	done.Status = fsm.StatusCompleted
	for name, tc := range map[string]struct {
		task fsm.Task
		want string
	}{
		"healthy":          {healthy, "<nil>"},
		"finished":         {done, "<nil>"},
		"no alarm":         {noAlarm, "fsm.Reschedule"},
		"stalled and old":  {stalled, "fsm.FailTask"},
		"stalled, in time": {recent, "<nil>"},
	} {
		got := fmt.Sprintf("%T", r.sweepTask(&tc.task, now))
		if tc.want == "<nil>" && got == "<nil>" {
			continue
		}
		if got != tc.want {
			t.Errorf("%s: sweepTask = %s, want %s", name, got, tc.want)
		}
	}
}

func TestBackoffIsCappedWithJitter(t *testing.T) {
	c := Config{RetryBase: 5 * time.Second, RetryMax: 60 * time.Second, Jitter: func() float64 { return 0.5 }}
	for n, want := range []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, 60 * time.Second, 60 * time.Second} {
		if got := c.backoff(n); got != want {
			t.Errorf("backoff(%d) = %s, want %s", n, got, want)
		}
	}
	c.Jitter = func() float64 { return 0 }
	if got := c.backoff(0); got != 4*time.Second {
		t.Errorf("backoff(0) with low jitter = %s, want 4s", got)
	}
}

// TestCallsBoundHandlersNotWorkers: with 8 workers and 2 call slots, every
// task's claim commits at once while only 2 handlers run; the rest run as
// slots free up.
func TestCallsBoundHandlersNotWorkers(t *testing.T) {
	var mu sync.Mutex
	running, most := 0, 0
	release := make(chan struct{})
	blocking := HandlerFunc(func(ctx context.Context, _ *fsm.Task, _ string) Result {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		defer func() { mu.Lock(); running--; mu.Unlock() }()
		select {
		case <-release:
		case <-ctx.Done():
		}
		return Done(fsm.StepData{ServerID: 42})
	})
	s := newSingle(t, Config{Workers: 8, Calls: 2}, map[fsm.Step]Handler{fsm.StepNodeProvisioning: blocking})
	const n = 6
	for i := range n {
		s.submit(fmt.Sprintf("t%d", i))
	}
	s.waitFor("every task claimed, two handlers running", func() bool {
		for i := range n {
			if tk := s.task(fmt.Sprintf("t%d", i)); tk.Step != fsm.StepNodeProvisioning || !tk.InFlight {
				return false
			}
		}
		mu.Lock()
		defer mu.Unlock()
		return running == 2
	})
	close(release)
	s.waitFor("every provisioning done", func() bool {
		for i := range n {
			if tk := s.task(fmt.Sprintf("t%d", i)); tk.Step == fsm.StepNodeProvisioning {
				return false
			}
		}
		return true
	})
	mu.Lock()
	defer mu.Unlock()
	if most != 2 {
		t.Fatalf("at most %d handlers ran at once, want 2 (Calls)", most)
	}
}
