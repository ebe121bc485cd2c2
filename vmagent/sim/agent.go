package sim

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/tdf-project/tdf/vmagent"
)

// Agent is one simulated VM agent. Its HTTP side works from New on; Start
// begins the node's own life (boot, heartbeats); Close ends everything.
type Agent struct {
	cfg Config
	log *slog.Logger

	// ctx is the agent's lifetime: every goroutine it starts watches it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	startOnce sync.Once
	started   time.Time

	mu         sync.Mutex
	closed     bool
	faults     Faults
	nodeToken  string
	workspaces map[string]*workspace
	sessions   map[string]map[string]*session // workspace id → session id →
	idem       map[idemKey]string             // → session id
	callbacks  []CallbackRecord
	events     []Event
	seq        int64
	prNumber   int
	commits    int   // commits made by agent runs
	msgSeq     int64 // the last chat message's sequence number
	// rngs are the seeded streams of the random fault decisions, one per
	// callback kind (Config.Seed).
	rngs map[CallbackKind]*rand.Rand
}

// workspace is the agent's state of one workspace.
type workspace struct {
	id, repository, branch string
	status                 string
	// provisioning is true while a provisioning run is in flight (the real
	// agent's ProvisioningActive): replays of POST /workspaces answer 202.
	provisioning bool
	// gen numbers provisioning runs; a timer of an older run, or of a
	// workspace stopped or deleted since, finds it changed and does nothing.
	gen           int
	callbackToken string
	projectID     string
	taskID        string
	// readyPending holds the status of a ready callback whose retries ran
	// out; it is re-sent after each successful heartbeat.
	readyPending string
	createdAt    time.Time
	updatedAt    time.Time
}

// session is the agent's state of one agent session.
type session struct {
	vmagent.Session
	projectID string
	// chatSessionID is the session's chat session, set when it was created
	// with both a chatSessionId and a projectId: only then does the real
	// agent report the session's chat messages (messages.go).
	chatSessionID string
	// running is true while an agent run is in flight; stopRun ends it.
	running bool
	stopRun context.CancelFunc
	// deliveries maps a start's deliveryId to its prompt fingerprint.
	deliveries map[string]string
	// receipts holds each delivery's receipt state (vmagent.Receipt*): in
	// flight from its start, completed when the run it joined ends.
	receipts map[string]*vmagent.PromptReceipt
	// task is the task context of the session's last start, which a
	// follow-up prompt (that names none) reports on.
	task taskContext
}

type idemKey struct{ workspaceID, key string }

// New returns an agent for cfg. It panics if cfg.Validate fails: configs
// come from code or from flags already validated.
func New(cfg Config) *Agent {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Agent{
		cfg:        cfg,
		log:        cfg.Logger.With("node", cfg.NodeID),
		ctx:        ctx,
		cancel:     cancel,
		faults:     cfg.Faults,
		nodeToken:  cfg.NodeCallbackToken,
		workspaces: make(map[string]*workspace),
		sessions:   make(map[string]map[string]*session),
		idem:       make(map[idemKey]string),
		rngs: map[CallbackKind]*rand.Rand{
			KindNodeReady:  newRand(cfg.Seed, cfg.NodeID, KindNodeReady),
			KindTaskStatus: newRand(cfg.Seed, cfg.NodeID, KindTaskStatus),
		},
	}
}

// newRand is the decision stream of one kind of callback of one node.
func newRand(seed uint64, nodeID string, kind CallbackKind) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(nodeID))
	h.Write([]byte{0})
	h.Write([]byte(kind))
	return rand.New(rand.NewPCG(seed, h.Sum64()))
}

// Start begins the node's background life: the node ready callback after
// BootDelay and the heartbeat loop. Both end when ctx is done or the agent
// is closed. Calls after the first do nothing.
func (a *Agent) Start(ctx context.Context) {
	a.startOnce.Do(func() {
		a.mu.Lock()
		a.started = time.Now()
		a.mu.Unlock()
		// The loops stop with whichever ends first, ctx or the agent.
		loopCtx, cancel := context.WithCancel(a.ctx)
		stop := context.AfterFunc(ctx, cancel)
		ok := a.goFunc(func(context.Context) {
			defer stop()
			defer cancel()
			var boot sync.WaitGroup
			boot.Add(1)
			go func() {
				defer boot.Done()
				a.boot(loopCtx)
			}()
			a.heartbeatLoop(loopCtx)
			boot.Wait()
		})
		if !ok {
			stop()
			cancel()
		}
	})
}

// Close stops every goroutine of the agent, in-flight callbacks included,
// and waits for them. The HTTP handler keeps answering, but schedules
// nothing more.
func (a *Agent) Close() {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	a.cancel()
	a.wg.Wait()
}

// goFunc runs f in a goroutine tracked by Close, unless the agent is
// closed. The check and the Add share the lock Close takes, so no
// goroutine starts after Close begins waiting.
func (a *Agent) goFunc(f func(ctx context.Context)) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return false
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		f(a.ctx)
	}()
	return true
}

// NodeID is the node this agent runs on.
func (a *Agent) NodeID() string { return a.cfg.NodeID }

// SetFaults replaces the faults. They are not validated (see
// Faults.Validate): a drop rate above 1 drops every callback, one below 0
// or NaN none.
func (a *Agent) SetFaults(f Faults) {
	a.mu.Lock()
	a.faults = f
	a.mu.Unlock()
}

// Faults returns the current faults.
func (a *Agent) Faults() Faults {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.faults
}

// NodeToken is the node callback token in use: the configured one, or the
// last refreshedToken a heartbeat answer carried.
func (a *Agent) NodeToken() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.nodeToken
}

// Workspaces returns the agent's workspaces, ordered by id.
func (a *Agent) Workspaces() []vmagent.Workspace {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.listWorkspacesLocked()
}

func (a *Agent) listWorkspacesLocked() []vmagent.Workspace {
	out := make([]vmagent.Workspace, 0, len(a.workspaces))
	for _, ws := range a.workspaces {
		out = append(out, vmagent.Workspace{
			ID:         ws.id,
			Repository: ws.repository,
			Branch:     ws.branch,
			Status:     ws.status,
			CreatedAt:  ws.createdAt,
			UpdatedAt:  ws.updatedAt,
			// The real agent counts the workspace's terminal (PTY)
			// sessions here, never its agent sessions; the simulator
			// has no terminals.
			Sessions: 0,
		})
	}
	slices.SortFunc(out, func(x, y vmagent.Workspace) int {
		switch {
		case x.ID < y.ID:
			return -1
		case x.ID > y.ID:
			return 1
		}
		return 0
	})
	return out
}

// Sessions returns the agent sessions of a workspace, ordered by creation.
func (a *Agent) Sessions(workspaceID string) []vmagent.Session {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]vmagent.Session, 0, len(a.sessions[workspaceID]))
	for _, s := range a.sessions[workspaceID] {
		out = append(out, s.Session)
	}
	slices.SortFunc(out, func(x, y vmagent.Session) int { return x.CreatedAt.Compare(y.CreatedAt) })
	return out
}

// activeLocked counts the workspaces that are not stopped or failed.
func (a *Agent) activeLocked() int {
	n := 0
	for _, ws := range a.workspaces {
		switch ws.status {
		case vmagent.StatusCreating, vmagent.StatusRunning, vmagent.StatusRecovery:
			n++
		}
	}
	return n
}

// EventKind names an effect of the agent.
type EventKind string

// Effects recorded in the event list.
const (
	EventWorkspaceCreate  EventKind = "workspace_create"
	EventWorkspaceReady   EventKind = "workspace_ready"
	EventWorkspaceFailed  EventKind = "workspace_failed"
	EventWorkspaceStop    EventKind = "workspace_stop"
	EventWorkspaceRestart EventKind = "workspace_restart"
	EventWorkspaceDelete  EventKind = "workspace_delete"
	EventSessionCreate    EventKind = "session_create"
	EventSessionStart     EventKind = "session_start"
	EventSessionStop      EventKind = "session_stop"
	EventAgentRunDone     EventKind = "agent_run_done"
)

// Event is one effect of the agent: a workspace or session created,
// started, stopped; an agent run finished. Replays that change nothing are
// not events.
type Event struct {
	Seq         int64     `json:"seq"`
	Time        time.Time `json:"time"`
	Kind        EventKind `json:"kind"`
	NodeID      string    `json:"node_id"`
	WorkspaceID string    `json:"workspace_id,omitempty"`
	SessionID   string    `json:"session_id,omitempty"`
	TaskID      string    `json:"task_id,omitempty"`
	Detail      string    `json:"detail,omitempty"`
}

// Events returns a copy of the event list.
func (a *Agent) Events() []Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.events)
}

// emitLocked records an effect; the caller calls the returned function
// (the OnEvent hook) after unlocking.
func (a *Agent) emitLocked(e Event) func() {
	a.seq++
	e.Seq, e.Time, e.NodeID = a.seq, time.Now(), a.cfg.NodeID
	a.events = append(a.events, e)
	if a.cfg.OnEvent == nil {
		return func() {}
	}
	return func() { a.cfg.OnEvent(e) }
}

// Callbacks returns a copy of the callback log.
func (a *Agent) Callbacks() []CallbackRecord {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.callbacks)
}

// record appends to the callback log and calls the hook.
func (a *Agent) record(r CallbackRecord) {
	a.mu.Lock()
	a.seq++
	r.Seq, r.Time, r.NodeID = a.seq, time.Now(), a.cfg.NodeID
	a.callbacks = append(a.callbacks, r)
	a.mu.Unlock()
	a.logCallback(r)
	if a.cfg.OnCallback != nil {
		a.cfg.OnCallback(r)
	}
}

// sleep waits d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers {"error": msg}, the agent's plain error shape.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, vmagent.ErrorBody{Error: msg})
}

// writeCodedError answers {"error": code, "message": msg, ...extra}.
func writeCodedError(w http.ResponseWriter, status int, code, msg string, extra map[string]any) {
	body := map[string]any{"error": code, "message": msg}
	for k, v := range extra {
		body[k] = v
	}
	writeJSON(w, status, body)
}
