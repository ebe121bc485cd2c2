// Package fakeworld is the simulated world tdf runs against in dev, tests
// and chaos: a Hetzner-compatible cloud (cloud/fakecloud) whose servers,
// once running, boot a simulated VM agent (vmagent/sim) from their
// cloud-init user data, exactly as a real VM would. Each agent listens on
// its server's own 127.x.y.z address at the agent port. The agents verify
// management tokens against the control plane's JWKS and call back into
// the cluster. Every effect — servers, workspaces, sessions — lands in one
// ledger, which the checkers read.
package fakeworld

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tdf-project/tdf/cloud/fakecloud"
	"github.com/tdf-project/tdf/cloudinit"
	"github.com/tdf-project/tdf/tokens"
	"github.com/tdf-project/tdf/vmagent/realagent"
	"github.com/tdf-project/tdf/vmagent/sim"
)

// EventCallbackDropped is the ledger kind of a callback an agent's fault
// dropped (sim.OutcomeDropped); Detail is "<callback kind>: <fault>", as
// "task_status: fault DropTaskStatusRate 0.2 (drew 0.1234)".
const EventCallbackDropped = "callback_dropped"

// EventCallbackDelivered is the ledger kind of a task status callback the
// control plane answered with a 2xx (Detail: the URL). The agent sends it
// once: a task without one may rightly fail on its running deadline, one
// with it must not (the chaos checkers' evidence).
const EventCallbackDelivered = "callback_delivered"

// Options configure the world.
type Options struct {
	Cloud fakecloud.Options
	// Agent is the template of every simulated agent (delays, faults);
	// its node id, URLs, token and verifier come from the server.
	Agent sim.Config
	// AgentPort is where each agent listens on its server's address.
	AgentPort int
	// VerifyTokens makes agents check management tokens against the JWKS
	// (the agent's real behaviour); off, they accept any token.
	VerifyTokens bool
	// RealAgent, when set, boots the real VM agent (vmagent/realagent)
	// for each server instead of a simulated one.
	RealAgent *realagent.Options
	Logger    hclog.Logger
}

// World is the fake cloud and its agents.
type World struct {
	opts  Options
	Cloud *fakecloud.Server
	log   hclog.Logger

	mu     sync.Mutex
	agents map[int64]*vm
	real   map[int64]*realagent.Process
	ctx    context.Context
	cancel context.CancelFunc
}

type vm struct {
	agent *sim.Agent
	srv   *http.Server
}

// New makes the world; its handler serves the cloud API under /v1 and the
// fake's own /fake routes.
func New(opts Options) *World {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.AgentPort == 0 {
		opts.AgentPort = 8080
	}
	w := &World{opts: opts, log: opts.Logger.Named("fakeworld"), agents: map[int64]*vm{}, real: map[int64]*realagent.Process{}}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	co := opts.Cloud
	co.OnServerRunning = w.boot
	co.OnServerDeleted = w.shutdown
	w.Cloud = fakecloud.New(co)
	return w
}

// Handler serves the cloud API and the ledger.
func (w *World) Handler() http.Handler { return w.Cloud.Handler() }

// Close stops every agent and the cloud.
func (w *World) Close() {
	w.cancel()
	w.Cloud.Close()
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, v := range w.agents {
		v.stop()
		delete(w.agents, id)
	}
	for id, p := range w.real {
		p.Stop() // the world ends: no one reads the ledger any more
		delete(w.real, id)
	}
}

// Agents returns the running agents.
func (w *World) Agents() []*sim.Agent {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]*sim.Agent, 0, len(w.agents))
	for _, v := range w.agents {
		out = append(out, v.agent)
	}
	return out
}

// SetAgentFaults changes the faults of every agent, running or future.
func (w *World) SetAgentFaults(f sim.Faults) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.opts.Agent.Faults = f
	for _, v := range w.agents {
		v.agent.SetFaults(f)
	}
}

func (v *vm) stop() {
	v.agent.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = v.srv.Shutdown(ctx)
}

// boot starts the agent of a server that has just come up, configured
// from its cloud-init as the real agent would be. It boots in its own
// goroutine: an agent may retry its start for a while, and the cloud's
// hooks must not wait for it.
func (w *World) boot(s fakecloud.VM) {
	go func() {
		if err := w.bootAgent(s); err != nil {
			w.log.Warn("server has no agent", "server", s.Name, "error", err)
			w.Cloud.Record(fakecloud.Event{Kind: "agent_boot_failed", ServerID: s.ID, Name: s.Name, Detail: err.Error()})
		}
	}()
}

func (w *World) bootAgent(s fakecloud.VM) error {
	boot, err := cloudinit.Parse(s.UserData)
	if err != nil {
		return err
	}
	if w.opts.RealAgent != nil {
		return w.bootRealAgent(s, boot)
	}
	w.mu.Lock()
	cfg := w.opts.Agent
	w.mu.Unlock()
	cfg.NodeID = boot.Env["NODE_ID"]
	cfg.NodeCallbackToken = boot.CallbackToken
	// One URL, as the real agent reads: a load balancer in front of the
	// cluster when there is more than one node.
	cfg.ControlPlaneURL = boot.Env["CONTROL_PLANE_URL"]
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.OnEvent = func(e sim.Event) {
		w.Cloud.Record(fakecloud.Event{Kind: string(e.Kind), ServerID: s.ID, NodeID: e.NodeID, WorkspaceID: e.WorkspaceID,
			SessionID: e.SessionID, TaskID: e.TaskID, Detail: e.Detail, Time: e.Time})
	}
	// A callback a fault dropped changes nothing the ledger otherwise
	// shows, yet checkers must know of it (a task whose status callback
	// was dropped is expected to fail on its deadline): record the drop.
	cfg.OnCallback = func(r sim.CallbackRecord) {
		switch {
		case r.Outcome == sim.OutcomeDropped:
			w.Cloud.Record(fakecloud.Event{Kind: EventCallbackDropped, ServerID: s.ID, NodeID: r.NodeID, WorkspaceID: r.WorkspaceID,
				TaskID: r.TaskID, Detail: string(r.Kind) + ": " + r.Error, Time: r.Time})
		case r.Kind == sim.KindTaskStatus && r.Outcome == sim.OutcomeDelivered && !r.Duplicate:
			w.Cloud.Record(fakecloud.Event{Kind: EventCallbackDelivered, ServerID: s.ID, NodeID: r.NodeID, WorkspaceID: r.WorkspaceID,
				TaskID: r.TaskID, Detail: r.URL, Time: r.Time})
		}
	}
	if w.opts.VerifyTokens {
		// The real agent fetches the JWKS at start and exits if it cannot.
		// The real agent exits if it cannot fetch the JWKS, and systemd
		// starts it again: retry for a minute.
		var v *tokens.JWKSVerifier
		var err error
		for deadline := time.Now().Add(time.Minute); ; {
			ctx, cancel := context.WithTimeout(w.ctx, 10*time.Second)
			v, err = tokens.NewJWKSVerifier(ctx, boot.Env["JWKS_ENDPOINT"], boot.Env["CONTROL_PLANE_URL"], nil)
			cancel()
			if err == nil || w.ctx.Err() != nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Second)
		}
		if err != nil {
			return fmt.Errorf("agent exits: %w", err)
		}
		cfg.Verifier = AgentVerifier{v}
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(s.IPv4.String(), fmt.Sprint(w.opts.AgentPort)))
	if err != nil {
		return fmt.Errorf("agent listen: %w", err)
	}
	a := sim.New(cfg)
	hs := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	a.Start(w.ctx)
	w.mu.Lock()
	w.agents[s.ID] = &vm{agent: a, srv: hs}
	w.mu.Unlock()
	w.log.Debug("agent booted", "server", s.Name, "node", cfg.NodeID, "addr", ln.Addr())
	return nil
}

func (w *World) shutdown(s fakecloud.VM) {
	w.mu.Lock()
	v := w.agents[s.ID]
	delete(w.agents, s.ID)
	p := w.real[s.ID]
	delete(w.real, s.ID)
	w.mu.Unlock()
	if v != nil {
		v.stop()
	}
	if p != nil {
		w.stopRealAgent(s, p)
	}
}

// AgentVerifier checks management tokens against the control plane's
// JWKS for a simulated agent, mapping token errors onto its 401/403.
type AgentVerifier struct{ V *tokens.JWKSVerifier }

// Verify implements sim.Verifier.
func (a AgentVerifier) Verify(token, nodeID, workspaceID string) error {
	err := a.V.Verify(token, nodeID, workspaceID)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, tokens.ErrWrongAuth):
		return fmt.Errorf("%w: %v", sim.ErrForbidden, err)
	}
	return fmt.Errorf("%w: %v", sim.ErrUnauthorized, err)
}

// SeedVM is a VM the old system left running: its server (whose user
// data the agent boots from, as any server's) and the workspaces and
// sessions on it.
type SeedVM struct {
	Server     fakecloud.SeedServer
	Workspaces []sim.SeedWorkspace
}

// Seed creates the server and, once its agent has booted, seeds the
// agent's workspaces. It returns the server.
func (w *World) Seed(ctx context.Context, s SeedVM) (fakecloud.VM, error) {
	vm, err := w.Cloud.Seed(s.Server)
	if err != nil || s.Server.Off || len(s.Workspaces) == 0 {
		return vm, err
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var agent *sim.Agent
	for agent == nil {
		w.mu.Lock()
		if v := w.agents[vm.ID]; v != nil {
			agent = v.agent
		}
		w.mu.Unlock()
		if agent != nil {
			break
		}
		select {
		case <-ctx.Done():
			return vm, fmt.Errorf("fakeworld: seed %s: its agent did not boot: %w", vm.Name, ctx.Err())
		case <-tick.C:
		}
	}
	for _, ws := range s.Workspaces {
		if err := agent.Seed(ws); err != nil {
			return vm, err
		}
	}
	return vm, nil
}
