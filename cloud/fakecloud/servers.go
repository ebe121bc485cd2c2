package fakecloud

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
)

// server is the fake's state of one server.
type server struct {
	id         int64
	name       string
	status     string
	created    time.Time
	labels     map[string]string
	ipv4       netip.Addr
	serverType string
	location   string
	image      string
	userData   string
	firewalls  []int64 // the firewalls applied to it
	sshKeys    []int64
	// privateNets are its addresses in private networks, by network id.
	privateNets map[int64]netip.Addr
	actions     []int64 // every action of the server, oldest first
	deleting    int64   // the delete action, once deleted
}

func (sv *server) vm() VM {
	return VM{
		ID: sv.id, Name: sv.name, Status: sv.status, IPv4: sv.ipv4, Labels: maps.Clone(sv.labels),
		ServerType: sv.serverType, Location: sv.location, Image: sv.image, Created: sv.created,
		UserData: sv.userData,
	}
}

// serverJSON is a server as the API description has it: hcloud-go's
// schema plus the fields hcloud-go does not read (its datacenter) and the
// server type with its locations.
type serverJSON struct {
	schema.Server
	ServerType serverTypeJSON  `json:"server_type"`
	Datacenter *datacenterJSON `json:"datacenter"`
}

type datacenterJSON struct {
	ID          int64           `json:"id"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Location    schema.Location `json:"location"`
	ServerTypes struct {
		Available             []int64 `json:"available"`
		AvailableForMigration []int64 `json:"available_for_migration"`
		Supported             []int64 `json:"supported"`
	} `json:"server_types"`
}

// datacenter is the location's one datacenter (Hetzner names them
// <location>-dc<n>).
func datacenter(loc schema.Location) *datacenterJSON {
	dc := &datacenterJSON{ID: loc.ID, Name: loc.Name + "-dc1", Description: loc.Description + " DC 1", Location: loc}
	dc.ServerTypes.Available, dc.ServerTypes.AvailableForMigration, dc.ServerTypes.Supported = []int64{}, []int64{}, []int64{}
	for _, name := range serverTypeNames() {
		if t := serverTypes[name]; t.offered(loc.Name) {
			dc.ServerTypes.Supported = append(dc.ServerTypes.Supported, t.id)
			dc.ServerTypes.Available = append(dc.ServerTypes.Available, t.id)
			dc.ServerTypes.AvailableForMigration = append(dc.ServerTypes.AvailableForMigration, t.id)
		}
	}
	return dc
}

func (sv *server) schema(unavailable func(loc, typ string) bool) serverJSON {
	st := serverTypes[sv.serverType]
	loc := locations[sv.location]
	image := sv.image
	labels := maps.Clone(sv.labels)
	if labels == nil {
		labels = map[string]string{}
	}
	ip := sv.ipv4.String()
	firewalls := make([]schema.ServerFirewall, 0, len(sv.firewalls))
	for _, id := range sv.firewalls {
		firewalls = append(firewalls, schema.ServerFirewall{ID: id, Status: "applied"})
	}
	var zero uint64
	imageCreated := time.Date(2024, 4, 25, 0, 0, 0, 0, time.UTC)
	osVersion := strings.TrimPrefix(image, "ubuntu-")
	return serverJSON{Server: schema.Server{
		ID:      sv.id,
		Name:    sv.name,
		Status:  sv.status,
		Created: sv.created,
		PublicNet: schema.ServerPublicNet{
			IPv4: schema.ServerPublicNetIPv4{ID: sv.id, IP: ip, DNSPtr: "static." + ip + ".clients.your-server.de"},
			IPv6: schema.ServerPublicNetIPv6{
				ID: sv.id,
				IP: fmt.Sprintf("2001:db8:%x:%x::/64", sv.id>>16&0xffff, sv.id&0xffff),
				// An empty list, not null: hcloud-go ranges over it.
				DNSPtr: []schema.ServerPublicNetIPv6DNSPtr{},
			},
			FloatingIPs: []int64{},
			Firewalls:   firewalls,
		},
		PrivateNet:      sv.privateNetSchema(),
		IncludedTraffic: 20 << 40,
		OutgoingTraffic: &zero,
		IngoingTraffic:  &zero,
		Location:        loc,
		Image: &schema.Image{
			ID: imageID(image), Status: "available", Type: "system", Name: &image, Description: image,
			OSFlavor: "ubuntu", OSVersion: &osVersion, Architecture: st.arch, Labels: map[string]string{},
			Created: &imageCreated, DiskSize: 5,
		},
		Labels:          labels,
		Volumes:         []int64{},
		LoadBalancers:   []int64{},
		PrimaryDiskSize: st.disk,
	}, ServerType: st.schema(sv.serverType, unavailable), Datacenter: datacenter(loc)}
}

// imageID gives an image name a stable id.
func imageID(name string) int64 {
	var h int64 = 7
	for i := 0; i < len(name); i++ {
		h = (h*31 + int64(name[i])) % 1_000_000
	}
	return 1_000_000 + h
}

// action is the fake's state of one action.
type action struct {
	id       int64
	command  string
	status   string // running | success | error
	serverID int64
	// resources are the action's resources when it is not a server's.
	resources []schema.ActionResourceReference
	started   time.Time
	finished  time.Time
	duration  time.Duration
	progress  int // when finished
	errCode   string
	errMsg    string
	timer     *time.Timer
}

func (a *action) schema(now time.Time) schema.Action {
	out := schema.Action{
		ID: a.id, Command: a.command, Status: a.status, Progress: a.progress, Started: a.started,
		Resources: []schema.ActionResourceReference{{ID: a.serverID, Type: "server"}},
	}
	if a.resources != nil {
		out.Resources = a.resources
	}
	if a.status == "running" {
		// Progress moves with time but reaches 100 only on completion.
		out.Progress = min(99, int(now.Sub(a.started)*100/max(a.duration, 1)))
	} else {
		f := a.finished
		out.Finished = &f
	}
	if a.status == "error" {
		out.Error = &schema.ActionError{Code: a.errCode, Message: a.errMsg}
	}
	return out
}

func (a *action) succeed(now time.Time) {
	a.status, a.finished, a.progress, a.timer = "success", now, 100, nil
}

func (a *action) fail(now time.Time, code, msg string) {
	if a.timer != nil {
		a.timer.Stop()
	}
	a.progress = min(99, int(now.Sub(a.started)*100/max(a.duration, 1)))
	a.status, a.finished, a.errCode, a.errMsg, a.timer = "error", now, code, msg, nil
}

// newActionLocked starts an action on sv that completes after d by calling
// done (under the lock) unless it finished otherwise first.
func (s *Server) newActionLocked(sv *server, command string, now time.Time, d time.Duration, done func(now time.Time)) *action {
	s.nextActionID++
	a := &action{id: s.nextActionID, command: command, status: "running", serverID: sv.id, started: now, duration: d}
	s.actions[a.id] = a
	sv.actions = append(sv.actions, a.id)
	if done != nil {
		a.timer = time.AfterFunc(d, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.closed || a.status != "running" {
				return
			}
			done(time.Now().UTC())
		})
	}
	return a
}

// failPendingLocked fails the running actions of sv.
func (s *Server) failPendingLocked(sv *server, now time.Time, code, msg string) {
	for _, id := range sv.actions {
		if a := s.actions[id]; a.status == "running" {
			a.fail(now, code, msg)
		}
	}
}

// runningLocked marks sv running and tells the simulated world.
func (s *Server) runningLocked(sv *server, now time.Time) {
	sv.status = "running"
	s.recordLocked(Event{Kind: EventServerRunning, ServerID: sv.id, Name: sv.name, Time: now})
	if h := s.opts.OnServerRunning; h != nil {
		vm := sv.vm()
		s.hooks.push(func() { h(vm) })
	}
}

func errorResp(status int, code, msg string) (int, any) {
	return status, errorBody(code, msg)
}

func (s *Server) createServer(r *http.Request, _ int64, d decision) (int, any) {
	var req schema.ServerCreateRequest
	if err := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20)).Decode(&req); err != nil {
		return errorResp(http.StatusBadRequest, "json_error", "invalid JSON: "+err.Error())
	}
	invalid := func(format string, args ...any) (int, any) {
		return errorResp(http.StatusUnprocessableEntity, "invalid_input", fmt.Sprintf(format, args...))
	}
	if err := validName(req.Name); err != nil {
		return invalid("invalid input in field 'name': %v", err)
	}
	typeName, _, ok := lookupServerType(req.ServerType)
	if !ok {
		return invalid("invalid input in field 'server_type': unknown server type")
	}
	image := req.Image.Name
	if image == "" && req.Image.ID != 0 {
		image = strconv.FormatInt(req.Image.ID, 10)
	}
	if image == "" {
		return invalid("invalid input in field 'image': missing")
	}
	loc, ok := lookupLocation(req.Location)
	if !ok {
		return invalid("invalid input in field 'location': unknown location %q", req.Location)
	}
	if len(req.UserData) > maxUserData {
		return invalid("invalid input in field 'user_data': longer than %d bytes", maxUserData)
	}
	var labels map[string]string
	if req.Labels != nil {
		labels = maps.Clone(*req.Labels)
	}
	if err := validLabels(labels); err != nil {
		return invalid("invalid input in field 'labels': %v", err)
	}
	start := req.StartAfterCreate == nil || *req.StartAfterCreate

	s.mu.Lock()
	defer s.mu.Unlock()
	if _, taken := s.byName[req.Name]; taken {
		return errorResp(http.StatusConflict, "uniqueness_error", "server name is already used")
	}
	if !serverTypes[typeName].offered(loc.Name) {
		return invalid("invalid input in field 'server_type': %s is not supported in location %s", typeName, loc.Name)
	}
	if s.unavailableLocked(loc.Name, typeName) {
		return errorResp(http.StatusPreconditionFailed, "resource_unavailable", fmt.Sprintf("server type %s is currently not available in location %s", typeName, loc.Name))
	}
	var firewalls []int64
	for _, f := range req.Firewalls {
		if s.firewalls[f.Firewall] == nil {
			return invalid("invalid input in field 'firewalls': firewall %d not found", f.Firewall)
		}
		firewalls = append(firewalls, f.Firewall)
	}
	if s.opts.MaxServers > 0 && len(s.servers) >= s.opts.MaxServers {
		return errorResp(http.StatusForbidden, "resource_limit_exceeded", "server limit exceeded")
	}
	ip, err := s.opts.Addresses.Allocate()
	if err != nil {
		return errorResp(http.StatusPreconditionFailed, "resource_unavailable", "no IPv4 address available: "+err.Error())
	}
	now := time.Now().UTC()
	s.nextServerID++
	sv := &server{
		id: s.nextServerID, name: req.Name, status: "initializing", created: now, labels: labels, ipv4: ip,
		serverType: typeName, location: loc.Name, image: image, userData: req.UserData,
	}
	if err := s.attachLocked(sv, req.SSHKeys, req.Networks); err != nil {
		s.opts.Addresses.Release(ip)
		return invalid("%v", err)
	}
	s.servers[sv.id] = sv
	s.byName[sv.name] = sv
	s.recordLocked(Event{Kind: EventServerCreate, ServerID: sv.id, Name: sv.name, Time: now})
	for _, id := range firewalls {
		s.applyFirewallLocked(s.firewalls[id], sv, now)
	}

	var startAction *action
	fail := d.actionError
	create := s.newActionLocked(sv, "create_server", now, s.opts.CreateDuration, func(now time.Time) {
		if fail {
			s.failPendingLocked(sv, now, "action_failed", "server creation failed (injected fault)")
			sv.status = "off"
			s.recordLocked(Event{Kind: EventServerCreateFailed, ServerID: sv.id, Name: sv.name, Time: now})
			return
		}
		for _, id := range sv.actions {
			if a := s.actions[id]; a.status == "running" {
				if a.timer != nil {
					a.timer.Stop()
				}
				a.succeed(now)
			}
		}
		if startAction == nil {
			sv.status = "off"
			return
		}
		s.runningLocked(sv, now)
	})
	resp := createServerResponse{
		Server:      sv.schema(s.unavailableLocked),
		Action:      create.schema(now),
		NextActions: []schema.Action{},
	}
	if start {
		// start_server runs alongside and completes with the create.
		startAction = s.newActionLocked(sv, "start_server", now, s.opts.CreateDuration, nil)
		resp.NextActions = append(resp.NextActions, startAction.schema(now))
	}
	return http.StatusCreated, resp
}

func (s *Server) getServer(_ *http.Request, id int64, _ decision) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sv := s.servers[id]
	if sv == nil {
		return errorResp(http.StatusNotFound, "not_found", "server not found")
	}
	return http.StatusOK, getServerResponse{Server: sv.schema(s.unavailableLocked)}
}

// serverListResponse and actionListResponse are list answers: the items
// and the pagination meta.
type serverListResponse struct {
	Servers []serverJSON `json:"servers"`
	schema.MetaResponse
}

type createServerResponse struct {
	Server       serverJSON      `json:"server"`
	Action       schema.Action   `json:"action"`
	NextActions  []schema.Action `json:"next_actions"`
	RootPassword *string         `json:"root_password"`
}

type getServerResponse struct {
	Server serverJSON `json:"server"`
}

type actionListResponse struct {
	schema.ActionListResponse
	schema.MetaResponse
}

func (s *Server) listServers(r *http.Request, _ int64, _ decision) (int, any) {
	q := r.URL.Query()
	sel, err := ParseSelector(q.Get("label_selector"))
	if err != nil {
		return errorResp(http.StatusBadRequest, "invalid_input", err.Error())
	}
	page, perPage, err := pageParams(q)
	if err != nil {
		return errorResp(http.StatusBadRequest, "invalid_input", err.Error())
	}
	name, statuses := q.Get("name"), q["status"]

	s.mu.Lock()
	defer s.mu.Unlock()
	var all []*server
	for _, sv := range s.servers {
		if name != "" && sv.name != name {
			continue
		}
		if len(statuses) > 0 && !slices.Contains(statuses, sv.status) {
			continue
		}
		if !sel.Matches(sv.labels) {
			continue
		}
		all = append(all, sv)
	}
	slices.SortFunc(all, func(a, b *server) int { return cmp.Compare(a.id, b.id) })
	items, meta := paginate(all, page, perPage)
	resp := serverListResponse{MetaResponse: schema.MetaResponse{Meta: schema.Meta{Pagination: &meta}}}
	resp.Servers = make([]serverJSON, 0, len(items))
	for _, sv := range items {
		resp.Servers = append(resp.Servers, sv.schema(s.unavailableLocked))
	}
	return http.StatusOK, resp
}

func (s *Server) deleteServer(_ *http.Request, id int64, _ decision) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sv := s.servers[id]
	if sv == nil {
		return errorResp(http.StatusNotFound, "not_found", "server not found")
	}
	now := time.Now().UTC()
	if sv.deleting != 0 {
		return http.StatusOK, schema.ServerDeleteResponse{Action: s.actions[sv.deleting].schema(now)}
	}
	// A server deleted while it is still being created or started never
	// runs.
	s.failPendingLocked(sv, now, "action_failed", "server was deleted")
	sv.status = "deleting"
	s.recordLocked(Event{Kind: EventServerDelete, ServerID: sv.id, Name: sv.name, Time: now})
	a := s.newActionLocked(sv, "delete_server", now, s.opts.DeleteDuration, func(now time.Time) {
		s.actions[sv.deleting].succeed(now)
		delete(s.servers, sv.id)
		delete(s.byName, sv.name)
		s.opts.Addresses.Release(sv.ipv4)
		if h := s.opts.OnServerDeleted; h != nil {
			vm := sv.vm()
			s.hooks.push(func() { h(vm) })
		}
	})
	sv.deleting = a.id
	return http.StatusOK, schema.ServerDeleteResponse{Action: a.schema(now)}
}

func (s *Server) poweronServer(_ *http.Request, id int64, _ decision) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sv := s.servers[id]
	if sv == nil {
		return errorResp(http.StatusNotFound, "not_found", "server not found")
	}
	now := time.Now().UTC()
	switch sv.status {
	case "off":
	case "running":
		a := s.newActionLocked(sv, "start_server", now, 0, nil)
		a.succeed(now)
		return http.StatusCreated, schema.ServerActionPoweronResponse{Action: a.schema(now)}
	default:
		return errorResp(http.StatusLocked, "locked", "server is "+sv.status)
	}
	sv.status = "starting"
	s.recordLocked(Event{Kind: EventServerPoweron, ServerID: sv.id, Name: sv.name, Time: now})
	var a *action
	a = s.newActionLocked(sv, "start_server", now, s.opts.StartDuration, func(now time.Time) {
		a.succeed(now)
		s.runningLocked(sv, now)
	})
	return http.StatusCreated, schema.ServerActionPoweronResponse{Action: a.schema(now)}
}

func (s *Server) listServerActions(r *http.Request, id int64, _ decision) (int, any) {
	q := r.URL.Query()
	page, perPage, err := pageParams(q)
	if err != nil {
		return errorResp(http.StatusBadRequest, "invalid_input", err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sv := s.servers[id]
	if sv == nil {
		return errorResp(http.StatusNotFound, "not_found", "server not found")
	}
	return http.StatusOK, s.actionListLocked(sv.actions, q["status"], page, perPage)
}

func (s *Server) listActions(r *http.Request, _ int64, _ decision) (int, any) {
	q := r.URL.Query()
	page, perPage, err := pageParams(q)
	if err != nil {
		return errorResp(http.StatusBadRequest, "invalid_input", err.Error())
	}
	if len(q["id"]) == 0 {
		return errorResp(http.StatusBadRequest, "invalid_input", "at least one id is required")
	}
	ids := make([]int64, 0, len(q["id"]))
	for _, v := range q["id"] {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return errorResp(http.StatusBadRequest, "invalid_input", fmt.Sprintf("invalid id %q", v))
		}
		ids = append(ids, id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return http.StatusOK, s.actionListLocked(ids, q["status"], page, perPage)
}

// actionListLocked lists the existing actions among ids, by id.
func (s *Server) actionListLocked(ids []int64, statuses []string, page, perPage int) actionListResponse {
	now := time.Now().UTC()
	var found []*action
	for _, id := range ids {
		a := s.actions[id]
		if a == nil || (len(statuses) > 0 && !slices.Contains(statuses, a.status)) {
			continue
		}
		found = append(found, a)
	}
	slices.SortFunc(found, func(a, b *action) int { return cmp.Compare(a.id, b.id) })
	found = slices.CompactFunc(found, func(a, b *action) bool { return a.id == b.id })
	items, meta := paginate(found, page, perPage)
	resp := actionListResponse{MetaResponse: schema.MetaResponse{Meta: schema.Meta{Pagination: &meta}}}
	resp.Actions = make([]schema.Action, 0, len(items))
	for _, a := range items {
		resp.Actions = append(resp.Actions, a.schema(now))
	}
	return resp
}

func (s *Server) getAction(_ *http.Request, id int64, _ decision) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.actions[id]
	if a == nil {
		return errorResp(http.StatusNotFound, "not_found", "action not found")
	}
	return http.StatusOK, schema.ActionGetResponse{Action: a.schema(time.Now().UTC())}
}

// Hetzner's pagination: per_page defaults to 25 and is capped at 50.
const (
	defaultPerPage = 25
	maxPerPage     = 50
)

func pageParams(q url.Values) (page, perPage int, err error) {
	page, perPage = 1, defaultPerPage
	if v := q.Get("page"); v != "" {
		if page, err = strconv.Atoi(v); err != nil || page < 1 {
			return 0, 0, fmt.Errorf("invalid page %q", v)
		}
	}
	if v := q.Get("per_page"); v != "" {
		if perPage, err = strconv.Atoi(v); err != nil || perPage < 1 {
			return 0, 0, fmt.Errorf("invalid per_page %q", v)
		}
		perPage = min(perPage, maxPerPage)
	}
	return page, perPage, nil
}

func paginate[T any](all []T, page, perPage int) ([]T, schema.MetaPagination) {
	last := max(1, (len(all)+perPage-1)/perPage)
	meta := schema.MetaPagination{Page: page, PerPage: perPage, LastPage: last, TotalEntries: len(all)}
	if page > 1 {
		meta.PreviousPage = page - 1
	}
	if page < last {
		meta.NextPage = page + 1
	}
	lo := min(len(all), (page-1)*perPage)
	hi := min(len(all), lo+perPage)
	return all[lo:hi], meta
}
