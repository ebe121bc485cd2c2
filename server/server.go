// Package server composes one tdf node: the FSM, its raft node and the HTTP
// API on one listener. cmd/tdf builds its Config from flags; tests start
// several in one process.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/cluster"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/handlers"
	"github.com/tdf-project/tdf/runner"
	"github.com/tdf-project/tdf/tokens"
	"github.com/tdf-project/tdf/vmagent"
)

// Config configures one node.
type Config struct {
	Cluster cluster.Config
	API     api.Config
	// HTTPAddr is the address the API listens on ("127.0.0.1:0" picks a port).
	HTTPAddr string
	// AdvertiseHTTP is the API URL peers use; default http://<listen address>.
	AdvertiseHTTP string
	// Runner configures the leader's step runner; Handlers are its step
	// handlers (the providers' side of the pipeline).
	Runner   runner.Config
	Handlers map[fsm.Step]runner.Handler
	// Pipeline, if set, provides the real step handlers (cloud and VM
	// agents); it overrides Handlers. Its FSM, Tokens and Agents are
	// filled in by Start.
	Pipeline *handlers.Config
	// AgentTimeout bounds each call to a VM agent.
	AgentTimeout time.Duration
	// ReconcileInterval and ReconcileGrace drive the leak reconciler: how
	// often it looks, and how old an unowned server must be to be deleted.
	ReconcileInterval time.Duration
	ReconcileGrace    time.Duration
	// RunReconcileInterval is how often the leader asks the agents what
	// became of their runs (0: never); RunFinishGrace is how long a
	// finished prompt's own status callback is waited for first.
	RunReconcileInterval time.Duration
	RunFinishGrace       time.Duration
	// Registry collects the node's metrics (a fresh one if nil); pass the
	// one the cloud provider registered with to see its metrics too.
	Registry *prometheus.Registry
	// KeyRotation is how often the leader adds a new token signing key
	// (0: never).
	KeyRotation time.Duration
	// ErrorRetention is how long error records are kept (0: only the
	// count bound applies).
	ErrorRetention time.Duration
	// Settings are the node rules this node commits when it leads.
	Settings fsm.Settings
	// TaskRetention is how long finished tasks, deleted nodes and stopped
	// workspaces stay in the replicated state before they are archived and
	// forgotten (0: forever; at least the idempotency window). ArchiveDir
	// holds this node's archive (default <data-dir>/archive);
	// RetentionInterval is how often the leader looks (retention.go).
	TaskRetention, RetentionInterval time.Duration
	ArchiveDir                       string
	// ControlPlaneURL seeds the cluster's replicated control-plane URL
	// (the one URL agents call back to, the iss claim of every token) when
	// none is set yet; default: the first leader's API URL. Once set, the
	// replicated URL is used on every node (controlplane.go).
	ControlPlaneURL string
	Logger          hclog.Logger
	// TLSCertFile and TLSKeyFile, if set, serve the API over HTTPS.
	TLSCertFile, TLSKeyFile string
	// HTTPLimits bound connections to the API; zero fields take
	// DefaultHTTPLimits' values.
	HTTPLimits HTTPLimits
	// InsecureNoAuth turns API authentication off (--insecure-no-auth).
	// Otherwise it is on, whatever API.Auth holds, and the first leader
	// makes the bootstrap admin token (bootstrap.go).
	InsecureNoAuth bool
}

// HTTPLimits are the API server's connection limits.
type HTTPLimits struct {
	// ReadHeaderTimeout closes a connection that has not sent its request
	// headers in time (slowloris).
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a response; the event stream lifts it
	// for itself. It is longer than the API's request timeout, which
	// bounds the handler.
	WriteTimeout time.Duration
	IdleTimeout  time.Duration
	// MaxHeaderBytes bounds the request line and headers; larger requests
	// get 431.
	MaxHeaderBytes int
}

// DefaultHTTPLimits are the API server's default connection limits.
func DefaultHTTPLimits() HTTPLimits {
	return HTTPLimits{ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 90 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10}
}

func (l HTTPLimits) withDefaults() HTTPLimits {
	d := DefaultHTTPLimits()
	if l.ReadHeaderTimeout <= 0 {
		l.ReadHeaderTimeout = d.ReadHeaderTimeout
	}
	if l.ReadTimeout <= 0 {
		l.ReadTimeout = d.ReadTimeout
	}
	if l.WriteTimeout <= 0 {
		l.WriteTimeout = d.WriteTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = d.IdleTimeout
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = d.MaxHeaderBytes
	}
	return l
}

// Server is one running node.
type Server struct {
	FSM    *fsm.FSM
	Node   *cluster.Node
	API    *api.Server
	Runner *runner.Runner
	Tokens *tokens.Issuer
	URL    string

	log  hclog.Logger
	http *http.Server
	ln   net.Listener
	done chan error
}

// Start opens the node and starts serving. The listener is bound first so
// that the advertised API URL is known before raft starts.
func Start(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	s := &Server{FSM: fsm.New(), log: cfg.Logger.Named("server"), ln: ln, done: make(chan error, 1)}
	var apiTLS *tls.Config
	if cfg.TLSCertFile != "" || cfg.TLSKeyFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("API TLS certificate: %w", err)
		}
		apiTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	s.URL = cfg.AdvertiseHTTP
	if s.URL == "" {
		scheme := "http://"
		if apiTLS != nil {
			scheme = "https://"
		}
		s.URL = scheme + ln.Addr().String()
	}
	if cfg.ControlPlaneURL = strings.TrimRight(cfg.ControlPlaneURL, "/"); cfg.ControlPlaneURL != "" {
		if err := fsm.ValidateControlPlaneURL(cfg.ControlPlaneURL); err != nil {
			ln.Close()
			return nil, fmt.Errorf("--control-plane-url: %w", err)
		}
	}
	if err := cfg.Runner.Validate(); err != nil {
		ln.Close()
		return nil, fmt.Errorf("step runner: %w", err)
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	m := newMetrics(cfg.Registry)
	cc := cfg.Cluster
	cc.APIURL, cc.Logger, cc.OnApply = s.URL, cfg.Logger, m.onApply
	if cc.HTTPClient == nil && cfg.API.Auth.JoinToken() != "" {
		// Registering through another member's join endpoint (an admin
		// route) needs an admin token.
		if cc.HTTPClient, err = cluster.NewAPIClient("", cfg.API.Auth.JoinToken(), 10*time.Second); err != nil {
			ln.Close()
			return nil, err
		}
	}
	keys := &keyCache{fsm: s.FSM, log: cfg.Logger.Named("keys"), keyring: cfg.API.Keyring}
	s.Tokens = &tokens.Issuer{ControlPlane: s.FSM.ControlPlaneURL, Keys: keys.Keys, Now: time.Now}
	if !cfg.InsecureNoAuth {
		cc.HTTPClient = withMemberAuth(cc.HTTPClient, cc.NodeID, s.Tokens)
	}
	arc, err := openArchive(cfg, s.FSM)
	if err != nil {
		ln.Close()
		return nil, err
	}
	if arc != nil {
		cfg.API.Archive = arc
	}
	if s.Node, err = cluster.Open(cc, s.FSM); err != nil {
		ln.Close()
		return nil, err
	}
	if cfg.Settings == (fsm.Settings{}) {
		cfg.Settings = fsm.DefaultSettings()
	}
	cp := &controlPlane{configured: cfg.ControlPlaneURL, own: strings.TrimRight(s.URL, "/"), log: cfg.Logger.Named("leader")}
	if arc != nil && cfg.TaskRetention > 0 {
		s.Node.OnLeader(retentionDuty(s.FSM, s.Node.Apply, cfg.TaskRetention, cfg.RetentionInterval, cfg.Logger.Named("retention")))
	}
	s.Node.OnLeader(clusterDuties(s.FSM, s.Node.Apply, cp, cfg.Settings, cfg.KeyRotation, cfg.ErrorRetention, cfg.API.Keyring, cfg.Logger.Named("leader")))
	if cfg.InsecureNoAuth {
		cfg.API.Auth = nil
	} else {
		if cfg.API.Auth == nil {
			cfg.API.Auth, _ = api.NewTokens(nil)
		}
		s.Node.OnLeader(bootstrapAdmin(s.FSM, s.Node.Apply, cc.DataDir, cfg.Logger.Named("leader")))
	}
	rc := cfg.Runner
	rc.Logger, rc.OnStep, rc.OnFire = cfg.Logger, m.onStep, m.onFire
	stepHandlers := cfg.Handlers
	if pc := cfg.Pipeline; pc != nil {
		pc.FSM, pc.Tokens, pc.Clock = s.FSM, s.Tokens, cfg.Runner.Clock
		pc.Agents = vmagent.NewClient(vmagent.Options{Timeout: cfg.AgentTimeout, Tokens: s.Tokens})
		stepHandlers = handlers.New(*pc)
		rc.DestroyNode = handlers.DestroyNode(*pc)
		if cfg.API.FollowUp == nil {
			cfg.API.FollowUp = handlers.FollowUp(*pc)
		}
		rec := &handlers.Reconciler{Config: *pc, Apply: s.Node.Apply, Interval: cfg.ReconcileInterval, Grace: cfg.ReconcileGrace,
			Now: time.Now, Logger: cfg.Logger.Named("reconciler")}
		s.Node.OnLeader(rec.Run)
		runs := &handlers.RunReconciler{Config: *pc, Apply: s.Node.Apply, Leader: cc.NodeID, Interval: cfg.RunReconcileInterval,
			FinishGrace: cfg.RunFinishGrace, Logger: cfg.Logger.Named("runs")}
		s.Node.OnLeader(runs.Run)
	}
	// The runner's commits go through group commit (cluster/batch.go).
	s.Runner = runner.New(rc, s.FSM, s.Node.Batched(), stepHandlers)
	s.Node.OnLeader(s.Runner.Run)
	ac := cfg.API
	ac.Node, ac.Logger, ac.Tokens = s.Node, cfg.Logger, s.Tokens
	if ac.Events == nil {
		ac.Events = api.NewEventHub(10000)
	}
	ac.Metrics = api.NewMetrics(cfg.Registry)
	m.registerState(s)
	m.registerStreams(ac.Events)
	s.FSM.Watch(nil, nil, ac.Events.Observe)
	if s.API, err = api.New(ac); err != nil {
		ln.Close()
		_ = s.Node.Close()
		return nil, err
	}
	if ac.Auth == nil {
		s.log.Warn("!!! API AUTHENTICATION IS OFF (--insecure-no-auth) !!! Anyone who reaches this node's API can read and change everything: submit and cancel any task, read snapshots, manage tokens and credentials. Never run like this where anyone else can connect.")
	}
	handler := s.API.Handler()
	if fl := s.Node.Faults(); fl != nil {
		handler = faultRoutes(fl, handler, s.API.AdminRequest)
	}
	lim := cfg.HTTPLimits.withDefaults()
	s.http = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		ReadTimeout:       lim.ReadTimeout,
		WriteTimeout:      lim.WriteTimeout,
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    lim.MaxHeaderBytes,
		TLSConfig:         apiTLS,
		ErrorLog:          cfg.Logger.Named("http").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	// Event streams outlive the read and write timeouts: Shutdown ends
	// them, rather than wait for them (other requests drain as before).
	s.http.RegisterOnShutdown(s.API.CloseStreams)
	s.Node.Start()
	go s.stopOnFatal()
	if apiTLS != nil {
		ln = tls.NewListener(ln, apiTLS)
	}
	go func() { s.done <- s.http.Serve(ln) }()
	s.log.Info("node started", "id", cc.NodeID, "api", s.URL, "raft", cc.RaftAddr)
	return s, nil
}

// stopOnFatal reports a node that cannot join any cluster (a refused
// bootstrap) through Done, so that the process exits with the reason.
func (s *Server) stopOnFatal() {
	err, ok := <-s.Node.Fatal()
	if !ok {
		return
	}
	select {
	case s.done <- err:
	default:
	}
}

// Done reports the HTTP server's exit (nil after a clean Close), or why the
// node cannot join any cluster.
func (s *Server) Done() <-chan error { return s.done }

// Close stops the node in an order that costs the cluster least: hand
// leadership over first (clients see no election timeout), then drain HTTP
// requests (in-flight writes are forwarded to the new leader), then stop
// raft and close its stores.
func (s *Server) Close() error {
	s.Node.TransferLeadership()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	herr := s.http.Shutdown(ctx)
	nerr := s.Node.Close()
	s.log.Info("node stopped")
	return errors.Join(herr, nerr)
}
