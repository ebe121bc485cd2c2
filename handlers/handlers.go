package handlers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/tdf-project/tdf/cloud"
	"github.com/tdf-project/tdf/cloudinit"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/runner"
	"github.com/tdf-project/tdf/timers"
	"github.com/tdf-project/tdf/tokens"
	"github.com/tdf-project/tdf/vmagent"
)

// ServerTypes is the default mapping of task VM sizes onto Hetzner server
// types (Config.ServerTypes overrides it).
var ServerTypes = map[string]string{"small": "cx23", "medium": "cx33", "large": "cx43"}

// Labels every server of ours carries.
const (
	LabelManagedBy = "managed-by"
	LabelCluster   = "tdf-cluster"
	LabelNode      = "tdf-node"
	ManagedBy      = "tdf"
)

// Config wires the handlers to the world.
type Config struct {
	FSM    *fsm.FSM
	Cloud  cloud.Provider
	Agents *vmagent.Client
	Tokens *tokens.Issuer
	// Cluster names this cluster in server labels, so two clusters on one
	// cloud project never touch each other's servers.
	Cluster string
	// AgentPort is the port agents listen on (the real agent: 8080).
	AgentPort int
	// Image is the server image.
	Image string
	// AgentBinaryURL and AgentBinarySHA256 are where new servers download
	// the VM agent binary at boot and its SHA-256 (cloudinit.Boot). Empty,
	// the image must have the agent already.
	AgentBinaryURL    string
	AgentBinarySHA256 string
	// ActionPoll and AgentPoll are the polling intervals of server
	// creation and agent readiness (REFERENCE.md: 10 s and 5 s).
	ActionPoll time.Duration
	AgentPoll  time.Duration
	// NodeReadyGrace: if the agent's node-ready callback (sent once, never
	// retried) is missing this long after /health first answered, the
	// node is taken as ready anyway.
	NodeReadyGrace time.Duration
	// AgentType is the coding agent started in each session.
	AgentType string
	// OutputBranchPrefix starts every task's output branch (OutputBranch).
	OutputBranchPrefix string
	// ServerTypes maps task VM sizes onto server types (nil: ServerTypes).
	ServerTypes map[string]string
	// FallbackLocations are tried in order when a task's location has no
	// room for its server type (placement.go).
	FallbackLocations []string
	// Clock is the runner's: the times handlers compare with the task's
	// timeline come from it (nil: the real clock).
	Clock timers.Clock
}

// DefaultConfig returns REFERENCE.md's defaults.
func DefaultConfig() Config {
	return Config{Cluster: "tdf", AgentPort: 8080, Image: "ubuntu-24.04", ActionPoll: 10 * time.Second,
		AgentPoll: 5 * time.Second, NodeReadyGrace: 2 * time.Minute, AgentType: "claude-code", OutputBranchPrefix: "sam/"}
}

// New returns the step handlers, by step.
func New(cfg Config) map[fsm.Step]runner.Handler {
	if cfg.Clock == nil {
		cfg.Clock = timers.RealClock()
	}
	p := &pipeline{cfg: cfg}
	return map[fsm.Step]runner.Handler{
		fsm.StepNodeProvisioning: runner.HandlerFunc(p.provision),
		fsm.StepNodeAgentReady:   runner.HandlerFunc(p.agentReady),
		fsm.StepWorkspaceCreate:  runner.HandlerFunc(p.createWorkspace),
		fsm.StepAgentSession:     runner.HandlerFunc(p.startSession),
		fsm.StepCleanup:          runner.HandlerFunc(p.cleanup),
		fsm.StepAdopt:            runner.HandlerFunc(p.adopt),
	}
}

// DestroyNode returns the function that deletes a destroying node's server.
func DestroyNode(cfg Config) func(ctx context.Context, n *fsm.Node) error {
	p := &pipeline{cfg: cfg}
	return p.destroy
}

type pipeline struct{ cfg Config }

func (p *pipeline) node(t *fsm.Task) (*fsm.Node, error) {
	n, ok := p.cfg.FSM.Node(t.NodeID)
	if !ok {
		return nil, runner.Permanentf("task %s has no node record %q", t.ID, t.NodeID)
	}
	return n, nil
}

// agentURL is the base URL of a node's agent.
func (p *pipeline) agentURL(n *fsm.Node) (string, error) {
	if n.IPv4 == "" {
		return "", runner.Transient(fmt.Errorf("node %s has no address yet", n.ID))
	}
	return "http://" + net.JoinHostPort(n.IPv4, fmt.Sprint(p.cfg.AgentPort)), nil
}

// cloudErr classifies a provider error for the runner. An unknown outcome
// is retried: every provider call here looks up before it acts again.
func cloudErr(op string, err error) error {
	err = fmt.Errorf("%s: %w", op, err)
	if cloud.Classify(err) == cloud.Permanent {
		return runner.Permanent(err)
	}
	return runner.Transient(err)
}

func agentErr(op string, err error) error {
	err = fmt.Errorf("%s: %w", op, err)
	if vmagent.IsTransient(err) || errors.Is(err, context.DeadlineExceeded) {
		return runner.Transient(err)
	}
	return runner.Permanent(err)
}

func (p *pipeline) labels(n *fsm.Node) map[string]string {
	return map[string]string{LabelManagedBy: ManagedBy, LabelCluster: p.cfg.Cluster, LabelNode: n.ID}
}

// userData renders the node's cloud-init: its id, where to call back, and
// its node-scoped callback token. The agent reads one CONTROL_PLANE_URL,
// which is also the issuer it expects in tokens: the cluster's replicated
// control-plane URL, a load balancer in front of every node in production.
func (p *pipeline) userData(n *fsm.Node, t *fsm.Task) (string, error) {
	tok, err := p.cfg.Tokens.CallbackToken(tokens.ScopeNode, n.ID)
	if err != nil {
		return "", err
	}
	cp := p.cfg.Tokens.ControlPlaneURL()
	return cloudinit.Render(cloudinit.Boot{CallbackToken: tok, Env: map[string]string{
		"NODE_ID":             n.ID,
		"CONTROL_PLANE_URL":   cp,
		"JWKS_ENDPOINT":       strings.TrimRight(cp, "/") + "/.well-known/jwks.json",
		"CALLBACK_TOKEN_FILE": cloudinit.TokenPath,
		"VM_AGENT_PORT":       fmt.Sprint(p.cfg.AgentPort),
		"PROJECT_ID":          t.ProjectID,
		"TASK_ID":             t.ID,
	}, AgentURL: p.cfg.AgentBinaryURL, AgentSHA256: p.cfg.AgentBinarySHA256})
}
