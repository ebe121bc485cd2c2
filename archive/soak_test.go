package archive_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/tdf-project/tdf/archive"
	"github.com/tdf-project/tdf/fsm"
)

// BenchmarkRetentionSoak is the retention soak (BENCHMARKS.md): simulated
// months of tasks at a steady rate, each driven through the whole pipeline
// (submit → node selection → provisioning → agent ready → workspace →
// session → running → awaiting_followup → idle timeout → cleanup → node
// warm → destroyed → deleted) with committed times from a fake clock, and
// once a simulated day the leader's Forget of everything past the
// retention, archived as on every node. Once a simulated week it reports
// the state's heap, snapshot size and restore (restart) time; at the end
// every archived task is read back by id. Not a timed test: run it with
//
//	go test -run '^$' -bench RetentionSoak -benchtime 1x ./archive/
//
// TDF_SOAK_DAYS (63), TDF_SOAK_PER_DAY (720: one task every 2 min) and
// TDF_SOAK_RETENTION (168h; 0: never forget) change the run.
func BenchmarkRetentionSoak(b *testing.B) {
	days := envInt(b, "TDF_SOAK_DAYS", 63)
	perDay := envInt(b, "TDF_SOAK_PER_DAY", 720)
	retention := 7 * 24 * time.Hour
	if v := os.Getenv("TDF_SOAK_RETENTION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatal(err)
		}
		retention = d
	}
	for range b.N {
		soak(b, days, perDay, retention)
	}
}

func envInt(b *testing.B, name string, def int) int {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		return n
	}
	return def
}

// sim applies commands to one FSM at increasing log indexes.
type sim struct {
	b     *testing.B
	f     *fsm.FSM
	index uint64
}

func (s *sim) apply(c fsm.Command) *fsm.Result {
	data, err := fsm.Encode(c)
	if err != nil {
		s.b.Fatal(err)
	}
	s.index++
	res := s.f.ApplyCommand(s.index, data)
	if res.Err != nil {
		s.b.Fatalf("apply %T: %v", c, res.Err)
	}
	return res
}

// step claims the task's runnable step and commits its success.
func (s *sim) step(id string, data fsm.StepData, at time.Time) *fsm.Task {
	cur, _ := s.f.Task(id)
	c := fsm.StepStarted{TaskID: id, Step: cur.RunnableStep(), Attempt: cur.Attempt + 1, Term: 1, Leader: "n1", At: at}
	s.apply(c)
	return s.apply(fsm.StepResult{TaskID: id, Step: c.Step, Attempt: c.Attempt, Term: 1, Outcome: fsm.OutcomeSuccess, Data: data, Leader: "n1", At: at}).Task
}

// runTask drives one task through its whole life from start.
func (s *sim) runTask(i int, start time.Time) {
	id := taskID(i, start)
	spec := fsm.TaskSpec{ProjectID: "p1", UserID: fmt.Sprintf("u%d", i), Prompt: "fix the flaky test in the payments module and open a pull request",
		Repository: "github.com/acme/app", Branch: "main"}
	at := start
	s.apply(fsm.SubmitTask{TaskID: id, Spec: spec, At: at})
	s.apply(fsm.DecideStep{TaskID: id, Step: fsm.StepNodeSelection, Leader: "n1", At: at})
	at = at.Add(90 * time.Second)
	s.step(id, fsm.StepData{ServerID: int64(1000 + i), IPv4: "10.0.0.7"}, at) // provisioning
	at = at.Add(30 * time.Second)
	task := s.step(id, fsm.StepData{}, at) // agent ready
	at = at.Add(5 * time.Second)
	task = s.step(id, fsm.StepData{}, at) // workspace creation
	at = at.Add(20 * time.Second)
	s.apply(fsm.WorkspaceReady{WorkspaceID: task.WorkspaceID, Status: fsm.WorkspaceRunning, At: at})
	s.step(id, fsm.StepData{SessionID: "s-" + id}, at) // agent session
	at = at.Add(20 * time.Minute)
	s.apply(fsm.TaskStatusCallback{TaskID: id, WorkspaceID: task.WorkspaceID, ExecutionStep: fsm.StepAwaitingFollowup,
		Output: fsm.Output{Branch: "sam/fix-flaky-" + id, PRURL: "https://github.com/acme/app/pull/" + strconv.Itoa(i), Summary: "fixed the flaky test"}, At: at})
	task, _ = s.f.Task(id)
	due := task.Alarm.Due
	s.apply(fsm.StepTimeout{TaskID: id, Step: fsm.StepAwaitingFollowup, Due: due, At: due})
	s.step(id, fsm.StepData{WorkspaceStopped: true}, due) // cleanup: the node goes warm
	n, _ := s.f.Node(task.NodeID)
	s.apply(fsm.NodeDeadline{NodeID: n.ID, Due: n.Alarm.Due, At: n.Alarm.Due})
	s.apply(fsm.NodeDestroyResult{NodeID: n.ID, Deleted: true, At: n.Alarm.Due.Add(5 * time.Second)})
}

// taskID is the id the API would give task i submitted at start (its
// submission time, then a unique suffix where the API has random hex).
func taskID(i int, start time.Time) string {
	return fmt.Sprintf("t-%012x%012x", start.UnixMilli(), i)
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct{ bytes.Buffer }

func (*memSink) ID() string    { return "soak" }
func (*memSink) Cancel() error { return nil }
func (*memSink) Close() error  { return nil }

var _ raft.SnapshotSink = (*memSink)(nil)

func heap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func soak(b *testing.B, days, perDay int, retention time.Duration) {
	dir := b.TempDir()
	arc, err := archive.Open(dir, func(msg string, args ...any) { b.Errorf("%s %v", msg, args) })
	if err != nil {
		b.Fatal(err)
	}
	s := &sim{b: b, f: fsm.New()}
	archived := 0 // a count: a list of ids would grow the heap measured
	s.f.SetArchiveHook(func(f fsm.Forgotten) {
		arc.Write(f)
		archived += len(f.Tasks)
	})
	t0 := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	every := 24 * time.Hour / time.Duration(perDay)
	base := heap()
	b.Logf("retention %s, %d tasks a day (one every %s), %d days", retention, perDay, every, days)
	fmt.Printf("\n| week | tasks run | tasks in state | nodes in state | heap (MB) | snapshot (MB) | restore (ms) | archived tasks | archive on disk (MB) |\n|---|---|---|---|---|---|---|---|---|\n")
	i := 0
	for d := 1; d <= days; d++ {
		for range perDay {
			s.runTask(i, t0.Add(time.Duration(i)*every))
			i++
		}
		now := t0.Add(time.Duration(d) * 24 * time.Hour)
		if retention > 0 {
			c := s.f.ForgetCandidates(now.Add(-retention), 0)
			c.At = now
			s.apply(c)
		}
		if d%7 == 0 {
			h := heap()
			sink := &memSink{}
			snap, err := s.f.Snapshot()
			if err != nil {
				b.Fatal(err)
			}
			if err := snap.Persist(sink); err != nil {
				b.Fatal(err)
			}
			size := sink.Len()
			// The restart's cost: the best of three restores (the machine
			// is shared, and one slow run says little).
			restore := time.Hour
			for range 3 {
				start := time.Now()
				restored := fsm.New()
				if err := restored.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
					b.Fatal(err)
				}
				restore = min(restore, time.Since(start))
			}
			fmt.Printf("| %d | %d | %d | %d | %.1f | %.2f | %.0f | %d | %.1f |\n", d/7, i, s.f.TaskCount(), len(s.f.Nodes("", "")),
				float64(h-min(h, base))/1e6, float64(size)/1e6, float64(restore.Microseconds())/1e3, archived, float64(dirSize(b, dir))/1e6)
		}
	}
	// Every task no longer in the state is in the archive, readable by
	// id with its timeline.
	start, read := time.Now(), 0
	for j := range i {
		id := taskID(j, t0.Add(time.Duration(j)*every))
		if _, ok := s.f.Task(id); ok {
			continue
		}
		t, ok, err := arc.Task(id)
		if err != nil || !ok || t.ID != id || t.Status != fsm.StatusCompleted || len(t.History) == 0 || len(t.Steps) == 0 {
			b.Fatalf("archived task %s: ok=%v err=%v task=%+v", id, ok, err, t)
		}
		read++
	}
	if read != archived {
		b.Fatalf("%d tasks left the state, %d were archived", read, archived)
	}
	if read > 0 {
		el := time.Since(start)
		fmt.Printf("\nall %d archived tasks read back by id in %s (%.2f ms each); archive write errors: %d\n", read, el.Round(time.Millisecond),
			float64(el.Microseconds())/1e3/float64(read), arc.Errors())
	}
}

func dirSize(b *testing.B, dir string) int64 {
	es, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	for _, e := range es {
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}
