package fakecloud

import (
	"bytes"
	"cmp"
	"crypto/subtle"
	"encoding/json"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
)

// Server is a fake Hetzner Cloud API. Create it with New, serve Handler,
// and Close it when done.
type Server struct {
	opts    Options
	handler http.Handler
	hooks   hookQueue
	done    chan struct{} // closed by Close: slow answers stop waiting

	mu             sync.Mutex
	closed         bool
	servers        map[int64]*server
	byName         map[string]*server
	actions        map[int64]*action
	firewalls      map[int64]*firewall
	sshKeys        []*sshKey
	networks       []*network
	nextFirewallID int64
	nextServerID   int64
	nextActionID   int64
	faults         []*faultState
	rng            *rand.Rand
	ledger         []Event
	unavailable    map[string][]string // location → types out of stock (none listed: all)
	tokens         float64             // rate-limit bucket
	tokensAt       time.Time
}

// New returns a fake configured by opts. It panics if an initial fault is
// invalid.
func New(opts Options) *Server {
	opts.fill()
	seed := opts.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	s := &Server{
		opts:           opts,
		done:           make(chan struct{}),
		servers:        make(map[int64]*server),
		byName:         make(map[string]*server),
		actions:        make(map[int64]*action),
		firewalls:      make(map[int64]*firewall),
		nextFirewallID: 900000,
		// Distinct ranges keep a server id from passing for an action id.
		nextServerID: 100000,
		nextActionID: 500000,
		rng:          rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		unavailable:  maps.Clone(opts.Unavailable),
		tokens:       float64(opts.RateLimit),
		tokensAt:     time.Now(),
	}
	if err := s.SetFaults(opts.Faults...); err != nil {
		panic(err)
	}
	s.seedExtras()
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/", s.serveAPI)
	mux.HandleFunc("/fake/", s.serveFake)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such path")
	})
	s.handler = mux
	return s
}

// Handler returns the HTTP handler serving /v1 and /fake.
func (s *Server) Handler() http.Handler { return s.handler }

// Close stops every pending action (no hook fires after it returns), makes
// slow answers stop waiting and waits for running hooks. Requests after
// Close are answered 503.
func (s *Server) Close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
		for _, a := range s.actions {
			if a.timer != nil {
				a.timer.Stop()
			}
		}
	}
	s.mu.Unlock()
	s.hooks.close()
}

// Servers returns the live servers (those not yet gone), by id.
func (s *Server) Servers() []VM {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]VM, 0, len(s.servers))
	for _, sv := range s.servers {
		out = append(out, sv.vm())
	}
	slices.SortFunc(out, func(a, b VM) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// SetUnavailable replaces which server types are out of stock where:
// location → types (an empty list: every type). A create of such a type
// there answers 412 resource_unavailable, and /server_types shows it as
// not available in that location.
func (s *Server) SetUnavailable(m map[string][]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unavailable = maps.Clone(m)
}

func (s *Server) unavailableLocked(loc, typ string) bool {
	types, ok := s.unavailable[loc]
	return ok && (len(types) == 0 || slices.Contains(types, typ))
}

// route is one API endpoint.
type route struct {
	endpoint string
	handle   func(r *http.Request, id int64, d decision) (int, any)
}

// match maps a method and a path below /v1 to its route. id is the path's
// numeric id, if any; status is non-zero for a path or method that does
// not exist.
func (s *Server) match(method, path string) (rt route, id int64, status int, msg string) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) >= 2 && (parts[0] == "servers" || parts[0] == "actions" || parts[0] == "firewalls") {
		n, err := strconv.ParseInt(parts[1], 10, 64)
		if err != nil || n <= 0 {
			return route{}, 0, http.StatusNotFound, "invalid id " + strconv.Quote(parts[1])
		}
		id = n
	}
	var routes map[string]route
	switch {
	case len(parts) == 1 && parts[0] == "servers":
		routes = map[string]route{
			http.MethodPost: {EndpointCreateServer, s.createServer},
			http.MethodGet:  {EndpointListServers, s.listServers},
		}
	case len(parts) == 2 && parts[0] == "servers":
		routes = map[string]route{
			http.MethodGet:    {EndpointGetServer, s.getServer},
			http.MethodDelete: {EndpointDeleteServer, s.deleteServer},
		}
	case len(parts) == 3 && parts[0] == "servers" && parts[2] == "actions":
		routes = map[string]route{http.MethodGet: {EndpointListServerActions, s.listServerActions}}
	case len(parts) == 4 && parts[0] == "servers" && parts[2] == "actions" && parts[3] == "poweron":
		routes = map[string]route{http.MethodPost: {EndpointPoweronServer, s.poweronServer}}
	case len(parts) == 1 && parts[0] == "actions":
		routes = map[string]route{http.MethodGet: {EndpointListActions, s.listActions}}
	case len(parts) == 2 && parts[0] == "actions":
		routes = map[string]route{http.MethodGet: {EndpointGetAction, s.getAction}}
	case len(parts) == 1 && parts[0] == "firewalls":
		routes = map[string]route{
			http.MethodPost: {EndpointCreateFirewall, s.createFirewall},
			http.MethodGet:  {EndpointListFirewalls, s.listFirewalls},
		}
	case len(parts) == 2 && parts[0] == "firewalls":
		routes = map[string]route{
			http.MethodGet:    {EndpointGetFirewall, s.getFirewall},
			http.MethodDelete: {EndpointDeleteFirewall, s.deleteFirewall},
		}
	case len(parts) == 4 && parts[0] == "firewalls" && parts[2] == "actions" && parts[3] == "apply_to_resources":
		routes = map[string]route{http.MethodPost: {EndpointApplyFirewall, s.applyFirewall}}
	case len(parts) == 1 && parts[0] == "server_types":
		routes = map[string]route{http.MethodGet: {EndpointListServerTypes, s.listServerTypes}}
	case len(parts) == 1 && parts[0] == "locations":
		routes = map[string]route{http.MethodGet: {EndpointListLocations, s.listLocations}}
	case len(parts) == 1 && parts[0] == "ssh_keys":
		routes = map[string]route{http.MethodGet: {EndpointListSSHKeys, s.listSSHKeys}}
	case len(parts) == 1 && parts[0] == "networks":
		routes = map[string]route{http.MethodGet: {EndpointListNetworks, s.listNetworks}}
	case len(parts) == 1 && parts[0] == "pricing":
		routes = map[string]route{http.MethodGet: {EndpointGetPricing, s.getPricing}}
	default:
		return route{}, 0, http.StatusNotFound, "no such path"
	}
	rt, ok := routes[method]
	if !ok {
		return route{}, 0, http.StatusMethodNotAllowed, "method not allowed"
	}
	return rt, id, 0, ""
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if !s.authorized(r) {
		writeError(w, http.StatusUnauthorized, "unauthorized", "unable to authenticate")
		return
	}
	rt, id, status, msg := s.match(r.Method, strings.TrimPrefix(r.URL.Path, "/v1"))
	location := ""
	if rt.endpoint == EndpointCreateServer {
		location = peekLocation(r)
	}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "unavailable", "fake cloud is shut down")
		return
	}
	allowed := s.rateLimitLocked(w.Header())
	var d decision
	if allowed && status == 0 {
		d = s.decideLocked(rt.endpoint, location)
	}
	s.mu.Unlock()

	switch {
	case !allowed:
		writeError(w, http.StatusTooManyRequests, "rate_limit_exceeded", "limit of requests per hour reached")
		return
	case status == http.StatusMethodNotAllowed:
		writeError(w, status, "method_not_allowed", msg)
		return
	case status != 0:
		writeError(w, status, "not_found", msg)
		return
	}
	if d.pre > 0 && !s.wait(r, d.pre) {
		return // the client gave up before the request was handled
	}
	if d.errStatus != 0 {
		writeError(w, d.errStatus, d.errCode, d.errMsg)
		return
	}
	status, body := rt.handle(r, id, d)
	if d.post > 0 && !s.wait(r, d.post) {
		return // the effect happened; the client never learns of it
	}
	writeJSON(w, status, body)
}

// peekLocation reads the location a create asks for and leaves the body
// readable again ("" for the default location, fsn1).
func peekLocation(r *http.Request) string {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	_ = r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(b))
	if err != nil {
		return ""
	}
	var req struct {
		Location string `json:"location"`
	}
	_ = json.Unmarshal(b, &req)
	if l, ok := lookupLocation(req.Location); ok {
		return l.Name
	}
	return req.Location
}

// wait waits for d, or until the client goes away or the fake closes; it
// reports whether the whole wait elapsed.
func (s *Server) wait(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	case <-s.done:
		return false
	}
}

func (s *Server) authorized(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(tok), []byte(s.opts.Token)) == 1
}

// rateLimitLocked takes a token from the bucket, sets the RateLimit headers
// and reports whether the request is allowed.
func (s *Server) rateLimitLocked(h http.Header) bool {
	limit := s.opts.RateLimit
	if limit < 0 {
		h.Set("RateLimit-Limit", "3600")
		h.Set("RateLimit-Remaining", "3600")
		h.Set("RateLimit-Reset", strconv.FormatInt(time.Now().Unix(), 10))
		return true
	}
	now := time.Now()
	perSecond := float64(limit) / 3600
	s.tokens = math.Min(float64(limit), s.tokens+now.Sub(s.tokensAt).Seconds()*perSecond)
	s.tokensAt = now
	allowed := s.tokens >= 1
	if allowed {
		s.tokens--
	}
	full := now.Add(time.Duration((float64(limit) - s.tokens) / perSecond * float64(time.Second)))
	h.Set("RateLimit-Limit", strconv.Itoa(limit))
	h.Set("RateLimit-Remaining", strconv.Itoa(int(s.tokens)))
	h.Set("RateLimit-Reset", strconv.FormatInt(full.Unix(), 10))
	return allowed
}

func (s *Server) serveFake(w http.ResponseWriter, r *http.Request) {
	switch path := strings.TrimSuffix(r.URL.Path, "/"); {
	case path == "/fake/ledger" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, LedgerResponse{Events: s.Ledger()})
	case path == "/fake/servers" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, struct {
			Servers []VM `json:"servers"`
		}{s.Servers()})
	case path == "/fake/firewalls" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, struct {
			Firewalls []Firewall `json:"firewalls"`
		}{s.Firewalls()})
	case path == "/fake/faults" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, FaultsRequest{Faults: s.Faults()})
	case path == "/fake/faults" && r.Method == http.MethodDelete:
		_ = s.SetFaults()
		writeJSON(w, http.StatusOK, FaultsRequest{Faults: s.Faults()})
	case path == "/fake/faults" && r.Method == http.MethodPost:
		var req FaultsRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, "json_error", err.Error())
			return
		}
		for i := range req.Faults {
			req.Faults[i].Fired = 0
		}
		var err error
		if req.Append {
			for _, f := range req.Faults {
				if err = f.Validate(); err != nil {
					break
				}
			}
			if err == nil {
				for _, f := range req.Faults {
					_ = s.AddFault(f)
				}
			}
		} else {
			err = s.SetFaults(req.Faults...)
		}
		if err != nil {
			writeError(w, http.StatusUnprocessableEntity, "invalid_input", err.Error())
			return
		}
		writeJSON(w, http.StatusOK, FaultsRequest{Faults: s.Faults()})
	default:
		writeError(w, http.StatusNotFound, "not_found", "no such path")
	}
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	b, err := json.Marshal(body)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(errorBody("server_error", err.Error()))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func errorBody(code, msg string) schema.ErrorResponse {
	return schema.ErrorResponse{Error: schema.Error{Code: code, Message: msg}}
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, errorBody(code, msg))
}

// hookQueue delivers hooks one at a time, in order, from a goroutine that
// exists only while hooks are pending.
type hookQueue struct {
	mu      sync.Mutex
	queue   []func()
	running bool
	closed  bool
	wg      sync.WaitGroup
}

// push queues f. It never blocks, so it may be called under the fake's lock
// — which keeps the hooks in the order of the state changes.
func (h *hookQueue) push(f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.queue = append(h.queue, f)
	if !h.running {
		h.running = true
		h.wg.Add(1)
		go h.drain()
	}
}

func (h *hookQueue) drain() {
	defer h.wg.Done()
	for {
		h.mu.Lock()
		if len(h.queue) == 0 || h.closed {
			h.queue = nil
			h.running = false
			h.mu.Unlock()
			return
		}
		f := h.queue[0]
		h.queue = h.queue[1:]
		h.mu.Unlock()
		f()
	}
}

// close drops pending hooks and waits for the running one.
func (h *hookQueue) close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.wg.Wait()
}
