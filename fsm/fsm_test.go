package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// applier applies encoded commands at increasing indexes, as raft would.
type applier struct {
	t     testing.TB
	f     *FSM
	index uint64
	log   [][]byte
}

func newApplier(t testing.TB) *applier { return &applier{t: t, f: New()} }

func (a *applier) apply(c Command) *Result {
	a.t.Helper()
	b, err := Encode(c)
	if err != nil {
		a.t.Fatalf("Encode(%T) = %v", c, err)
	}
	a.index++
	a.log = append(a.log, b)
	return a.f.ApplyCommand(a.index, b)
}

func spec(user string) TaskSpec {
	return TaskSpec{ProjectID: "p1", UserID: user, Prompt: "fix the bug", Repository: "github.com/acme/app"}
}

func submit(a *applier, id string) *Task {
	a.t.Helper()
	r := a.apply(SubmitTask{TaskID: id, Spec: spec("u1"), At: t0})
	if r.Err != nil {
		a.t.Fatalf("submit %s: %v", id, r.Err)
	}
	return r.Task
}

func snapshotBytes(t testing.TB, f *FSM) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := f.WriteSnapshot(&buf); err != nil {
		t.Fatalf("WriteSnapshot = %v", err)
	}
	return buf.Bytes()
}

func TestSubmitCreatesQueuedTaskAtNodeSelection(t *testing.T) {
	a := newApplier(t)
	task := submit(a, "t1")
	if task.Status != StatusQueued || task.Step != StepNodeSelection {
		t.Fatalf("submitted task = %s/%s, want queued/node_selection", task.Status, task.Step)
	}
	if len(task.History) != 1 || task.History[0].To != StatusQueued || task.History[0].Actor.Type != ActorUser {
		t.Fatalf("history = %+v, want one user event to queued", task.History)
	}
}

// TestTransitionTable checks every ordered pair of statuses against the
// table of REFERENCE.md, through the FSM as well as through CanTransition.
func TestTransitionTable(t *testing.T) {
	allowed := map[[2]Status]bool{}
	for _, p := range [][2]Status{
		{StatusDraft, StatusReady}, {StatusDraft, StatusCancelled},
		{StatusReady, StatusQueued}, {StatusReady, StatusDelegated}, {StatusReady, StatusCancelled},
		{StatusQueued, StatusDelegated}, {StatusQueued, StatusFailed}, {StatusQueued, StatusCancelled},
		{StatusDelegated, StatusInProgress}, {StatusDelegated, StatusFailed}, {StatusDelegated, StatusCancelled},
		{StatusInProgress, StatusCompleted}, {StatusInProgress, StatusFailed}, {StatusInProgress, StatusCancelled},
		{StatusFailed, StatusReady}, {StatusFailed, StatusCancelled},
		{StatusCancelled, StatusReady},
	} {
		allowed[p] = true
	}
	for _, from := range AllStatuses {
		for _, to := range AllStatuses {
			want := allowed[[2]Status{from, to}] || from == to
			if got := CanTransition(from, to); got != want {
				t.Errorf("CanTransition(%s, %s) = %v, want %v", from, to, got, want)
			}
			t.Run(fmt.Sprintf("%s→%s", from, to), func(t *testing.T) {
				a := newApplier(t)
				a.f.st.tasks.ReplaceOrInsert(&Task{ID: "t1", Status: from, Step: StepRunning})
				before := snapshotBytes(t, a.f)
				r := a.apply(SetStatus{TaskID: "t1", To: to, Actor: Actor{Type: ActorUser, ID: "u1"}, At: t0})
				got, _ := a.f.Task("t1")
				switch {
				case !UserSettable(to) && from != to:
					// Pipeline statuses: allowed by the table, entered only
					// by pipeline commands (tested in applystep_test.go).
					if !errors.Is(r.Err, ErrInvalidTransition) {
						t.Fatalf("SetStatus to pipeline status %s: err = %v, want ErrInvalidTransition", to, r.Err)
					}
				case from == to:
					if r.Err != nil || !r.Unchanged || len(got.History) != 0 {
						t.Fatalf("same-status change: err=%v duplicate=%v history=%d, want no-op", r.Err, r.Unchanged, len(got.History))
					}
				case want:
					if r.Err != nil || got.Status != to || len(got.History) != 1 {
						t.Fatalf("allowed change: err=%v status=%s history=%d", r.Err, got.Status, len(got.History))
					}
					ev := got.History[0]
					if ev.From != from || ev.To != to || ev.Actor.Type != ActorUser || !ev.At.Equal(t0) {
						t.Fatalf("event = %+v", ev)
					}
				default:
					if !errors.Is(r.Err, ErrInvalidTransition) {
						t.Fatalf("forbidden change: err = %v, want ErrInvalidTransition", r.Err)
					}
					// Only the applied index may differ.
					a.f.st.index = 0
					if !bytes.Equal(before, snapshotBytes(t, a.f)) {
						t.Fatalf("forbidden change modified state")
					}
				}
			})
		}
	}
}

func TestTerminalStatuses(t *testing.T) {
	for _, s := range AllStatuses {
		want := s == StatusCompleted || s == StatusFailed || s == StatusCancelled
		if s.Terminal() != want {
			t.Errorf("%s.Terminal() = %v, want %v", s, s.Terminal(), want)
		}
	}
	if _, err := ParseStatus("running"); err == nil {
		t.Errorf(`ParseStatus("running") succeeded, want error`)
	}
}

func TestCancelEndsRunAndIsIdempotent(t *testing.T) {
	a := newApplier(t)
	submit(a, "t1")
	r := a.apply(CancelTask{TaskID: "t1", Actor: Actor{Type: ActorUser, ID: "u1"}, Reason: "changed my mind", At: t0.Add(time.Second)})
	if r.Err != nil || r.Task.Status != StatusCancelled || r.Task.Step != StepNone || r.Task.CompletedAt == nil {
		t.Fatalf("cancel = %+v / %v", r.Task, r.Err)
	}
	r2 := a.apply(CancelTask{TaskID: "t1", Actor: Actor{Type: ActorUser, ID: "u1"}, At: t0.Add(2 * time.Second)})
	if r2.Err != nil || !r2.Unchanged || len(r2.Task.History) != 2 {
		t.Fatalf("second cancel: err=%v duplicate=%v history=%d", r2.Err, r2.Unchanged, len(r2.Task.History))
	}
	if r := a.apply(CancelTask{TaskID: "nope", At: t0}); !errors.Is(r.Err, ErrNotFound) {
		t.Fatalf("cancel of unknown task: err = %v, want ErrNotFound", r.Err)
	}
}

func TestReopenAndRerun(t *testing.T) {
	a := newApplier(t)
	submit(a, "t1")
	a.apply(CancelTask{TaskID: "t1", At: t0})
	for _, to := range []Status{StatusReady, StatusQueued} {
		if r := a.apply(SetStatus{TaskID: "t1", To: to, Actor: Actor{Type: ActorUser}, At: t0}); r.Err != nil {
			t.Fatalf("→ %s: %v", to, r.Err)
		}
	}
	got, _ := a.f.Task("t1")
	if got.Status != StatusQueued || got.Step != StepNodeSelection || got.CompletedAt != nil {
		t.Fatalf("re-run task = %s/%s completed=%v", got.Status, got.Step, got.CompletedAt)
	}
}

func TestIdempotentSubmit(t *testing.T) {
	a := newApplier(t)
	first := a.apply(SubmitTask{RequestID: "k1", Fingerprint: "f1", TaskID: "t1", Spec: spec("u1"), At: t0})
	again := a.apply(SubmitTask{RequestID: "k1", Fingerprint: "f1", TaskID: "t2", Spec: spec("u1"), At: t0.Add(time.Second)})
	if again.Err != nil || !again.Replayed || again.Task.ID != first.Task.ID {
		t.Fatalf("retry = %+v, want duplicate of t1", again)
	}
	if n := a.f.TaskCount(); n != 1 {
		t.Fatalf("TaskCount = %d, want 1", n)
	}
	other := a.apply(SubmitTask{RequestID: "k1", Fingerprint: "f2", TaskID: "t3", Spec: spec("u2"), At: t0})
	if !errors.Is(other.Err, ErrIdempotencyMismatch) {
		t.Fatalf("reused key: err = %v, want ErrIdempotencyMismatch", other.Err)
	}
	if r := a.apply(SubmitTask{TaskID: "t1", Spec: spec("u1"), At: t0}); !errors.Is(r.Err, ErrExists) {
		t.Fatalf("duplicate task id: err = %v, want ErrExists", r.Err)
	}
}

func TestIdempotencyRetentionByCommittedTime(t *testing.T) {
	a := newApplier(t)
	a.apply(SubmitTask{RequestID: "old", TaskID: "t1", Spec: spec("u1"), At: t0})
	a.apply(SubmitTask{RequestID: "new", TaskID: "t2", Spec: spec("u1"), At: t0.Add(DefaultIdempotencyRetention - time.Minute)})
	if n := a.f.IdempotencyKeys(); n != 2 {
		t.Fatalf("keys = %d, want 2", n)
	}
	// A command committed past the retention forgets the old key only.
	a.apply(SubmitTask{RequestID: "newest", TaskID: "t3", Spec: spec("u1"), At: t0.Add(DefaultIdempotencyRetention + time.Second)})
	if n := a.f.IdempotencyKeys(); n != 2 {
		t.Fatalf("keys after retention = %d, want 2", n)
	}
	r := a.apply(SubmitTask{RequestID: "old", TaskID: "t4", Spec: spec("u1"), At: t0.Add(DefaultIdempotencyRetention + 2*time.Second)})
	if r.Replayed || r.Task.ID != "t4" {
		t.Fatalf("expired key still deduplicated: %+v", r)
	}
}

func TestMemberTable(t *testing.T) {
	a := newApplier(t)
	a.apply(RegisterMember{Member: Member{ID: "n2", RaftAddr: "127.0.0.1:7002", APIAddr: "127.0.0.1:8002"}})
	a.apply(RegisterMember{Member: Member{ID: "n1", RaftAddr: "127.0.0.1:7001", APIAddr: "127.0.0.1:8001"}})
	a.apply(RegisterMember{Member: Member{ID: "n2", RaftAddr: "127.0.0.1:7002", APIAddr: "127.0.0.1:9002"}})
	ms := a.f.Members()
	if len(ms) != 2 || ms[0].ID != "n1" || ms[1].APIAddr != "127.0.0.1:9002" {
		t.Fatalf("Members = %+v", ms)
	}
	a.apply(RemoveMember{ID: "n1"})
	if _, ok := a.f.Member("n1"); ok {
		t.Fatalf("n1 still a member after removal")
	}
	if r := a.apply(RegisterMember{}); !errors.Is(r.Err, ErrInvalid) {
		t.Fatalf("empty member: err = %v", r.Err)
	}
}

func TestListTasksFiltersAndPages(t *testing.T) {
	a := newApplier(t)
	for i := 0; i < 25; i++ {
		user := "u1"
		if i%2 == 1 {
			user = "u2"
		}
		a.apply(SubmitTask{TaskID: fmt.Sprintf("t%03d", i), Spec: spec(user), At: t0})
	}
	a.apply(CancelTask{TaskID: "t004", At: t0})
	var seen []string
	cursor := ""
	for {
		page, next := a.f.ListTasks(TaskFilter{UserID: "u1", After: cursor, Limit: 5})
		for _, tk := range page {
			seen = append(seen, tk.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if len(seen) != 13 || seen[0] != "t000" || seen[12] != "t024" {
		t.Fatalf("paged u1 tasks = %v", seen)
	}
	page, next := a.f.ListTasks(TaskFilter{Status: StatusCancelled})
	if len(page) != 1 || page[0].ID != "t004" || next != "" {
		t.Fatalf("cancelled = %v next=%q", page, next)
	}
}

// randomLog builds a log of n mixed commands over a set of tasks.
func randomLog(seed int64, n int) []Command {
	rng := rand.New(rand.NewSource(seed))
	var cmds []Command
	ids := 0
	for i := 0; i < n; i++ {
		at := t0.Add(time.Duration(i) * time.Second)
		switch rng.Intn(6) {
		case 0, 1, 2:
			ids++
			cmds = append(cmds, SubmitTask{RequestID: fmt.Sprintf("r%d", rng.Intn(n)), TaskID: fmt.Sprintf("t%06d", ids),
				Spec: spec(fmt.Sprintf("u%d", rng.Intn(7))), At: at})
		case 3:
			cmds = append(cmds, CancelTask{TaskID: fmt.Sprintf("t%06d", rng.Intn(ids+1)), At: at})
		case 4:
			cmds = append(cmds, SetStatus{TaskID: fmt.Sprintf("t%06d", rng.Intn(ids+1)), To: AllStatuses[rng.Intn(len(AllStatuses))], At: at})
		case 5:
			cmds = append(cmds, RegisterMember{Member: Member{ID: fmt.Sprintf("n%d", rng.Intn(5)), APIAddr: fmt.Sprint(rng.Intn(100))}})
		}
	}
	return cmds
}

func TestSameLogSameSnapshot(t *testing.T) {
	a, b := newApplier(t), newApplier(t)
	for _, c := range randomLog(1, 5000) {
		a.apply(c)
		b.apply(c)
	}
	sa, sb := snapshotBytes(t, a.f), snapshotBytes(t, b.f)
	if !bytes.Equal(sa, sb) {
		t.Fatalf("two FSMs applying one log wrote different snapshots (%d vs %d bytes)", len(sa), len(sb))
	}
	_, ha, _ := a.f.Hash()
	_, hb, _ := b.f.Hash()
	if ha != hb {
		t.Fatalf("hashes differ: %s vs %s", ha, hb)
	}
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	a := newApplier(t)
	for i := 0; i < 10000; i++ {
		a.apply(SubmitTask{RequestID: fmt.Sprintf("r%d", i), TaskID: fmt.Sprintf("t%06d", i), Spec: spec("u1"), At: t0.Add(time.Duration(i) * time.Millisecond)})
		if i%3 == 0 {
			a.apply(CancelTask{TaskID: fmt.Sprintf("t%06d", i), Actor: Actor{Type: ActorUser, ID: "u1"}, At: t0})
		}
	}
	for _, c := range randomLog(2, 500) {
		a.apply(c)
	}
	orig := snapshotBytes(t, a.f)
	restored := New()
	if err := restored.Restore(io.NopCloser(bytes.NewReader(orig))); err != nil {
		t.Fatalf("Restore = %v", err)
	}
	if got := snapshotBytes(t, restored); !bytes.Equal(got, orig) {
		t.Fatalf("restored state differs from the original")
	}
	if restored.TaskCount() != a.f.TaskCount() || restored.AppliedIndex() != a.f.AppliedIndex() || restored.IdempotencyKeys() != a.f.IdempotencyKeys() {
		t.Fatalf("restored counts differ")
	}
	// The restored FSM goes on deduplicating the keys it restored.
	b := &applier{t: t, f: restored, index: a.index}
	if r := b.apply(SubmitTask{RequestID: "r5", TaskID: "zz", Spec: spec("u1"), At: t0.Add(time.Hour)}); !r.Replayed {
		t.Fatalf("restored FSM forgot idempotency key r5")
	}
}

func TestSnapshotIsPointInTime(t *testing.T) {
	a := newApplier(t)
	submit(a, "t1")
	snap, _ := a.f.Snapshot()
	want := snapshotBytes(t, a.f)
	a.apply(CancelTask{TaskID: "t1", At: t0})
	submit(a, "t2")
	var buf bytes.Buffer
	if err := snap.(*snapshot).st.writeTo(&buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("snapshot taken before later applies saw them")
	}
}

func TestRestoreRejectsCorruption(t *testing.T) {
	a := newApplier(t)
	for i := 0; i < 50; i++ {
		submit(a, fmt.Sprintf("t%03d", i))
	}
	good := snapshotBytes(t, a.f)
	cases := map[string][]byte{
		"empty":     nil,
		"bad magic": append([]byte("NOTASNAP"), good[8:]...),
		"truncated": good[:len(good)/2],
		"no crc":    good[:len(good)-4],
		"flipped":   flip(good, len(good)/3),
	}
	for name, data := range cases {
		f := New()
		submit(&applier{t: t, f: f}, "keep")
		err := f.Restore(io.NopCloser(bytes.NewReader(data)))
		if !errors.Is(err, ErrCorruptSnapshot) {
			t.Errorf("%s: Restore = %v, want ErrCorruptSnapshot", name, err)
		}
		if _, ok := f.Task("keep"); !ok || f.TaskCount() != 1 {
			t.Errorf("%s: a failed restore changed the state", name)
		}
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x01
	return c
}

func TestDecodeRejectsGarbage(t *testing.T) {
	for name, data := range map[string][]byte{
		"empty":        {},
		"one byte":     {1},
		"unknown type": {77, 1, '{', '}'},
		"bad version":  {1, 9, '{', '}'},
		"bad json":     {1, 1, '{'},
		"wrong shape":  {1, 1, '[', ']'},
	} {
		if _, err := Decode(data); err == nil {
			t.Errorf("Decode(%s) succeeded, want error", name)
		}
	}
}

func TestApplyPanicsOnUnknownCommandUnlessIgnorable(t *testing.T) {
	f := New()
	if r := f.ApplyCommand(1, []byte{byte(IgnoreUnknown | 100), 1, '{', '}'}); r.Err != nil || f.AppliedIndex() != 1 {
		t.Fatalf("ignorable unknown command: %+v index=%d", r, f.AppliedIndex())
	}
	defer func() {
		if recover() == nil {
			t.Fatalf("Apply of an unknown command did not panic")
		}
	}()
	f.ApplyCommand(2, []byte{100, 1, '{', '}'})
}

func TestObserverSeesEveryTaskChange(t *testing.T) {
	a := newApplier(t)
	var got []string
	a.f.Watch(nil, nil, func(c Change) {
		if c.Task == nil {
			return
		}
		got = append(got, fmt.Sprintf("%d:%s:%s", c.Index, c.Task.ID, c.Task.Status))
	})
	submit(a, "t1")
	a.apply(CancelTask{TaskID: "t1", At: t0})
	a.apply(CancelTask{TaskID: "t1", At: t0}) // no-op: no change
	if want := "1:t1:queued,2:t1:cancelled"; strings.Join(got, ",") != want {
		t.Fatalf("changes = %v, want %s", got, want)
	}
}

func TestErrorRetentionByAgeAndCount(t *testing.T) {
	a := newApplier(t)
	for i := 0; i < 5; i++ {
		a.apply(RecordError{Record: ErrorRecord{Kind: ErrKindReconciler, Message: fmt.Sprint(i), At: t0.Add(time.Duration(i) * time.Hour)}})
	}
	a.apply(PurgeErrors{Before: t0.Add(2 * time.Hour)})
	recs, _ := a.f.Errors(ErrorFilter{})
	if len(recs) != 3 || recs[0].Message != "2" {
		t.Fatalf("after the purge: %d records, first %+v; want 3 from the third on", len(recs), recs[0])
	}
	for i := 0; i < DefaultMaxErrorRecords+10; i++ {
		a.f.recordError(ErrorRecord{Kind: ErrKindStep, At: t0})
	}
	if recs, _ := a.f.Errors(ErrorFilter{}); len(recs) != DefaultMaxErrorRecords {
		t.Fatalf("records = %d, want the bound %d", len(recs), DefaultMaxErrorRecords)
	}
}
