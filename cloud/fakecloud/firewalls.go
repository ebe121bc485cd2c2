package fakecloud

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
)

// firewall is the fake's state of one firewall. Rules are kept as given;
// the servers it is applied to are kept on both sides (server.firewalls).
type firewall struct {
	id      int64
	name    string
	labels  map[string]string
	rules   []schema.FirewallRule
	created time.Time
}

// Firewall is a firewall as the simulated world and checkers see it.
type Firewall struct {
	ID      int64                 `json:"id"`
	Name    string                `json:"name"`
	Labels  map[string]string     `json:"labels"`
	Rules   []schema.FirewallRule `json:"rules"`
	Servers []int64               `json:"servers"` // applied to
}

func (s *Server) firewallSchemaLocked(fw *firewall) schema.Firewall {
	out := schema.Firewall{ID: fw.id, Name: fw.name, Labels: maps.Clone(fw.labels), Created: fw.created,
		Rules: slices.Clone(fw.rules), AppliedTo: []schema.FirewallResource{}}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	for _, id := range s.firewallServersLocked(fw.id) {
		out.AppliedTo = append(out.AppliedTo, schema.FirewallResource{Type: "server", Server: &schema.FirewallResourceServer{ID: id}})
	}
	return out
}

func (s *Server) firewallServersLocked(id int64) []int64 {
	var out []int64
	for _, sv := range s.servers {
		if slices.Contains(sv.firewalls, id) {
			out = append(out, sv.id)
		}
	}
	slices.Sort(out)
	return out
}

// Firewalls returns every firewall with the servers it is applied to.
func (s *Server) Firewalls() []Firewall {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Firewall, 0, len(s.firewalls))
	for _, fw := range s.firewalls {
		out = append(out, Firewall{ID: fw.id, Name: fw.name, Labels: maps.Clone(fw.labels), Rules: slices.Clone(fw.rules),
			Servers: s.firewallServersLocked(fw.id)})
	}
	slices.SortFunc(out, func(a, b Firewall) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func validRules(rules []schema.FirewallRuleRequest) error {
	for i, r := range rules {
		switch {
		case r.Direction != "in" && r.Direction != "out":
			return fmt.Errorf("rules[%d]: direction %q is not in or out", i, r.Direction)
		case !slices.Contains([]string{"tcp", "udp", "icmp", "esp", "gre"}, r.Protocol):
			return fmt.Errorf("rules[%d]: protocol %q is unknown", i, r.Protocol)
		case (r.Protocol == "tcp" || r.Protocol == "udp") && (r.Port == nil || *r.Port == ""):
			return fmt.Errorf("rules[%d]: a %s rule needs a port", i, r.Protocol)
		case r.Direction == "in" && len(r.SourceIPs) == 0:
			return fmt.Errorf("rules[%d]: an in rule needs source_ips", i)
		}
		for _, ip := range append(slices.Clone(r.SourceIPs), r.DestinationIPs...) {
			if _, err := netip.ParsePrefix(ip); err != nil {
				return fmt.Errorf("rules[%d]: %q is not a CIDR", i, ip)
			}
		}
	}
	return nil
}

type firewallListResponse struct {
	schema.FirewallListResponse
	schema.MetaResponse
}

func (s *Server) createFirewall(r *http.Request, _ int64, _ decision) (int, any) {
	var req schema.FirewallCreateRequest
	if err := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20)).Decode(&req); err != nil {
		return errorResp(http.StatusBadRequest, "json_error", "invalid JSON: "+err.Error())
	}
	if req.Name == "" || len(req.Name) > 128 {
		return errorResp(http.StatusUnprocessableEntity, "invalid_input", "invalid input in field 'name'")
	}
	var labels map[string]string
	if req.Labels != nil {
		labels = maps.Clone(*req.Labels)
	}
	if err := validLabels(labels); err != nil {
		return errorResp(http.StatusUnprocessableEntity, "invalid_input", "invalid input in field 'labels': "+err.Error())
	}
	if err := validRules(req.Rules); err != nil {
		return errorResp(http.StatusUnprocessableEntity, "invalid_input", "invalid input in field 'rules': "+err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, fw := range s.firewalls {
		if fw.name == req.Name {
			return errorResp(http.StatusConflict, "uniqueness_error", "firewall name is already used")
		}
	}
	now := time.Now().UTC()
	s.nextFirewallID++
	fw := &firewall{id: s.nextFirewallID, name: req.Name, labels: labels, created: now, rules: []schema.FirewallRule{}}
	for _, r := range req.Rules {
		fw.rules = append(fw.rules, schema.FirewallRule{Direction: r.Direction, SourceIPs: nonNil(r.SourceIPs),
			DestinationIPs: nonNil(r.DestinationIPs), Protocol: r.Protocol, Port: r.Port, Description: r.Description})
	}
	s.firewalls[fw.id] = fw
	s.recordLocked(Event{Kind: EventFirewallCreate, Name: fw.name, Detail: fmt.Sprint(fw.id), Time: now})
	resp := schema.FirewallCreateResponse{Actions: []schema.Action{}}
	for _, res := range req.ApplyTo {
		if res.Server == nil || s.servers[res.Server.ID] == nil {
			continue
		}
		resp.Actions = append(resp.Actions, s.applyFirewallLocked(fw, s.servers[res.Server.ID], now))
	}
	resp.Firewall = s.firewallSchemaLocked(fw)
	return http.StatusCreated, resp
}

func nonNil(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

// applyFirewallLocked applies fw to sv at once and returns the finished
// apply_firewall action.
func (s *Server) applyFirewallLocked(fw *firewall, sv *server, now time.Time) schema.Action {
	sv.firewalls = append(sv.firewalls, fw.id)
	s.recordLocked(Event{Kind: EventFirewallApply, ServerID: sv.id, Name: fw.name, Detail: fmt.Sprint(fw.id), Time: now})
	s.nextActionID++
	a := &action{id: s.nextActionID, command: "apply_firewall", status: "running", serverID: sv.id, started: now,
		resources: []schema.ActionResourceReference{{ID: fw.id, Type: "firewall"}, {ID: sv.id, Type: "server"}}}
	a.succeed(now)
	s.actions[a.id] = a
	return a.schema(now)
}

func (s *Server) listFirewalls(r *http.Request, _ int64, _ decision) (int, any) {
	q := r.URL.Query()
	sel, err := ParseSelector(q.Get("label_selector"))
	if err != nil {
		return errorResp(http.StatusBadRequest, "invalid_input", err.Error())
	}
	page, perPage, err := pageParams(q)
	if err != nil {
		return errorResp(http.StatusBadRequest, "invalid_input", err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []*firewall
	for _, fw := range s.firewalls {
		if (q.Get("name") == "" || fw.name == q.Get("name")) && sel.Matches(fw.labels) {
			all = append(all, fw)
		}
	}
	slices.SortFunc(all, func(a, b *firewall) int { return cmp.Compare(a.id, b.id) })
	items, meta := paginate(all, page, perPage)
	resp := firewallListResponse{MetaResponse: schema.MetaResponse{Meta: schema.Meta{Pagination: &meta}}}
	resp.Firewalls = make([]schema.Firewall, 0, len(items))
	for _, fw := range items {
		resp.Firewalls = append(resp.Firewalls, s.firewallSchemaLocked(fw))
	}
	return http.StatusOK, resp
}

func (s *Server) getFirewall(_ *http.Request, id int64, _ decision) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fw := s.firewalls[id]
	if fw == nil {
		return errorResp(http.StatusNotFound, "not_found", "firewall not found")
	}
	return http.StatusOK, schema.FirewallGetResponse{Firewall: s.firewallSchemaLocked(fw)}
}

// deleteFirewall answers 204 without a body, as the API description says
// (hcloud-go reads no body on this call).
func (s *Server) deleteFirewall(_ *http.Request, id int64, _ decision) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fw := s.firewalls[id]
	if fw == nil {
		return errorResp(http.StatusNotFound, "not_found", "firewall not found")
	}
	if len(s.firewallServersLocked(id)) > 0 {
		return errorResp(http.StatusUnprocessableEntity, "resource_in_use", "firewall is still applied to resources")
	}
	delete(s.firewalls, id)
	s.recordLocked(Event{Kind: EventFirewallDelete, Name: fw.name, Detail: fmt.Sprint(fw.id), Time: time.Now().UTC()})
	return http.StatusNoContent, nil
}

func (s *Server) applyFirewall(r *http.Request, id int64, _ decision) (int, any) {
	var req schema.FirewallActionApplyToResourcesRequest
	if err := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20)).Decode(&req); err != nil {
		return errorResp(http.StatusBadRequest, "json_error", "invalid JSON: "+err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fw := s.firewalls[id]
	if fw == nil {
		return errorResp(http.StatusNotFound, "not_found", "firewall not found")
	}
	now := time.Now().UTC()
	resp := schema.FirewallActionApplyToResourcesResponse{Actions: []schema.Action{}}
	for _, res := range req.ApplyTo {
		if res.Type != "server" || res.Server == nil {
			return errorResp(http.StatusUnprocessableEntity, "invalid_input", "only servers can be named")
		}
		sv := s.servers[res.Server.ID]
		switch {
		case sv == nil:
			return errorResp(http.StatusNotFound, "not_found", fmt.Sprintf("server %d not found", res.Server.ID))
		case slices.Contains(sv.firewalls, id):
			return errorResp(http.StatusUnprocessableEntity, "firewall_already_applied", "firewall is already applied to the server")
		}
		resp.Actions = append(resp.Actions, s.applyFirewallLocked(fw, sv, now))
	}
	return http.StatusCreated, resp
}
