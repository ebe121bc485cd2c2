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

// NodeError is one report of an agent on its errors route: an error, or
// a warning or lifecycle event (Level).
type NodeError struct {
	IncidentID  string `json:"incident_id,omitempty"`
	Level       string `json:"level,omitempty"`
	Message     string `json:"message"`
	Source      string `json:"source,omitempty"`
	WorkspaceID string `json:"workspace_id,omitempty"`
	Stack       string `json:"stack,omitempty"`
	// Context is the report's context object as compact JSON text.
	Context string `json:"context,omitempty"`
	// ReportedAt is the agent's own timestamp of the report, as sent.
	ReportedAt string `json:"reported_at,omitempty"`
}

// NodeErrors: reports of a node's agent, each applied once per incident
// id. With SplitLevels every report goes to the node's event log and only
// error-level ones (IsErrorLevel) also to the error database. Without it
// (entries written before the event log existed) every report goes to the
// error database, as those entries always did.
type NodeErrors struct {
	NodeID      string      `json:"node_id"`
	Errors      []NodeError `json:"errors"`
	SplitLevels bool        `json:"split_levels,omitempty"`
	At          time.Time   `json:"at"`
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
		res.Node, res.Unchanged = cur, true
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
	// Agents re-send their outbox; a re-sent incident is among the node's
	// recent ones.
	seen := f.st.nodeIncidents(c.NodeID)
	var events []NodeEvent
	for _, e := range c.Errors {
		if e.IncidentID != "" && seen[e.IncidentID] {
			continue
		}
		seen[e.IncidentID] = true
		if c.SplitLevels {
			events = append(events, NodeEvent{NodeError: e, At: c.At})
			if !IsErrorLevel(e.Level) {
				continue
			}
		}
		msg := e.Message
		if e.Source != "" {
			msg = e.Source + ": " + msg
		}
		f.recordError(ErrorRecord{Kind: ErrKindNode, NodeID: c.NodeID, IncidentID: e.IncidentID, Message: msg, At: c.At})
	}
	f.st.appendNodeEvents(c.NodeID, events)
	res.Node, res.Unchanged = cur, true // the node record itself did not change
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
	case ws.Status == WorkspaceError && f.creating(ws):
		// The failure was of a creation the step is redoing (see
		// applyWorkspaceFailed): this ready is the new one's.
	case ws.Status == WorkspaceStopping || ws.Status == WorkspaceStopped || ws.Status == WorkspaceError:
		res.Err = fmt.Errorf("%w: workspace %s is %s", ErrIgnored, ws.ID, ws.Status)
		return
	case ws.Status == WorkspaceRunning || ws.Status == WorkspaceRecovery:
		res.Unchanged = true
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
	if !ok || stepOf(cur.Step).CompletedBy != CallbackWorkspaceReady || cur.Cleanup {
		// Early: kept on the workspace, used when the task gets there.
		res.Task, res.Unchanged = cur, true
		return
	}
	t := cur.clone()
	f.advance(t, cur.Step, c.At)
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
		res.Unchanged = true
		return
	}
	creating := f.creating(ws)
	ws = ws.cloneWS()
	ws.Status, ws.ErrorMessage, ws.UpdatedAt = WorkspaceError, c.Message, c.At
	f.st.workspaces.ReplaceOrInsert(ws)
	cur, ok := f.st.tasks.Get(&Task{ID: ws.TaskID})
	if !ok || cur.Status.Terminal() || cur.WorkspaceID != ws.ID {
		return
	}
	if creating {
		// The create call has not been answered yet, so its answer
		// decides: a standalone agent creates the workspace within the
		// call and reports a failure both ways, and when the leader that
		// made the call dies, the agent's work is cut off with it and
		// reported as failed, though the new leader's retry (which
		// deletes and re-creates the workspace) may well succeed. If the
		// step succeeds anyway, the task fails on entering
		// workspace_ready with this message (enter).
		res.Task = cur
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
		res.Task, res.Unchanged = cur, true
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
		switch finished := completedBy(CallbackRunFinished); {
		case t.Step == finished:
			f.advance(t, finished, c.At)
		case t.Step.Order() > finished.Order():
			// The agent reports again after each follow-up prompt; a report
			// that changes the output is kept. (Entries from before push
			// results were kept carry none, and stay duplicates.)
			if !c.Output.reportsRun() || outputEqual(t.Output, cur.Output) {
				res.Task, res.Unchanged = cur, true
				return
			}
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
			res.Task, res.Unchanged = cur, true
			return
		}
		t.Output = mergeOutput(t.Output, c.Output)
		t.end(StatusCompleted, cb, c.Reason, "", c.At)
	default:
		res.Err = fmt.Errorf("%w: callback carries neither toStatus nor executionStep", ErrInvalid)
		return
	}
	if p := c.Output.Push; p != nil && p.Error != "" && c.ToStatus != StatusFailed {
		f.recordError(ErrorRecord{Kind: ErrKindPush, TaskID: t.ID, NodeID: t.NodeID, Step: cur.Step,
			Message: "the agent could not push the run's work: " + p.Error, At: c.At})
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
	if n.Push != nil {
		p := *n.Push
		old.Push = &p
	}
	if n.AgentError != "" {
		old.AgentError = n.AgentError
	}
	return old
}

// reportsRun reports whether a callback's output carries what only agents
// of this version's contract send: a push result or an agent error.
func (o Output) reportsRun() bool { return o.Push != nil || o.AgentError != "" }

func outputEqual(a, b Output) bool {
	pa, pb := a.Push, b.Push
	a.Push, b.Push = nil, nil
	return a == b && (pa == pb || (pa != nil && pb != nil && *pa == *pb))
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
		res.Task, res.Unchanged = cur, true
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

// creating reports whether the workspace's task is still creating it: at
// workspace_creation, with no cleanup under way.
func (f *FSM) creating(ws *Workspace) bool {
	t, ok := f.st.tasks.Get(&Task{ID: ws.TaskID})
	return ok && t.WorkspaceID == ws.ID && t.Step == StepWorkspaceCreate && !t.Cleanup && !t.Status.Terminal()
}
