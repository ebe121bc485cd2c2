package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/tdf-project/tdf/cloud/fakecloud"
	"github.com/tdf-project/tdf/fakeworld"
	"github.com/tdf-project/tdf/vmagent/sim"
)

// runFakecloud serves the simulated world: a Hetzner-compatible API under
// /v1, simulated VM agents booted from each server's cloud-init, and the
// ledger of every effect at /fake/ledger.
func runFakecloud(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("fakecloud", flag.ContinueOnError)
	addr := fs.String("http-addr", "127.0.0.1:9000", "address the fake Hetzner API listens on")
	co := fakecloud.DefaultOptions()
	ac := sim.DefaultConfig()
	fs.StringVar(&co.Token, "token", co.Token, "API token the fake accepts (give tdf server the same as --cloud-token)")
	fs.DurationVar(&co.CreateDuration, "server-create-duration", co.CreateDuration, "time from POST /servers until the server runs")
	fs.DurationVar(&co.DeleteDuration, "server-delete-duration", co.DeleteDuration, "time a server takes to delete")
	rate := fs.Int("rate-limit", 0, "API requests per hour before 429 (0: no limit; Hetzner's is 3600)")
	firstIP := fs.String("first-ip", "127.0.1.1", "address of the first server; each server's agent listens on its own address")
	agentPort := fs.Int("agent-port", 8080, "port each simulated agent listens on")
	agentSubnet := fs.String("agent-subnet", "", "IPv4 CIDR to give servers addresses from instead of loopback: the fakecloud makes the whole range local (an AnyIP route; needs CAP_NET_ADMIN) so that other hosts of its network reach the agents, as in docker-compose; servers start at --first-ip if it lies inside, else at the range's first address")
	verify := fs.Bool("verify-tokens", true, "agents verify management tokens against the control plane's JWKS, as the real agent does")
	fs.DurationVar(&ac.BootDelay, "agent-boot-delay", ac.BootDelay, "time from server start to the agent's node-ready callback")
	fs.DurationVar(&ac.WorkspaceReadyDelay, "workspace-ready-delay", ac.WorkspaceReadyDelay, "time from POST /workspaces to the ready callback")
	fs.DurationVar(&ac.AgentWorkDuration, "agent-work-duration", ac.AgentWorkDuration, "time from session start to the agent's 'finished' callback")
	fs.DurationVar(&ac.HeartbeatInterval, "heartbeat-interval", ac.HeartbeatInterval, "agent heartbeat interval")
	fs.BoolVar(&ac.Faults.EarlyReady, "early-ready", false, "send the workspace ready callback before answering POST /workspaces")
	fs.BoolVar(&ac.Faults.DuplicateCallbacks, "duplicate-callbacks", false, "send every callback twice")
	fs.BoolVar(&ac.Faults.DropNodeReady, "drop-node-ready", false, "never deliver the node-ready callback")
	fs.BoolVar(&ac.Faults.DropTaskStatus, "drop-task-status", false, "never deliver the task status callback")
	fs.Float64Var(&ac.Faults.DropNodeReadyRate, "drop-node-ready-rate", 0, "probability (0..1) that an agent drops its node-ready callback, decided once per callback (dropped ones are in the ledger as callback_dropped)")
	fs.Float64Var(&ac.Faults.DropTaskStatusRate, "drop-task-status-rate", 0, "probability (0..1) that an agent drops a task status callback, decided once per callback (dropped ones are in the ledger as callback_dropped)")
	fs.Uint64Var(&ac.Seed, "agent-seed", 0, "seed of the agents' random fault decisions; with a node's id it fixes that agent's decisions")
	fs.BoolVar(&ac.Faults.FailWorkspaces, "fail-workspaces", false, "fail every workspace (provisioning-failed callback)")
	var catalog fakeCatalogFlags
	catalog.bind(fs)
	var real realAgentFlags
	real.bind(fs)
	var logOpts logOptions
	logOpts.bind(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	realAgent, err := real.options()
	if err != nil {
		return err
	}
	if err := catalog.apply(&co); err != nil {
		return err
	}
	for _, r := range []struct {
		flag string
		v    float64
	}{
		{"drop-node-ready-rate", ac.Faults.DropNodeReadyRate},
		{"drop-task-status-rate", ac.Faults.DropTaskStatusRate},
	} {
		if !(r.v >= 0 && r.v <= 1) {
			return fmt.Errorf("--%s %v: want a probability between 0 and 1", r.flag, r.v)
		}
	}
	first, within, err := agentAddresses(*agentSubnet, *firstIP)
	if err != nil {
		return err
	}
	if *agentSubnet != "" {
		if err := addLocalRoute(within); err != nil {
			return fmt.Errorf("--agent-subnet: %w", err)
		}
	}
	co.RateLimit = *rate
	if co.RateLimit == 0 {
		co.RateLimit = -1
	}
	co.Addresses = fakecloud.NewSequentialAllocator(first, within)
	log := logOpts.logger("fakecloud")
	w := fakeworld.New(fakeworld.Options{Cloud: co, Agent: ac, AgentPort: *agentPort, VerifyTokens: *verify, RealAgent: realAgent, Logger: log})
	defer w.Close()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	hs := &http.Server{Handler: w.Handler(), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	log.Info("fake Hetzner API up", "url", "http://"+ln.Addr().String()+"/v1", "ledger", "http://"+ln.Addr().String()+"/fake/ledger")
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return hs.Shutdown(sctx)
	case err := <-done:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}

// loopbackAgents is where servers get their addresses by default: each
// agent on its own loopback address, reachable from this host only.
var loopbackAgents = netip.MustParsePrefix("127.0.0.0/8")

// agentAddresses returns the first server address and the range servers
// are given addresses from: loopback from firstIP by default, or the given
// subnet, from firstIP if it lies inside (else from the subnet's first
// host address).
func agentAddresses(subnet, firstIP string) (first netip.Addr, within netip.Prefix, err error) {
	first, err = netip.ParseAddr(firstIP)
	if err != nil || !first.Is4() {
		return first, within, fmt.Errorf("--first-ip %q is not an IPv4 address", firstIP)
	}
	if subnet == "" {
		return first, loopbackAgents, nil
	}
	within, err = netip.ParsePrefix(subnet)
	if err != nil || !within.Addr().Is4() || within.Bits() > 30 {
		return first, within, fmt.Errorf("--agent-subnet %q is not an IPv4 CIDR with room for hosts, such as 10.213.0.128/25", subnet)
	}
	within = within.Masked()
	if !within.Contains(first) {
		first = within.Addr().Next()
	}
	return first, within, nil
}
