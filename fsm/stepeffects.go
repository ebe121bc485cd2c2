package fsm

import "time"

// What the steps of the table do to the state besides moving the task:
// their Enter, Store and Succeeded functions.

// storeServer keeps what node_provisioning learned on the task's node.
func (f *FSM) storeServer(t *Task, d StepData, at time.Time) {
	f.updateNode(t.NodeID, at, func(n *Node) {
		if d.ServerGone {
			n.ServerID, n.ActionID, n.IPv4 = 0, 0, ""
		}
		if d.ServerID != 0 {
			n.ServerID = d.ServerID
		}
		if d.ActionID != 0 {
			n.ActionID = d.ActionID
		}
		if d.IPv4 != "" {
			n.IPv4 = d.IPv4
		}
	})
}

// storeSession keeps the agent session's id.
func (f *FSM) storeSession(t *Task, d StepData, _ time.Time) { t.AgentSessionID = d.SessionID }

// markNodeReady: the agent answers, so the node is ready, even if its
// node-ready callback (sent once, never retried) was lost.
func (f *FSM) markNodeReady(t *Task, at time.Time) {
	f.updateNode(t.NodeID, at, func(n *Node) {
		if !n.Ready {
			n.Ready, n.ReadyAt = true, timePtr(at)
		}
	})
}

// enterWorkspaceCreation creates the workspace record before the workspace
// is created on the VM, so that an early ready callback finds it.
func (f *FSM) enterWorkspaceCreation(t *Task, at time.Time) {
	if t.WorkspaceID != "" {
		return
	}
	ws := &Workspace{ID: derivedID("ws", t.ID, f.workspaceExists), NodeID: t.NodeID, TaskID: t.ID,
		Status: WorkspaceCreating, CreatedAt: at, UpdatedAt: at}
	f.st.workspaces.ReplaceOrInsert(ws)
	f.st.indexWorkspace(ws)
	t.WorkspaceID = ws.ID
}

// enterWorkspaceReady consumes a ready (or failed) callback that came
// before the task got here.
func (f *FSM) enterWorkspaceReady(t *Task, at time.Time) {
	ws, ok := f.st.workspaces.Get(&Workspace{ID: t.WorkspaceID})
	switch {
	case !ok:
	case ws.Status == WorkspaceRunning || ws.Status == WorkspaceRecovery:
		f.advance(t, StepWorkspaceReady, at)
	case ws.Status == WorkspaceError:
		// Its provisioning-failed came while it was being created.
		f.failTask(t, ErrKindFailed, StepWorkspaceReady, t.Attempt, ClassPermanent, "workspace provisioning failed: "+ws.ErrorMessage, "", at)
	}
}

// enterRunning moves straight on when the agent finished before the
// session step's result was committed.
func (f *FSM) enterRunning(t *Task, at time.Time) {
	if t.FollowupEarly {
		t.FollowupEarly = false
		f.enter(t, StepAwaitingFollowup, at)
	}
}
