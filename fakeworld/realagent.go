package fakeworld

import (
	"fmt"

	"github.com/tdf-project/tdf/cloud/fakecloud"
	"github.com/tdf-project/tdf/cloudinit"
	"github.com/tdf-project/tdf/vmagent/realagent"
)

// bootRealAgent starts the real VM agent of a server from what its
// cloud-init installs: the unit's environment and the token file.
func (w *World) bootRealAgent(s fakecloud.VM, boot cloudinit.Boot) error {
	p, err := realagent.Start(*w.opts.RealAgent, realagent.Boot{
		Name: s.Name, Env: boot.Env, CallbackToken: boot.CallbackToken,
		Host: s.IPv4.String(), Port: w.opts.AgentPort, BinaryURL: boot.AgentURL, BinarySHA256: boot.AgentSHA256,
	})
	if err != nil {
		return fmt.Errorf("real agent: %w", err)
	}
	w.mu.Lock()
	if w.ctx.Err() != nil {
		w.mu.Unlock()
		p.Stop()
		return nil
	}
	w.real[s.ID] = p
	w.mu.Unlock()
	w.Cloud.Record(fakecloud.Event{Kind: "agent_booted", ServerID: s.ID, Name: s.Name, NodeID: boot.Env["NODE_ID"], Detail: "real agent in " + p.Dir()})
	return nil
}

// EventAgentRestarted is the ledger kind of a real agent that exited and
// was started again while its server ran (Detail: how often, and its last
// exit): an agent that cannot start (its JWKS fetch fails, say) restarts
// in a loop, as under systemd, and this is where a test sees it.
const EventAgentRestarted = "agent_restarted"

// stopRealAgent stops a deleted server's agent and records its restarts.
func (w *World) stopRealAgent(s fakecloud.VM, p *realagent.Process) {
	p.Stop()
	if n, last := p.Restarts(); n > 0 {
		w.Cloud.Record(fakecloud.Event{Kind: EventAgentRestarted, ServerID: s.ID, Name: s.Name,
			Detail: fmt.Sprintf("%d restarts, last exit: %v", n, last)})
	}
}
