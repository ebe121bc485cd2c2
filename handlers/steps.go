package handlers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tdf-project/tdf/cloud"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/runner"
	"github.com/tdf-project/tdf/tokens"
	"github.com/tdf-project/tdf/vmagent"
)

// provision creates the node's server (or finds the one an earlier attempt
// created) and polls until it runs. The server id is committed with the
// first poll, before any waiting.
func (p *pipeline) provision(ctx context.Context, t *fsm.Task, _ string) runner.Result {
	n, err := p.node(t)
	if err != nil {
		return runner.Failed(err)
	}
	switch {
	case n.ServerID == 0:
		return p.createServer(ctx, n, t)
	case n.ActionID != 0:
		return p.pollAction(ctx, n)
	}
	return p.pollServer(ctx, n)
}

func (p *pipeline) createServer(ctx context.Context, n *fsm.Node, t *fsm.Task) runner.Result {
	if p.cfg.Cloud == nil {
		return runner.Failed(runner.Permanentf("no cloud is configured (--cloud-token)"))
	}
	ud, err := p.userData(n, t)
	if err != nil {
		// No signing key yet on a brand-new cluster: the leader adds one
		// at once, so this passes on a retry.
		return runner.Failed(runner.Transient(err))
	}
	typ, ok := p.cfg.serverType(n.Size)
	if !ok {
		return runner.Failed(runner.Permanentf("unknown VM size %q", n.Size))
	}
	srv, act, err := p.cfg.Cloud.CreateServer(ctx, cloud.ServerSpec{Name: n.ServerName, ServerType: typ, Location: n.Location,
		FallbackLocations: p.cfg.FallbackLocations, Image: p.cfg.Image, UserData: ud, Labels: p.labels(n)})
	if err != nil {
		return cloudFailed("create server "+n.ServerName, err)
	}
	// A fallback placement goes on the task's timeline.
	data := fsm.StepData{ServerID: srv.ID, ActionID: act.ID, IPv4: srv.IPv4, Recovered: srv.Placement}
	if act.ID == 0 && srv.Status == cloud.StatusRunning {
		return runner.Done(data)
	}
	return runner.Result{Data: data, PollAfter: p.cfg.ActionPoll}
}

func (p *pipeline) pollAction(ctx context.Context, n *fsm.Node) runner.Result {
	act, err := p.cfg.Cloud.GetAction(ctx, n.ActionID)
	if err != nil {
		return cloudFailed("get create action", err)
	}
	switch {
	case act.Failed():
		// A failed create can still leave a server: delete it, then start
		// over with a fresh create on the next attempt.
		if derr := p.cfg.Cloud.DeleteServer(ctx, n.ServerID); derr != nil {
			return runner.Failed(cloudErr("delete server after failed create", derr))
		}
		return runner.Result{Data: fsm.StepData{ServerGone: true},
			Err: runner.Transient(fmt.Errorf("create server %s failed: %s: %s", n.ServerName, act.ErrorCode, act.ErrorMessage))}
	case !act.Done():
		return runner.PollIn(p.cfg.ActionPoll)
	}
	return p.pollServer(ctx, n)
}

func (p *pipeline) pollServer(ctx context.Context, n *fsm.Node) runner.Result {
	srv, err := p.cfg.Cloud.GetServer(ctx, n.ServerID)
	if err != nil {
		return cloudFailed("get server", err)
	}
	if srv == nil {
		return runner.Result{Data: fsm.StepData{ServerGone: true}, Err: runner.Transient(fmt.Errorf("server %d of node %s vanished", n.ServerID, n.ID))}
	}
	if srv.Status != cloud.StatusRunning {
		return runner.Result{Data: fsm.StepData{IPv4: srv.IPv4}, PollAfter: p.cfg.ActionPoll}
	}
	return runner.Done(fsm.StepData{IPv4: srv.IPv4})
}

// agentReady waits for the node's agent: its node-ready callback and a
// healthy /health. The callback is sent once and never retried, so after
// NodeReadyGrace of healthy polls the node is taken as ready without it.
func (p *pipeline) agentReady(ctx context.Context, t *fsm.Task, _ string) runner.Result {
	n, err := p.node(t)
	if err != nil {
		return runner.Failed(err)
	}
	if !n.Live() {
		return runner.Failed(runner.Permanentf("node %s is %s", n.ID, n.Status))
	}
	base, err := p.agentURL(n)
	if err != nil {
		return runner.PollIn(p.cfg.AgentPoll)
	}
	if err := p.cfg.Agents.Health(ctx, base); err != nil {
		return runner.PollIn(p.cfg.AgentPoll)
	}
	if n.Ready {
		return runner.Done(fsm.StepData{})
	}
	if waited := p.waited(t, fsm.StepNodeAgentReady); waited >= p.cfg.NodeReadyGrace {
		return runner.Done(fsm.StepData{Recovered: fmt.Sprintf("node %s: agent healthy for %s without its node-ready callback; proceeding", n.ID, waited.Round(time.Second))})
	}
	return runner.PollIn(p.cfg.AgentPoll)
}

// waited is how long the task has been trying step s in its current run.
func (p *pipeline) waited(t *fsm.Task, s fsm.Step) time.Duration {
	now := p.cfg.Clock.Now()
	first := now
	for i := len(t.Steps) - 1; i >= 0 && t.Steps[i].Step == s; i-- {
		first = t.Steps[i].Started
	}
	return now.Sub(first)
}

// createWorkspace asks the agent for the task's workspace, with a
// workspace-scoped callback token. The agent answers a replay with 202
// (still creating) or 200 (running): both are success.
func (p *pipeline) createWorkspace(ctx context.Context, t *fsm.Task, _ string) runner.Result {
	n, err := p.node(t)
	if err != nil {
		return runner.Failed(err)
	}
	base, err := p.agentURL(n)
	if err != nil {
		return runner.Failed(err)
	}
	tok, err := p.cfg.Tokens.CallbackToken(tokens.ScopeWorkspace, t.WorkspaceID)
	if err != nil {
		return runner.Failed(runner.Transient(err))
	}
	req := vmagent.CreateWorkspaceRequest{
		WorkspaceID: t.WorkspaceID, Repository: t.Repository, Branch: t.Branch, CallbackToken: tok,
		GitUserName: t.UserID, GitUserEmail: t.UserID + "@users.noreply.tdf", ProjectID: t.ProjectID, TaskID: t.ID,
	}
	_, err = p.cfg.Agents.CreateWorkspace(ctx, base, n.ID, t.UserID, req)
	if ws, ok := p.cfg.FSM.Workspace(t.WorkspaceID); ok && ws.Status == fsm.WorkspaceError && errors.Is(err, vmagent.ErrWorkspaceNotCreatable) {
		// An earlier attempt's creation failed on the agent, which said
		// so while the call was unanswered (a standalone agent creates
		// within the call, and its work is cut off when the leader that
		// asked dies): the task still owns the workspace, so start over.
		if err = p.cfg.Agents.DeleteWorkspace(ctx, base, n.ID, t.UserID, t.WorkspaceID); err == nil {
			_, err = p.cfg.Agents.CreateWorkspace(ctx, base, n.ID, t.UserID, req)
		}
	}
	if err != nil {
		return runner.Failed(agentErr("create workspace", err))
	}
	return runner.Done(fsm.StepData{WorkspaceID: t.WorkspaceID})
}

// SessionID is the agent session id of a task: derived from the task, so a
// re-dispatched attempt asks for the same session.
func SessionID(t *fsm.Task) string { return "s" + strings.TrimPrefix(t.ID, "t") }

// sessionRequest is the creation of the task's agent session, made by the
// agent_session step and, for an imported task, by adoption's probe: the
// session the old system recorded (adoption may have created it), else
// the task's own.
func sessionRequest(t *fsm.Task) vmagent.CreateSessionRequest {
	sid := t.AgentSessionID
	if sid == "" {
		sid = SessionID(t)
	}
	return vmagent.CreateSessionRequest{SessionID: sid, Label: "task " + t.ID, ChatSessionID: ChatSessionID(t), ProjectID: t.ProjectID}
}

// startSession creates the agent session (idempotent by session id and
// Idempotency-Key, which the agent takes as is) and starts the agent with the
// task's prompt (idempotent by delivery id, which the agent restricts).
func (p *pipeline) startSession(ctx context.Context, t *fsm.Task, key string) runner.Result {
	n, err := p.node(t)
	if err != nil {
		return runner.Failed(err)
	}
	base, err := p.agentURL(n)
	if err != nil {
		return runner.Failed(err)
	}
	req := sessionRequest(t)
	sid := req.SessionID
	if _, err := p.cfg.Agents.CreateAgentSession(ctx, base, n.ID, t.UserID, t.WorkspaceID, req, key); err != nil {
		return runner.Failed(agentErr("create agent session", err))
	}
	if err := p.cfg.Agents.StartAgentSession(ctx, base, n.ID, t.UserID, t.WorkspaceID, sid, vmagent.StartSessionRequest{
		AgentType: p.cfg.AgentType, InitialPrompt: TaskPrompt(t, OutputBranch(p.cfg.OutputBranchPrefix, t)), ProjectID: t.ProjectID, TaskID: t.ID, DeliveryID: DeliveryID(t.ID, fsm.StepAgentSession),
	}); err != nil {
		return runner.Failed(agentErr("start agent session", err))
	}
	return runner.Done(fsm.StepData{SessionID: sid})
}

// cleanup stops the task's workspace (best effort: after its retries the
// runner gives up and the workspace is taken as stopped); the FSM then
// releases the node.
func (p *pipeline) cleanup(ctx context.Context, t *fsm.Task, _ string) runner.Result {
	ws, ok := p.cfg.FSM.Workspace(t.WorkspaceID)
	if !ok || !ws.Live() {
		return runner.Done(fsm.StepData{})
	}
	n, ok := p.cfg.FSM.Node(ws.NodeID)
	if !ok || !n.Live() || n.IPv4 == "" {
		return runner.Done(fsm.StepData{WorkspaceStopped: true})
	}
	base, _ := p.agentURL(n)
	if err := p.cfg.Agents.StopWorkspace(ctx, base, n.ID, t.UserID, ws.ID); err != nil {
		var ae *vmagent.Error
		if errors.As(err, &ae) && ae.Status == 404 {
			return runner.Done(fsm.StepData{WorkspaceStopped: true})
		}
		return runner.Failed(runner.Transient(fmt.Errorf("stop workspace %s: %w", ws.ID, err)))
	}
	return runner.Done(fsm.StepData{WorkspaceStopped: true})
}

// destroy deletes a node's server. A node whose create may have reached
// the cloud without its id being committed is looked up by name.
func (p *pipeline) destroy(ctx context.Context, n *fsm.Node) error {
	if p.cfg.Cloud == nil {
		return nil
	}
	id := n.ServerID
	if id == 0 {
		srv, err := p.cfg.Cloud.GetServerByName(ctx, n.ServerName)
		if err != nil {
			return err
		}
		if srv == nil || !cloud.Owns(p.labels(n), srv.Labels) {
			return nil
		}
		id = srv.ID
	}
	return p.cfg.Cloud.DeleteServer(ctx, id)
}
