package hetzner

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tdf-project/tdf/cloud"
)

// DefaultImage is the image of a server whose spec names none.
const DefaultImage = "ubuntu-24.04"

// maxUserData is Hetzner's limit on user_data.
const maxUserData = 32 << 10

// Application names the program in the User-Agent header.
type Application struct {
	Name, Version string
}

// Options configures a Provider. The zero value of a field means its
// default (DefaultOptions).
type Options struct {
	// Endpoint is the API's base URL, e.g. http://127.0.0.1:9000/v1
	// (default hcloud.Endpoint, https://api.hetzner.cloud/v1).
	Endpoint string
	// Token is the API token. Required.
	Token string
	// Application goes into the User-Agent (default tdf).
	Application Application
	// PollInterval is WaitAction's pace between two GETs of an action
	// (default 2 s); it is also given to hcloud-go's poll options.
	PollInterval time.Duration
	// MaxRetries is how often hcloud-go re-sends a request by itself
	// (default 5); negative disables its retries.
	MaxRetries int
	// RetryBackoff is the base of hcloud-go's exponential retry backoff
	// (default 1 s, doubling, with jitter, capped at a minute).
	RetryBackoff time.Duration
	// Timeout bounds one HTTP exchange (default 30 s). A request that
	// times out is re-sent by hcloud-go (see MaxRetries).
	Timeout time.Duration
	// ListPageSize is the per_page of ListServers (default and maximum 50).
	ListPageSize int
	// Registerer, if set, receives hcloud-go's request metrics (counts per
	// endpoint, in-flight, durations).
	Registerer prometheus.Registerer
	// Transport, if set, carries every request instead of a clone of
	// http.DefaultTransport (tests wrap it to check each exchange).
	Transport http.RoundTripper
	// MaxConcurrent bounds the requests in flight at once (default 4).
	MaxConcurrent int
	// RequestsPerHour is the request budget tdf paces itself to (default
	// 3600, Hetzner's limit per project); negative disables the pacing.
	RequestsPerHour int
	// CatalogTTL is how long the catalog (server types, locations,
	// prices) is cached (default 1 h).
	CatalogTTL time.Duration
	// Firewall, if set, is created once and attached to every server at
	// its creation (and to an adopted server that lacks it).
	Firewall *FirewallOptions
	// SSHKeys name SSH keys of the project to put on every new server
	// (default none: no one logs in).
	SSHKeys []string
	// Network names a private network of the project every new server is
	// attached to; with AgentOverNetwork, agents are reached at their
	// address in it instead of the public one.
	Network          string
	AgentOverNetwork bool
}

// DefaultOptions returns the defaults of every field but Endpoint and Token.
func DefaultOptions() Options {
	return Options{
		Endpoint:        hcloud.Endpoint,
		Application:     Application{Name: "tdf"},
		PollInterval:    2 * time.Second,
		MaxRetries:      5,
		RetryBackoff:    time.Second,
		Timeout:         30 * time.Second,
		ListPageSize:    50,
		MaxConcurrent:   4,
		RequestsPerHour: 3600,
		CatalogTTL:      time.Hour,
	}
}

// Validate reports the first invalid field, naming it and its limit.
func (o Options) Validate() error {
	if o.Token == "" {
		return errors.New("hetzner: Token must not be empty")
	}
	if strings.ContainsFunc(o.Token, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return errors.New("hetzner: Token must not contain control characters")
	}
	if o.Endpoint != "" && !strings.HasPrefix(o.Endpoint, "http://") && !strings.HasPrefix(o.Endpoint, "https://") {
		return fmt.Errorf("hetzner: Endpoint %q must be an http:// or https:// URL", o.Endpoint)
	}
	if o.ListPageSize < 0 || o.ListPageSize > 50 {
		return fmt.Errorf("hetzner: ListPageSize %d must be between 1 and 50", o.ListPageSize)
	}
	if o.AgentOverNetwork && o.Network == "" {
		return errors.New("hetzner: AgentOverNetwork needs a Network")
	}
	if o.Firewall != nil {
		return o.Firewall.Validate()
	}
	return nil
}

func (o *Options) fill() {
	d := DefaultOptions()
	if o.Endpoint == "" {
		o.Endpoint = d.Endpoint
	}
	if o.Application.Name == "" {
		o.Application = d.Application
	}
	if o.PollInterval <= 0 {
		o.PollInterval = d.PollInterval
	}
	switch {
	case o.MaxRetries == 0:
		o.MaxRetries = d.MaxRetries
	case o.MaxRetries < 0:
		o.MaxRetries = 0
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = d.RetryBackoff
	}
	if o.Timeout <= 0 {
		o.Timeout = d.Timeout
	}
	if o.ListPageSize == 0 {
		o.ListPageSize = d.ListPageSize
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = d.MaxConcurrent
	}
	if o.RequestsPerHour == 0 {
		o.RequestsPerHour = d.RequestsPerHour
	}
	if o.CatalogTTL <= 0 {
		o.CatalogTTL = d.CatalogTTL
	}
}

// Provider is cloud.Provider over hcloud-go. It is safe for concurrent use.
type Provider struct {
	opts       Options
	httpClient *http.Client
	client     *hcloud.Client

	catMu sync.Mutex
	cat   cloud.Catalog

	fwMu sync.Mutex
	fwID int64 // the firewall's id, once known

	refsMu   sync.Mutex
	keyIDs   []int64 // SSHKeys resolved, once known
	netID    int64   // Network resolved, once known
	resolved bool
}

var _ cloud.Provider = (*Provider)(nil)

// New returns a Provider for opts.
func New(opts Options) (*Provider, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.fill()
	// A transport of our own: its idle connections are ours to close.
	httpClient := &http.Client{Timeout: opts.Timeout}
	if t, ok := http.DefaultTransport.(*http.Transport); ok {
		httpClient.Transport = t.Clone()
	}
	if opts.Transport != nil {
		httpClient.Transport = opts.Transport
	}
	httpClient.Transport = newLimiter(httpClient.Transport, opts.MaxConcurrent, opts.RequestsPerHour)
	clientOpts := []hcloud.ClientOption{
		hcloud.WithEndpoint(opts.Endpoint),
		hcloud.WithToken(opts.Token),
		hcloud.WithApplication(opts.Application.Name, opts.Application.Version),
		hcloud.WithPollOpts(hcloud.PollOpts{BackoffFunc: hcloud.ConstantBackoff(opts.PollInterval)}),
		hcloud.WithRetryOpts(hcloud.RetryOpts{
			BackoffFunc: hcloud.ExponentialBackoffWithOpts(hcloud.ExponentialBackoffOpts{
				Base: opts.RetryBackoff, Multiplier: 2, Cap: time.Minute, Jitter: true,
			}),
			MaxRetries: opts.MaxRetries,
		}),
		hcloud.WithHTTPClient(httpClient),
		// Never hcloud.WithDebugWriter: it logs user data and passwords.
	}
	if opts.Registerer != nil {
		clientOpts = append(clientOpts, hcloud.WithInstrumentation(opts.Registerer))
	}
	return &Provider{opts: opts, httpClient: httpClient, client: hcloud.NewClient(clientOpts...)}, nil
}

// Close releases idle connections.
func (p *Provider) Close() { p.httpClient.CloseIdleConnections() }

// CreateServer implements cloud.Provider: look up, create, and on
// uniqueness_error look up again; adopt a server of that name that is ours.
//
// The returned Action is the create_server action (or, for an adopted
// server, the action that will make it run; zero if it runs already). On
// real Hetzner a start_server action follows the create, so the server's
// status turns running shortly after the create action succeeds. If the
// action fails, the server may exist all the same: delete it by id with
// DeleteServer before creating again. On ErrNameTaken and ErrServerBusy the
// returned Server is the one found.
func (p *Provider) CreateServer(ctx context.Context, spec cloud.ServerSpec) (cloud.Server, cloud.Action, error) {
	const op = "create server"
	if err := validateSpec(spec); err != nil {
		return cloud.Server{}, cloud.Action{}, err
	}
	// A retried step finds the server its earlier attempt created.
	found, err := p.getByName(ctx, op, spec.Name)
	if err != nil {
		return cloud.Server{}, cloud.Action{}, err
	}
	if found != nil {
		return p.adopt(ctx, spec, found)
	}

	var firewalls []*hcloud.ServerCreateFirewall
	if p.opts.Firewall != nil {
		id, err := p.ensureFirewall(ctx)
		if err != nil {
			return cloud.Server{}, cloud.Action{}, err
		}
		firewalls = []*hcloud.ServerCreateFirewall{{Firewall: hcloud.Firewall{ID: id}}}
	}
	// The first location, then the fallbacks, while a location answers
	// that it has no room for the type.
	var full []string
	var last *cloud.Error
	for _, loc := range placements(spec) {
		srv, act, err := p.createIn(ctx, spec, loc, firewalls)
		if err == nil {
			if len(full) > 0 {
				srv.Placement = fmt.Sprintf("placed in %s: %s", srv.Location, strings.Join(full, "; "))
			}
			return srv, act, nil
		}
		if !errors.As(err, &last) || !noRoom(last) {
			return srv, act, err
		}
		full = append(full, fmt.Sprintf("%s answered %s (%s)", loc, last.Code, last.Message))
	}
	if len(full) == 1 {
		return cloud.Server{}, cloud.Action{}, last
	}
	return cloud.Server{}, cloud.Action{}, &cloud.Error{Op: op, Code: last.Code, StatusCode: last.StatusCode,
		RateLimitReset: last.RateLimitReset, Err: last.Err, Message: "no location has room: " + strings.Join(full, "; ")}
}

// placements are the locations to try in order, without repeats ("" is
// the provider's default).
func placements(spec cloud.ServerSpec) []string {
	out := []string{spec.Location}
	for _, l := range spec.FallbackLocations {
		if l != "" && !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	return out
}

// noRoom reports an answer that another location may not give: no
// capacity for the type, or the type not sold there.
func noRoom(e *cloud.Error) bool {
	switch hcloud.ErrorCode(e.Code) {
	case hcloud.ErrorCodeResourceUnavailable, hcloud.ErrorCodePlacementError, hcloud.ErrorCodeInvalidServerType:
		return true
	case hcloud.ErrorCodeInvalidInput:
		return strings.Contains(e.Message, "not supported in location") || strings.Contains(e.Message, "unsupported location")
	}
	return false
}

// createIn creates the server in loc; on uniqueness_error it adopts the
// server of that name (wherever it is).
func (p *Provider) createIn(ctx context.Context, spec cloud.ServerSpec, loc string, firewalls []*hcloud.ServerCreateFirewall) (cloud.Server, cloud.Action, error) {
	const op = "create server"
	image := spec.Image
	if image == "" {
		image = DefaultImage
	}
	opts := hcloud.ServerCreateOpts{
		Name:             spec.Name,
		ServerType:       &hcloud.ServerType{Name: spec.ServerType},
		Image:            &hcloud.Image{Name: image},
		UserData:         spec.UserData,
		StartAfterCreate: hcloud.Ptr(true),
		Labels:           maps.Clone(spec.Labels),
		Firewalls:        firewalls,
	}
	keys, network, err := p.references(ctx)
	if err != nil {
		return cloud.Server{}, cloud.Action{}, err
	}
	for _, id := range keys {
		opts.SSHKeys = append(opts.SSHKeys, &hcloud.SSHKey{ID: id})
	}
	if network != 0 {
		opts.Networks = []*hcloud.Network{{ID: network}}
	}
	if loc != "" {
		opts.Location = &hcloud.Location{Name: loc}
	}
	res, resp, err := p.client.Server.Create(ctx, opts)
	if err == nil {
		return p.serverFrom(res.Server), actionFrom(res.Action), nil
	}
	if !hcloud.IsError(err, hcloud.ErrorCodeUniquenessError) {
		return cloud.Server{}, cloud.Action{}, wrap(op, err, resp)
	}
	// Either another creator won the name, or hcloud-go re-sent our own
	// POST after its answer was lost: the server is there either way.
	found, lookErr := p.getByName(ctx, op, spec.Name)
	if lookErr != nil {
		return cloud.Server{}, cloud.Action{}, lookErr
	}
	if found == nil {
		// Gone again between the create and the look-up; the
		// uniqueness_error is transient: the next attempt creates it.
		return cloud.Server{}, cloud.Action{}, wrap(op, err, resp)
	}
	return p.adopt(ctx, spec, found)
}

// adopt returns a server found by name if it is ours, with the action that
// makes it run.
func (p *Provider) adopt(ctx context.Context, spec cloud.ServerSpec, hs *hcloud.Server) (cloud.Server, cloud.Action, error) {
	const op = "adopt server"
	s := p.serverFrom(hs)
	if !cloud.Owns(spec.Labels, hs.Labels) {
		return s, cloud.Action{}, fmt.Errorf("%w: %q is server %d with labels %v", cloud.ErrNameTaken, s.Name, s.ID, hs.Labels)
	}
	if p.opts.Firewall != nil && hs.Status != hcloud.ServerStatusDeleting {
		// A server created before the firewall was configured gets it
		// before its agent is called.
		if err := p.attachFirewall(ctx, hs); err != nil {
			return s, cloud.Action{}, err
		}
	}
	switch hs.Status {
	case hcloud.ServerStatusRunning:
		return s, cloud.Action{}, nil
	case hcloud.ServerStatusOff:
		a, resp, err := p.client.Server.Poweron(ctx, hs)
		if err != nil {
			return s, cloud.Action{}, wrap(op, err, resp)
		}
		return s, actionFrom(a), nil
	case hcloud.ServerStatusDeleting, hcloud.ServerStatusStopping:
		return s, cloud.Action{}, fmt.Errorf("%w: server %d (%q) is %s", cloud.ErrServerBusy, s.ID, s.Name, hs.Status)
	}
	// Still being created or started: wait for the action doing it.
	actions, resp, err := p.client.Server.Action.ListFor(ctx, hs, hcloud.ActionListOpts{
		Status: []hcloud.ActionStatus{hcloud.ActionStatusRunning},
	})
	if err != nil {
		return s, cloud.Action{}, wrap(op, err, resp)
	}
	var best *hcloud.Action
	rank := func(a *hcloud.Action) int {
		switch a.Command {
		case "create_server":
			return 2
		case "start_server":
			return 1
		}
		return 0
	}
	for _, a := range actions {
		if best == nil || rank(a) > rank(best) || rank(a) == rank(best) && a.ID > best.ID {
			best = a
		}
	}
	if best == nil {
		// Between states: the next attempt sees where it went.
		return s, cloud.Action{}, fmt.Errorf("%w: server %d (%q) is %s with no running action", cloud.ErrServerBusy, s.ID, s.Name, hs.Status)
	}
	return s, actionFrom(best), nil
}

// GetServer implements cloud.Provider.
func (p *Provider) GetServer(ctx context.Context, id int64) (*cloud.Server, error) {
	hs, resp, err := p.client.Server.GetByID(ctx, id)
	if err != nil {
		return nil, wrap("get server", err, resp)
	}
	if hs == nil {
		return nil, nil
	}
	s := p.serverFrom(hs)
	return &s, nil
}

// GetServerByName implements cloud.Provider.
func (p *Provider) GetServerByName(ctx context.Context, name string) (*cloud.Server, error) {
	hs, err := p.getByName(ctx, "get server by name", name)
	if err != nil || hs == nil {
		return nil, err
	}
	s := p.serverFrom(hs)
	return &s, nil
}

func (p *Provider) getByName(ctx context.Context, op, name string) (*hcloud.Server, error) {
	hs, resp, err := p.client.Server.GetByName(ctx, name)
	if err != nil {
		return nil, wrap(op, err, resp)
	}
	return hs, nil
}

// GetAction implements cloud.Provider.
func (p *Provider) GetAction(ctx context.Context, id int64) (cloud.Action, error) {
	a, resp, err := p.client.Action.GetByID(ctx, id)
	if err != nil {
		return cloud.Action{}, wrap("get action", err, resp)
	}
	if a == nil {
		return cloud.Action{}, &cloud.Error{
			Op: "get action", Code: string(hcloud.ErrorCodeNotFound),
			Message: fmt.Sprintf("action %d not found", id), StatusCode: http.StatusNotFound,
		}
	}
	return actionFrom(a), nil
}

// WaitAction polls the action every PollInterval until it is done or ctx
// ends, and returns its last state. A failed action is returned without
// error: its ErrorCode says why. Step handlers poll by alarm instead; this
// is for tools and tests.
func (p *Provider) WaitAction(ctx context.Context, id int64) (cloud.Action, error) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return cloud.Action{}, ctx.Err()
		case <-t.C:
		}
		a, err := p.GetAction(ctx, id)
		if err != nil || a.Done() {
			return a, err
		}
		t.Reset(p.opts.PollInterval)
	}
}

// DeleteServer implements cloud.Provider. It does not wait for the delete
// action.
func (p *Provider) DeleteServer(ctx context.Context, id int64) error {
	_, resp, err := p.client.Server.DeleteWithResult(ctx, &hcloud.Server{ID: id})
	if err != nil {
		if hcloud.IsError(err, hcloud.ErrorCodeNotFound) {
			return nil
		}
		return wrap("delete server", err, resp)
	}
	return nil
}

// ListServers implements cloud.Provider.
func (p *Provider) ListServers(ctx context.Context, labelSelector string) ([]cloud.Server, error) {
	all, err := p.client.Server.AllWithOpts(ctx, hcloud.ServerListOpts{
		ListOpts: hcloud.ListOpts{LabelSelector: labelSelector, PerPage: p.opts.ListPageSize},
	})
	if err != nil {
		return nil, wrap("list servers", err, nil)
	}
	out := make([]cloud.Server, 0, len(all))
	for _, hs := range all {
		out = append(out, p.serverFrom(hs))
	}
	return out, nil
}

func validateSpec(spec cloud.ServerSpec) error {
	switch {
	case spec.Name == "":
		return fmt.Errorf("%w: Name must not be empty", cloud.ErrInvalidSpec)
	case spec.ServerType == "":
		return fmt.Errorf("%w: ServerType must not be empty", cloud.ErrInvalidSpec)
	case len(spec.Labels) == 0:
		return fmt.Errorf("%w: Labels must not be empty: they decide whether a server of that name is ours", cloud.ErrInvalidSpec)
	case len(spec.UserData) > maxUserData:
		return fmt.Errorf("%w: UserData is %d bytes, more than %d", cloud.ErrInvalidSpec, len(spec.UserData), maxUserData)
	}
	return nil
}

// wrap turns an hcloud-go error into one cloud.Classify understands.
func wrap(op string, err error, resp *hcloud.Response) error {
	var apiErr hcloud.Error
	if errors.As(err, &apiErr) {
		ce := &cloud.Error{Op: op, Code: string(apiErr.Code), Message: apiErr.Message, Err: err}
		if r := apiErr.Response(); r != nil {
			resp = r
		}
		if resp != nil && resp.Response != nil {
			ce.StatusCode = resp.StatusCode
			ce.RateLimitReset = resp.Meta.Ratelimit.Reset
		}
		return ce
	}
	if errors.Is(err, hcloud.ErrStatusCode) && resp != nil && resp.Response != nil {
		return &cloud.Error{Op: op, StatusCode: resp.StatusCode, RateLimitReset: resp.Meta.Ratelimit.Reset, Err: err}
	}
	var argErr hcloud.ArgumentError
	if errors.As(err, &argErr) {
		return fmt.Errorf("%w: %s: %v", cloud.ErrInvalidSpec, op, err)
	}
	return fmt.Errorf("hetzner: %s: %w", op, err)
}

func (p *Provider) serverFrom(hs *hcloud.Server) cloud.Server {
	if hs == nil {
		return cloud.Server{}
	}
	s := cloud.Server{
		ID: hs.ID, Name: hs.Name, Status: string(hs.Status), Labels: maps.Clone(hs.Labels), Created: hs.Created,
	}
	if hs.Location != nil {
		s.Location = hs.Location.Name
	}
	if hs.ServerType != nil {
		s.ServerType = hs.ServerType.Name
	}
	if !hs.PublicNet.IPv4.IsUnspecified() {
		s.IPv4 = hs.PublicNet.IPv4.IP.String()
	}
	if p.opts.AgentOverNetwork {
		s.IPv4 = ""
		for _, pn := range hs.PrivateNet {
			// The configured network (before its id is resolved, the
			// one network tdf attaches).
			if pn.Network != nil && (p.netID == 0 || pn.Network.ID == p.netID) && pn.IP != nil {
				s.IPv4 = pn.IP.String()
			}
		}
	}
	return s
}

func actionFrom(a *hcloud.Action) cloud.Action {
	if a == nil {
		return cloud.Action{}
	}
	return cloud.Action{
		ID: a.ID, Status: string(a.Status), Progress: a.Progress, ErrorCode: a.ErrorCode, ErrorMessage: a.ErrorMessage,
	}
}
