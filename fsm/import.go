package fsm

import (
	"fmt"
	"strings"
	"time"
)

// Migration from the old system (docs/import.md). ImportTask brings one
// exported task, its node and its workspace into the state in one commit,
// so a task is never half imported. A task still in its run is adopted:
// it waits at the pseudo-step StepAdopt, whose handler looks at reality
// (server, agent, workspace, session) and reports the step the task really
// is at; Apply then moves the task there (adoptResult). A finished task is
// kept as history: terminal, no alarm, no cleanup.

// CmdImportTask is the command type of ImportTask (reserved: 25, 26).
const CmdImportTask CommandType = 25

// StepAdopt is the pseudo-step of an imported task that has not yet been
// reconciled against reality. Like StepCleanup it is claimed and fenced as
// an effect step, but its handler only reads (cloud and agent) besides
// one keyed session creation the agent_session step would make anyway, so
// re-running it never duplicates anything. The task's Step meanwhile
// keeps the step the old system reported.
const StepAdopt Step = "adopt"

// ImportTask imports one task of the old system, keyed by its id: importing
// a task that was already imported changes nothing (Unchanged).
type ImportTask struct {
	TaskID         string     `json:"task_id"`
	Spec           TaskSpec   `json:"spec"`
	Status         Status     `json:"status"`
	Step           Step       `json:"execution_step"`
	NodeID         string     `json:"node_id,omitempty"`
	WorkspaceID    string     `json:"workspace_id,omitempty"`
	AgentSessionID string     `json:"agent_session_id,omitempty"`
	ServerID       int64      `json:"server_id,omitempty"`
	ErrorMessage   string     `json:"error_message,omitempty"`
	Output         Output     `json:"output"`
	CreatedAt      time.Time  `json:"created_at"`
	StartedAt      *time.Time `json:"started_at,omitempty"`
	CompletedAt    *time.Time `json:"completed_at,omitempty"`
	Policy         Policy     `json:"policy"`
	At             time.Time  `json:"at"`
}

// Type implements Command.
func (ImportTask) Type() CommandType { return CmdImportTask }

// ImportInfo records where an imported task came from.
type ImportInfo struct {
	At       time.Time `json:"at"`
	Status   Status    `json:"status"`
	Step     Step      `json:"execution_step,omitempty"`
	ServerID int64     `json:"server_id,omitempty"`
}

// ImportActor is the actor of the status event an import records.
var ImportActor = Actor{Type: ActorSystem, ID: "import"}

// ImportInFlight reports whether an exported status is a run in progress (the
// task is adopted) rather than history or not yet started.
func ImportInFlight(s Status) bool {
	return s == StatusQueued || s == StatusDelegated || s == StatusInProgress
}

// Validate checks an import on its own, without the state: statuses,
// steps, and which references each step needs. The error names the field.
func (c ImportTask) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, args...))
	}
	switch {
	case strings.TrimSpace(c.TaskID) == "":
		return bad("id", "is required")
	case !c.Status.Valid():
		return bad("status", "unknown status %q", c.Status)
	case !c.Step.Valid() || c.Step == StepAdopt || c.Step == StepCleanup:
		return bad("execution_step", "unknown execution step %q", c.Step)
	case c.ServerID < 0:
		return bad("hetzner_server_id", "must be positive, not %d", c.ServerID)
	}
	if !ImportInFlight(c.Status) {
		return nil // history or not started: the step is not used
	}
	o := c.Step.Order()
	switch {
	case c.Step == StepNone:
		return bad("execution_step", "is required for a task that is %s", c.Status)
	case o == StepNodeSelection.Order() && (c.NodeID != "" || c.ServerID != 0):
		return bad("node_id", "must be empty at node_selection (no node is chosen yet)")
	case o >= StepNodeProvisioning.Order() && c.NodeID == "":
		return bad("node_id", "is required at %s", c.Step)
	case o >= StepNodeAgentReady.Order() && c.ServerID == 0:
		return bad("hetzner_server_id", "is required at %s (the server exists from node_agent_ready on)", c.Step)
	case o < StepWorkspaceCreate.Order() && c.WorkspaceID != "":
		return bad("workspace_id", "must be empty before workspace_creation (at %s)", c.Step)
	case o >= StepWorkspaceReady.Order() && c.WorkspaceID == "":
		return bad("workspace_id", "is required at %s", c.Step)
	}
	return nil
}

// CheckImport reports what applying c would do without applying it:
// duplicate is true if the task was already imported; err is the reason
// it would be refused. Dry runs use it.
func (f *FSM) CheckImport(c ImportTask) (duplicate bool, err error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.checkImport(c)
}

func (f *FSM) checkImport(c ImportTask) (bool, error) {
	if cur, ok := f.st.tasks.Get(&Task{ID: c.TaskID}); ok {
		if cur.Imported != nil {
			return true, nil
		}
		return false, fmt.Errorf("%w: id: task %s exists in tdf and was not imported", ErrExists, c.TaskID)
	}
	if err := c.Validate(); err != nil {
		return false, err
	}
	if c.NodeID != "" {
		if n, ok := f.st.nodes.Get(&Node{ID: c.NodeID}); ok {
			switch {
			case n.UserID != c.Spec.UserID:
				return false, fmt.Errorf("%w: node_id: node %s belongs to user %s, not %s", ErrInvalid, n.ID, n.UserID, c.Spec.UserID)
			case c.ServerID != 0 && n.ServerID != 0 && n.ServerID != c.ServerID:
				return false, fmt.Errorf("%w: hetzner_server_id: node %s has server %d, not %d", ErrInvalid, n.ID, n.ServerID, c.ServerID)
			case ImportInFlight(c.Status) && !n.Live():
				return false, fmt.Errorf("%w: node_id: node %s is %s", ErrInvalid, n.ID, n.Status)
			}
		}
	}
	if c.WorkspaceID != "" && ImportInFlight(c.Status) {
		if ws, ok := f.st.workspaces.Get(&Workspace{ID: c.WorkspaceID}); ok && ws.TaskID != c.TaskID {
			return false, fmt.Errorf("%w: workspace_id: workspace %s belongs to task %s", ErrInvalid, ws.ID, ws.TaskID)
		}
	}
	return false, nil
}

func (f *FSM) applyImportTask(c ImportTask, res *Result) {
	dup, err := f.checkImport(c)
	switch {
	case dup:
		res.Task, _ = f.st.tasks.Get(&Task{ID: c.TaskID})
		res.Unchanged = true
		return
	case err != nil:
		res.Err = err
		return
	}
	t := &Task{
		ID: c.TaskID, TaskSpec: c.Spec, Status: c.Status, NodeID: c.NodeID, WorkspaceID: c.WorkspaceID,
		AgentSessionID: c.AgentSessionID, ErrorMessage: c.ErrorMessage, CreatedAt: c.CreatedAt, UpdatedAt: c.At,
		StartedAt: c.StartedAt, Output: c.Output, Policy: c.Policy,
		Imported: &ImportInfo{At: c.At, Status: c.Status, Step: c.Step, ServerID: c.ServerID},
		// The old system's user owns the task: with API tokens on, the
		// user token whose subject is that user id sees it.
		Owner: c.Spec.UserID,
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = c.At
	}
	if t.Policy == (Policy{}) {
		t.Policy = DefaultPolicy()
	}
	if t.VMSize == "" {
		t.VMSize = DefaultVMSize
	}
	if t.VMLocation == "" {
		t.VMLocation = DefaultVMLocation
	}
	reason := "imported from the old system"
	if !ImportInFlight(c.Status) {
		if c.Status.Terminal() {
			t.CompletedAt = c.CompletedAt
			if t.CompletedAt == nil {
				t.CompletedAt = timePtr(c.At)
			}
			reason += " as history"
		}
		if c.NodeID != "" && c.ServerID != 0 && !f.nodeExists(c.NodeID) {
			// The old system's warm pool: the node's server may still be
			// running; as a warm node it is reused or destroyed on time.
			f.importNode(c, NodeWarm, true)
		}
	} else {
		reason += fmt.Sprintf(" at %s, to be adopted", c.Step)
		f.importInFlight(t, c)
	}
	t.History = []StatusEvent{{To: c.Status, Actor: ImportActor, Reason: reason, At: c.At}}
	f.st.tasks.ReplaceOrInsert(t)
	res.Task = t
}

// importInFlight places an in-flight task: before a server exists the
// ordinary steps reconcile by themselves (node_provisioning finds a
// server by its name); from node_agent_ready on the task is adopted.
func (f *FSM) importInFlight(t *Task, c ImportTask) {
	sp := stepOf(c.Step)
	if sp.StartsRun { // no node chosen yet
		t.enterStep(c.Step, c.At)
		return
	}
	f.importNode(c, NodeActive, c.Step.Order() > StepNodeAgentReady.Order())
	if !sp.Adopted {
		t.enterStep(c.Step, c.At)
		return
	}
	if c.WorkspaceID != "" && !f.workspaceExists(c.WorkspaceID) {
		// Created as creating: adoption sets what the agent reports.
		ws := &Workspace{ID: c.WorkspaceID, NodeID: c.NodeID, TaskID: c.TaskID,
			Status: WorkspaceCreating, CreatedAt: c.At, UpdatedAt: c.At}
		f.st.workspaces.ReplaceOrInsert(ws)
		f.st.indexWorkspace(ws)
	}
	t.Step, t.Adopting = c.Step, true
	t.Alarm = &Alarm{Due: c.At, Kind: AlarmRun}
}

// importNode creates the task's node record, or claims a warm one an
// earlier import created. Its lifetime counts from the import, so that an
// old node is not destroyed under a task the moment it arrives.
func (f *FSM) importNode(c ImportTask, status NodeStatus, ready bool) {
	if n, ok := f.st.nodes.Get(&Node{ID: c.NodeID}); ok {
		claim := n.Status == NodeWarm && status == NodeActive
		learn := n.ServerID == 0 && c.ServerID != 0 // a later line knows the server
		if !claim && !learn {
			return
		}
		n = n.clone()
		n.UpdatedAt = c.At
		if claim {
			n.Status, n.WarmSince = NodeActive, nil
			n.Alarm = f.lifetimeAlarm(n)
		}
		if learn {
			n.ServerID = c.ServerID
		}
		f.st.nodes.ReplaceOrInsert(n)
		f.notifyNode(n)
		return
	}
	size, loc := c.Spec.VMSize, c.Spec.VMLocation
	if size == "" {
		size = DefaultVMSize
	}
	if loc == "" {
		loc = DefaultVMLocation
	}
	n := &Node{ID: c.NodeID, UserID: c.Spec.UserID, Status: status, ServerID: c.ServerID, ServerName: "node-" + c.NodeID,
		Size: size, Location: loc, AutoProvisioned: true, TaskID: c.TaskID, CreatedAt: c.At, UpdatedAt: c.At}
	if ready {
		n.Ready, n.ReadyAt = true, timePtr(c.At)
	}
	n.Alarm = f.lifetimeAlarm(n)
	if status == NodeWarm {
		n.WarmSince = timePtr(c.At)
		n.Alarm = &Alarm{Due: c.At.Add(f.st.settings.NodeWarmTimeout), Kind: AlarmDeadline}
	}
	f.st.nodes.ReplaceOrInsert(n)
	f.notifyNode(n)
}

// adoptResult applies what the adopt handler found: the node's and the
// workspace's facts, then the step the task really is at. Adoption is the
// one place a task may land on an earlier step than it had (the old
// system's step was a claim; a vanished server means provisioning again).
func (f *FSM) adoptResult(t *Task, c StepResult) {
	switch c.Outcome {
	case OutcomeSuccess:
	case OutcomePoll, OutcomeRetry:
		f.stepResult(t, c)
		return
	default:
		f.stepResult(t, c)
		t.Adopting = false
		return
	}
	d := c.Data
	to := d.AdoptTo
	if !d.AdoptComplete && (to.Order() < StepNodeProvisioning.Order() || to == StepAdopt) {
		f.failTask(t, ErrKindFailed, StepAdopt, c.Attempt, ClassPermanent, fmt.Sprintf("adoption chose no valid step (%q)", to), c.Leader, c.At)
		t.Adopting = false
		return
	}
	if t.NodeID != "" {
		f.updateNode(t.NodeID, c.At, func(n *Node) {
			if d.ServerGone {
				n.ServerID, n.ActionID, n.IPv4, n.Ready, n.ReadyAt = 0, 0, "", false, nil
			}
			if d.IPv4 != "" {
				n.IPv4 = d.IPv4
			}
			if d.NodeReady && !n.Ready {
				n.Ready, n.ReadyAt = true, timePtr(c.At)
			}
		})
	}
	if ws, ok := f.st.workspaces.Get(&Workspace{ID: t.WorkspaceID}); ok && ws.Live() {
		ws = ws.cloneWS()
		ws.Status, ws.UpdatedAt = WorkspaceCreating, c.At
		if d.WorkspaceStatus == WorkspaceRunning || d.WorkspaceStatus == WorkspaceRecovery {
			ws.Status = d.WorkspaceStatus
		}
		f.st.workspaces.ReplaceOrInsert(ws)
	}
	if d.SessionID != "" {
		t.AgentSessionID = d.SessionID
	}
	t.Adopting = false
	t.noteLastAttempt(StepAdopt, c.Attempt, d.AdoptNote)
	if d.AdoptComplete {
		t.end(StatusCompleted, Actor{Type: ActorSystem}, "adopted: "+d.AdoptNote, "", c.At)
		return
	}
	// The status changes of the steps the old system had already done.
	for _, done := range AllSteps[:to.Order()-1] {
		t.applyDone(stepOf(done), true, c.At)
	}
	f.enter(t, to, c.At)
}

// noteLastAttempt sets the note of an attempt's timeline entry (copying
// the slice, which a snapshot may share).
func (t *Task) noteLastAttempt(s Step, attempt int, note string) {
	for i := len(t.Steps) - 1; i >= 0; i-- {
		if t.Steps[i].Step == s && t.Steps[i].Attempt == attempt {
			t.Steps = append([]StepAttempt(nil), t.Steps...)
			t.Steps[i].Note = note
			return
		}
	}
}
