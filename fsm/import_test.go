package fsm

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// importCmd is an in-flight import at a step with the references the step
// needs.
func importCmd(id string, s Step) ImportTask {
	c := ImportTask{TaskID: id, Spec: spec("u1"), Status: StatusQueued, Step: s, At: t0, CreatedAt: t0.Add(-time.Hour)}
	o := s.Order()
	if o >= StepNodeProvisioning.Order() {
		c.NodeID = "old-node-" + id
	}
	if o >= StepNodeAgentReady.Order() {
		c.ServerID = 4242
	}
	if o >= StepWorkspaceCreate.Order() {
		c.WorkspaceID = "old-ws-" + id
	}
	if o >= StepWorkspaceReady.Order() {
		c.Status = StatusDelegated
	}
	if o >= StepRunning.Order() {
		c.Status, c.AgentSessionID = StatusInProgress, "old-sess-"+id
	}
	return c
}

func TestImportAtEveryStep(t *testing.T) {
	for _, s := range AllSteps {
		t.Run(string(s), func(t *testing.T) {
			a := newApplier(t)
			r := a.apply(importCmd("x", s))
			if r.Err != nil || r.Unchanged {
				t.Fatalf("import = %v (duplicate %v)", r.Err, r.Unchanged)
			}
			task := r.Task
			if task.Imported == nil || task.Imported.Step != s || task.Alarm == nil || task.Alarm.Kind != AlarmRun {
				t.Fatalf("imported task = %+v", task)
			}
			if task.Owner != "u1" {
				t.Fatalf("owner = %q, want the old system's user u1", task.Owner)
			}
			adopted := s.Order() >= StepNodeAgentReady.Order()
			if task.Adopting != adopted || task.Step != s {
				t.Fatalf("adopting = %v at %q, want %v at %s", task.Adopting, task.Step, adopted, s)
			}
			if adopted && task.RunnableStep() != StepAdopt {
				t.Fatalf("runnable step = %s, want adopt", task.RunnableStep())
			}
			if s != StepNodeSelection {
				n, ok := a.f.Node(task.NodeID)
				if !ok || n.Status != NodeActive || n.UserID != "u1" || n.ServerName != "node-"+task.NodeID || n.Alarm == nil {
					t.Fatalf("node = %+v (found %v)", n, ok)
				}
				if n.Ready != (s.Order() > StepNodeAgentReady.Order()) {
					t.Fatalf("node ready = %v at %s", n.Ready, s)
				}
			}
			if task.WorkspaceID != "" {
				if ws, ok := a.f.Workspace(task.WorkspaceID); !ok || ws.Status != WorkspaceCreating || ws.TaskID != "x" {
					t.Fatalf("workspace = %+v (found %v)", ws, ok)
				}
			}
			// Importing again is a no-op, and a second FSM agrees byte for byte.
			before := snapshotBytes(t, a.f)
			r2 := a.apply(importCmd("x", s))
			if !r2.Unchanged || r2.Err != nil {
				t.Fatalf("second import = %+v", r2)
			}
			after := snapshotBytes(t, a.f)
			if !sameTasks(t, before, after) {
				t.Fatalf("second import changed the state")
			}
		})
	}
}

// sameTasks compares two snapshots ignoring the applied index.
func sameTasks(t *testing.T, a, b []byte) bool {
	t.Helper()
	fa, fb := New(), New()
	if err := fa.Restore(io.NopCloser(bytes.NewReader(a))); err != nil {
		t.Fatal(err)
	}
	if err := fb.Restore(io.NopCloser(bytes.NewReader(b))); err != nil {
		t.Fatal(err)
	}
	fb.st.index = fa.st.index
	return bytes.Equal(snapshotBytes(t, fa), snapshotBytes(t, fb))
}

func TestImportHistory(t *testing.T) {
	a := newApplier(t)
	done := t0.Add(-time.Minute)
	for i, st := range []Status{StatusCompleted, StatusFailed, StatusCancelled} {
		c := ImportTask{TaskID: "h" + string(rune('a'+i)), Spec: spec("u1"), Status: st, Step: StepRunning, NodeID: "warm-1", ServerID: 77,
			CompletedAt: &done, ErrorMessage: "boom", At: t0}
		r := a.apply(c)
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		task := r.Task
		if task.Status != st || task.Step != StepNone || task.Alarm != nil || task.Cleanup || task.Adopting || !task.CompletedAt.Equal(done) {
			t.Fatalf("history task = %+v", task)
		}
	}
	// The node the finished tasks ran on joins the warm pool, once.
	n, ok := a.f.Node("warm-1")
	if !ok || n.Status != NodeWarm || n.ServerID != 77 || !n.Ready || n.Alarm == nil || n.Alarm.Kind != AlarmDeadline {
		t.Fatalf("warm node = %+v", n)
	}
	// An in-flight task on that node claims it.
	c := importCmd("live", StepRunning)
	c.NodeID, c.ServerID = "warm-1", 77
	if r := a.apply(c); r.Err != nil {
		t.Fatal(r.Err)
	}
	if n, _ := a.f.Node("warm-1"); n.Status != NodeActive || n.WarmSince != nil {
		t.Fatalf("claimed node = %+v", n)
	}
	// A node first named without its server learns it from a later line.
	c = importCmd("p1", StepNodeProvisioning)
	c.NodeID = "shared"
	a.apply(c)
	c = importCmd("p2", StepRunning)
	c.NodeID = "shared"
	a.apply(c)
	if n, _ := a.f.Node("shared"); n.ServerID != 4242 || n.Status != NodeActive {
		t.Fatalf("shared node = %+v", n)
	}
}

func TestImportRefusals(t *testing.T) {
	a := newApplier(t)
	submit(a, "t-mine")
	a.apply(importCmd("other", StepRunning))
	cases := []struct {
		name  string
		mod   func(c *ImportTask)
		field string
	}{
		{"tdf task id", func(c *ImportTask) { c.TaskID = "t-mine" }, "id"},
		{"no id", func(c *ImportTask) { c.TaskID = " " }, "id"},
		{"bad status", func(c *ImportTask) { c.Status = "paused" }, "status"},
		{"bad step", func(c *ImportTask) { c.Step = "compiling" }, "execution_step"},
		{"adopt step", func(c *ImportTask) { c.Step = StepAdopt }, "execution_step"},
		{"no step", func(c *ImportTask) { c.Step = StepNone }, "execution_step"},
		{"node at selection", func(c *ImportTask) { c.Step = StepNodeSelection; c.WorkspaceID = "" }, "node_id"},
		{"no node", func(c *ImportTask) { c.NodeID = "" }, "node_id"},
		{"no server", func(c *ImportTask) { c.ServerID = 0 }, "server_id"},
		{"negative server", func(c *ImportTask) { c.ServerID = -1 }, "server_id"},
		{"no workspace", func(c *ImportTask) { c.WorkspaceID = "" }, "workspace_id"},
		{"early workspace", func(c *ImportTask) { c.Step = StepNodeAgentReady }, "workspace_id"},
		{"node of another user", func(c *ImportTask) { c.NodeID = "old-node-other"; c.Spec.UserID = "u2" }, "node_id"},
		{"node with another server", func(c *ImportTask) { c.NodeID = "old-node-other"; c.ServerID = 1 }, "server_id"},
		{"workspace of another task", func(c *ImportTask) { c.WorkspaceID = "old-ws-other" }, "workspace_id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := importCmd("new", StepRunning)
			tc.mod(&c)
			r := a.apply(c)
			if r.Err == nil || !strings.Contains(r.Err.Error(), tc.field+":") {
				t.Fatalf("import = %v, want an error naming %s", r.Err, tc.field)
			}
			if !errors.Is(r.Err, ErrInvalid) && !errors.Is(r.Err, ErrExists) {
				t.Fatalf("error %v is neither invalid nor exists", r.Err)
			}
			if _, ok := a.f.Task("new"); ok {
				t.Fatal("a refused import left a task")
			}
		})
	}
}

// adopt claims the adopt step and commits what the handler found.
func adopt(a *applier, id string, d StepData) *Task {
	a.t.Helper()
	cur, _ := a.f.Task(id)
	r := a.apply(StepStarted{TaskID: id, Step: StepAdopt, Attempt: cur.Attempt + 1, Term: 1, Leader: "n1", At: t0.Add(time.Second)})
	if r.Err != nil {
		a.t.Fatalf("claim adopt: %v", r.Err)
	}
	r = a.apply(StepResult{TaskID: id, Step: StepAdopt, Attempt: cur.Attempt + 1, Term: 1, Outcome: OutcomeSuccess, Data: d,
		Leader: "n1", At: t0.Add(2 * time.Second)})
	if r.Err != nil {
		a.t.Fatalf("adopt result: %v", r.Err)
	}
	return r.Task
}

func TestAdoptResult(t *testing.T) {
	t.Run("server gone: provision again", func(t *testing.T) {
		a := newApplier(t)
		a.apply(importCmd("x", StepRunning))
		task := adopt(a, "x", StepData{AdoptTo: StepNodeProvisioning, ServerGone: true, AdoptNote: "server gone"})
		n, _ := a.f.Node(task.NodeID)
		if task.Step != StepNodeProvisioning || task.Adopting || task.Status != StatusInProgress || n.ServerID != 0 || n.Ready {
			t.Fatalf("task at %s (adopting %v, %s), node %+v", task.Step, task.Adopting, task.Status, n)
		}
		if last := task.Steps[len(task.Steps)-1]; last.Step != StepAdopt || last.Note != "server gone" {
			t.Fatalf("timeline = %+v", task.Steps)
		}
	})
	t.Run("workspace running: skip the wait", func(t *testing.T) {
		a := newApplier(t)
		a.apply(importCmd("x", StepWorkspaceCreate))
		task := adopt(a, "x", StepData{AdoptTo: StepAgentSession, IPv4: "127.0.0.9", NodeReady: true, WorkspaceStatus: WorkspaceRunning})
		ws, _ := a.f.Workspace(task.WorkspaceID)
		n, _ := a.f.Node(task.NodeID)
		if task.Step != StepAgentSession || task.Status != StatusDelegated || ws.Status != WorkspaceRunning || !n.Ready || n.IPv4 != "127.0.0.9" {
			t.Fatalf("task %s/%s, workspace %s, node %+v", task.Status, task.Step, ws.Status, n)
		}
		if task.Alarm == nil || task.Alarm.Kind != AlarmRun {
			t.Fatalf("alarm = %+v", task.Alarm)
		}
	})
	t.Run("session running: wait at running", func(t *testing.T) {
		a := newApplier(t)
		a.apply(importCmd("x", StepAgentSession))
		task := adopt(a, "x", StepData{AdoptTo: StepRunning, WorkspaceStatus: WorkspaceRunning, SessionID: "old-sess"})
		if task.Step != StepRunning || task.Status != StatusInProgress || task.AgentSessionID != "old-sess" || task.StartedAt == nil ||
			task.Alarm.Kind != AlarmDeadline || !task.Alarm.Due.Equal(t0.Add(2*time.Second).Add(task.Policy.MaxExecution)) {
			t.Fatalf("task = %+v", task)
		}
	})
	t.Run("follow-up gone: complete", func(t *testing.T) {
		a := newApplier(t)
		a.apply(importCmd("x", StepAwaitingFollowup))
		task := adopt(a, "x", StepData{AdoptComplete: true, AdoptNote: "workspace gone"})
		if task.Status != StatusCompleted || !task.Cleanup {
			t.Fatalf("task = %+v", task)
		}
	})
	t.Run("invalid target fails the task", func(t *testing.T) {
		a := newApplier(t)
		a.apply(importCmd("x", StepRunning))
		task := adopt(a, "x", StepData{AdoptTo: StepNodeSelection})
		if task.Status != StatusFailed || task.Adopting {
			t.Fatalf("task = %+v", task)
		}
	})
	t.Run("callback during adoption wins; the stale result is fenced", func(t *testing.T) {
		a := newApplier(t)
		a.apply(importCmd("x", StepWorkspaceReady))
		a.apply(StepStarted{TaskID: "x", Step: StepAdopt, Attempt: 1, Term: 1, Leader: "n1", At: t0})
		r := a.apply(WorkspaceReady{WorkspaceID: "old-ws-x", Status: WorkspaceRunning, At: t0})
		if r.Task.Step != StepAgentSession || r.Task.Adopting {
			t.Fatalf("after callback: %+v", r.Task)
		}
		r = a.f.ApplyCommand(a.index+1, mustEncode(t, StepResult{TaskID: "x", Step: StepAdopt, Attempt: 1, Term: 1, Outcome: OutcomeSuccess,
			Data: StepData{AdoptTo: StepWorkspaceReady}, At: t0}))
		if !errors.Is(r.Err, ErrFenced) {
			t.Fatalf("stale adopt result = %v", r.Err)
		}
	})
}

func mustEncode(t *testing.T, c Command) []byte {
	t.Helper()
	b, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestImportSnapshotRoundTrip: imported and adopting tasks, imported nodes
// and workspaces survive snapshot and restore, and the hash sees them.
func TestImportSnapshotRoundTrip(t *testing.T) {
	a := newApplier(t)
	_, empty, _ := a.f.Hash()
	for _, s := range AllSteps {
		a.apply(importCmd("x-"+string(s), s))
	}
	done := t0
	a.apply(ImportTask{TaskID: "h", Spec: spec("u1"), Status: StatusCompleted, NodeID: "w", ServerID: 9, CompletedAt: &done, At: t0})
	_, full, _ := a.f.Hash()
	if full == empty {
		t.Fatal("hash did not change")
	}
	orig := snapshotBytes(t, a.f)
	restored := New()
	if err := restored.Restore(io.NopCloser(bytes.NewReader(orig))); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snapshotBytes(t, restored), orig) {
		t.Fatal("restored state differs")
	}
	task, _ := restored.Task("x-" + string(StepRunning))
	if !task.Adopting || task.Imported == nil || task.Imported.ServerID != 4242 {
		t.Fatalf("restored task = %+v", task)
	}
	if _, h2, _ := restored.Hash(); h2 != full {
		t.Fatal("restored hash differs")
	}
}

func TestCheckImportWritesNothing(t *testing.T) {
	a := newApplier(t)
	before := snapshotBytes(t, a.f)
	dup, err := a.f.CheckImport(importCmd("x", StepRunning))
	if dup || err != nil {
		t.Fatalf("check = %v %v", dup, err)
	}
	if !bytes.Equal(before, snapshotBytes(t, a.f)) {
		t.Fatal("CheckImport changed the state")
	}
	a.apply(importCmd("x", StepRunning))
	if dup, err := a.f.CheckImport(importCmd("x", StepRunning)); !dup || err != nil {
		t.Fatalf("check after import = %v %v", dup, err)
	}
}
