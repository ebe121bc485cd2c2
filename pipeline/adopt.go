package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/tdf-project/tdf/cloud"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/steps"
	"github.com/tdf-project/tdf/vmagent"
)

// adopt reconciles a task imported from the old system against reality
// and reports the step it really is at (fsm.StepAdopt). It only reads —
// the server (by its Hetzner id), the agent's /health, the agent's
// workspaces and their sessions — so a re-dispatched attempt repeats
// nothing; the ordinary steps that follow carry their own idempotency
// keys. The ladder, from the bottom:
//
//	server gone            → node_provisioning (a new server, same node)
//	server not running     → node_provisioning (it polls the server)
//	agent silent           → poll, up to the agent-ready timeout
//	  (claimed node_agent_ready: stay there, its step polls)
//	claimed node_agent_ready, agent healthy → workspace_creation
//	workspace absent       → workspace_creation (created again, same id)
//	workspace creating     → workspace_ready (its callback will come)
//	workspace running      → agent_session, or running once a session exists
//	workspace stopped/error → the task fails
//
// A task that had reached awaiting_followup has its result: when its
// workspace or session is gone it completes instead of running again.
func (p *pipeline) adopt(ctx context.Context, t *fsm.Task, _ string) steps.Result {
	if p.cfg.Cloud == nil {
		return steps.Failed(steps.Permanentf("no cloud is configured (--cloud-token)"))
	}
	n, err := p.node(t)
	if err != nil {
		return steps.Failed(err)
	}
	claimed := t.Step
	finished := claimed == fsm.StepAwaitingFollowup
	done := func(d fsm.StepData) steps.Result {
		if finished && d.AdoptTo != fsm.StepAwaitingFollowup {
			d.AdoptTo, d.AdoptComplete = fsm.StepNone, true
			d.AdoptNote += "; the run had finished, so the task completes"
		}
		return steps.Done(d)
	}
	srv, err := p.cfg.Cloud.GetServer(ctx, n.ServerID)
	if err != nil {
		return steps.Failed(cloudErr("get server", err))
	}
	if srv == nil {
		return done(fsm.StepData{AdoptTo: fsm.StepNodeProvisioning, ServerGone: true,
			AdoptNote: fmt.Sprintf("server %d is gone: provision node %s again", n.ServerID, n.ID)})
	}
	if srv.Status != cloud.StatusRunning {
		return done(fsm.StepData{AdoptTo: fsm.StepNodeProvisioning, IPv4: srv.IPv4,
			AdoptNote: fmt.Sprintf("server %d is %s: wait for it in node_provisioning", n.ServerID, srv.Status)})
	}
	at := *n
	at.IPv4 = srv.IPv4
	base, err := p.agentURL(&at)
	if err != nil {
		return steps.Failed(steps.Transient(err))
	}
	if err := p.cfg.Agents.Health(ctx, base); err != nil {
		if claimed == fsm.StepNodeAgentReady {
			return steps.Done(fsm.StepData{AdoptTo: fsm.StepNodeAgentReady, IPv4: srv.IPv4, AdoptNote: "server running, agent not answering yet"})
		}
		if waited := time.Since(firstAttempt(t, fsm.StepAdopt)); waited >= t.Policy.AgentReadyTimeout {
			return steps.Failed(steps.Permanentf("adopt: the agent of node %s has not answered for %s: %v", n.ID, waited.Round(time.Second), err))
		}
		return steps.Result{Data: fsm.StepData{IPv4: srv.IPv4}, PollAfter: p.cfg.AgentPoll}
	}
	healthy := fsm.StepData{IPv4: srv.IPv4, NodeReady: true}
	if claimed == fsm.StepNodeAgentReady {
		healthy.AdoptTo, healthy.AdoptNote = fsm.StepWorkspaceCreate, "agent healthy: its ready callback went to the old system"
		return done(healthy)
	}
	list, err := p.cfg.Agents.ListWorkspaces(ctx, base, n.ID, t.UserID)
	if err != nil {
		return steps.Failed(agentErr("list workspaces", err))
	}
	ws, found := findWorkspace(list, t.WorkspaceID)
	d := healthy
	switch {
	case !found:
		d.AdoptTo, d.AdoptNote = fsm.StepWorkspaceCreate, fmt.Sprintf("workspace %s is not on the VM: create it", t.WorkspaceID)
	case ws.Status == vmagent.StatusCreating:
		d.AdoptTo, d.AdoptNote = fsm.StepWorkspaceReady, fmt.Sprintf("workspace %s is creating: wait for its ready callback", ws.ID)
	case ws.Status == vmagent.StatusRunning || ws.Status == vmagent.StatusRecovery:
		d.WorkspaceStatus = fsm.WorkspaceStatus(ws.Status)
		switch {
		case claimed.Order() < fsm.StepAgentSession.Order():
			d.AdoptTo, d.AdoptNote = fsm.StepAgentSession, fmt.Sprintf("workspace %s is %s: start the agent session", ws.ID, ws.Status)
		case ws.Sessions == 0:
			d.AdoptTo, d.AdoptNote = fsm.StepAgentSession, fmt.Sprintf("workspace %s has no agent session: start it", ws.ID)
		default:
			d.AdoptTo, d.SessionID = fsm.StepRunning, t.AgentSessionID
			if claimed == fsm.StepAwaitingFollowup {
				d.AdoptTo = claimed
			}
			d.AdoptNote = fmt.Sprintf("workspace %s is %s with %d agent session(s): wait at %s", ws.ID, ws.Status, ws.Sessions, d.AdoptTo)
		}
	default:
		if finished {
			return done(fsm.StepData{AdoptNote: fmt.Sprintf("workspace %s is %s", ws.ID, ws.Status)})
		}
		return steps.Failed(steps.Permanentf("adopt: workspace %s is %s on node %s", ws.ID, ws.Status, n.ID))
	}
	return done(d)
}

func findWorkspace(list []vmagent.Workspace, id string) (vmagent.Workspace, bool) {
	for _, w := range list {
		if w.ID == id {
			return w, true
		}
	}
	return vmagent.Workspace{}, false
}
