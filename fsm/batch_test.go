package fsm

import (
	"errors"
	"testing"
)

// A batch applies its members in order, each as if alone: the same results
// and the same tasks as applying them one entry each.
func TestBatchAppliesMembersInOrder(t *testing.T) {
	cmds := []Command{
		SubmitTask{TaskID: "t-1", Spec: spec("u1"), At: t0},
		SubmitTask{TaskID: "t-2", Spec: spec("u2"), At: t0},
		DecideStep{TaskID: "t-1", Step: StepNodeSelection, Leader: "n1", At: t0},
		SubmitTask{TaskID: "t-1", Spec: spec("u1"), At: t0}, // exists: a domain error
	}
	one := newApplier(t)
	var want []*Result
	for _, c := range cmds {
		want = append(want, one.apply(c))
	}
	batched := newApplier(t)
	res := batched.apply(Batch{Commands: cmds})
	if len(res.Batch) != len(cmds) {
		t.Fatalf("batch returned %d results, want %d", len(res.Batch), len(cmds))
	}
	for i, r := range res.Batch {
		if (r.Err == nil) != (want[i].Err == nil) || (r.Task == nil) != (want[i].Task == nil) {
			t.Errorf("member %d: result %+v, alone %+v", i, r, want[i])
		}
		if r.Index != 1 {
			t.Errorf("member %d applied at index %d, want the batch's 1", i, r.Index)
		}
	}
	if !errors.Is(res.Batch[3].Err, ErrExists) {
		t.Errorf("duplicate submit in a batch: %v, want ErrExists", res.Batch[3].Err)
	}
	for _, id := range []string{"t-1", "t-2"} {
		a, _ := one.f.Task(id)
		b, ok := batched.f.Task(id)
		if !ok || a.Step != b.Step || a.NodeID != b.NodeID || a.Status != b.Status {
			t.Errorf("task %s: batched %+v, alone %+v", id, b, a)
		}
	}
}

func TestBatchDecodeRejectsMalformed(t *testing.T) {
	member, err := Encode(SubmitTask{TaskID: "t-1", Spec: spec("u1"), At: t0})
	if err != nil {
		t.Fatal(err)
	}
	good := EncodeBatch([][]byte{member, member})
	if c, err := Decode(good); err != nil || len(c.(Batch).Commands) != 2 {
		t.Fatalf("Decode(good batch) = %v, %v", c, err)
	}
	nested := EncodeBatch([][]byte{good})
	for name, b := range map[string][]byte{
		"empty":      EncodeBatch(nil),
		"truncated":  good[:len(good)-3],
		"trailing":   append(append([]byte{}, good...), 0),
		"nested":     nested,
		"bad member": EncodeBatch([][]byte{{byte(CmdSubmitTask), bodyVersion, '{'}}),
	} {
		if _, err := Decode(b); err == nil {
			t.Errorf("%s: Decode accepted it", name)
		}
	}
	if _, err := Encode(Batch{Commands: []Command{Batch{}}}); err == nil {
		t.Error("Encode accepted a nested batch")
	}
}
