package fsm

import (
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"reflect"
	"testing"
	"time"
	"unsafe"
)

// Replica determinism: a replica that applied the whole log live and one
// that was restored from a snapshot part-way (a restarted node, or one
// sent a snapshot by the leader) must reach the same state at every
// index. Anything Apply reads that a snapshot does not restore the same
// way (derived indexes, packed tasks, a field left out of a record) shows
// here as two hashes that differ.

// replicaWorkload makes commands about what the live FSM holds: whole task
// runs (decisions, claims and results, callbacks) over a few users, so
// that nodes are provisioned, released warm, claimed again and destroyed,
// mixed with stale and duplicate commands as leader changes make them.
type replicaWorkload struct {
	rng   *rand.Rand
	f     *FSM
	at    time.Time
	term  uint64
	tasks []string
	n     int
}

func (w *replicaWorkload) next() Command {
	w.at = w.at.Add(time.Duration(w.rng.Intn(20000)) * time.Millisecond)
	if len(w.tasks) == 0 || w.rng.Intn(8) == 0 {
		w.n++
		id := fmt.Sprintf("t-%05d", w.n)
		w.tasks = append(w.tasks, id)
		return SubmitTask{RequestID: fmt.Sprintf("r%d", w.rng.Intn(w.n+3)), TaskID: id, Spec: spec(fmt.Sprintf("u%d", w.rng.Intn(3))), At: w.at}
	}
	if w.rng.Intn(6) == 0 {
		if c := w.nodeCommand(); c != nil {
			return c
		}
	}
	if w.rng.Intn(12) == 0 {
		return w.clusterCommand()
	}
	cur, ok := w.f.Task(w.tasks[w.rng.Intn(len(w.tasks))])
	if !ok {
		return Reschedule{TaskID: "missing", At: w.at}
	}
	switch w.rng.Intn(10) {
	case 0:
		return randomStepCommand(w.rng, cur, &w.term, w.at)
	case 1:
		if cur.WorkspaceID != "" {
			if w.rng.Intn(4) == 0 {
				return WorkspaceFailed{WorkspaceID: cur.WorkspaceID, Message: "disk full", At: w.at}
			}
			return WorkspaceReady{WorkspaceID: cur.WorkspaceID, Status: WorkspaceRunning, At: w.at}
		}
	case 2:
		if cur.WorkspaceID != "" {
			cb := TaskStatusCallback{TaskID: cur.ID, WorkspaceID: cur.WorkspaceID, ExecutionStep: StepAwaitingFollowup,
				Output: Output{Branch: "b", Summary: fmt.Sprint("done ", w.rng.Intn(3))}, At: w.at}
			if w.rng.Intn(3) == 0 {
				cb = TaskStatusCallback{TaskID: cur.ID, WorkspaceID: cur.WorkspaceID, ToStatus: StatusCompleted, At: w.at}
			}
			return cb
		}
	case 3:
		if cur.Alarm != nil && cur.Alarm.Kind == AlarmDeadline {
			return StepTimeout{TaskID: cur.ID, Step: cur.Step, Due: cur.Alarm.Due, At: w.at}
		}
	case 4:
		if cur.WorkspaceID != "" {
			return RecordMessages{WorkspaceID: cur.WorkspaceID, At: w.at,
				Messages: []Message{msg(fmt.Sprint("m", w.rng.Intn(400)), "hello"), msg(fmt.Sprint("m", w.rng.Intn(400)), "there")}}
		}
	case 5:
		if w.rng.Intn(3) == 0 {
			return CancelTask{TaskID: cur.ID, Actor: Actor{Type: ActorUser, ID: cur.UserID}, At: w.at}
		}
		return IdleReset{TaskID: cur.ID, Actor: Actor{Type: ActorUser, ID: cur.UserID}, At: w.at}
	case 6:
		if cur.WorkspaceID != "" && w.rng.Intn(2) == 0 {
			// The leader's run reconciliation found the agent's run over.
			return ReconcileRun{TaskID: cur.ID, Step: cur.Step, WorkspaceID: cur.WorkspaceID, SessionID: cur.AgentSessionID,
				Finding: []RunFinding{RunFinished, RunLost}[w.rng.Intn(2)], Detail: "agent", Leader: "n1", At: w.at}
		}
	}
	// The runner's own move for the task's state.
	step := cur.RunnableStep()
	switch {
	case step == StepNone:
		return SetStatus{TaskID: cur.ID, To: StatusQueued, Actor: Actor{Type: ActorUser}, At: w.at}
	case KindOf(step) == KindDecided:
		return DecideStep{TaskID: cur.ID, Step: step, Leader: "n1", At: w.at}
	case KindOf(step) == KindWaiting:
		return WorkspaceReady{WorkspaceID: cur.WorkspaceID, Status: WorkspaceRunning, At: w.at}
	case !cur.InFlight:
		if w.rng.Intn(10) == 0 {
			w.term++
		}
		return StepStarted{TaskID: cur.ID, Step: step, Attempt: cur.Attempt + 1, Term: w.term, Leader: "n1", At: w.at}
	}
	outcome := []Outcome{OutcomeSuccess, OutcomeSuccess, OutcomeSuccess, OutcomePoll, OutcomeRetry, OutcomeFail}[w.rng.Intn(6)]
	return StepResult{TaskID: cur.ID, Step: step, Attempt: cur.Attempt, Term: cur.ClaimTerm, Outcome: outcome,
		RetryAt: w.at.Add(time.Second), Leader: "n1", At: w.at,
		Data: StepData{ServerID: int64(w.rng.Intn(50) + 1), IPv4: "10.0.0.1", SessionID: "s-" + cur.ID, WorkspaceStopped: w.rng.Intn(2) == 0}}
}

func (w *replicaWorkload) nodeCommand() Command {
	nodes := w.f.Nodes("", "")
	if len(nodes) == 0 {
		return nil
	}
	n := nodes[w.rng.Intn(len(nodes))]
	switch w.rng.Intn(6) {
	case 5:
		return NodeAdmin{NodeID: n.ID, Action: []NodeAction{NodeCordon, NodeUncordon, NodeDrain, NodeDestroy}[w.rng.Intn(4)],
			Actor: Actor{Type: ActorUser, ID: "admin"}, At: w.at}
	case 0:
		return NodeReady{NodeID: n.ID, At: w.at}
	case 4:
		return NodeErrors{NodeID: n.ID, SplitLevels: w.rng.Intn(2) == 0, At: w.at, Errors: []NodeError{
			{IncidentID: fmt.Sprint("i", w.rng.Intn(50)), Level: []string{"error", "info", ""}[w.rng.Intn(3)], Message: "oops"}}}
	case 1:
		return NodeHeartbeat{NodeID: n.ID, ActiveWorkspaces: w.rng.Intn(3), Metrics: &NodeMetrics{CPULoad: w.rng.Float64(), MemoryPercent: 100 * w.rng.Float64()}, At: w.at}
	}
	if n.Alarm == nil {
		return nil
	}
	if n.Status == NodeDestroying {
		return NodeDestroyResult{NodeID: n.ID, Deleted: w.rng.Intn(3) > 0, Error: "busy", RetryAt: w.at.Add(time.Second), At: w.at}
	}
	return NodeAlarmFired{NodeID: n.ID, Due: n.Alarm.Due, At: w.at}
}

// clusterCommand is one of the leader's cluster duties or an operator's
// change.
func (w *replicaWorkload) clusterCommand() Command {
	switch w.rng.Intn(6) {
	case 0:
		return RegisterMember{Member: Member{ID: fmt.Sprint("n", w.rng.Intn(3)), APIAddr: fmt.Sprint("http://127.0.0.1:", 8000+w.rng.Intn(3))}}
	case 1:
		s := DefaultSettings()
		s.MaxWorkspacesPerNode = 1 + w.rng.Intn(3)
		s.NodeWarmTimeout = time.Duration(1+w.rng.Intn(60)) * time.Second
		return SetSettings{Settings: s}
	case 2:
		return AddSigningKey{Key: SigningKey{ID: fmt.Sprint("k", w.rng.Intn(6)), PEM: []byte("pem"), CreatedAt: w.at}}
	case 3:
		return RecordError{Record: ErrorRecord{Kind: ErrKindReconciler, Message: "leaked server", At: w.at}}
	case 4:
		// Retention: what ended a while ago leaves the state.
		c := w.f.ForgetCandidates(w.at.Add(-2*time.Minute), 5)
		c.At = w.at
		return c
	}
	return PurgeErrors{Before: w.at.Add(-10 * time.Minute)}
}

// encodeEntry encodes the next raft entry: one command, or now and then a
// batch of several made from the same state.
func (w *replicaWorkload) encodeEntry(t *testing.T) []byte {
	t.Helper()
	var c Command = w.next()
	if w.rng.Intn(5) == 0 {
		b := Batch{Commands: []Command{c}}
		for k := w.rng.Intn(4); k > 0; k-- {
			b.Commands = append(b.Commands, w.next())
		}
		c = b
	}
	data, err := Encode(c)
	if err != nil {
		t.Fatalf("Encode(%T) = %v", c, err)
	}
	return data
}

// restoreFrom is a replica restarted from f's snapshot.
func restoreFrom(t *testing.T, f *FSM) *FSM {
	t.Helper()
	r := New()
	if err := r.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, f)))); err != nil {
		t.Fatalf("Restore = %v", err)
	}
	return r
}

// firstDifference names the first snapshot record in which two replicas'
// states differ, for a failure message worth reading.
func firstDifference(t *testing.T, a, b *FSM) string {
	t.Helper()
	d, err := SnapshotDifference(bytes.NewReader(snapshotBytes(t, a)), bytes.NewReader(snapshotBytes(t, b)))
	if err != nil {
		t.Fatalf("SnapshotDifference = %v", err)
	}
	return d
}

func TestRestoredReplicaAppliesLikeLiveOne(t *testing.T) {
	for seed := int64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			live := New()
			w := &replicaWorkload{rng: rng, f: live, at: t0, term: 1}
			restarted := New()
			for idx := uint64(1); idx <= 2000; idx++ {
				data := w.encodeEntry(t)
				if rng.Intn(150) == 0 {
					restarted = restoreFrom(t, restarted)
				}
				rl := live.ApplyCommand(idx, data)
				rr := restarted.ApplyCommand(idx, data)
				if fmt.Sprint(errOf(rl)) != fmt.Sprint(errOf(rr)) {
					t.Fatalf("index %d: live replica answered %v, restored one %v", idx, errOf(rl), errOf(rr))
				}
				if idx%25 != 0 {
					continue // hashing is most of the test's time
				}
				_, hl, _ := live.Hash()
				_, hr, _ := restarted.Hash()
				if hl != hr {
					t.Fatalf("index %d: state hashes differ\n%s", idx, firstDifference(t, live, restarted))
				}
			}
		})
	}
}

// memSink is a raft.SnapshotSink into memory.
type memSink struct{ bytes.Buffer }

func (*memSink) ID() string    { return "mem" }
func (*memSink) Cancel() error { return nil }
func (*memSink) Close() error  { return nil }

// TestSnapshotPersistedLateReplaysToLiveState is raft's restart path: a
// snapshot is taken at one index and persisted while Apply goes on; a
// replica restored from it replays the log after that index and must reach
// the live replica's state.
func TestSnapshotPersistedLateReplaysToLiveState(t *testing.T) {
	for seed := int64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			live := New()
			w := &replicaWorkload{rng: rng, f: live, at: t0, term: 1}
			var log [][]byte
			type pending struct {
				snap  *snapshot
				index uint64
				due   int
			}
			var snaps []pending
			check := func(p pending) {
				var sink memSink
				if err := p.snap.Persist(&sink); err != nil {
					t.Fatalf("Persist = %v", err)
				}
				r := New()
				if err := r.Restore(io.NopCloser(&sink)); err != nil {
					t.Fatalf("Restore = %v", err)
				}
				for i := p.index; i < uint64(len(log)); i++ {
					r.ApplyCommand(i+1, log[i])
				}
				_, hl, _ := live.Hash()
				_, hr, _ := r.Hash()
				if hl != hr {
					t.Fatalf("snapshot at index %d persisted at %d, replayed to %d: state differs from the live one\n%s",
						p.index, p.due, len(log), firstDifference(t, live, r))
				}
			}
			for idx := uint64(1); idx <= 1500; idx++ {
				data := w.encodeEntry(t)
				log = append(log, data)
				live.ApplyCommand(idx, data)
				if rng.Intn(40) == 0 {
					s, _ := live.Snapshot()
					snaps = append(snaps, pending{snap: s.(*snapshot), index: idx, due: int(idx) + rng.Intn(100)})
				}
				for len(snaps) > 0 && snaps[0].due <= int(idx) {
					check(snaps[0])
					snaps = snaps[1:]
				}
			}
		})
	}
}

// errOf lists a result's errors, its batch members' included.
func errOf(r *Result) []error {
	errs := []error{r.Err}
	for _, m := range r.Batch {
		errs = append(errs, m.Err)
	}
	return errs
}

// TestConcurrentReadersDoNotChangeState applies a log to one replica while
// readers use every accessor and snapshots are persisted in parallel (what
// a live leader's API, runner and raft do), and to another replica alone:
// the two must end in the same state. Run with -race, which also reports a
// reader that writes what Apply reads.
func TestConcurrentReadersDoNotChangeState(t *testing.T) {
	rng := rand.New(rand.NewSource(11))
	busy, quiet := New(), New()
	w := &replicaWorkload{rng: rng, f: quiet, at: t0, term: 1}
	var log [][]byte
	for i := 0; i < 1500; i++ {
		data := w.encodeEntry(t)
		log = append(log, data)
		quiet.ApplyCommand(uint64(i+1), data)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	readers := 3
	for r := 0; r < readers; r++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				select {
				case <-stop:
					return
				default:
				}
				readEverything(busy)
			}
		}()
	}
	stopWatch := busy.Watch(func(*Task) {}, func(*Node) {}, func(c Change) {
		if c.Task != nil {
			_ = c.Task.RunnableStep()
		}
	})
	for i, data := range log {
		busy.ApplyCommand(uint64(i+1), data)
		if i%200 == 0 {
			s, _ := busy.Snapshot()
			go func() {
				var sink memSink
				_ = s.Persist(&sink)
				s.Release()
			}()
		}
	}
	close(stop)
	for r := 0; r < readers; r++ {
		<-done
	}
	stopWatch()
	_, hb, _ := busy.Hash()
	_, hq, _ := quiet.Hash()
	if hb != hq {
		t.Fatalf("the replica read while applying differs from the quiet one\n%s", firstDifference(t, quiet, busy))
	}
}

// readEverything calls each read accessor as the API, the runner and the
// pipeline do, reading every field of what it gets.
func readEverything(f *FSM) {
	page, _ := f.ListTasks(TaskFilter{})
	for _, t := range page {
		if full, ok := f.Task(t.ID); ok {
			_ = fmt.Sprint(*full)
		}
		if t.WorkspaceID != "" {
			if ws, ok := f.Workspace(t.WorkspaceID); ok {
				_ = fmt.Sprint(*ws)
			}
			_, _ = f.Messages(t.ID)
		}
	}
	for _, n := range f.Nodes("", "") {
		_ = fmt.Sprint(*n)
		_ = f.NodeEvents(n.ID)
	}
	f.ForEachTask(func(t *Task) bool { _ = fmt.Sprint(*t); return true })
	_, _ = f.Errors(ErrorFilter{})
	_, _, _ = f.Hash()
	_ = f.SigningKeys()
	_ = f.Members()
}

// TestEveryStateFieldIsClonedAndRestored guards the state struct: a field
// that clone() (snapshots, Hash) or the snapshot format leaves out makes a
// replica restored from a snapshot differ from one that applied the log.
// The workload must give every field a value: a new field fails here until
// it is added to the workload, then the check covers it.
func TestEveryStateFieldIsClonedAndRestored(t *testing.T) {
	live := New()
	w := &replicaWorkload{rng: rand.New(rand.NewSource(3)), f: live, at: t0, term: 1}
	var idx uint64
	apply := func(data []byte) {
		idx++
		live.ApplyCommand(idx, data)
	}
	for i := 0; i < 1500; i++ {
		apply(w.encodeEntry(t))
	}
	for _, c := range []Command{
		CreateAPIToken{Token: apiToken("k1", "secret-one", TokenScopeUser)},
		SetControlPlane{URL: "http://127.0.0.1:8001"},
		SetClusterID{ID: "0123456789abcdef"},
		SetCredential{Credential: sealedCredential(gitRef, 1), At: t0},
		FailTask{TaskID: "no-such-task", Reason: "x", At: t0},
	} {
		data, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		apply(data)
	}
	restored := restoreFrom(t, live)
	orig, clone, back := reflect.ValueOf(live.st).Elem(), reflect.ValueOf(live.st.clone()).Elem(), reflect.ValueOf(restored.st).Elem()
	for i := 0; i < orig.NumField(); i++ {
		name := orig.Type().Field(i).Name
		o, c, r := exported(orig.Field(i)), exported(clone.Field(i)), exported(back.Field(i))
		if o.IsZero() || (o.Kind() == reflect.Pointer && size(o) == 0) {
			t.Errorf("state.%s is empty after the workload: give it a value here so that this test covers it", name)
			continue
		}
		if size(c) != size(o) || c.IsZero() {
			t.Errorf("state.%s: clone() does not carry it (size %d, original %d)", name, size(c), size(o))
		}
		if name != "idx" && (size(r) != size(o) || r.IsZero()) { // the indexes are rebuilt, entries left behind are not
			t.Errorf("state.%s: a snapshot does not carry it (size %d after restore, original %d)", name, size(r), size(o))
		}
	}
}

// exported makes an unexported field of an addressable struct usable
// (methods callable) by reflection.
func exported(v reflect.Value) reflect.Value {
	return reflect.NewAt(v.Type(), unsafe.Pointer(v.UnsafeAddr())).Elem()
}

// size is a field's record count: Len() of a tree, the length of a slice,
// 1 for any other set value.
func size(v reflect.Value) int {
	if m := v.MethodByName("Len"); m.IsValid() {
		return int(m.Call(nil)[0].Int())
	}
	if v.Kind() == reflect.Slice {
		return v.Len()
	}
	if v.IsZero() {
		return 0
	}
	return 1
}
