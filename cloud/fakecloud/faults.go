package fakecloud

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Endpoints a fault can target.
const (
	EndpointAll               = "*"
	EndpointCreateServer      = "create_server"       // POST /servers
	EndpointListServers       = "list_servers"        // GET /servers
	EndpointGetServer         = "get_server"          // GET /servers/{id}
	EndpointDeleteServer      = "delete_server"       // DELETE /servers/{id}
	EndpointPoweronServer     = "poweron_server"      // POST /servers/{id}/actions/poweron
	EndpointListServerActions = "list_server_actions" // GET /servers/{id}/actions
	EndpointListActions       = "list_actions"        // GET /actions
	EndpointGetAction         = "get_action"          // GET /actions/{id}
	EndpointCreateFirewall    = "create_firewall"     // POST /firewalls
	EndpointListFirewalls     = "list_firewalls"      // GET /firewalls
	EndpointGetFirewall       = "get_firewall"        // GET /firewalls/{id}
	EndpointDeleteFirewall    = "delete_firewall"     // DELETE /firewalls/{id}
	EndpointApplyFirewall     = "apply_firewall"      // POST /firewalls/{id}/actions/apply_to_resources
	EndpointListServerTypes   = "list_server_types"   // GET /server_types
	EndpointListLocations     = "list_locations"      // GET /locations
	EndpointGetPricing        = "get_pricing"         // GET /pricing
	EndpointListSSHKeys       = "list_ssh_keys"       // GET /ssh_keys
	EndpointListNetworks      = "list_networks"       // GET /networks
)

var endpoints = map[string]bool{
	EndpointAll: true, EndpointCreateServer: true, EndpointListServers: true, EndpointGetServer: true,
	EndpointDeleteServer: true, EndpointPoweronServer: true, EndpointListServerActions: true,
	EndpointListActions: true, EndpointGetAction: true, EndpointCreateFirewall: true, EndpointListFirewalls: true,
	EndpointGetFirewall: true, EndpointDeleteFirewall: true, EndpointApplyFirewall: true,
	EndpointListServerTypes: true, EndpointListLocations: true, EndpointGetPricing: true,
	EndpointListSSHKeys: true, EndpointListNetworks: true,
}

// FaultKind is what a fault does.
type FaultKind string

// Fault kinds. The error kinds answer with Hetzner's status and code and
// have no effect.
const (
	FaultRateLimit           FaultKind = "rate_limit"           // 429 rate_limit_exceeded
	FaultConflict            FaultKind = "conflict"             // 409 conflict
	FaultResourceUnavailable FaultKind = "resource_unavailable" // 412 resource_unavailable
	FaultServerError         FaultKind = "server_error"         // 500 server_error
	FaultBadGateway          FaultKind = "bad_gateway"          // 502 bad_gateway
	FaultUnavailable         FaultKind = "unavailable"          // 503 unavailable
	FaultTimeout             FaultKind = "timeout"              // 504 timeout
	// FaultError answers with the fault's Status and Code.
	FaultError FaultKind = "error"
	// FaultSlow waits Delay before handling the request; if the client
	// has gone by then, the request has no effect.
	FaultSlow FaultKind = "slow"
	// FaultSlowAnswer handles the request (its effect happens) and then
	// waits Delay before answering: a client that times out meanwhile
	// never learns of the effect, and hcloud-go re-sends the request.
	FaultSlowAnswer FaultKind = "slow_answer"
	// FaultActionError makes the create action of a create_server fail
	// (status error); the server is left behind, off.
	FaultActionError FaultKind = "action_error"
)

var errorKinds = map[FaultKind]struct {
	status int
	code   string
	msg    string
}{
	FaultRateLimit:           {http.StatusTooManyRequests, "rate_limit_exceeded", "limit of requests per hour reached"},
	FaultConflict:            {http.StatusConflict, "conflict", "resource has changed during the request, please retry"},
	FaultResourceUnavailable: {http.StatusPreconditionFailed, "resource_unavailable", "server type currently not available in this location"},
	FaultServerError:         {http.StatusInternalServerError, "server_error", "error within the API backend"},
	FaultBadGateway:          {http.StatusBadGateway, "bad_gateway", "request could not be answered by the API backend"},
	FaultUnavailable:         {http.StatusServiceUnavailable, "unavailable", "service currently unavailable"},
	FaultTimeout:             {http.StatusGatewayTimeout, "timeout", "request could not be answered in time"},
}

// Fault is an injected failure. It applies to requests to Endpoint (a name
// above; "" or "*" is every /v1 endpoint, though FaultActionError only
// affects create_server). With Probability in (0, 1] it fires for each
// matching request with that probability, otherwise for every one; Count > 0
// stops it after Count firings.
//
// When several faults fire for one request, the first of each sort (slow,
// error, slow answer, action error) applies, in list order.
type Fault struct {
	Endpoint string    `json:"endpoint,omitempty"`
	Kind     FaultKind `json:"kind"`
	// Location, if set, limits the fault to server creations in that
	// location (a full location: resource_unavailable there only).
	Location    string  `json:"location,omitempty"`
	Probability float64 `json:"probability,omitempty"`
	Count       int     `json:"count,omitempty"`
	// Delay is the wait of FaultSlow and FaultSlowAnswer. In JSON a
	// duration string ("1.5s") or a number of milliseconds.
	Delay Duration `json:"delay,omitempty"`
	// Status and Code are the answer of FaultError.
	Status int    `json:"status,omitempty"`
	Code   string `json:"code,omitempty"`
	// Fired counts how often the fault fired (reported by Faults and GET
	// /fake/faults; ignored on input).
	Fired int `json:"fired,omitempty"`
}

// Validate reports a fault that cannot work.
func (f Fault) Validate() error {
	if f.Endpoint != "" && !endpoints[f.Endpoint] {
		return fmt.Errorf("fault: unknown endpoint %q", f.Endpoint)
	}
	if f.Probability < 0 || f.Probability > 1 {
		return fmt.Errorf("fault: probability %v not in [0, 1]", f.Probability)
	}
	if f.Count < 0 {
		return fmt.Errorf("fault: count %d is negative", f.Count)
	}
	switch f.Kind {
	case FaultSlow, FaultSlowAnswer:
		if f.Delay <= 0 {
			return fmt.Errorf("fault: %s needs a positive delay", f.Kind)
		}
	case FaultError:
		if f.Status < 400 || f.Status > 599 || f.Code == "" {
			return fmt.Errorf("fault: error needs a status in 400..599 and a code")
		}
	case FaultActionError:
	default:
		if _, ok := errorKinds[f.Kind]; !ok {
			return fmt.Errorf("fault: unknown kind %q", f.Kind)
		}
	}
	return nil
}

// Duration is a time.Duration that reads and writes JSON as a duration
// string; it also reads a number of milliseconds.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = Duration(v)
		return nil
	}
	ms, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("duration: want a string like \"1.5s\" or milliseconds, got %s", b)
	}
	*d = Duration(ms * float64(time.Millisecond))
	return nil
}

// FaultsRequest is the body of POST /fake/faults: the faults replace the
// current ones, or are appended to them if Append is set. GET /fake/faults
// answers with the same shape.
type FaultsRequest struct {
	Faults []Fault `json:"faults"`
	Append bool    `json:"append,omitempty"`
}

// SetFaults replaces the injected faults. An empty list clears them.
func (s *Server) SetFaults(faults ...Fault) error {
	for _, f := range faults {
		if err := f.Validate(); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
	for _, f := range faults {
		s.faults = append(s.faults, &faultState{Fault: f})
	}
	return nil
}

// AddFault appends a fault to the injected ones.
func (s *Server) AddFault(f Fault) error {
	if err := f.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &faultState{Fault: f})
	return nil
}

// Faults returns the injected faults with how often each fired.
func (s *Server) Faults() []Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Fault, 0, len(s.faults))
	for _, f := range s.faults {
		out = append(out, f.Fault)
	}
	return out
}

type faultState struct {
	Fault
}

// decision is what the faults do to one request.
type decision struct {
	pre         time.Duration // FaultSlow
	errStatus   int
	errCode     string
	errMsg      string
	post        time.Duration // FaultSlowAnswer
	actionError bool
}

// decideLocked rolls the faults for one request to endpoint.
func (s *Server) decideLocked(endpoint, location string) decision {
	var d decision
	for _, f := range s.faults {
		if f.Endpoint != "" && f.Endpoint != EndpointAll && f.Endpoint != endpoint {
			continue
		}
		if f.Location != "" && (endpoint != EndpointCreateServer || f.Location != location) {
			continue
		}
		if f.Kind == FaultActionError && endpoint != EndpointCreateServer {
			continue
		}
		if f.Count > 0 && f.Fired >= f.Count {
			continue
		}
		// Only a fault that would change this request is rolled and
		// counted: a second error fault must not eat its count for nothing.
		switch {
		case f.Kind == FaultSlow && d.pre > 0,
			f.Kind == FaultSlowAnswer && d.post > 0,
			f.Kind == FaultActionError && d.actionError,
			(f.Kind == FaultError || errorKinds[f.Kind].status != 0) && d.errStatus != 0:
			continue
		}
		if f.Probability > 0 && s.rng.Float64() >= f.Probability {
			continue
		}
		f.Fired++
		switch f.Kind {
		case FaultSlow:
			d.pre = time.Duration(f.Delay)
		case FaultSlowAnswer:
			d.post = time.Duration(f.Delay)
		case FaultActionError:
			d.actionError = true
		case FaultError:
			d.errStatus, d.errCode, d.errMsg = f.Status, f.Code, "injected fault"
		default:
			k := errorKinds[f.Kind]
			d.errStatus, d.errCode, d.errMsg = k.status, k.code, k.msg
		}
	}
	return d
}
