package api

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/hashicorp/go-hclog"

	"github.com/tdf-project/tdf/api/ui"
	"github.com/tdf-project/tdf/cluster"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/keyring"
	"github.com/tdf-project/tdf/tokens"
)

// Cluster is what the API needs of the local cluster node.
type Cluster interface {
	ID() string
	IsLeader() bool
	Leader() (id, raftAddr string)
	LeaderAPI() (id, url string, ok bool)
	ApplyIdempotent(ctx context.Context, cmd fsm.Command) (*fsm.Result, error)
	ConsistentRead(ctx context.Context) error
	Status() cluster.Status
	Join(ctx context.Context, j cluster.JoinRequest) error
	Remove(ctx context.Context, id string) error
	TransferLeadershipTo(id string) error
	WaitLeaderReady(ctx context.Context, max time.Duration) bool
	FSM() *fsm.FSM
}

var _ Cluster = (*cluster.Node)(nil)

// Config configures the API server.
type Config struct {
	Node   Cluster
	Logger hclog.Logger
	// Now stamps commands; tests inject a fixed clock.
	Now func() time.Time
	// HoldTimeout is how long a write waits for a leader before 503.
	HoldTimeout time.Duration
	// CallbackHoldTimeout is the same for the agents' callbacks. It is
	// longer because the agent sends node-ready and task-status callbacks
	// once, without retry, and waits 30 s for the answer (VMAGENT.md): a
	// callback held through a leader change is committed, not lost.
	CallbackHoldTimeout time.Duration
	// MaxBodyBytes bounds every request body.
	MaxBodyBytes int64
	// RequestTimeout bounds the handling of one request.
	RequestTimeout time.Duration
	// Client forwards requests to the leader.
	Client *http.Client
	// Policy holds the timeouts stamped into every submitted task.
	Policy fsm.Policy
	// Tokens verifies the agents' callback tokens and serves the JWKS.
	Tokens *tokens.Issuer
	// Events feeds GET /v1/events.
	Events *EventHub
	// Metrics counts forwarded requests and callbacks and serves /metrics.
	Metrics *Metrics
	// Auth verifies API bearer tokens; nil or empty turns authentication
	// off (every caller is an anonymous admin). See docs/security.md.
	Auth *Tokens
	// RateLimit is each token's sustained requests per second on this
	// node (0: no limit); RateBurst is its bucket size.
	RateLimit float64
	RateBurst int
	// IPRateLimit limits each client IP the same way while authentication
	// is off (0: no limit).
	IPRateLimit float64
	// MaxActiveTasksPerUser and MaxActiveTasksPerProject bound the tasks
	// one user, and one project, run at once (0: no bound); a submission
	// past one is 429 quota_exceeded (tenancy.go).
	MaxActiveTasksPerUser, MaxActiveTasksPerProject int
	// Keyring seals and opens credentials (credentials.go); nil refuses
	// them with 503 no_keyring.
	Keyring *keyring.Keyring
	// Placement, if set, refuses a submission whose VM size or location
	// the cloud cannot serve (placement.go).
	Placement PlacementCheck
	// Archive, if set, answers GET /v1/tasks/{id} for tasks retention
	// removed from the state (archive.go).
	Archive TaskArchive
	// MaxStale bounds how far behind the leader a follower may be (time
	// since its last contact, and the wait to apply what it knows is
	// committed) and still answer a read without ?index or ?stale itself;
	// otherwise the leader answers (reads.go). Default 250 ms.
	MaxStale time.Duration
	// Pricing, if set, prices nodes (cost.go): GET /v1/nodes and
	// /v1/costs show hourly and accrued costs, /metrics the fleet's.
	Pricing Pricing
	// FollowUp, if set, sends a follow-up prompt to a task's agent
	// session (POST /v1/tasks/{id}/prompt, lifecycle.go).
	FollowUp func(ctx context.Context, t *fsm.Task, prompt, deliveryID string) error
}

// DefaultConfig returns the documented defaults for everything but Node.
func DefaultConfig() Config {
	return Config{
		Now:         time.Now,
		HoldTimeout: 5 * time.Second,
		// Under the agent's 30 s callback timeout, with room for the
		// leader's answer.
		CallbackHoldTimeout: 20 * time.Second,
		MaxBodyBytes:        1 << 20,
		RequestTimeout:      30 * time.Second,
		Client:              &http.Client{Timeout: 30 * time.Second},
		Policy:              fsm.DefaultPolicy(),
	}
}

// Server is the HTTP API of one node.
type Server struct {
	cfg        Config
	log        hclog.Logger
	engine     *gin.Engine
	sessions   *sessionSigner
	tokenLimit *rateLimiter
	ipLimit    *rateLimiter
	// streamsDone is closed when the server shuts down: open event
	// streams end then.
	streamsDone chan struct{}
	closeOnce   sync.Once
	// githubApps mints the GitHub App git tokens (githubapp.go).
	githubApps githubApps
	// blocking holds the recent task changes blocking reads wait on
	// (blocking.go).
	blocking blockingState
}

// CloseStreams ends every open event stream (and refuses new ones); the
// HTTP server calls it when it shuts down.
func (s *Server) CloseStreams() { s.closeOnce.Do(func() { close(s.streamsDone) }) }

// New builds the API server and its routes.
func New(cfg Config) (*Server, error) {
	d := DefaultConfig()
	if cfg.Node == nil {
		return nil, fmt.Errorf("api: Node is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Now == nil {
		cfg.Now = d.Now
	}
	if cfg.HoldTimeout <= 0 {
		cfg.HoldTimeout = d.HoldTimeout
	}
	if cfg.CallbackHoldTimeout <= 0 {
		cfg.CallbackHoldTimeout = max(d.CallbackHoldTimeout, cfg.HoldTimeout)
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = d.MaxBodyBytes
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = d.RequestTimeout
	}
	if cfg.Client == nil {
		cfg.Client = d.Client
	}
	if cfg.Policy == (fsm.Policy{}) {
		cfg.Policy = d.Policy
	}
	gin.SetMode(gin.ReleaseMode)
	s := &Server{cfg: cfg, log: cfg.Logger.Named("api"), sessions: newSessionSigner(), streamsDone: make(chan struct{})}
	if cfg.RateLimit > 0 {
		s.tokenLimit = newRateLimiter(cfg.RateLimit, cfg.RateBurst)
	}
	if cfg.IPRateLimit > 0 {
		s.ipLimit = newRateLimiter(cfg.IPRateLimit, cfg.RateBurst)
	}
	s.engine = s.routes()
	s.registerCostMetricsOn(cfg.Metrics)
	s.registerMemberMetricsOn(cfg.Metrics)
	return s, nil
}

// Handler returns the http.Handler serving the API.
func (s *Server) Handler() http.Handler { return s.engine }

func (s *Server) routes() *gin.Engine {
	r := gin.New()
	r.HandleMethodNotAllowed = true
	// No redirects to the path without its trailing slash: gin answers them
	// with an HTML body (or none), and every answer here is JSON; the
	// NoRoute 404 names the path instead.
	r.RedirectTrailingSlash = false
	r.ContextWithFallback = true
	r.Use(s.countRequest, s.recoverJSON, s.common, s.authenticate, s.rateLimit)
	r.NoRoute(func(c *gin.Context) {
		abortError(c, http.StatusNotFound, CodeNotFound, fmt.Sprintf("no route %s %s", c.Request.Method, c.Request.URL.Path))
	})
	r.NoMethod(func(c *gin.Context) {
		abortError(c, http.StatusMethodNotAllowed, CodeMethodNotAllow, fmt.Sprintf("%s is not allowed on %s", c.Request.Method, c.Request.URL.Path))
	})

	r.GET("/healthz", s.healthz)
	r.GET("/readyz", s.readyz)
	r.GET("/metrics", s.metrics)

	v1 := r.Group("/v1")
	v1.POST("/tasks", s.ensureRequestID, s.onLeader, s.submitTask)
	v1.GET("/tasks", s.readable, s.listTasks)
	v1.GET("/tasks/:id", s.readable, s.getTask)
	v1.GET("/tasks/:id/messages", s.readable, s.taskMessages)
	v1.POST("/tasks/:id/cancel", s.onLeader, s.cancelTask)
	v1.GET("/cluster", s.clusterStatus)
	v1.GET("/cluster/state-hash", s.stateHash)
	v1.GET("/cluster/control-plane", s.getControlPlane)
	v1.PUT("/cluster/control-plane", s.onLeader, s.putControlPlane)
	v1.POST("/cluster/join", s.onLeader, s.joinCluster)
	v1.DELETE("/cluster/members/:id", s.onLeader, s.removeMember)
	v1.POST("/cluster/transfer-leadership", s.onLeader, s.transferLeadership)
	v1.GET(pathSnapshot, s.onLeader, s.saveSnapshot)
	v1.POST(pathRestore, s.restoreSnapshot)
	v1.POST("/tasks/:id/idle-reset", s.onLeader, s.idleReset)
	v1.POST("/tasks/:id/rerun", s.onLeader, s.rerunTask)
	v1.POST("/tasks/:id/prompt", s.ensureRequestID, s.onLeader, s.followUp)
	v1.POST("/import", s.onLeader, s.importTasks)
	v1.GET("/nodes", s.readable, s.listNodes)
	v1.GET("/nodes/:id", s.readable, s.getNode)
	s.nodeAdminRoutes(v1)
	v1.GET("/costs", s.readable, s.fleetCost)
	v1.GET("/errors", s.readable, s.listErrors)
	v1.GET("/events", s.events)
	v1.POST("/session", s.createSession)
	v1.DELETE("/session", s.deleteSession)
	v1.GET("/whoami", s.whoami)
	s.credentialRoutes(v1)
	s.tokenRoutes(v1)
	r.GET("/.well-known/jwks.json", s.jwks)
	ui.Register(r) // the dashboard at /ui/; / and /ui redirect there
	s.callbackRoutes(r)
	return r
}

// common stamps the node headers, bounds the body and the handling time.
func (s *Server) common(c *gin.Context) {
	c.Header("X-Tdf-Node", s.cfg.Node.ID())
	if id, _ := s.cfg.Node.Leader(); id != "" {
		c.Header("X-Tdf-Leader", id)
	}
	if c.Request.Body != nil && !snapshotPath(c.Request.URL.Path) {
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxBodyBytes)
	}
	// The event stream lives as long as its client, a backup or restore as
	// long as its size takes; everything else is bounded.
	if c.Request.URL.Path != "/v1/events" && !snapshotPath(c.Request.URL.Path) {
		ctx, cancel := context.WithTimeout(c.Request.Context(), s.cfg.RequestTimeout+blockingWait(c))
		defer cancel()
		c.Request = c.Request.WithContext(ctx)
	}
	c.Next()
	if err := c.Errors.Last(); err != nil && c.Writer.Status() >= 500 {
		s.log.Error("request failed", "method", c.Request.Method, "path", c.Request.URL.Path, "status", c.Writer.Status(), "error", err.Err)
	}
}

// recoverJSON turns a handler panic into a JSON 500 instead of a dropped
// connection, and logs it.
func (s *Server) recoverJSON(c *gin.Context) {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("handler panic", "path", c.Request.URL.Path, "panic", v)
			abortError(c, http.StatusInternalServerError, CodeInternal, "internal error")
		}
	}()
	c.Next()
}

func (s *Server) healthz(c *gin.Context) {
	disk, known := s.diskStatus()
	if known && !disk.OK {
		abortError(c, http.StatusServiceUnavailable, CodeDiskFailed, msgDiskFailed)
		return
	}
	body := gin.H{"status": "ok", "node": s.cfg.Node.ID()}
	if known && disk.Warning != "" {
		body["warning"] = disk.Warning
	}
	c.JSON(http.StatusOK, body)
}

// readyz is ready when the node can answer reads: a leader is known and
// this node has applied what was committed when it came back (the leader:
// every entry of earlier terms). Load balancers poll it.
func (s *Server) readyz(c *gin.Context) {
	if disk, known := s.diskStatus(); known && !disk.OK {
		abortError(c, http.StatusServiceUnavailable, CodeDiskFailed, msgDiskFailed)
		return
	}
	id, _ := s.cfg.Node.Leader()
	if id == "" {
		abortError(c, http.StatusServiceUnavailable, CodeNoLeader, "no leader known")
		return
	}
	if f, ok := s.cfg.Node.(freshness); ok {
		if ready, why := f.Ready(); !ready {
			abortError(c, http.StatusServiceUnavailable, CodeNotReady, why)
			return
		}
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready", "node": s.cfg.Node.ID(), "leader": id, "applied_index": s.cfg.Node.FSM().AppliedIndex()})
}

func (s *Server) now() time.Time { return s.cfg.Now().UTC().Round(0) }
