package fsm

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"
)

// The command decoder and Apply under arbitrary log entries. A raft log
// entry is only ever written by a leader of this code, but a replica must
// still survive whatever it reads: a decodable entry applies without a
// panic, deterministically, and leaves a state that snapshots and restores
// byte for byte.

// fuzzFixture is a state with something for every command to find: tasks
// queued, at an effect step (claimed and not), waiting for their
// workspace, running, awaiting follow-up and cancelled; their nodes
// and workspaces; members, a signing key, error records and settings.
func fuzzFixture(tb testing.TB) *applier {
	a := newApplier(tb)
	submit(a, "t-queued")
	// First, while there is no node to reuse, so that they provision one.
	fxDrive(a, "t-provisioning", StepNodeProvisioning)
	fxDrive(a, "t-claimed", StepNodeProvisioning)
	c, _ := a.f.Task("t-claimed")
	a.apply(StepStarted{TaskID: c.ID, Step: c.RunnableStep(), Attempt: c.Attempt + 1, Term: 1, Leader: "n1", At: t0})
	fxDrive(a, "t-waiting", StepWorkspaceReady)
	fxDrive(a, "t-running", StepRunning)
	fxDrive(a, "t-followup", StepRunning)
	fu, _ := a.f.Task("t-followup")
	a.apply(TaskStatusCallback{TaskID: fu.ID, WorkspaceID: fu.WorkspaceID, ExecutionStep: StepAwaitingFollowup, At: t0.Add(time.Second)})
	submit(a, "t-cancelled")
	a.apply(CancelTask{TaskID: "t-cancelled", Actor: Actor{Type: ActorUser, ID: "u1"}, At: t0})
	a.apply(RegisterMember{Member: Member{ID: "n1", RaftAddr: "127.0.0.1:7001", APIAddr: "http://127.0.0.1:8001"}})
	a.apply(RegisterMember{Member: Member{ID: "n2", RaftAddr: "127.0.0.1:7002", APIAddr: "http://127.0.0.1:8002"}})
	a.apply(AddSigningKey{Key: SigningKey{ID: "k1", PEM: []byte("not a real key"), CreatedAt: t0}})
	a.apply(RecordError{Record: ErrorRecord{Kind: ErrKindReconciler, NodeID: "n-t-running", Message: "leaked server", At: t0}})
	a.apply(SetSettings{Settings: DefaultSettings()})
	return a
}

// fxDrive runs a new task's pipeline until it reaches step to: effect
// steps succeed, the workspace reports ready, the session starts.
func fxDrive(a *applier, id string, to Step) {
	a.t.Helper()
	submit(a, id)
	a.apply(DecideStep{TaskID: id, Step: StepNodeSelection, Leader: "n1", At: t0})
	for {
		cur, _ := a.f.Task(id)
		if cur.Step == to {
			return
		}
		if cur.Step == StepWorkspaceReady {
			a.apply(WorkspaceReady{WorkspaceID: cur.WorkspaceID, Status: WorkspaceRunning, At: t0.Add(time.Second)})
			continue
		}
		step := cur.RunnableStep()
		if step == StepNone {
			a.t.Fatalf("fixture: task %s stuck at %s/%s", id, cur.Status, cur.Step)
		}
		c := StepStarted{TaskID: id, Step: step, Attempt: cur.Attempt + 1, Term: 1, Leader: "n1", At: t0}
		a.apply(c)
		r := a.apply(StepResult{TaskID: id, Step: step, Attempt: c.Attempt, Term: 1, Outcome: OutcomeSuccess,
			Data: StepData{ServerID: 7, IPv4: "10.0.0.7", SessionID: "s-" + id}, Leader: "n1", At: t0.Add(time.Second)})
		if r.Err != nil {
			a.t.Fatalf("fixture: %s/%s: %v", id, step, r.Err)
		}
	}
}

// everyCommand returns one valid command of every type, about the
// fixture's records, so that the fuzzer starts from each decoder's happy
// path.
func everyCommand(f *FSM) []Command {
	w, _ := f.Task("t-waiting")
	r, _ := f.Task("t-running")
	p, _ := f.Task("t-provisioning")
	c, _ := f.Task("t-claimed")
	fu, _ := f.Task("t-followup")
	node, _ := f.Node(w.NodeID)
	nodeDue := t0
	if node != nil && node.Alarm != nil {
		nodeDue = node.Alarm.Due
	}
	at := t0.Add(time.Minute)
	return []Command{
		SubmitTask{RequestID: "r-new", Fingerprint: "fp", TaskID: "t-new", Spec: spec("u2"), Policy: DefaultPolicy(), At: at},
		CancelTask{TaskID: "t-queued", Actor: Actor{Type: ActorUser, ID: "u1"}, Reason: "no longer needed", At: at},
		SetStatus{TaskID: "t-cancelled", To: StatusReady, Actor: Actor{Type: ActorUser, ID: "u1"}, At: at},
		RegisterMember{Member: Member{ID: "n3", RaftAddr: "127.0.0.1:7003", APIAddr: "http://127.0.0.1:8003"}},
		RemoveMember{ID: "n2"},
		StepStarted{TaskID: p.ID, Step: p.RunnableStep(), Attempt: p.Attempt + 1, Term: 2, Leader: "n1", At: at},
		StepResult{TaskID: c.ID, Step: c.Step, Attempt: c.Attempt, Term: c.ClaimTerm, Outcome: OutcomeSuccess,
			Data: StepData{ServerID: 8, IPv4: "10.0.0.8"}, Leader: "n1", At: at},
		DecideStep{TaskID: "t-queued", Step: StepNodeSelection, Leader: "n1", At: at},
		StepTimeout{TaskID: w.ID, Step: w.Step, Due: w.Alarm.Due, At: w.Alarm.Due},
		FailTask{TaskID: "t-running", Reason: "gave up", Diagnostic: "d", Source: ErrKindSweeper, At: at},
		Reschedule{TaskID: "t-waiting", Reason: "node lost", At: at},
		SetSettings{Settings: Settings{MaxWorkspacesPerNode: 2, CPUThreshold: 50, MemoryThreshold: 60, MaxNodesPerUser: 1,
			NodeWarmTimeout: time.Minute, MaxNodeLifetime: time.Hour, HeartbeatStale: time.Minute}},
		NodeAlarmFired{NodeID: w.NodeID, Due: nodeDue, At: nodeDue},
		NodeDestroyResult{NodeID: r.NodeID, Deleted: true, At: at},
		NodeReady{NodeID: w.NodeID, At: at},
		NodeHeartbeat{NodeID: r.NodeID, ActiveWorkspaces: 1, Metrics: &NodeMetrics{CPULoad: 0.5, MemoryPercent: 20, DiskPercent: 30}, At: at},
		NodeErrors{NodeID: r.NodeID, Errors: []NodeError{{IncidentID: "i1", Level: "error", Message: "disk full", Source: "agent", WorkspaceID: r.WorkspaceID}}, At: at},
		WorkspaceReady{WorkspaceID: w.WorkspaceID, Status: WorkspaceRunning, At: at},
		WorkspaceFailed{WorkspaceID: w.WorkspaceID, Message: "no disk", At: at},
		TaskStatusCallback{TaskID: r.ID, WorkspaceID: r.WorkspaceID, ToStatus: StatusCompleted, Output: Output{Branch: "b", PRURL: "https://x/pr/1", Summary: "done"}, At: at},
		IdleReset{TaskID: fu.ID, Actor: Actor{Type: ActorUser, ID: "u1"}, At: at},
		AddSigningKey{Key: SigningKey{ID: "k2", PEM: []byte("another"), CreatedAt: at}},
		RecordError{Record: ErrorRecord{Kind: ErrKindReconciler, Message: "leaked", At: at}},
		PurgeErrors{Before: at},
		SetControlPlane{URL: "http://lb.test:8000"},
		SetClusterID{ID: "0123456789abcdef0123456789abcdef"},
		SetCredential{Credential: Credential{CredentialRef: CredentialRef{Kind: CredentialGitToken, Scope: CredentialProject, ScopeID: "p1"},
			KeyID: "k-1", Nonce: make([]byte, 12), Ciphertext: make([]byte, 33)}, At: at},
		NodeErrors{NodeID: r.NodeID, SplitLevels: true, Errors: []NodeError{
			{IncidentID: "i2", Level: "info", Message: "Agent ready", Source: "agent", ReportedAt: "2026-11-25T12:01:00Z"},
			{IncidentID: "i3", Level: "error", Message: "docker died", Stack: "trace", Context: `{"exit":1}`}}, At: at},
		TaskStatusCallback{TaskID: fu.ID, WorkspaceID: fu.WorkspaceID, ExecutionStep: StepAwaitingFollowup,
			Output: Output{Push: &PushResult{BranchName: "main", HasUncommittedChanges: true, Error: "push blocked"}, AgentError: "e"}, At: at},
		RecordMessages{WorkspaceID: r.WorkspaceID, Messages: []Message{{MessageID: "m1", SessionID: "c-running", Role: "assistant", Content: "hi", Timestamp: "2026-11-25T12:01:00Z", Sequence: 1}}, At: at},
	}
}

// fuzzSeeds encodes everyCommand's commands and, for a registered type
// that has none there (one added since), its empty command, so that the
// corpus always starts with every type.
func fuzzSeeds(tb testing.TB, f *FSM) [][]byte {
	have := map[CommandType]bool{}
	var out [][]byte
	add := func(c Command) {
		b, err := Encode(c)
		if err != nil {
			tb.Fatalf("Encode(%T) = %v", c, err)
		}
		out, have[c.Type()&^IgnoreUnknown] = append(out, b), true
	}
	for _, c := range everyCommand(f) {
		add(c)
	}
	for _, typ := range slices.Sorted(maps.Keys(commands)) {
		if !have[typ] {
			add(deref(commands[typ]()))
		}
	}
	return out
}

// The seeds hold a command of every registered type, and everyCommand's
// are valid: each applies to the fixture without a domain error, so the
// fuzzer starts from paths that change state.
func TestFuzzSeeds(t *testing.T) {
	fx := fuzzFixture(t)
	seen := map[CommandType]bool{}
	for _, b := range fuzzSeeds(t, fx.f) {
		c, err := Decode(b)
		if err != nil {
			t.Fatalf("seed %q does not decode: %v", b, err)
		}
		seen[c.Type()&^IgnoreUnknown] = true
	}
	for typ := range commands {
		if !seen[typ] {
			t.Errorf("no seed of command type %d", typ)
		}
	}
	for _, c := range everyCommand(fx.f) {
		a := fuzzFixture(t)
		if r := a.apply(c); r.Err != nil {
			t.Errorf("seed %T = %v, want it to apply", c, r.Err)
		}
	}
}

// FuzzApplyCommand decodes arbitrary log entries and applies the decodable
// ones to a copy of the fixture. Properties: an undecodable entry is an
// ErrDecode or ErrUnknownCommand; decode→encode→decode→encode gives the
// same command type and the same bytes; Apply never panics; two replicas
// applying the same entry reach the same state; the state snapshots,
// restores and snapshots again to the same bytes; every task in a run
// still has exactly the alarm its step wants (checkAlarmInvariant); a
// command refused with a domain error changes nothing but the applied
// index (a fenced one also its counter and the error database).
func FuzzApplyCommand(f *testing.F) {
	fx := fuzzFixture(f)
	for _, b := range fuzzSeeds(f, fx.f) {
		f.Add(b)
		f.Add(append([]byte{b[0] | byte(IgnoreUnknown)}, b[1:]...))
	}
	f.Add([]byte{byte(CmdSubmitTask), 1, 'n', 'u', 'l', 'l'})
	f.Add([]byte{byte(CmdNodeHeartbeat), 1, '{', '}'})
	f.Add([]byte{byte(IgnoreUnknown | 0x7f), 1, '{', '}'})
	f.Add([]byte{byte(CmdSubmitTask), 2, '{', '}'})
	base := snapshotBytes(f, fx.f)
	index := fx.index + 1

	f.Fuzz(func(t *testing.T, entry []byte) {
		cmd, err := Decode(entry)
		if err != nil {
			if !errors.Is(err, ErrDecode) && !errors.Is(err, ErrUnknownCommand) {
				t.Fatalf("Decode(%q) = %v, want ErrDecode or ErrUnknownCommand", entry, err)
			}
			if len(entry) == 0 || CommandType(entry[0])&IgnoreUnknown == 0 {
				return // Apply refuses it by panicking, on every replica alike
			}
		} else {
			checkRoundTrip(t, cmd)
		}
		a, b := restoreBytes(t, base), restoreBytes(t, base)
		res := a.ApplyCommand(index, entry)
		b.ApplyCommand(index, entry)
		after := snapshotBytes(t, a)
		if other := snapshotBytes(t, b); !bytes.Equal(after, other) {
			t.Fatalf("two replicas applying %q disagree", entry)
		}
		if again := snapshotBytes(t, restoreBytes(t, after)); !bytes.Equal(again, after) {
			t.Fatalf("after %q the state does not survive snapshot and restore", entry)
		}
		checkAlarmInvariant(t, a, 0, int(index))
		if res.Err != nil && !res.Unchanged && !errors.Is(res.Err, ErrFenced) {
			unchanged := restoreBytes(t, base)
			unchanged.ApplyCommand(index, []byte{byte(IgnoreUnknown | 0x7f), bodyVersion})
			if want := snapshotBytes(t, unchanged); !bytes.Equal(after, want) {
				t.Fatalf("%q was refused (%v) but changed the state", entry, res.Err)
			}
		}
	})
}

// checkRoundTrip: a decoded command re-encodes to bytes that decode to the
// same command and encode to the same bytes again.
func checkRoundTrip(t *testing.T, cmd Command) {
	t.Helper()
	b, err := Encode(cmd)
	if err != nil {
		t.Fatalf("Encode(%#v) = %v", cmd, err)
	}
	cmd2, err := Decode(b)
	if err != nil {
		t.Fatalf("Decode(Encode(%#v)) = %v", cmd, err)
	}
	if reflect.TypeOf(cmd2) != reflect.TypeOf(cmd) {
		t.Fatalf("round trip turned %T into %T", cmd, cmd2)
	}
	b2, err := Encode(cmd2)
	if err != nil || !bytes.Equal(b, b2) {
		t.Fatalf("re-encoding is not stable: %q then %q (%v)", b, b2, err)
	}
}

func restoreBytes(t testing.TB, snap []byte) *FSM {
	t.Helper()
	f := New()
	if err := f.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatalf("Restore = %v", err)
	}
	return f
}
