package fsm

import (
	"fmt"
	"strings"
	"time"
)

// Node selection and the node lifecycle. Selection reads only replicated
// state, so it runs inside Apply (DecideStep): deterministic, one commit,
// and a warm node can be claimed by one task only.

// Default VM shape when a submission names none.
const (
	DefaultVMSize     = "small"
	DefaultVMLocation = "fsn1"
)

// derivedID makes a record id from a task id, unique within the state:
// "t-abc" with prefix "n" is "n-abc", then "n-abc-2", … for later runs.
func derivedID(prefix, taskID string, exists func(string) bool) string {
	base := prefix + strings.TrimPrefix(taskID, "t")
	if !strings.HasPrefix(taskID, "t-") {
		base = prefix + "-" + taskID
	}
	id := base
	for i := 2; exists(id); i++ {
		id = fmt.Sprintf("%s-%d", base, i)
	}
	return id
}

func (f *FSM) nodeExists(id string) bool { _, ok := f.st.nodes.Get(&Node{ID: id}); return ok }

func (f *FSM) workspaceExists(id string) bool {
	_, ok := f.st.workspaces.Get(&Workspace{ID: id})
	return ok
}

// liveWorkspaces counts the workspaces occupying a node, except one.
func (f *FSM) liveWorkspaces(nodeID, except string) int {
	n := 0
	f.st.eachWorkspaceOnNode(nodeID, func(w *Workspace) bool {
		if w.ID != except && w.Live() {
			n++
		}
		return true
	})
	return n
}

// selectNode applies REFERENCE.md's node_selection: the preferred node if
// usable, else a warm node of the user's (same size first, then same
// location), else the best running node with capacity. nil means
// provision a new one.
func (f *FSM) selectNode(t *Task, now time.Time) (*Node, string) {
	s := f.st.settings
	if id := t.PreferredNodeID; id != "" {
		if n, ok := f.st.nodes.Get(&Node{ID: id}); ok && n.UserID == t.UserID && n.Live() && n.Ready && !n.Cordoned {
			return n, "preferred node"
		}
	}
	var warm, running []*Node
	f.st.eachUserNode(t.UserID, func(n *Node) bool {
		if !n.Ready || n.Cordoned {
			return true
		}
		switch n.Status {
		case NodeWarm:
			warm = append(warm, n)
		case NodeActive:
			running = append(running, n)
		}
		return true
	})
	if n := bestWarm(warm, t); n != nil {
		return n, "warm node claimed"
	}
	var best *Node
	var bestScore float64
	for _, n := range running {
		if n.HealthAt(now, s) == HealthUnhealthy || n.ActiveWorkspaces >= s.MaxWorkspacesPerNode ||
			f.liveWorkspaces(n.ID, "") >= s.MaxWorkspacesPerNode {
			continue
		}
		if m := n.Metrics; m != nil && (m.CPULoad >= s.CPUThreshold || m.MemoryPercent >= s.MemoryThreshold) {
			continue
		}
		if sc := rank(n, t); best == nil || sc < bestScore {
			best, bestScore = n, sc
		}
	}
	if best != nil {
		return best, "running node with capacity"
	}
	return nil, ""
}

// bestWarm prefers a warm node of the same size (in the same location
// first), then one in the same location, then any; ties go to the lowest id
// (deterministic).
func bestWarm(warm []*Node, t *Task) *Node {
	for _, match := range []func(*Node) bool{
		func(n *Node) bool { return n.Size == t.VMSize && n.Location == t.VMLocation },
		func(n *Node) bool { return n.Size == t.VMSize },
		func(n *Node) bool { return n.Location == t.VMLocation },
		func(*Node) bool { return true },
	} {
		for _, n := range warm {
			if match(n) {
				return n
			}
		}
	}
	return nil
}

// rank orders candidate nodes, lower is better: location match, then size
// match, then load 0.4·cpu + 0.6·memory; nodes without metrics rank last.
func rank(n *Node, t *Task) float64 {
	score := 0.0
	if n.Location != t.VMLocation {
		score += 2000
	}
	if n.Size != t.VMSize {
		score += 1000
	}
	if n.Metrics == nil {
		return score + 500
	}
	return score + 0.4*n.Metrics.CPULoad + 0.6*n.Metrics.MemoryPercent
}

// decideNodeSelection runs node_selection for a task inside Apply.
func (f *FSM) decideNodeSelection(t *Task, leader string, at time.Time) {
	if t.VMSize == "" {
		t.VMSize = DefaultVMSize
	}
	if t.VMLocation == "" {
		t.VMLocation = DefaultVMLocation
	}
	attempt := StepAttempt{Step: StepNodeSelection, Attempt: 1, Leader: leader, Started: at, Finished: timePtr(at), Outcome: string(OutcomeSuccess)}
	n, why := f.selectNode(t, at)
	if n != nil {
		if n.Status == NodeWarm {
			n = n.clone()
			n.Status, n.WarmSince, n.UpdatedAt = NodeActive, nil, at
			n.Alarm = f.lifetimeAlarm(n)
			f.st.nodes.ReplaceOrInsert(n)
			f.notifyNode(n)
		}
		attempt.Note = why + ": " + n.ID
		t.Steps = append(t.Steps, attempt)
		t.NodeID = n.ID
		t.enterStep(StepNodeAgentReady, at)
		return
	}
	live := 0
	f.st.eachUserNode(t.UserID, func(n *Node) bool {
		if n.Live() {
			live++
		}
		return true
	})
	if live >= f.st.settings.MaxNodesPerUser {
		attempt.Outcome = string(OutcomeFail)
		attempt.Error = "LIMIT_EXCEEDED"
		t.Steps = append(t.Steps, attempt)
		f.failTask(t, ErrKindFailed, StepNodeSelection, 1, ClassPermanent,
			fmt.Sprintf("LIMIT_EXCEEDED: user %s has %d nodes, the limit is %d", t.UserID, live, f.st.settings.MaxNodesPerUser), leader, at)
		return
	}
	// Persist the node record (and so its id and server name) before any
	// call to the cloud: a retried create finds the server by that name.
	n = &Node{
		ID: derivedID("n", t.ID, f.nodeExists), UserID: t.UserID, Status: NodeActive, Size: t.VMSize,
		Location: t.VMLocation, AutoProvisioned: true, TaskID: t.ID, CreatedAt: at, UpdatedAt: at,
	}
	n.ServerName = "node-" + n.ID
	n.Alarm = f.lifetimeAlarm(n)
	f.st.nodes.ReplaceOrInsert(n)
	f.notifyNode(n)
	attempt.Note = "provisioning new node " + n.ID
	t.Steps = append(t.Steps, attempt)
	t.NodeID = n.ID
	t.enterStep(StepNodeProvisioning, at)
}

// lifetimeAlarm is the max-lifetime alarm of an auto-provisioned node.
func (f *FSM) lifetimeAlarm(n *Node) *Alarm {
	if !n.AutoProvisioned || f.st.settings.MaxNodeLifetime <= 0 {
		return nil
	}
	return &Alarm{Due: n.CreatedAt.Add(f.st.settings.MaxNodeLifetime), Kind: AlarmDeadline}
}

// releaseNode is called when a task's cleanup is done: a node left with no
// live workspace and no other task in a run goes warm (or, if it never
// became ready, is destroyed).
func (f *FSM) releaseNode(nodeID, exceptTask string, at time.Time) {
	n, ok := f.st.nodes.Get(&Node{ID: nodeID})
	if !ok || n.Status != NodeActive || f.liveWorkspaces(nodeID, "") > 0 || f.tasksOnNode(nodeID, exceptTask) > 0 {
		return
	}
	n = n.clone()
	n.UpdatedAt = at
	if !n.Ready || n.destroyWhenEmpty() {
		n.Status, n.Alarm = NodeDestroying, &Alarm{Due: at, Kind: AlarmRun}
	} else {
		n.Status, n.WarmSince = NodeWarm, timePtr(at)
		n.Alarm = &Alarm{Due: at.Add(f.st.settings.NodeWarmTimeout), Kind: AlarmDeadline}
		if lt := f.lifetimeAlarm(n); lt != nil && lt.Due.Before(n.Alarm.Due) {
			n.Alarm = lt
		}
	}
	f.st.nodes.ReplaceOrInsert(n)
	f.notifyNode(n)
}

// tasksOnNode counts tasks in a run (not yet cleaned up) assigned to a
// node, except one.
func (f *FSM) tasksOnNode(nodeID, except string) int {
	c := 0
	f.st.eachTaskOnNode(nodeID, func(t *Task) bool {
		if t.ID != except && (!t.Status.Terminal() || t.Cleanup) && t.Status != StatusDraft && t.Status != StatusReady {
			c++
		}
		return true
	})
	return c
}

// NodeAlarmFired fires a node's alarm (warm timeout or max lifetime): the
// node starts destroying. Due must match the node's alarm. The leader
// commits NodeDeadline instead since busy nodes are cordoned (cordon.go);
// this command stays for the logs that hold it.
type NodeAlarmFired struct {
	NodeID string    `json:"node_id"`
	Due    time.Time `json:"due"`
	At     time.Time `json:"at"`
}

// NodeDestroyResult reports one attempt to delete a destroying node's
// server. Deleting is idempotent (not found is success), so no claim is
// needed; a failed attempt is retried at RetryAt.
type NodeDestroyResult struct {
	NodeID  string    `json:"node_id"`
	Deleted bool      `json:"deleted"`
	Error   string    `json:"error,omitempty"`
	RetryAt time.Time `json:"retry_at,omitempty"`
	At      time.Time `json:"at"`
}

// Type implements Command.
func (NodeAlarmFired) Type() CommandType { return CmdNodeAlarmFired }

// Type implements Command.
func (NodeDestroyResult) Type() CommandType { return CmdNodeDestroyResult }

func (f *FSM) node(id string, res *Result) (*Node, bool) {
	n, ok := f.st.nodes.Get(&Node{ID: id})
	if !ok {
		res.Err = fmt.Errorf("%w: node %s", ErrNotFound, id)
	}
	return n, ok
}

// applyNodeAlarmFired fires a node's deadline alarm: with lifetime (a
// NodeDeadline command) a busy node is cordoned (cordon.go); without (the
// NodeAlarmFired of older logs) the node is destroyed, as it was then.
func (f *FSM) applyNodeAlarmFired(c NodeAlarmFired, lifetime bool, res *Result) {
	cur, ok := f.node(c.NodeID, res)
	if !ok {
		return
	}
	if cur.Alarm == nil || cur.Alarm.Kind != AlarmDeadline || !cur.Alarm.Due.Equal(c.Due) || !cur.Live() {
		res.Err = fmt.Errorf("%w: node %s alarm due %s does not match", ErrFenced, c.NodeID, c.Due.Format(time.RFC3339Nano))
		res.Node = cur
		return
	}
	n := cur.clone()
	if lifetime {
		f.fireLifetime(n, c.At)
	} else {
		destroyNow(n, c.At) // as binaries before NodeDeadline did
	}
	f.st.nodes.ReplaceOrInsert(n)
	res.Node = n
}

func (f *FSM) applyNodeDestroyResult(c NodeDestroyResult, res *Result) {
	cur, ok := f.node(c.NodeID, res)
	if !ok {
		return
	}
	if cur.Status != NodeDestroying {
		res.Node, res.Unchanged = cur, true
		return
	}
	n := cur.clone()
	n.UpdatedAt = c.At
	n.DestroyAttempts++
	if c.Deleted {
		n.Status, n.Alarm, n.DeletedAt, n.LastError = NodeDeleted, nil, timePtr(c.At), ""
	} else {
		n.LastError = c.Error
		n.Alarm = &Alarm{Due: c.RetryAt, Kind: AlarmRun}
		f.recordError(ErrorRecord{Kind: ErrKindNode, NodeID: n.ID, Message: "delete server: " + c.Error, At: c.At})
	}
	f.st.nodes.ReplaceOrInsert(n)
	res.Node = n
}
