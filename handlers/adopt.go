package handlers

import (
	"context"
	"fmt"
	"time"

	"github.com/tdf-project/tdf/cloud"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/runner"
	"github.com/tdf-project/tdf/vmagent"
)

// adopt reconciles a task imported from the old system against reality
// and reports the step it really is at (fsm.StepAdopt). It reads the
// server (by its Hetzner id), the agent's /health and its workspaces; its
// one write is how it asks whether the task's agent session exists
// (sessionExists), a creation the agent_session step would make itself.
// So a re-dispatched attempt repeats nothing, and the ordinary steps that
// follow carry their own idempotency keys. The ladder, from the bottom:
//
//	server gone            → node_provisioning (a new server, same node)
//	server not running     → node_provisioning (it polls the server)
//	agent silent           → poll, up to the agent-ready timeout
//	  (claimed node_agent_ready: stay there, its step polls)
//	claimed node_agent_ready, agent healthy → workspace_creation
//	workspace absent       → workspace_creation (created again, same id)
//	workspace creating     → workspace_ready (its callback will come)
//	workspace running      → agent_session, or running once the recorded session exists
//	workspace stopped/error → the task fails
//
// A task that had reached awaiting_followup has its result: when its
// workspace or session is gone it completes instead of running again.
func (p *pipeline) adopt(ctx context.Context, t *fsm.Task, _ string) runner.Result {
	if p.cfg.Cloud == nil {
		return runner.Failed(runner.Permanentf("no cloud is configured (--cloud-token)"))
	}
	n, err := p.node(t)
	if err != nil {
		return runner.Failed(err)
	}
	claimed := t.Step
	finished := claimed == fsm.StepAwaitingFollowup
	done := func(d fsm.StepData) runner.Result {
		if finished && d.AdoptTo != fsm.StepAwaitingFollowup {
			d.AdoptTo, d.AdoptComplete = fsm.StepNone, true
			d.AdoptNote += "; the run had finished, so the task completes"
		}
		return runner.Done(d)
	}
	srv, err := p.cfg.Cloud.GetServer(ctx, n.ServerID)
	if err != nil {
		return runner.Failed(cloudErr("get server", err))
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
		return runner.Failed(runner.Transient(err))
	}
	if err := p.cfg.Agents.Health(ctx, base); err != nil {
		if claimed == fsm.StepNodeAgentReady {
			return runner.Done(fsm.StepData{AdoptTo: fsm.StepNodeAgentReady, IPv4: srv.IPv4, AdoptNote: "server running, agent not answering yet"})
		}
		if waited := p.waited(t, fsm.StepAdopt); waited >= t.Policy.AgentReadyTimeout {
			return runner.Failed(runner.Permanentf("adopt: the agent of node %s has not answered for %s: %v", n.ID, waited.Round(time.Second), err))
		}
		return runner.Result{Data: fsm.StepData{IPv4: srv.IPv4}, PollAfter: p.cfg.AgentPoll}
	}
	healthy := fsm.StepData{IPv4: srv.IPv4, NodeReady: true}
	if claimed == fsm.StepNodeAgentReady {
		healthy.AdoptTo, healthy.AdoptNote = fsm.StepWorkspaceCreate, "agent healthy: its ready callback went to the old system"
		return done(healthy)
	}
	list, err := p.cfg.Agents.ListWorkspaces(ctx, base, n.ID, t.UserID)
	if err != nil {
		return runner.Failed(agentErr("list workspaces", err))
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
		if err := p.adoptSession(ctx, t, base, n.ID, ws, &d); err != nil {
			return runner.Failed(agentErr("create agent session", err))
		}
	default:
		if finished {
			return done(fsm.StepData{AdoptNote: fmt.Sprintf("workspace %s is %s", ws.ID, ws.Status)})
		}
		return runner.Failed(runner.Permanentf("adopt: workspace %s is %s on node %s", ws.ID, ws.Status, n.ID))
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

// adoptSession sets where a task whose workspace runs goes: to running (or
// awaiting_followup, where it was) when its agent session exists, else to
// agent_session. The old system records a session's id before it creates
// the session on the VM, so a task without one has none there.
func (p *pipeline) adoptSession(ctx context.Context, t *fsm.Task, base, nodeID string, ws vmagent.Workspace, d *fsm.StepData) error {
	sid := t.AgentSessionID
	switch {
	case sid == "" && t.Step.Order() < fsm.StepAgentSession.Order():
		d.AdoptTo, d.AdoptNote = fsm.StepAgentSession, fmt.Sprintf("workspace %s is %s: start the agent session", ws.ID, ws.Status)
		return nil
	case sid == "":
		d.AdoptTo, d.AdoptNote = fsm.StepAgentSession, fmt.Sprintf("workspace %s has no agent session on record: start it", ws.ID)
		return nil
	}
	exists, err := p.sessionExists(ctx, t, base, nodeID)
	if err != nil {
		return err
	}
	if !exists {
		d.AdoptTo, d.AdoptNote = fsm.StepAgentSession, fmt.Sprintf("workspace %s has no agent session %s: start it", ws.ID, sid)
		return nil
	}
	d.AdoptTo, d.SessionID = fsm.StepRunning, sid
	if t.Step == fsm.StepAwaitingFollowup {
		d.AdoptTo = t.Step
	}
	d.AdoptNote = fmt.Sprintf("workspace %s is %s with agent session %s: wait at %s", ws.ID, ws.Status, sid, d.AdoptTo)
	return nil
}

// sessionExists asks the agent whether the task's recorded agent session
// exists, the one way it can be asked: GET /workspaces counts terminal
// sessions, not agent sessions, and the session list refuses a management
// token. It creates the session as the agent_session step would (same id,
// same Idempotency-Key): the old system created its sessions without a
// key, so one of them answers 400 "session already exists"; a session that
// did not exist is created now, unstarted, for the agent_session step to
// start, and an earlier attempt's creation replays as 201 (the same key),
// never taken for the old system's. No chat session id: on the agent it
// would redirect a running session's chat messages and drop their outbox.
func (p *pipeline) sessionExists(ctx context.Context, t *fsm.Task, base, nodeID string) (bool, error) {
	req := sessionRequest(t)
	req.ChatSessionID = ""
	_, err := p.cfg.Agents.CreateAgentSession(ctx, base, nodeID, t.UserID, t.WorkspaceID, req,
		runner.IdempotencyKey(t.ID, fsm.StepAgentSession))
	if vmagent.IsSessionExists(err, req.SessionID) {
		return true, nil
	}
	return false, err
}
