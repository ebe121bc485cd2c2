package handlers

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/timers"
	"github.com/tdf-project/tdf/vmagent"
)

// RunReconciler is the leader's periodic look at the runs its agents keep:
// for every task at a reconciled step (running, awaiting follow-up) it asks
// the agent what became of the task's prompt (its durable prompt receipt)
// and whether the workspace still exists, and commits what a lost callback
// would have said (fsm.ReconcileRun). A lost status callback then costs
// one interval, not the four-hour running deadline.
type RunReconciler struct {
	Config   Config
	Apply    func(ctx context.Context, cmd fsm.Command) (*fsm.Result, error)
	Leader   string
	Interval time.Duration
	// FinishGrace is how long a completed prompt is given for its own
	// status callback (the agent pushes the work first, then calls back
	// with a 30 s timeout) before the reconciler reports it.
	FinishGrace time.Duration
	Logger      hclog.Logger

	// seen holds each task's lost finding and when it was first seen: a
	// loss is reported only when a later pass confirms it.
	seen map[string]sighting
}

type sighting struct {
	detail string
	since  time.Time
}

// Run is the leader hook: a pass every Interval until ctx ends.
func (r *RunReconciler) Run(ctx context.Context, _ uint64) {
	if r.Interval <= 0 || r.Config.Agents == nil {
		return
	}
	r.seen = map[string]sighting{} // a new term starts over
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n := r.Reconcile(ctx); n > 0 {
			r.Logger.Info("runs reconciled with their agents", "count", n)
		}
	}
}

// Reconcile runs one pass and returns how many tasks it moved on.
func (r *RunReconciler) Reconcile(ctx context.Context) int {
	if r.seen == nil {
		r.seen = map[string]sighting{}
	}
	if r.Config.Clock == nil {
		r.Config.Clock = timers.RealClock()
	}
	tasks, _ := r.Config.FSM.ListTasks(fsm.TaskFilter{Status: fsm.StatusInProgress})
	live := map[string]bool{}
	moved := 0
	for _, t := range tasks {
		sp, ok := fsm.SpecOf(t.Step)
		if !ok || !sp.Reconciled || t.Cleanup || t.WorkspaceID == "" || t.AgentSessionID == "" {
			continue
		}
		live[t.ID] = true
		finding, detail := r.look(ctx, t)
		if finding == "" || ctx.Err() != nil {
			if detail != waiting {
				delete(r.seen, t.ID)
			}
			continue
		}
		if finding == fsm.RunLost && !r.confirmed(t.ID, detail) {
			continue
		}
		cmd := fsm.ReconcileRun{TaskID: t.ID, Step: t.Step, WorkspaceID: t.WorkspaceID, SessionID: t.AgentSessionID,
			Finding: finding, Detail: detail, Leader: r.Leader, At: r.Config.Clock.Now().UTC().Round(0)}
		res, err := r.Apply(ctx, cmd)
		switch {
		case err != nil:
			r.Logger.Warn("cannot commit a run reconcile", "task", t.ID, "error", err)
		case res.Err == nil && !res.Unchanged:
			moved++
			r.Logger.Warn("run reconciled with its agent", "task", t.ID, "step", t.Step, "finding", finding, "detail", detail)
		}
		delete(r.seen, t.ID)
	}
	for id := range r.seen {
		if !live[id] {
			delete(r.seen, id)
		}
	}
	return moved
}

// confirmed reports whether a loss was already seen a pass ago.
func (r *RunReconciler) confirmed(id, detail string) bool {
	now := r.Config.Clock.Now()
	s, ok := r.seen[id]
	if !ok || s.detail != detail {
		r.seen[id] = sighting{detail: detail, since: now}
		return false
	}
	return now.Sub(s.since) >= r.Interval/2
}

// lookTimeout bounds what one task's look at its agent (and the cloud)
// may take.
const lookTimeout = 10 * time.Second

// waiting is look's detail for a finished prompt still in its grace.
const waiting = "waiting for the agent's own callback"

// look asks the task's agent what became of its run: a finding and what
// showed it, or "" when the run is fine or the agent cannot say.
func (r *RunReconciler) look(ctx context.Context, t *fsm.Task) (fsm.RunFinding, string) {
	n, ok := r.Config.FSM.Node(t.NodeID)
	if !ok {
		return fsm.RunLost, fmt.Sprintf("node %s is gone from the cluster's state", t.NodeID)
	}
	base, err := (&pipeline{cfg: r.Config}).agentURL(n)
	if err != nil {
		return "", ""
	}
	// A dead agent must not hold up the rest of the pass.
	ctx, cancel := context.WithTimeout(ctx, min(r.Interval, lookTimeout))
	defer cancel()
	workspaces, err := r.Config.Agents.ListWorkspaces(ctx, base, n.ID, t.UserID)
	if err != nil {
		return r.serverGone(ctx, n)
	}
	if !hasWorkspace(workspaces, t.WorkspaceID) {
		return fsm.RunLost, fmt.Sprintf("workspace %s no longer exists on node %s", t.WorkspaceID, n.ID)
	}
	if t.Step != fsm.StepRunning {
		return "", "" // a finished run: only its workspace matters
	}
	rc, err := r.Config.Agents.PromptReceipt(ctx, base, n.ID, t.UserID, t.WorkspaceID, t.AgentSessionID, DeliveryID(t.ID, fsm.StepAgentSession))
	if err != nil {
		return "", ""
	}
	switch rc.State {
	case vmagent.ReceiptCompleted:
		if r.Config.Clock.Now().Sub(r.completedAt(t.ID, rc)) < r.FinishGrace {
			return "", waiting // its own callback may still be on the way
		}
		return fsm.RunFinished, fmt.Sprintf("the agent finished the prompt (receipt %s completed) but its status callback never arrived", rc.DeliveryID)
	case vmagent.ReceiptAmbiguous:
		return fsm.RunLost, fmt.Sprintf("the agent on node %s restarted while the prompt ran (receipt %s is ambiguous)", n.ID, rc.DeliveryID)
	}
	// Accepted or in flight: it runs. Not found: a run the agent started
	// without this delivery (an adopted task's), which only its callback
	// or the deadline ends.
	return "", ""
}

// completedAt is when the agent says the prompt ended, or else when this
// leader first saw it ended.
func (r *RunReconciler) completedAt(id string, rc vmagent.PromptReceipt) time.Time {
	if rc.CompletedAt != nil {
		return time.UnixMilli(*rc.CompletedAt)
	}
	s, ok := r.seen[id]
	if !ok || s.detail != waiting {
		s = sighting{detail: waiting, since: r.Config.Clock.Now()}
		r.seen[id] = s
	}
	return s.since
}

// serverGone reports a node whose agent does not answer as lost if its
// server no longer exists; otherwise the agent may just be slow.
func (r *RunReconciler) serverGone(ctx context.Context, n *fsm.Node) (fsm.RunFinding, string) {
	if r.Config.Cloud == nil || n.ServerID == 0 {
		return "", ""
	}
	srv, err := r.Config.Cloud.GetServer(ctx, n.ServerID)
	if err != nil || srv != nil {
		return "", ""
	}
	return fsm.RunLost, fmt.Sprintf("the server of node %s (id %d) no longer exists", n.ID, n.ServerID)
}

func hasWorkspace(list []vmagent.Workspace, id string) bool {
	for _, w := range list {
		if w.ID == id {
			return true
		}
	}
	return false
}
