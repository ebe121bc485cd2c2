package sim

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/tdf-project/tdf/vmagent"
)

// Config configures a simulated agent. Zero delays mean "at once"; zero
// intervals, timeouts and retry fields take the defaults named on each.
type Config struct {
	// NodeID is the node this agent runs on; management tokens and the
	// X-SAM-Node-Id header must name it. Required.
	NodeID string
	// ControlPlaneURL is the base URL callbacks go to, the agent's
	// CONTROL_PLANE_URL: one URL, as the real agent reads (a load balancer
	// in front of the cluster). Empty: callbacks are logged as skipped.
	ControlPlaneURL string
	// NodeCallbackToken is the node-scoped callback token, as cloud-init
	// delivers it; a heartbeat answer's refreshedToken replaces it.
	NodeCallbackToken string
	// AgentVersion is reported in node ready and heartbeats. Default
	// "tdf-sim".
	AgentVersion string
	// Standalone runs the agent in the real agent's standalone role: a
	// workspace is made within the create call (standalone.go). Default:
	// VM mode, which provisions in the background.
	Standalone bool
	// Verifier checks management tokens. Nil accepts every token, and
	// requests without one (unit tests); the routing headers are checked
	// either way.
	Verifier Verifier
	// HTTPClient sends callbacks. Nil: a client of its own.
	HTTPClient *http.Client
	// CallbackTimeout bounds one callback request to one URL. Default 30 s.
	CallbackTimeout time.Duration

	// BootDelay is the system provisioning time, from Start to the node
	// ready callback.
	BootDelay time.Duration
	// WorkspaceReadyDelay is the time from POST /workspaces (or restart) to
	// the workspace ready or provisioning-failed callback.
	WorkspaceReadyDelay time.Duration
	// AgentWorkDuration is the time from a session start to the task status
	// callback.
	AgentWorkDuration time.Duration
	// HeartbeatInterval is the heartbeat period; the first heartbeat goes
	// one interval after Start. Default 60 s; negative disables heartbeats.
	HeartbeatInterval time.Duration
	// Retry is the workspace ready / provisioning-failed retry policy.
	Retry RetryPolicy
	// Metrics computes a heartbeat's metrics from the number of active
	// workspaces. Nil: a synthetic load that grows with the workspaces.
	Metrics func(activeWorkspaces int) vmagent.HeartbeatMetrics

	// Faults are the initial faults; SetFaults changes them at run time.
	Faults Faults
	// Seed seeds the agent's random fault decisions (DropNodeReadyRate,
	// DropTaskStatusRate), together with NodeID: an agent of the same seed
	// and node id makes the same decisions for the same sequence of
	// callbacks, and agents of one seed but other nodes decide
	// independently. Each kind of callback draws from its own stream, so
	// node ready's decision does not depend on how many runs came before.
	Seed uint64

	// Logger receives the agent's log. Nil discards it.
	Logger *slog.Logger
	// OnCallback, if set, is called with each callback record as it is
	// logged, outside the agent's lock.
	OnCallback func(CallbackRecord)
	// OnEvent, if set, is called with each effect as it is recorded,
	// outside the agent's lock.
	OnEvent func(Event)
}

// RetryPolicy is how workspace ready and provisioning-failed callbacks are
// retried: Initial doubling to Max with jitter of up to half the delay, at
// most MaxAttempts attempts or MaxElapsed in all (VMAGENT.md). Zero fields
// take those defaults.
type RetryPolicy struct {
	Initial     time.Duration // default 1 s
	Max         time.Duration // default 30 s
	MaxAttempts int           // default 5
	MaxElapsed  time.Duration // default 2 min
}

// Faults are injectable misbehaviours. Each is read when the effect it
// changes happens, so SetFaults affects work already scheduled.
type Faults struct {
	// FailWorkspaces: provisioning fails; the workspace goes to "error" and
	// a provisioning-failed callback is sent instead of ready.
	FailWorkspaces bool
	// FailureMessage is the provisioning-failed errorMessage. Default
	// "simulated provisioning failure".
	FailureMessage string
	// NeverReady: provisioning never ends; the workspace stays "creating"
	// (replays answer 202) and no callback is sent for it.
	NeverReady bool
	// EarlyReady: the ready callback is sent at once on POST /workspaces,
	// before the 202 answer (one attempt inline; retries continue in the
	// background), and the workspace runs from then on.
	EarlyReady bool
	// ReadyAsRecovery: workspaces come up in "recovery" instead of
	// "running", and the ready callback says so.
	ReadyAsRecovery bool
	// DuplicateCallbacks: every delivered node ready, workspace ready,
	// provisioning-failed and task status callback is sent a second time.
	DuplicateCallbacks bool
	// DropNodeReady: the node ready callback is never sent.
	DropNodeReady bool
	// DropTaskStatus: task status callbacks are never sent.
	DropTaskStatus bool
	// DropNodeReadyRate is the probability, in [0, 1], that the node ready
	// callback is not sent (decided once, when it is due; see
	// Config.Seed). DropNodeReady overrides it.
	DropNodeReadyRate float64
	// DropTaskStatusRate is the probability, in [0, 1], that a task status
	// callback is not sent, decided once for each callback when its run
	// finishes. DropTaskStatus overrides it.
	DropTaskStatusRate float64
	// AgentRunFailure: agent runs fail; the status callback carries
	// toStatus "failed".
	AgentRunFailure bool
	// AgentFailureMessage is the failed run's errorMessage. Default
	// "simulated agent failure".
	AgentFailureMessage string
	// AnswerDelay delays every answer except /health (slow answers).
	AnswerDelay time.Duration
}

// Defaults of VMAGENT.md.
const (
	DefaultCallbackTimeout   = 30 * time.Second
	DefaultHeartbeatInterval = 60 * time.Second
	DefaultRetryInitial      = time.Second
	DefaultRetryMax          = 30 * time.Second
	DefaultRetryAttempts     = 5
	DefaultRetryMaxElapsed   = 2 * time.Minute
	DefaultAgentVersion      = "tdf-sim"
)

// DefaultConfig returns the fakecloud's fast world (DESIGN.md): a node
// boots in about a second, a workspace is ready half a second after
// creation, an agent finishes two seconds after its session starts, and
// heartbeats come every five seconds. NodeID and ControlPlaneURL are left
// to the caller.
func DefaultConfig() Config {
	return Config{
		AgentVersion:        DefaultAgentVersion,
		CallbackTimeout:     10 * time.Second,
		BootDelay:           time.Second,
		WorkspaceReadyDelay: 500 * time.Millisecond,
		AgentWorkDuration:   2 * time.Second,
		HeartbeatInterval:   5 * time.Second,
		Retry: RetryPolicy{
			Initial:     DefaultRetryInitial,
			Max:         DefaultRetryMax,
			MaxAttempts: DefaultRetryAttempts,
			MaxElapsed:  DefaultRetryMaxElapsed,
		},
	}
}

// Validate reports the first field out of its limits.
func (c Config) Validate() error {
	if c.NodeID == "" {
		return errors.New("sim: NodeID is required")
	}
	if u := c.ControlPlaneURL; u != "" {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("sim: ControlPlaneURL = %q, want an absolute http(s) url", u)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"CallbackTimeout", c.CallbackTimeout},
		{"BootDelay", c.BootDelay},
		{"WorkspaceReadyDelay", c.WorkspaceReadyDelay},
		{"AgentWorkDuration", c.AgentWorkDuration},
		{"Retry.Initial", c.Retry.Initial},
		{"Retry.Max", c.Retry.Max},
		{"Retry.MaxElapsed", c.Retry.MaxElapsed},
	} {
		if d.v < 0 {
			return fmt.Errorf("sim: %s = %v, want >= 0", d.name, d.v)
		}
	}
	if err := c.Faults.Validate(); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	if c.Retry.MaxAttempts < 0 {
		return fmt.Errorf("sim: Retry.MaxAttempts = %d, want >= 0", c.Retry.MaxAttempts)
	}
	if c.Retry.Initial > 0 && c.Retry.Max > 0 && c.Retry.Max < c.Retry.Initial {
		return fmt.Errorf("sim: Retry.Max = %v, want >= Retry.Initial (%v)", c.Retry.Max, c.Retry.Initial)
	}
	return nil
}

// withDefaults fills the zero fields that have defaults.
func (c Config) withDefaults() Config {
	if c.AgentVersion == "" {
		c.AgentVersion = DefaultAgentVersion
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	if c.CallbackTimeout == 0 {
		c.CallbackTimeout = DefaultCallbackTimeout
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.Retry.Initial == 0 {
		c.Retry.Initial = DefaultRetryInitial
	}
	if c.Retry.Max == 0 {
		c.Retry.Max = max(DefaultRetryMax, c.Retry.Initial)
	}
	if c.Retry.MaxAttempts == 0 {
		c.Retry.MaxAttempts = DefaultRetryAttempts
	}
	if c.Retry.MaxElapsed == 0 {
		c.Retry.MaxElapsed = DefaultRetryMaxElapsed
	}
	if c.Metrics == nil {
		c.Metrics = syntheticMetrics
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports the first fault out of its limits: a rate outside
// [0, 1] (NaN included).
func (f Faults) Validate() error {
	for _, r := range []struct {
		name string
		v    float64
	}{
		{"Faults.DropNodeReadyRate", f.DropNodeReadyRate},
		{"Faults.DropTaskStatusRate", f.DropTaskStatusRate},
	} {
		if !(r.v >= 0 && r.v <= 1) {
			return fmt.Errorf("%s = %v, want a probability in [0, 1]", r.name, r.v)
		}
	}
	if f.AnswerDelay < 0 {
		return fmt.Errorf("Faults.AnswerDelay = %v, want >= 0", f.AnswerDelay)
	}
	return nil
}

func (f Faults) failureMessage() string {
	if f.FailureMessage != "" {
		return f.FailureMessage
	}
	return "simulated provisioning failure"
}

func (f Faults) agentFailureMessage() string {
	if f.AgentFailureMessage != "" {
		return f.AgentFailureMessage
	}
	return "simulated agent failure"
}

// syntheticMetrics is a load that grows with the active workspaces.
func syntheticMetrics(active int) vmagent.HeartbeatMetrics {
	return vmagent.HeartbeatMetrics{
		CPULoadAvg1:   0.05 + 0.25*float64(active),
		MemoryPercent: min(95, 15+8*float64(active)),
		DiskPercent:   min(95, 20+2*float64(active)),
	}
}
