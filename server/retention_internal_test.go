package server

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/tdf-project/tdf/fsm"
)

// The leader's retention forgets the tasks that ended before the cutoff,
// in one Forget, and keeps the recent ones.
func TestForgetOldForgetsOnlyPastTheRetention(t *testing.T) {
	f := fsm.New()
	var index uint64
	var forgets []fsm.Forget
	apply := func(_ context.Context, c fsm.Command) (*fsm.Result, error) {
		if fc, ok := c.(fsm.Forget); ok {
			forgets = append(forgets, fc)
		}
		b, err := fsm.Encode(c)
		if err != nil {
			return nil, err
		}
		index++
		return f.ApplyCommand(index, b), nil
	}
	ctx := context.Background()
	ended := func(id string, at time.Time) {
		for _, c := range []fsm.Command{
			fsm.SubmitTask{TaskID: id, Spec: fsm.TaskSpec{ProjectID: "p", UserID: "u", Prompt: "x", Repository: "r"}, At: at},
			fsm.CancelTask{TaskID: id, Actor: fsm.Actor{Type: fsm.ActorUser}, At: at},
		} {
			if res, _ := apply(ctx, c); res.Err != nil {
				t.Fatal(res.Err)
			}
		}
		cur, _ := f.Task(id)
		claim := fsm.StepStarted{TaskID: id, Step: cur.RunnableStep(), Attempt: 1, Term: 1, Leader: "n1", At: at}
		apply(ctx, claim)
		if res, _ := apply(ctx, fsm.StepResult{TaskID: id, Step: claim.Step, Attempt: 1, Term: 1, Outcome: fsm.OutcomeSuccess, At: at}); res.Err != nil || res.Task.Cleanup {
			t.Fatalf("cleanup of %s: %v", id, res.Err)
		}
	}
	now := time.Now().UTC()
	ended("t-old1", now.Add(-72*time.Hour))
	ended("t-old2", now.Add(-49*time.Hour))
	ended("t-new", now.Add(-time.Hour))
	forgetOld(ctx, f, apply, 48*time.Hour, hclog.NewNullLogger())
	if len(forgets) != 1 || len(forgets[0].TaskIDs) != 2 {
		t.Fatalf("forgets %+v, want one naming the two old tasks", forgets)
	}
	for id, want := range map[string]bool{"t-old1": false, "t-old2": false, "t-new": true} {
		if _, ok := f.Task(id); ok != want {
			t.Fatalf("%s in the state: %v, want %v", id, ok, want)
		}
	}
	forgetOld(ctx, f, apply, 48*time.Hour, hclog.NewNullLogger())
	if len(forgets) != 1 {
		t.Fatalf("a second pass committed %d more Forgets, want none", len(forgets)-1)
	}
}
