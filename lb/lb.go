// Package lb is a small HTTP load balancer for a tdf cluster: the one
// stable URL in front of every node that VM agents are given as
// CONTROL_PLANE_URL (the real agent reads one URL, and checks it as the
// issuer of tdf's tokens), and that clients may use too. `tdf dev`, `tdf
// lb`, the compose file and the e2e harness run it; production runs a real
// load balancer (docs/haproxy.cfg) with the same rules:
//
//   - Health: each backend's /readyz is polled. Ready backends (they know a
//     leader) get the traffic, round robin. If none is ready (an election)
//     requests go to backends that answer at all, which hold agents'
//     callbacks until a leader is elected, rather than fail them here.
//   - Retries: a request whose connection could not be made (refused, dial
//     timeout) was never sent, so it is sent to the next backend, whatever
//     its method. One that was sent is retried only if replaying it is
//     harmless: GET, HEAD and OPTIONS, and the agents' callbacks, which
//     tdf's state machine treats as no-ops when they repeat (Replayable).
//     Anything else (a task submission without an Idempotency-Key, say)
//     gets 502 rather than risk doing it twice.
//   - A backend whose connection failed is taken out at once, until its
//     next successful health check.
package lb

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Options configure a Balancer.
type Options struct {
	// Backends are the nodes' API base URLs (http://host:port). Required.
	Backends []string
	// HealthPath is polled on every backend; 200 means ready. Default
	// /readyz.
	HealthPath string
	// CheckInterval is the pause between two health rounds (default
	// 500 ms); CheckTimeout bounds one check (default 2 s).
	CheckInterval, CheckTimeout time.Duration
	// DialTimeout bounds connecting to a backend (default 2 s): a frozen
	// host fails over after this long.
	DialTimeout time.Duration
	// MaxReplayBody is the largest request body kept for a retry (default
	// 1 MiB, tdf's own body limit); a larger one is sent once.
	MaxReplayBody int64
	// Replayable says whether a request that reached a backend may be sent
	// again to another one. Default: Replayable.
	Replayable func(*http.Request) bool
	Logger     hclog.Logger
}

// Backend states, from the last health check or request.
const (
	StateDown  = "down"  // no connection
	StateLive  = "live"  // answers, but is not ready (no leader known)
	StateReady = "ready" // /readyz answered 200
)

type backend struct {
	url   *url.URL
	state atomic.Value // string
}

func (b *backend) get() string { return b.state.Load().(string) }

// Balancer is an http.Handler that spreads requests over the backends.
type Balancer struct {
	opts     Options
	log      hclog.Logger
	backends []*backend
	next     atomic.Uint64
	proxy    *httputil.ReverseProxy
	tr       *http.Transport
	checker  *http.Client
}

// New makes a Balancer; call Run to start its health checks.
func New(opts Options) (*Balancer, error) {
	if len(opts.Backends) == 0 {
		return nil, errors.New("lb: no backends")
	}
	if opts.HealthPath == "" {
		opts.HealthPath = "/readyz"
	}
	if opts.CheckInterval <= 0 {
		opts.CheckInterval = 500 * time.Millisecond
	}
	if opts.CheckTimeout <= 0 {
		opts.CheckTimeout = 2 * time.Second
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 2 * time.Second
	}
	if opts.MaxReplayBody <= 0 {
		opts.MaxReplayBody = 1 << 20
	}
	if opts.Replayable == nil {
		opts.Replayable = Replayable
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	b := &Balancer{opts: opts, log: opts.Logger.Named("lb")}
	for _, raw := range opts.Backends {
		u, err := url.Parse(strings.TrimRight(raw, "/"))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("lb: backend %q: want http(s)://host:port", raw)
		}
		be := &backend{url: u}
		be.state.Store(StateDown)
		b.backends = append(b.backends, be)
	}
	b.tr = &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: opts.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   opts.DialTimeout,
		ExpectContinueTimeout: time.Second,
	}
	b.checker = &http.Client{Transport: b.tr, Timeout: opts.CheckTimeout}
	b.proxy = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetXForwarded()
			// RoundTrip picks the backend; the host is a placeholder.
			r.Out.URL.Scheme, r.Out.URL.Host = "http", "backend"
		},
		Transport:    retrying{b},
		ErrorHandler: b.proxyError,
		ErrorLog:     b.log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	return b, nil
}

// ServeHTTP implements http.Handler.
func (b *Balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) { b.proxy.ServeHTTP(w, r) }

// BackendState is one backend's URL and state.
type BackendState struct {
	URL   string `json:"url"`
	State string `json:"state"`
}

// States returns every backend's current state.
func (b *Balancer) States() []BackendState {
	out := make([]BackendState, len(b.backends))
	for i, be := range b.backends {
		out[i] = BackendState{URL: be.url.String(), State: be.get()}
	}
	return out
}

// replayPaths are the agents' callbacks (tdf's own paths and the real
// agent's) whose repeats tdf's state machine ignores: node ready,
// heartbeat and errors (deduplicated by incident), workspace ready and
// provisioning-failed, chat messages (deduplicated by message id), task
// status, ACP activity and heartbeats (last one wins); and the POSTs that
// only hand out what the workspace needs (git token, agent key and
// settings, runtime).
var replayPaths = regexp.MustCompile(`^/(v1|api)/(nodes/[^/]+/(ready|heartbeat|errors)|` +
	`workspaces/[^/]+/(ready|provisioning-failed|messages|git-token|agent-key|agent-settings|runtime)|` +
	`tasks/[^/]+/status|projects/[^/]+/tasks/[^/]+/status/callback|` +
	`projects/[^/]+/(acp-sessions/[^/]+/activity|node-acp-heartbeat))$`)

// Replayable reports whether a request may be sent again after it reached
// a backend: reads, and the agents' idempotent callbacks.
func Replayable(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	case http.MethodPost:
		return replayPaths.MatchString(r.URL.Path)
	}
	return false
}

// order is the backends to try for one request: ready ones round robin,
// then live ones, then the rest (a health check may be out of date).
func (b *Balancer) order() []*backend {
	n := len(b.backends)
	start := int(b.next.Add(1) % uint64(n))
	var ready, live, down []*backend
	for i := range n {
		be := b.backends[(start+i)%n]
		switch be.get() {
		case StateReady:
			ready = append(ready, be)
		case StateLive:
			live = append(live, be)
		default:
			down = append(down, be)
		}
	}
	return append(append(ready, live...), down...)
}

func (b *Balancer) setState(be *backend, state string) {
	if old := be.state.Swap(state); old != state {
		b.log.Info("backend state", "backend", be.url.String(), "from", old, "to", state)
	}
}

// retrying is the proxy's transport: one request, tried on each backend in
// turn while a retry is safe.
type retrying struct{ b *Balancer }

func (t retrying) RoundTrip(req *http.Request) (*http.Response, error) {
	b := t.b
	body, replay, err := b.bufferBody(req)
	if err != nil {
		return nil, err
	}
	var errs []error
	for i, be := range b.order() {
		if i > 0 && req.Context().Err() != nil {
			break
		}
		resp, connected, err := b.try(req, be, body)
		if err == nil {
			return resp, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", be.url.Host, err))
		if !connected {
			if req.Context().Err() == nil {
				b.setState(be, StateDown)
			}
			if replay || body == nil {
				continue // never sent: safe to send elsewhere
			}
		}
		if !replay || !b.opts.Replayable(req) {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// bufferBody reads a request body of up to MaxReplayBody so that it can
// be sent again; replay is false for a larger one, which is streamed once.
func (b *Balancer) bufferBody(req *http.Request) (body []byte, replay bool, err error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, true, nil
	}
	if req.ContentLength > b.opts.MaxReplayBody {
		return nil, false, nil
	}
	buf, err := io.ReadAll(io.LimitReader(req.Body, b.opts.MaxReplayBody+1))
	if err != nil {
		return nil, false, err
	}
	if int64(len(buf)) > b.opts.MaxReplayBody {
		req.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf), req.Body), req.Body}
		return nil, false, nil
	}
	return buf, true, nil
}

// try sends the request to one backend. connected reports whether a
// connection was made (after which the request may have been sent).
func (b *Balancer) try(req *http.Request, be *backend, body []byte) (*http.Response, bool, error) {
	var connected atomic.Bool
	ctx := httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { connected.Store(true) },
	})
	out := req.Clone(ctx)
	out.URL.Scheme, out.URL.Host, out.Host = be.url.Scheme, be.url.Host, ""
	if body != nil {
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		out.ContentLength = int64(len(body))
	}
	resp, err := b.tr.RoundTrip(out)
	return resp, connected.Load(), err
}

// proxyError answers when no backend could: tdf's error format, 502.
func (b *Balancer) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the client went away
	}
	b.log.Warn("no backend answered", "method", r.Method, "path", r.URL.Path, "error", err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadGateway)
	msg := strings.ReplaceAll(fmt.Sprintf("load balancer: no backend answered %s %s: %v", r.Method, r.URL.Path, err), "\n", "; ")
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": "bad_gateway", "message": msg}})
}
