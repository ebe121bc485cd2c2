package fsm

import (
	"fmt"
	"time"
)

// Reconciling a run with its agent. The agent reports the end of a run
// once, in a task-status callback it never retries; when that callback is
// lost, the leader learns the same from the agent's durable prompt receipt
// and commits ReconcileRun. It is fenced like a callback: it names the
// step, workspace and session it looked at, and changes nothing once the
// task has moved on, so a callback and a reconcile of the same end are
// applied once between them.

// CmdReconcileRun is the command type of ReconcileRun.
const CmdReconcileRun CommandType = 33

// RunFinding is what the leader learnt from the agent.
type RunFinding string

// Findings.
const (
	// RunFinished: the agent's prompt ended; its status callback never came.
	RunFinished RunFinding = "finished"
	// RunLost: the run cannot go on: its workspace or session is gone, or
	// the agent restarted while the prompt ran.
	RunLost RunFinding = "lost"
)

// ReconcileRun is what the leader learnt of a task's run from its agent.
type ReconcileRun struct {
	TaskID      string     `json:"task_id"`
	Step        Step       `json:"step"`
	WorkspaceID string     `json:"workspace_id"`
	SessionID   string     `json:"session_id"`
	Finding     RunFinding `json:"finding"`
	// Detail says what the agent showed, for the error database.
	Detail string    `json:"detail"`
	Leader string    `json:"leader"`
	At     time.Time `json:"at"`
}

// Type implements Command.
func (ReconcileRun) Type() CommandType { return CmdReconcileRun }

func (f *FSM) applyReconcileRun(c ReconcileRun, res *Result) {
	cur, ok := f.task(c.TaskID, res)
	if !ok {
		return
	}
	sp := stepOf(c.Step)
	switch {
	case c.Finding != RunFinished && c.Finding != RunLost:
		res.Err = fmt.Errorf("%w: unknown run finding %q", ErrInvalid, c.Finding)
		return
	case !sp.Reconciled || cur.Step != c.Step || cur.Cleanup || cur.Status.Terminal() ||
		cur.WorkspaceID != c.WorkspaceID || cur.AgentSessionID != c.SessionID:
		// The task moved on (its callback came after all): nothing to do.
		res.Task, res.Unchanged = cur, true
		return
	case c.Finding == RunFinished && sp.CompletedBy != CallbackRunFinished:
		res.Task, res.Unchanged = cur, true // already past the run's end
		return
	}
	t := cur.clone()
	t.UpdatedAt = c.At
	f.recordError(ErrorRecord{Kind: ErrKindRecovered, TaskID: t.ID, NodeID: t.NodeID, Step: c.Step,
		Message: c.Detail, Leader: c.Leader, At: c.At})
	switch {
	case c.Finding == RunFinished:
		f.advance(t, c.Step, c.At)
	case sp.LostCompletes:
		t.end(StatusCompleted, Actor{Type: ActorSystem}, "run over: "+c.Detail, "", c.At)
	default:
		f.failTask(t, ErrKindFailed, c.Step, 0, ClassPermanent, c.Detail, c.Leader, c.At)
	}
	f.st.tasks.ReplaceOrInsert(t)
	res.Task = t
}
