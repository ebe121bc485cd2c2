package fsm

import (
	"fmt"
	"time"
)

// Busy nodes are never pulled from under a task. A node that reaches its
// max lifetime while a task still runs on it is cordoned: node selection
// skips it, and it is destroyed when its last task's cleanup is done
// (releaseNode). Its alarm becomes the hard lifetime limit
// (Settings.HardLifetime); if that fires first, the tasks still running on
// it fail with HardLifetimeError and the node is destroyed. Operators
// cordon, uncordon, drain (cordon, destroyed once empty) and destroy nodes
// with NodeAdmin.

// HardLifetimeError is the error of a task failed because its node
// reached its hard lifetime limit.
const HardLifetimeError = "node reached its hard lifetime limit"

// Cordon reasons.
const (
	CordonLifetime = "max lifetime reached"
	CordonOperator = "cordoned by an operator"
	CordonDrain    = "drained by an operator"
)

// CmdNodeAdmin is NodeAdmin's type (node cordon / drain / destroy).
const CmdNodeAdmin CommandType = 44

// CmdNodeDeadline is NodeDeadline's type. It is a new type, not a change
// of NodeAlarmFired's meaning, so that an older binary stops at it instead
// of destroying a node its peers cordon, and old logs replay as they ran.
const CmdNodeDeadline CommandType = 47

// NodeDeadline fires a node's deadline alarm (warm timeout, max or hard
// lifetime): an idle node starts destroying, a busy one at its max lifetime
// is cordoned until its hard limit, and at its hard limit its tasks fail
// and it is destroyed. Due must match the node's alarm.
type NodeDeadline struct {
	NodeID string    `json:"node_id"`
	Due    time.Time `json:"due"`
	At     time.Time `json:"at"`
}

// Type implements Command.
func (NodeDeadline) Type() CommandType { return CmdNodeDeadline }

// NodeAction is an operator's action on a node.
type NodeAction string

// Node actions.
const (
	NodeCordon   NodeAction = "cordon"
	NodeUncordon NodeAction = "uncordon"
	NodeDrain    NodeAction = "drain"
	NodeDestroy  NodeAction = "destroy"
)

// ValidNodeAction reports whether a is a known action.
func ValidNodeAction(a NodeAction) bool {
	switch a {
	case NodeCordon, NodeUncordon, NodeDrain, NodeDestroy:
		return true
	}
	return false
}

// NodeAdmin is an operator's action on a node. Destroy fails the tasks
// still running on it (DestroyedError names the actor).
type NodeAdmin struct {
	NodeID string     `json:"node_id"`
	Action NodeAction `json:"action"`
	Actor  Actor      `json:"actor"`
	At     time.Time  `json:"at"`
}

// Type implements Command.
func (NodeAdmin) Type() CommandType { return CmdNodeAdmin }

// destroyWhenEmpty: the node is destroyed, not kept warm, once its last
// task is cleaned up.
func (n *Node) destroyWhenEmpty() bool {
	return n.Cordoned && (n.PastLifetime || n.CordonReason == CordonDrain)
}

// busy reports whether a task in a run or a live workspace occupies the
// node.
func (f *FSM) busy(nodeID string) bool {
	return f.tasksOnNode(nodeID, "") > 0 || f.liveWorkspaces(nodeID, "") > 0
}

// destroyNow starts destroying a node now.
func destroyNow(n *Node, at time.Time) {
	n.Status, n.WarmSince, n.UpdatedAt = NodeDestroying, nil, at
	n.Alarm = &Alarm{Due: at, Kind: AlarmRun}
}

// fireLifetime handles a node's expired deadline alarm: a warm or idle
// node is destroyed; a busy one at its max lifetime is cordoned until its
// hard limit; a busy one at its hard limit loses its tasks and is
// destroyed.
func (f *FSM) fireLifetime(n *Node, at time.Time) {
	if !n.Ready || !f.busy(n.ID) {
		// A node that never became ready runs nothing yet: the task
		// waiting for it notices it going.
		destroyNow(n, at)
		return
	}
	hard := n.CreatedAt.Add(f.st.settings.HardLifetime())
	if !n.PastLifetime && n.AutoProvisioned && at.Before(hard) {
		n.PastLifetime, n.Cordoned, n.CordonReason, n.UpdatedAt = true, true, CordonLifetime, at
		n.Alarm = &Alarm{Due: hard, Kind: AlarmDeadline}
		return
	}
	f.failTasksOnNode(n.ID, HardLifetimeError, at)
	destroyNow(n, at)
}

// failTasksOnNode fails every task in a run on a node, with msg. Their
// cleanup then finds the node gone and takes their workspaces as stopped.
func (f *FSM) failTasksOnNode(nodeID, msg string, at time.Time) {
	var ids []string
	f.st.eachTaskOnNode(nodeID, func(t *Task) bool {
		if !t.Status.Terminal() && t.Status != StatusDraft && t.Status != StatusReady {
			ids = append(ids, t.ID)
		}
		return true
	})
	for _, id := range ids {
		cur, _ := f.st.tasks.Get(&Task{ID: id})
		t := cur.clone()
		t.UpdatedAt = at
		f.failTask(t, ErrKindFailed, t.Step, t.Attempt, ClassPermanent, msg, "", at)
		f.st.tasks.ReplaceOrInsert(t)
		f.changed = append(f.changed, Change{Task: t})
	}
}

func (f *FSM) applyNodeAdmin(c NodeAdmin, res *Result) {
	cur, ok := f.node(c.NodeID, res)
	if !ok {
		return
	}
	if !ValidNodeAction(c.Action) {
		res.Err = fmt.Errorf("%w: node action %q (want cordon, uncordon, drain or destroy)", ErrInvalid, c.Action)
		return
	}
	res.Node = cur
	if !cur.Live() {
		if c.Action == NodeDestroy {
			res.Unchanged = true // destroying or deleted already
			return
		}
		res.Err = fmt.Errorf("%w: node %s is %s", ErrInvalidTransition, cur.ID, cur.Status)
		return
	}
	n := cur.clone()
	n.UpdatedAt = c.At
	switch c.Action {
	case NodeCordon:
		if n.Cordoned {
			res.Unchanged = true
			return
		}
		n.Cordoned, n.CordonReason = true, CordonOperator
	case NodeUncordon:
		if n.PastLifetime {
			res.Err = fmt.Errorf("%w: node %s is past its max lifetime; it stays cordoned", ErrInvalidTransition, n.ID)
			return
		}
		if !n.Cordoned {
			res.Unchanged = true
			return
		}
		n.Cordoned, n.CordonReason = false, ""
	case NodeDrain:
		n.Cordoned = true
		if !n.PastLifetime {
			n.CordonReason = CordonDrain
		}
		if n.Status == NodeWarm || !f.busy(n.ID) {
			destroyNow(n, c.At)
		}
	case NodeDestroy:
		f.failTasksOnNode(n.ID, fmt.Sprintf("node %s destroyed by %s", n.ID, actorName(c.Actor)), c.At)
		destroyNow(n, c.At)
	}
	f.st.nodes.ReplaceOrInsert(n)
	res.Node = n
}

func actorName(a Actor) string {
	if a.ID != "" {
		return string(a.Type) + " " + a.ID
	}
	if a.Type != "" {
		return string(a.Type)
	}
	return "an operator"
}
