package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/tdf-project/tdf/fsm"
)

// fsmDriver runs tasks to completion straight on an FSM, without raft: it
// commits what the leader's runner would (runner/runner.go process), with
// the zero-delay fakes as handlers. Used to build finished-task states fast.
type fsmDriver struct {
	f     *fsm.FSM
	index uint64
	at    time.Time
}

func newFSMDriver(f *fsm.FSM) *fsmDriver {
	return &fsmDriver{f: f, index: f.AppliedIndex(), at: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
}

// apply encodes and applies one command at the next index.
func (d *fsmDriver) apply(_ context.Context, cmd fsm.Command) (*fsm.Result, error) {
	data, err := fsm.Encode(cmd)
	if err != nil {
		return nil, err
	}
	d.index++
	return d.f.ApplyCommand(d.index, data), nil
}

func (d *fsmDriver) now() time.Time {
	d.at = d.at.Add(time.Millisecond)
	return d.at
}

// finish submits task i and drives it to completed with its cleanup done.
func (d *fsmDriver) finish(ctx context.Context, i int) error {
	hs := zeroDelayHandlers(func() applyFunc { return d.apply })
	id := fmt.Sprintf("task-%08d", i)
	policy := benchPolicy()
	if _, err := d.apply(ctx, fsm.SubmitTask{RequestID: fmt.Sprintf("req-%08d", i), TaskID: id, Spec: benchSpec(i), Policy: policy, At: d.now()}); err != nil {
		return err
	}
	for range 64 {
		t, ok := d.f.Task(id)
		if !ok {
			return fmt.Errorf("task %s vanished", id)
		}
		step := t.RunnableStep()
		if step == fsm.StepNone {
			if t.Status != fsm.StatusCompleted {
				return fmt.Errorf("task %s ended %s: %s", id, t.Status, t.ErrorMessage)
			}
			return nil
		}
		now := d.now()
		var cmd fsm.Command
		switch {
		case t.Alarm != nil && t.Alarm.Kind == fsm.AlarmDeadline:
			cmd = fsm.StepTimeout{TaskID: id, Step: t.Step, Due: t.Alarm.Due, At: t.Alarm.Due}
		case fsm.KindOf(step) == fsm.KindDecided:
			cmd = fsm.DecideStep{TaskID: id, Step: step, Leader: "n1", At: now}
		default:
			res, err := d.apply(ctx, fsm.StepStarted{TaskID: id, Step: step, Attempt: t.Attempt + 1, Term: 2, Leader: "n1", At: now})
			if err != nil || res.Err != nil {
				return fmt.Errorf("claim %s of %s: %v %v", step, id, err, res.Err)
			}
			out := hs[step].Run(ctx, res.Task, id)
			if out.Err != nil || out.PollAfter > 0 {
				return fmt.Errorf("fake %s of %s: %v", step, id, out.Err)
			}
			cmd = fsm.StepResult{TaskID: id, Step: step, Attempt: res.Task.Attempt, Term: 2, Outcome: fsm.OutcomeSuccess,
				Data: out.Data, Leader: "n1", At: d.now()}
		}
		res, err := d.apply(ctx, cmd)
		if err != nil || res.Err != nil {
			return fmt.Errorf("%T of %s: %v %v", cmd, id, err, res.Err)
		}
	}
	return fmt.Errorf("task %s did not finish in 64 commands", id)
}
