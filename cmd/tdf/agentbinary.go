package main

// Where new servers get the VM agent binary (docs/operations.md, "The VM
// agent on new servers").

import (
	"flag"
	"fmt"

	"github.com/hashicorp/go-hclog"

	"github.com/tdf-project/tdf/cloudinit"
	"github.com/tdf-project/tdf/handlers"
)

func bindAgentBinary(fs *flag.FlagSet, pc *handlers.Config) {
	fs.StringVar(&pc.AgentBinaryURL, "agent-binary-url", pc.AgentBinaryURL, "http(s) URL new servers download the VM agent binary from at boot (needs --agent-binary-sha256); empty: the server image must have it at "+cloudinit.AgentPath)
	fs.StringVar(&pc.AgentBinarySHA256, "agent-binary-sha256", pc.AgentBinarySHA256, "SHA-256 (64 hex digits) of the binary at --agent-binary-url; a server whose download differs deletes it and starts no agent")
}

// checkAgentBinary refuses a malformed or half-given pair of flags. Without
// a URL servers still boot, since a custom image may carry the agent (and a
// fake cloud needs none), but on a stock image the agent never starts, so
// a server with a cloud says so at start.
func checkAgentBinary(pc *handlers.Config, log hclog.Logger) error {
	if err := cloudinit.CheckAgentBinary(pc.AgentBinaryURL, pc.AgentBinarySHA256); err != nil {
		return fmt.Errorf("--agent-binary-url, --agent-binary-sha256: %w", err)
	}
	if pc.Cloud != nil && pc.AgentBinaryURL == "" {
		log.Warn("no --agent-binary-url: new servers start the VM agent only if their image already has it at "+cloudinit.AgentPath+
			"; on a stock image their tasks fail at node_agent_ready", "image", pc.Image)
	}
	return nil
}
