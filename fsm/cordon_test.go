package fsm

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// fireNodeAlarm fires a node's current alarm at its due time.
func fireNodeAlarm(t *testing.T, a *applier, id string) *Node {
	t.Helper()
	n, _ := a.f.Node(id)
	if n.Alarm == nil {
		t.Fatalf("node %s has no alarm", id)
	}
	r := a.apply(NodeDeadline{NodeID: id, Due: n.Alarm.Due, At: n.Alarm.Due})
	if r.Err != nil {
		t.Fatalf("fire %s alarm: %v", id, r.Err)
	}
	return r.Node
}

// finishRun completes a running task: the agent finishes, the idle timer
// runs out, the cleanup stops the workspace.
func finishRun(t *testing.T, a *applier, id string, at time.Time) *Task {
	t.Helper()
	task, _ := a.f.Task(id)
	if r := a.apply(TaskStatusCallback{TaskID: id, WorkspaceID: task.WorkspaceID, ExecutionStep: StepAwaitingFollowup, At: at}); r.Err != nil {
		t.Fatalf("followup callback: %v", r.Err)
	}
	task, _ = a.f.Task(id)
	if r := a.apply(StepTimeout{TaskID: id, Step: StepAwaitingFollowup, Due: task.Alarm.Due, At: task.Alarm.Due}); r.Err != nil || r.Task.Status != StatusCompleted {
		t.Fatalf("idle timeout: err=%v task=%+v", r.Err, r.Task)
	}
	return succeed(t, a, claim(t, a, id, 1, task.Alarm.Due), StepData{WorkspaceStopped: true}, task.Alarm.Due)
}

func TestBusyNodeAtMaxLifetimeIsCordonedUntilItsTaskEnds(t *testing.T) {
	a := newApplier(t)
	task := cbToRunning(t, a, "t1")
	s := DefaultSettings()
	n := fireNodeAlarm(t, a, task.NodeID)
	if n.Status != NodeActive || !n.Cordoned || !n.PastLifetime || n.CordonReason != CordonLifetime ||
		n.Alarm == nil || n.Alarm.Kind != AlarmDeadline || !n.Alarm.Due.Equal(n.CreatedAt.Add(s.HardLifetime())) {
		t.Fatalf("busy node at max lifetime: %+v alarm %+v, want active, cordoned, alarm at the hard limit", n, n.Alarm)
	}
	if cur, _ := a.f.Task("t1"); cur.Status != StatusInProgress || cur.Step != StepRunning {
		t.Fatalf("task %s/%s after the lifetime alarm, want still running", cur.Status, cur.Step)
	}
	// A new task of the same user does not land on the cordoned node.
	at := n.CreatedAt.Add(s.MaxNodeLifetime + time.Minute)
	if r := a.apply(NodeHeartbeat{NodeID: n.ID, At: at}); r.Err != nil {
		t.Fatalf("heartbeat: %v", r.Err)
	}
	nsSubmit(t, a, "t2", spec("u1"), at)
	if t2, _ := nsDecide(t, a, "t2", at); t2.NodeID == n.ID || t2.Step != StepNodeProvisioning {
		t.Fatalf("t2 on %s at %s, want a new node", t2.NodeID, t2.Step)
	}
	// The task completes; its cleanup destroys the node.
	done := finishRun(t, a, "t1", at.Add(time.Hour))
	if done.Status != StatusCompleted || done.ErrorMessage != "" {
		t.Fatalf("task %s %q, want completed", done.Status, done.ErrorMessage)
	}
	n, _ = a.f.Node(n.ID)
	if n.Status != NodeDestroying || n.Alarm == nil || n.Alarm.Kind != AlarmRun {
		t.Fatalf("node %s alarm %+v after its last task, want destroying now", n.Status, n.Alarm)
	}
	if r := a.apply(NodeDestroyResult{NodeID: n.ID, Deleted: true, At: at.Add(2 * time.Hour)}); r.Err != nil || r.Node.Status != NodeDeleted {
		t.Fatalf("destroy result: err=%v node=%+v", r.Err, r.Node)
	}
}

func TestHardLifetimeFailsTasksAndDestroysNode(t *testing.T) {
	a := newApplier(t)
	set := DefaultSettings()
	set.NodeHardLifetime = set.MaxNodeLifetime + time.Hour
	a.apply(SetSettings{Settings: set})
	task := cbToRunning(t, a, "t1")
	fireNodeAlarm(t, a, task.NodeID)
	n := fireNodeAlarm(t, a, task.NodeID)
	if n.Status != NodeDestroying || !n.Alarm.Due.Equal(n.CreatedAt.Add(set.MaxNodeLifetime+time.Hour)) {
		t.Fatalf("node %s alarm %+v at the hard limit, want destroying then", n.Status, n.Alarm)
	}
	cur, _ := a.f.Task("t1")
	if cur.Status != StatusFailed || cur.ErrorMessage != HardLifetimeError || !cur.Cleanup {
		t.Fatalf("task %s %q cleanup=%v, want failed with %q", cur.Status, cur.ErrorMessage, cur.Cleanup, HardLifetimeError)
	}
	if errs, _ := a.f.Errors(ErrorFilter{TaskID: "t1"}); len(errs) == 0 || errs[len(errs)-1].Message != HardLifetimeError {
		t.Fatalf("error records %+v, want the hard limit", errs)
	}
}

func TestIdleNodeAtMaxLifetimeIsDestroyed(t *testing.T) {
	a := newApplier(t)
	task := cbToRunning(t, a, "t1")
	// The task's cleanup ran, but the workspace stays live (stop failed
	// and was given up: taken as stopped) — nothing occupies the node.
	a.apply(CancelTask{TaskID: "t1", Actor: Actor{Type: ActorUser}, At: t0.Add(time.Minute)})
	succeed(t, a, claim(t, a, "t1", 1, t0.Add(time.Minute)), StepData{WorkspaceStopped: true}, t0.Add(time.Minute))
	n, _ := a.f.Node(task.NodeID)
	if n.Status != NodeWarm {
		t.Fatalf("node %s, want warm", n.Status)
	}
	if n = fireNodeAlarm(t, a, n.ID); n.Status != NodeDestroying || n.Cordoned {
		t.Fatalf("idle node at its alarm: %+v, want destroying", n)
	}
}

func TestNodeAdmin(t *testing.T) {
	op := Actor{Type: ActorUser, ID: "admin"}
	t.Run("cordon and uncordon", func(t *testing.T) {
		a := newApplier(t)
		task := cbToRunning(t, a, "t1")
		id := task.NodeID
		r := a.apply(NodeAdmin{NodeID: id, Action: NodeCordon, Actor: op, At: t0})
		if r.Err != nil || !r.Node.Cordoned || r.Node.CordonReason != CordonOperator {
			t.Fatalf("cordon: err=%v node=%+v", r.Err, r.Node)
		}
		if r := a.apply(NodeAdmin{NodeID: id, Action: NodeCordon, Actor: op, At: t0}); r.Err != nil || !r.Unchanged {
			t.Fatalf("cordon again: err=%v unchanged=%v", r.Err, r.Unchanged)
		}
		// A cordoned node whose task ends goes warm (not destroyed): only
		// drain destroys it.
		finishRun(t, a, "t1", t0.Add(time.Minute))
		if n, _ := a.f.Node(id); n.Status != NodeWarm || !n.Cordoned {
			t.Fatalf("cordoned node after its task: %s cordoned=%v, want warm and cordoned", n.Status, n.Cordoned)
		}
		nsSubmit(t, a, "t2", spec("u1"), t0.Add(time.Hour))
		if t2, _ := nsDecide(t, a, "t2", t0.Add(time.Hour)); t2.NodeID == id {
			t.Fatalf("t2 claimed the cordoned warm node")
		}
		if r := a.apply(NodeAdmin{NodeID: id, Action: NodeUncordon, Actor: op, At: t0}); r.Err != nil || r.Node.Cordoned || r.Node.CordonReason != "" {
			t.Fatalf("uncordon: err=%v node=%+v", r.Err, r.Node)
		}
	})
	t.Run("drain waits for the last task", func(t *testing.T) {
		a := newApplier(t)
		task := cbToRunning(t, a, "t1")
		r := a.apply(NodeAdmin{NodeID: task.NodeID, Action: NodeDrain, Actor: op, At: t0})
		if r.Err != nil || r.Node.Status != NodeActive || !r.Node.Cordoned {
			t.Fatalf("drain a busy node: err=%v node=%+v", r.Err, r.Node)
		}
		if done := finishRun(t, a, "t1", t0.Add(time.Minute)); done.Status != StatusCompleted {
			t.Fatalf("task %s, want completed", done.Status)
		}
		if n, _ := a.f.Node(task.NodeID); n.Status != NodeDestroying {
			t.Fatalf("drained node after its task: %s, want destroying", n.Status)
		}
	})
	t.Run("drain an idle node destroys it now", func(t *testing.T) {
		a := newApplier(t)
		nsBuild(t, a, []nsHost{{warm: true}}, t0)
		if r := a.apply(NodeAdmin{NodeID: "n-h0", Action: NodeDrain, Actor: op, At: t0}); r.Err != nil || r.Node.Status != NodeDestroying {
			t.Fatalf("drain a warm node: err=%v node=%+v", r.Err, r.Node)
		}
		if r := a.apply(NodeAdmin{NodeID: "n-h0", Action: NodeCordon, Actor: op, At: t0}); !errors.Is(r.Err, ErrInvalidTransition) {
			t.Fatalf("cordon a destroying node: err=%v, want ErrInvalidTransition", r.Err)
		}
		if r := a.apply(NodeAdmin{NodeID: "n-h0", Action: NodeDestroy, Actor: op, At: t0}); r.Err != nil || !r.Unchanged {
			t.Fatalf("destroy a destroying node: err=%v unchanged=%v", r.Err, r.Unchanged)
		}
	})
	t.Run("destroy fails the tasks on it", func(t *testing.T) {
		a := newApplier(t)
		task := cbToRunning(t, a, "t1")
		r := a.apply(NodeAdmin{NodeID: task.NodeID, Action: NodeDestroy, Actor: op, At: t0.Add(time.Minute)})
		if r.Err != nil || r.Node.Status != NodeDestroying {
			t.Fatalf("destroy: err=%v node=%+v", r.Err, r.Node)
		}
		if cur, _ := a.f.Task("t1"); cur.Status != StatusFailed || !strings.Contains(cur.ErrorMessage, "destroyed by user admin") {
			t.Fatalf("task %s %q, want failed naming the destroy", cur.Status, cur.ErrorMessage)
		}
	})
	t.Run("refusals", func(t *testing.T) {
		a := newApplier(t)
		task := cbToRunning(t, a, "t1")
		if r := a.apply(NodeAdmin{NodeID: task.NodeID, Action: "reboot", At: t0}); !errors.Is(r.Err, ErrInvalid) {
			t.Fatalf("unknown action: err=%v", r.Err)
		}
		if r := a.apply(NodeAdmin{NodeID: "n-nope", Action: NodeCordon, At: t0}); !errors.Is(r.Err, ErrNotFound) {
			t.Fatalf("unknown node: err=%v", r.Err)
		}
		fireNodeAlarm(t, a, task.NodeID)
		if r := a.apply(NodeAdmin{NodeID: task.NodeID, Action: NodeUncordon, At: t0}); !errors.Is(r.Err, ErrInvalidTransition) {
			t.Fatalf("uncordon past the max lifetime: err=%v, want ErrInvalidTransition", r.Err)
		}
	})
}
