package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"testing"
	"time"
)

// claim commits a claim for the task's runnable step and returns it.
func claim(t *testing.T, a *applier, id string, term uint64, at time.Time) StepStarted {
	t.Helper()
	cur, _ := a.f.Task(id)
	c := StepStarted{TaskID: id, Step: cur.RunnableStep(), Attempt: cur.Attempt + 1, Term: term, Leader: "n1", At: at}
	if r := a.apply(c); r.Err != nil {
		t.Fatalf("claim %s/%s: %v", id, c.Step, r.Err)
	}
	return c
}

func succeed(t *testing.T, a *applier, c StepStarted, data StepData, at time.Time) *Task {
	t.Helper()
	r := a.apply(StepResult{TaskID: c.TaskID, Step: c.Step, Attempt: c.Attempt, Term: c.Term, Outcome: OutcomeSuccess, Data: data, At: at})
	if r.Err != nil {
		t.Fatalf("result %s/%s: %v", c.TaskID, c.Step, r.Err)
	}
	return r.Task
}

// toWorkspaceReady drives a new task through the effect steps up to the
// first waiting step.
func toWorkspaceReady(t *testing.T, a *applier, id string) *Task {
	t.Helper()
	submit(a, id)
	a.apply(DecideStep{TaskID: id, Step: StepNodeSelection, Leader: "n1", At: t0})
	var task *Task
	for _, s := range []Step{StepNodeProvisioning, StepNodeAgentReady, StepWorkspaceCreate} {
		c := claim(t, a, id, 1, t0)
		if c.Step != s {
			t.Fatalf("runnable step = %s, want %s", c.Step, s)
		}
		task = succeed(t, a, c, StepData{NodeID: "node-1", WorkspaceID: "ws-1"}, t0.Add(time.Second))
	}
	return task
}

func TestPipelineAdvancesWithStatusesAndAlarms(t *testing.T) {
	a := newApplier(t)
	task := submit(a, "t1")
	if task.Alarm == nil || task.Alarm.Kind != AlarmRun || !task.Alarm.Due.Equal(t0) {
		t.Fatalf("new task alarm = %+v, want run now", task.Alarm)
	}
	task = toWorkspaceReady(t, a, "t2")
	if task.Step != StepWorkspaceReady || task.Status != StatusDelegated || task.NodeID != "n-t2" || task.WorkspaceID != "ws-t2" {
		t.Fatalf("task = %s/%s node=%q ws=%q", task.Status, task.Step, task.NodeID, task.WorkspaceID)
	}
	want := t0.Add(time.Second + DefaultPolicy().WorkspaceReadyTimeout)
	if task.Alarm == nil || task.Alarm.Kind != AlarmDeadline || !task.Alarm.Due.Equal(want) {
		t.Fatalf("waiting step alarm = %+v, want deadline at %s", task.Alarm, want)
	}
	if task.Attempts != 4 || len(task.Steps) != 4 {
		t.Fatalf("attempts = %d, steps = %d, want 4 and 4", task.Attempts, len(task.Steps))
	}
	// Waiting steps are never claimed.
	if r := a.apply(StepStarted{TaskID: "t2", Step: StepWorkspaceReady, Attempt: 1, Term: 1, At: t0}); !errors.Is(r.Err, ErrFenced) {
		t.Fatalf("claim of a waiting step: err = %v, want ErrFenced", r.Err)
	}
}

func encodeTask(t *testing.T, f *FSM, id string) []byte {
	t.Helper()
	task, ok := f.Task(id)
	if !ok {
		t.Fatalf("task %s missing", id)
	}
	b, err := json.Marshal(task)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFencing: stale claims and results are rejected, counted, and leave
// the task byte-identical.
func TestFencing(t *testing.T) {
	type setup func(t *testing.T, a *applier) Command
	cases := map[string]setup{
		"result of an older attempt": func(t *testing.T, a *applier) Command {
			old := claim(t, a, "t1", 1, t0)
			claim(t, a, "t1", 2, t0) // the new leader re-dispatched
			return StepResult{TaskID: "t1", Step: old.Step, Attempt: old.Attempt, Term: old.Term, Outcome: OutcomeSuccess, At: t0}
		},
		"result from an older term": func(t *testing.T, a *applier) Command {
			c := claim(t, a, "t1", 2, t0)
			return StepResult{TaskID: "t1", Step: c.Step, Attempt: c.Attempt, Term: 1, Outcome: OutcomeSuccess, At: t0}
		},
		"claim from an older term": func(t *testing.T, a *applier) Command {
			c := claim(t, a, "t1", 3, t0)
			return StepStarted{TaskID: "t1", Step: c.Step, Attempt: c.Attempt + 1, Term: 2, At: t0}
		},
		"result for a cancelled task": func(t *testing.T, a *applier) Command {
			c := claim(t, a, "t1", 1, t0)
			a.apply(CancelTask{TaskID: "t1", At: t0})
			return StepResult{TaskID: "t1", Step: c.Step, Attempt: c.Attempt, Term: c.Term, Outcome: OutcomeSuccess, At: t0}
		},
		"result for another step": func(t *testing.T, a *applier) Command {
			c := claim(t, a, "t1", 1, t0)
			return StepResult{TaskID: "t1", Step: StepNodeAgentReady, Attempt: c.Attempt, Term: c.Term, Outcome: OutcomeSuccess, At: t0}
		},
		"second result of one attempt": func(t *testing.T, a *applier) Command {
			c := claim(t, a, "t1", 1, t0)
			succeed(t, a, c, StepData{}, t0)
			return StepResult{TaskID: "t1", Step: c.Step, Attempt: c.Attempt, Term: c.Term, Outcome: OutcomeFail, At: t0}
		},
		"claim skipping an attempt": func(t *testing.T, a *applier) Command {
			return StepStarted{TaskID: "t1", Step: StepNodeProvisioning, Attempt: 2, Term: 1, At: t0}
		},
		"stale deadline": func(t *testing.T, a *applier) Command {
			return StepTimeout{TaskID: "t1", Step: StepNodeProvisioning, Due: t0, At: t0}
		},
		"decision for a step already taken": func(t *testing.T, a *applier) Command {
			return DecideStep{TaskID: "t1", Step: StepNodeSelection, At: t0}
		},
	}
	for name, mk := range cases {
		t.Run(name, func(t *testing.T) {
			a := newApplier(t)
			submit(a, "t1")
			a.apply(DecideStep{TaskID: "t1", Step: StepNodeSelection, Leader: "n1", At: t0})
			cmd := mk(t, a)
			before, rejected := encodeTask(t, a.f, "t1"), a.f.RejectedCount()
			r := a.apply(cmd)
			if !errors.Is(r.Err, ErrFenced) {
				t.Fatalf("Apply(%T) err = %v, want ErrFenced", cmd, r.Err)
			}
			if after := encodeTask(t, a.f, "t1"); !bytes.Equal(before, after) {
				t.Fatalf("a fenced command changed the task:\n%s\n%s", before, after)
			}
			if a.f.RejectedCount() != rejected+1 {
				t.Fatalf("RejectedCount = %d, want %d", a.f.RejectedCount(), rejected+1)
			}
			if errs, _ := a.f.Errors(ErrorFilter{TaskID: "t1", Kind: ErrKindFenced}); len(errs) == 0 {
				t.Fatalf("no error record for the fenced command")
			}
		})
	}
}

func TestRetryThenPermanentFailure(t *testing.T) {
	a := newApplier(t)
	submit(a, "t1")
	a.apply(DecideStep{TaskID: "t1", Step: StepNodeSelection, At: t0})
	at := t0
	for i := 1; i <= 3; i++ {
		c := claim(t, a, "t1", 1, at)
		retryAt := at.Add(time.Duration(i) * 5 * time.Second)
		r := a.apply(StepResult{TaskID: "t1", Step: c.Step, Attempt: c.Attempt, Term: 1, Outcome: OutcomeRetry, Class: ClassTransient, Error: "503", RetryAt: retryAt, At: at})
		if r.Task.Retries != i || r.Task.Alarm.Kind != AlarmRun || !r.Task.Alarm.Due.Equal(retryAt) || r.Task.InFlight {
			t.Fatalf("after retry %d: retries=%d alarm=%+v", i, r.Task.Retries, r.Task.Alarm)
		}
		at = retryAt
	}
	c := claim(t, a, "t1", 1, at)
	r := a.apply(StepResult{TaskID: "t1", Step: c.Step, Attempt: c.Attempt, Term: 1, Outcome: OutcomeFail, Class: ClassTransient, Error: "retries exhausted: 503", At: at})
	if r.Task.Status != StatusFailed || r.Task.Step != StepNone || !r.Task.Cleanup || r.Task.Alarm == nil || r.Task.ErrorMessage == "" {
		t.Fatalf("failed task = %+v", r.Task)
	}
	steps, _ := a.f.Errors(ErrorFilter{TaskID: "t1", Kind: ErrKindStep})
	failed, _ := a.f.Errors(ErrorFilter{TaskID: "t1", Kind: ErrKindFailed})
	if len(steps) != 3 || len(failed) != 1 {
		t.Fatalf("error records: %d step errors, %d failures; want 3 and 1", len(steps), len(failed))
	}
	// Cleanup is claimed and finished like a step, then the alarm is gone.
	cc := claim(t, a, "t1", 1, at)
	if cc.Step != StepCleanup {
		t.Fatalf("runnable = %s, want cleanup", cc.Step)
	}
	done := succeed(t, a, cc, StepData{}, at)
	if done.Cleanup || done.Alarm != nil {
		t.Fatalf("after cleanup: cleanup=%v alarm=%+v", done.Cleanup, done.Alarm)
	}
}

func TestPollPastDeadlineFails(t *testing.T) {
	a := newApplier(t)
	submit(a, "t1")
	a.apply(DecideStep{TaskID: "t1", Step: StepNodeSelection, At: t0})
	c := claim(t, a, "t1", 1, t0)
	r := a.apply(StepResult{TaskID: "t1", Step: c.Step, Attempt: 1, Term: 1, Outcome: OutcomePoll, RetryAt: t0.Add(10 * time.Second), At: t0})
	if r.Task.Status != StatusQueued || r.Task.Retries != 0 {
		t.Fatalf("poll changed status or retries: %+v", r.Task)
	}
	c = claim(t, a, "t1", 1, t0)
	late := t0.Add(DefaultPolicy().ProvisionTimeout)
	r = a.apply(StepResult{TaskID: "t1", Step: c.Step, Attempt: 2, Term: 1, Outcome: OutcomePoll, RetryAt: late, At: late})
	if r.Task.Status != StatusFailed {
		t.Fatalf("poll past the step deadline: status = %s, want failed", r.Task.Status)
	}
}

func TestCancelInFlightFencesLateResult(t *testing.T) {
	a := newApplier(t)
	submit(a, "t1")
	a.apply(DecideStep{TaskID: "t1", Step: StepNodeSelection, At: t0})
	c := claim(t, a, "t1", 1, t0)
	r := a.apply(CancelTask{TaskID: "t1", Actor: Actor{Type: ActorUser}, At: t0})
	if !r.Task.Cleanup || r.Task.InFlight || r.Task.Alarm == nil || r.Task.Alarm.Kind != AlarmRun {
		t.Fatalf("cancelled task = %+v, want cleanup scheduled, no claim", r.Task)
	}
	late := a.apply(StepResult{TaskID: "t1", Step: c.Step, Attempt: c.Attempt, Term: 1, Outcome: OutcomeSuccess, At: t0})
	if !errors.Is(late.Err, ErrFenced) {
		t.Fatalf("late result: err = %v, want ErrFenced", late.Err)
	}
}

func TestWaitingStepDeadlines(t *testing.T) {
	a := newApplier(t)
	task := toWorkspaceReady(t, a, "t1")
	r := a.apply(StepTimeout{TaskID: "t1", Step: StepWorkspaceReady, Due: task.Alarm.Due, At: task.Alarm.Due})
	if r.Err != nil || r.Task.Status != StatusFailed || r.Task.ErrorMessage != "workspace_ready timed out" {
		t.Fatalf("timeout: %v %+v", r.Err, r.Task)
	}
}

// TestNoAlarmIsLost drives random tasks with random commands — in-order
// and stale claims and results, leader changes, cancels, re-runs and
// timeouts — and checks after every command that each task in a run has
// exactly one alarm of the right kind.
func TestNoAlarmIsLost(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewSource(seed))
		a := newApplier(t)
		term := uint64(1)
		var ids []string
		at := t0
		for i := 0; i < 3000; i++ {
			at = at.Add(time.Duration(rng.Intn(5000)) * time.Millisecond)
			if len(ids) == 0 || rng.Intn(10) == 0 {
				id := fmt.Sprintf("t%d", len(ids))
				ids = append(ids, id)
				a.apply(SubmitTask{TaskID: id, Spec: spec("u1"), At: at})
				continue
			}
			id := ids[rng.Intn(len(ids))]
			cur, _ := a.f.Task(id)
			a.apply(randomStepCommand(rng, cur, &term, at))
			checkAlarmInvariant(t, a.f, seed, i)
		}
	}
}

func randomStepCommand(rng *rand.Rand, cur *Task, term *uint64, at time.Time) Command {
	outcomes := []Outcome{OutcomeSuccess, OutcomeSuccess, OutcomeRetry, OutcomePoll, OutcomeFail}
	switch rng.Intn(12) {
	case 0:
		*term++ // a leader change
		return StepStarted{TaskID: cur.ID, Step: cur.RunnableStep(), Attempt: cur.Attempt + 1, Term: *term, At: at}
	case 1:
		return CancelTask{TaskID: cur.ID, At: at}
	case 2:
		return SetStatus{TaskID: cur.ID, To: AllStatuses[rng.Intn(len(AllStatuses))], At: at}
	case 3: // a stale result
		return StepResult{TaskID: cur.ID, Step: cur.RunnableStep(), Attempt: cur.Attempt - rng.Intn(2), Term: *term - uint64(rng.Intn(2)),
			Outcome: outcomes[rng.Intn(len(outcomes))], RetryAt: at, At: at}
	case 4:
		due := at
		if cur.Alarm != nil && rng.Intn(2) == 0 {
			due = cur.Alarm.Due
		}
		return StepTimeout{TaskID: cur.ID, Step: cur.Step, Due: due, At: at}
	case 5:
		return Reschedule{TaskID: cur.ID, At: at}
	case 6:
		return FailTask{TaskID: cur.ID, Reason: "stuck", At: at}
	}
	if KindOf(cur.RunnableStep()) == KindDecided && !cur.Cleanup {
		return DecideStep{TaskID: cur.ID, Step: cur.Step, At: at}
	}
	if !cur.InFlight {
		return StepStarted{TaskID: cur.ID, Step: cur.RunnableStep(), Attempt: cur.Attempt + 1, Term: *term, At: at}
	}
	return StepResult{TaskID: cur.ID, Step: cur.RunnableStep(), Attempt: cur.Attempt, Term: cur.ClaimTerm,
		Outcome: outcomes[rng.Intn(len(outcomes))], RetryAt: at.Add(time.Duration(rng.Intn(60)) * time.Second), At: at}
}

func checkAlarmInvariant(t *testing.T, f *FSM, seed int64, i int) {
	t.Helper()
	f.ForEachTask(func(task *Task) bool {
		inRun := task.Status == StatusQueued || task.Status == StatusDelegated || task.Status == StatusInProgress || task.Cleanup
		switch {
		case inRun && task.Alarm == nil:
			t.Fatalf("seed %d step %d: task %s (%s/%s cleanup=%v) has no alarm", seed, i, task.ID, task.Status, task.Step, task.Cleanup)
		case !inRun && task.Alarm != nil:
			t.Fatalf("seed %d step %d: task %s (%s) is not running but has alarm %+v", seed, i, task.ID, task.Status, task.Alarm)
		case task.InFlight && task.Alarm.Kind != AlarmClaim:
			t.Fatalf("seed %d step %d: in-flight task %s has a %s alarm", seed, i, task.ID, task.Alarm.Kind)
		case inRun && !task.Cleanup && !task.InFlight && KindOf(task.Step) == KindWaiting && task.Alarm.Kind != AlarmDeadline:
			t.Fatalf("seed %d step %d: waiting task %s has a %s alarm", seed, i, task.ID, task.Alarm.Kind)
		case inRun && task.Step == StepNone && !task.Cleanup:
			t.Fatalf("seed %d step %d: running task %s has no step", seed, i, task.ID)
		}
		return true
	})
}
