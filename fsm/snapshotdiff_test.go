package fsm

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestSnapshotDifferenceNamesRecordAndFields(t *testing.T) {
	a, b := newApplier(t), newApplier(t)
	for _, ap := range []*applier{a, b} {
		submit(ap, "t1")
		submit(ap, "t2")
		ap.apply(DecideStep{TaskID: "t1", Step: StepNodeSelection, Leader: "n1", At: t0})
	}
	same, err := SnapshotDifference(bytes.NewReader(snapshotBytes(t, a.f)), bytes.NewReader(snapshotBytes(t, b.f)))
	if err != nil || same != "" {
		t.Fatalf("equal states: %q, %v", same, err)
	}

	// At one index, one replica takes a claim and the other registers a
	// member: both records are named.
	cur, _ := a.f.Task("t1")
	a.apply(StepStarted{TaskID: "t1", Step: cur.RunnableStep(), Attempt: 1, Term: 3, Leader: "n1", At: t0.Add(time.Second)})
	b.apply(RegisterMember{Member: Member{ID: "n9"}}) // the same index, another change
	got, err := SnapshotDifference(bytes.NewReader(snapshotBytes(t, a.f)), bytes.NewReader(snapshotBytes(t, b.f)))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"member n9 only in the second", "task t1 differs: alarm"} {
		if !strings.Contains(got, want) {
			t.Errorf("difference %q does not say %q", got, want)
		}
	}

	c := newApplier(t)
	for _, cmd := range []Command{SubmitTask{TaskID: "t1", Spec: spec("u1"), At: t0}, SubmitTask{TaskID: "t2", Spec: spec("u1"), At: t0},
		DecideStep{TaskID: "t1", Step: StepNodeSelection, Leader: "n1", At: t0}} {
		c.apply(cmd)
	}
	c.apply(StepStarted{TaskID: "t1", Step: cur.RunnableStep(), Attempt: 1, Term: 4, Leader: "n1", At: t0.Add(time.Second)})
	got, err = SnapshotDifference(bytes.NewReader(snapshotBytes(t, a.f)), bytes.NewReader(snapshotBytes(t, c.f)))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"task t1 differs", "claim_term: 3 vs 4"} {
		if !strings.Contains(got, want) {
			t.Errorf("difference %q does not say %q", got, want)
		}
	}
	t.Logf("as reported:\n%s", got)
	if _, err := SnapshotDifference(strings.NewReader("garbage"), bytes.NewReader(snapshotBytes(t, c.f))); err == nil {
		t.Error("a stream that is not a snapshot was compared")
	}
}
