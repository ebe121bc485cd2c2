package fsm

import (
	"fmt"
	"time"
)

// Callbacks from the VMs. Each is idempotent (agents retry them), and each
// may arrive before the task waits for it: an early callback is kept on the
// workspace or task and consumed when the task gets there.

// NodeReady: the node's agent finished system provisioning.
type NodeReady struct {
	NodeID string    `json:"node_id"`
	At     time.Time `json:"at"`
}

// NodeHeartbeat: the node's periodic health and load report.
type NodeHeartbeat struct {
	NodeID           string       `json:"node_id"`
	ActiveWorkspaces int          `json:"active_workspaces"`
	Metrics          *NodeMetrics `json:"metrics,omitempty"`
	At               time.Time    `json:"at"`
}

// NodeError is one error an agent reports.
type NodeError struct {
	IncidentID  string `json:"incident_id,omitempty"`
	Level       string `json:"level,omitempty"`
	Message     string `json:"message"`
	Source      string `json:"source,omitempty"`
	WorkspaceID string `json:"workspace_id,omitempty"`
}

// NodeErrors: errors an agent reports, recorded in the error database
// (once per incident id).
type NodeErrors struct {
	NodeID string      `json:"node_id"`
	Errors []NodeError `json:"errors"`
	At     time.Time   `json:"at"`
}

// WorkspaceReady: the workspace is running (or recovered).
type WorkspaceReady struct {
	WorkspaceID string          `json:"workspace_id"`
	Status      WorkspaceStatus `json:"status"`
	At          time.Time       `json:"at"`
}

// WorkspaceFailed: the workspace could not be provisioned.
type WorkspaceFailed struct {
	WorkspaceID string    `json:"workspace_id"`
	Message     string    `json:"message"`
	At          time.Time `json:"at"`
}

// TaskStatusCallback: the agent reports on its run: finished
// (ExecutionStep awaiting_followup, with its output) or failed.
type TaskStatusCallback struct {
	TaskID        string    `json:"task_id"`
	WorkspaceID   string    `json:"workspace_id,omitempty"`
	ToStatus      Status    `json:"to_status,omitempty"`
	ExecutionStep Step      `json:"execution_step,omitempty"`
	Reason        string    `json:"reason,omitempty"`
	ErrorMessage  string    `json:"error_message,omitempty"`
	Output        Output    `json:"output"`
	At            time.Time `json:"at"`
}

// IdleReset pushes a task's follow-up idle timer out.
type IdleReset struct {
	TaskID string    `json:"task_id"`
	Actor  Actor     `json:"actor"`
	At     time.Time `json:"at"`
}

// Type implements Command.
func (NodeReady) Type() CommandType { return CmdNodeReady }

// Type implements Command.
func (NodeHeartbeat) Type() CommandType { return CmdNodeHeartbeat }

// Type implements Command.
func (NodeErrors) Type() CommandType { return CmdNodeErrors }

// Type implements Command.
func (WorkspaceReady) Type() CommandType { return CmdWorkspaceReady }

// Type implements Command.
func (WorkspaceFailed) Type() CommandType { return CmdWorkspaceFailed }

// Type implements Command.
func (TaskStatusCallback) Type() CommandType { return CmdTaskStatusCallback }

// Type implements Command.
func (IdleReset) Type() CommandType { return CmdIdleReset }

func (f *FSM) applyNodeReady(c NodeReady, res *Result) {
	cur, ok := f.node(c.NodeID, res)
	if !ok {
		return
	}
	if cur.Ready || !cur.Live() {
		res.Node, res.Duplicate = cur, true
		return
	}
	n := cur.clone()
	n.Ready, n.ReadyAt, n.UpdatedAt = true, timePtr(c.At), c.At
	f.st.nodes.ReplaceOrInsert(n)
	res.Node = n
}

func (f *FSM) applyNodeHeartbeat(c NodeHeartbeat, res *Result) {
	cur, ok := f.node(c.NodeID, res)
	if !ok {
		return
	}
	n := cur.clone()
	n.LastHeartbeat, n.ActiveWorkspaces, n.Metrics, n.UpdatedAt = timePtr(c.At), c.ActiveWorkspaces, c.Metrics, c.At
	f.st.nodes.ReplaceOrInsert(n)
	res.Node = n
}

func (f *FSM) applyNodeErrors(c NodeErrors, res *Result) {
	cur, ok := f.node(c.NodeID, res)
	if !ok {
		return
	}
	seen := map[string]bool{}
	// Agents re-send their outbox; the last records are where a re-sent
	// incident would be.
	n := 0
	f.st.errors.Descend(func(e *ErrorRecord) bool {
		if e.NodeID == c.NodeID && e.IncidentID != "" {
			seen[e.IncidentID] = true
		}
		n++
		return n < 500
	})
	for _, e := range c.Errors {
		if e.IncidentID != "" && seen[e.IncidentID] {
			continue
		}
		seen[e.IncidentID] = true
		msg := e.Message
		if e.Source != "" {
			msg = e.Source + ": " + msg
		}
		f.recordError(ErrorRecord{Kind: ErrKindNode, NodeID: c.NodeID, IncidentID: e.IncidentID, Message: msg, At: c.At})
	}
	res.Node, res.Duplicate = cur, true // the node itself did not change
}

// ErrIgnored: the callback is valid but its target no longer wants it (a
// workspace that is stopping or stopped).
var ErrIgnored = fmt.Errorf("callback ignored")

func (f *FSM) applyWorkspaceReady(c WorkspaceReady, res *Result) {
	ws, ok := f.st.workspaces.Get(&Workspace{ID: c.WorkspaceID})
	if !ok {
		res.Err = fmt.Errorf("%w: workspace %s", ErrNotFound, c.WorkspaceID)
		return
	}
	switch {
	case ws.Status == WorkspaceStopping || ws.Status == WorkspaceStopped || ws.Status == WorkspaceError:
		res.Err = fmt.Errorf("%w: workspace %s is %s", ErrIgnored, ws.ID, ws.Status)
		return
	case ws.Status == WorkspaceRunning || ws.Status == WorkspaceRecovery:
		res.Duplicate = true
		res.Task, _ = f.st.tasks.Get(&Task{ID: ws.TaskID})
		return
	}
	ws = ws.cloneWS()
	ws.Status, ws.UpdatedAt = c.Status, c.At
	if ws.Status != WorkspaceRecovery {
		ws.Status = WorkspaceRunning
	}
	f.st.workspaces.ReplaceOrInsert(ws)
	cur, ok := f.st.tasks.Get(&Task{ID: ws.TaskID})
	if !ok || cur.Step != StepWorkspaceReady || cur.Cleanup {
		// Early: kept on the workspace, used when the task gets there.
		res.Task, res.Duplicate = cur, true
		return
	}
	t := cur.clone()
	f.advance(t, StepWorkspaceReady, c.At)
	f.st.tasks.ReplaceOrInsert(t)
	res.Task = t
}

func (f *FSM) applyWorkspaceFailed(c WorkspaceFailed, res *Result) {
	ws, ok := f.st.workspaces.Get(&Workspace{ID: c.WorkspaceID})
	if !ok {
		res.Err = fmt.Errorf("%w: workspace %s", ErrNotFound, c.WorkspaceID)
		return
	}
	if ws.Status == WorkspaceError || ws.Status == WorkspaceStopped {
		res.Duplicate = true
		return
	}
	ws = ws.cloneWS()
	ws.Status, ws.ErrorMessage, ws.UpdatedAt = WorkspaceError, c.Message, c.At
	f.st.workspaces.ReplaceOrInsert(ws)
	cur, ok := f.st.tasks.Get(&Task{ID: ws.TaskID})
	if !ok || cur.Status.Terminal() || cur.WorkspaceID != ws.ID {
		return
	}
	t := cur.clone()
	f.failTask(t, ErrKindFailed, cur.Step, cur.Attempt, ClassPermanent, "workspace provisioning failed: "+c.Message, "", c.At)
	f.st.tasks.ReplaceOrInsert(t)
	res.Task = t
}

func (f *FSM) applyTaskStatusCallback(c TaskStatusCallback, res *Result) {
	cur, ok := f.task(c.TaskID, res)
	if !ok {
		return
	}
	if c.WorkspaceID != "" && cur.WorkspaceID != c.WorkspaceID {
		res.Err = fmt.Errorf("%w: task %s does not run in workspace %s", ErrInvalid, c.TaskID, c.WorkspaceID)
		return
	}
	if cur.Status.Terminal() || cur.Step == StepNone || cur.Cleanup { // not in a run, or the old run is still being cleaned up
		res.Task, res.Duplicate = cur, true
		return
	}
	cb := Actor{Type: ActorWorkspaceCallback, ID: c.WorkspaceID}
	t := cur.clone()
	t.UpdatedAt = c.At
	switch {
	case c.ToStatus == StatusFailed:
		msg := c.ErrorMessage
		if msg == "" {
			msg = c.Reason
		}
		f.recordError(ErrorRecord{Kind: ErrKindFailed, TaskID: t.ID, NodeID: t.NodeID, Step: t.Step, Class: ClassPermanent, Message: "agent reported failure: " + msg, At: c.At})
		t.end(StatusFailed, cb, c.Reason, msg, c.At)
	case c.ExecutionStep == StepAwaitingFollowup:
		t.Output = mergeOutput(t.Output, c.Output)
		switch t.Step {
		case StepRunning:
			f.enter(t, StepAwaitingFollowup, c.At)
		case StepAwaitingFollowup:
			res.Task, res.Duplicate = cur, true
			return
		default:
			// Early: the agent finished before the session step's result
			// was committed; running will move straight on.
			t.FollowupEarly = true
		}
	case c.ToStatus != "":
		if !CanTransition(t.Status, c.ToStatus) || !(c.ToStatus == StatusCompleted || c.ToStatus == t.Status) {
			res.Err = fmt.Errorf("%w: %s → %s by callback", ErrInvalidTransition, t.Status, c.ToStatus)
			return
		}
		if c.ToStatus == t.Status {
			res.Task, res.Duplicate = cur, true
			return
		}
		t.Output = mergeOutput(t.Output, c.Output)
		t.end(StatusCompleted, cb, c.Reason, "", c.At)
	default:
		res.Err = fmt.Errorf("%w: callback carries neither toStatus nor executionStep", ErrInvalid)
		return
	}
	f.st.tasks.ReplaceOrInsert(t)
	res.Task = t
}

func mergeOutput(old, n Output) Output {
	if n.Branch != "" {
		old.Branch = n.Branch
	}
	if n.PRURL != "" {
		old.PRURL = n.PRURL
	}
	if n.Summary != "" {
		old.Summary = n.Summary
	}
	return old
}

func (f *FSM) applyIdleReset(c IdleReset, res *Result) {
	cur, ok := f.task(c.TaskID, res)
	if !ok {
		return
	}
	if cur.Step != StepAwaitingFollowup || cur.Alarm == nil || cur.Adopting {
		res.Err = fmt.Errorf("%w: task %s is not awaiting follow-up (step %q)", ErrInvalidTransition, c.TaskID, cur.Step)
		res.Task = cur
		return
	}
	due := c.At.Add(cur.Policy.IdleTimeout)
	if !due.After(cur.Alarm.Due) {
		res.Task, res.Duplicate = cur, true
		return
	}
	t := cur.clone()
	t.Alarm = &Alarm{Due: due, Kind: AlarmDeadline}
	t.UpdatedAt = c.At
	f.st.tasks.ReplaceOrInsert(t)
	res.Task = t
}

func (w *Workspace) cloneWS() *Workspace {
	c := *w
	return &c
}
