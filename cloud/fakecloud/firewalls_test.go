package fakecloud

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
)

func firewallBody(name string, source string) map[string]any {
	return map[string]any{"name": name, "labels": map[string]string{"managed-by": "tdf"},
		"rules": []map[string]any{{"direction": "in", "protocol": "tcp", "port": "8080", "source_ips": []string{source}}}}
}

// A firewall is unique by name, is applied at a server's creation when the
// create names it, cannot be deleted while applied, and can be deleted
// (204, no body) once its servers are gone.
func TestFirewallLifecycle(t *testing.T) {
	f, ts := startFake(t, Options{CreateDuration: 20 * time.Millisecond, DeleteDuration: 20 * time.Millisecond, RateLimit: -1})
	a := call(t, ts, "POST", "/v1/firewalls", DefaultToken, firewallBody("fw", "10.0.0.0/8"))
	if a.status != http.StatusCreated {
		t.Fatalf("create firewall = %d %s", a.status, a.body)
	}
	fw := decode[schema.FirewallCreateResponse](t, a).Firewall
	wantError(t, call(t, ts, "POST", "/v1/firewalls", DefaultToken, firewallBody("fw", "10.0.0.0/8")), http.StatusConflict, "uniqueness_error")
	wantError(t, call(t, ts, "POST", "/v1/firewalls", DefaultToken, firewallBody("bad", "10.0.0.1")), http.StatusUnprocessableEntity, "invalid_input")

	body := createBody("node-1", map[string]string{"managed-by": "tdf"})
	body["firewalls"] = []map[string]int64{{"firewall": fw.ID}}
	srv := decode[createServerResponse](t, call(t, ts, "POST", "/v1/servers", DefaultToken, body)).Server
	if len(srv.PublicNet.Firewalls) != 1 || srv.PublicNet.Firewalls[0].ID != fw.ID {
		t.Fatalf("server firewalls %+v, want %d applied", srv.PublicNet.Firewalls, fw.ID)
	}
	path := fmt.Sprintf("/v1/firewalls/%d", fw.ID)
	wantError(t, call(t, ts, "DELETE", path, DefaultToken, nil), http.StatusUnprocessableEntity, "resource_in_use")
	wantError(t, call(t, ts, "POST", path+"/actions/apply_to_resources", DefaultToken,
		map[string]any{"apply_to": []map[string]any{{"type": "server", "server": map[string]int64{"id": srv.ID}}}}),
		http.StatusUnprocessableEntity, "firewall_already_applied")

	call(t, ts, "DELETE", fmt.Sprintf("/v1/servers/%d", srv.ID), DefaultToken, nil)
	eventually(t, 5*time.Second, "the server gone", func() bool { return len(f.Servers()) == 0 })
	req, _ := http.NewRequest("DELETE", ts.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+DefaultToken)
	resp, err := ts.Client().Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete unused firewall = %v %v, want 204", resp, err)
	}
	resp.Body.Close()
	if n := len(f.Firewalls()); n != 0 {
		t.Errorf("%d firewalls left", n)
	}
}

// Out of stock and full locations: 412 resource_unavailable there only,
// and /server_types says which.
func TestUnavailableAndLocationFaults(t *testing.T) {
	f, ts := startFake(t, Options{RateLimit: -1, Unavailable: map[string][]string{"hel1": {"cx23"}},
		Faults: []Fault{{Endpoint: EndpointCreateServer, Location: "nbg1", Kind: FaultResourceUnavailable}}})
	in := func(name, loc, typ string) map[string]any {
		b := createBody(name, nil)
		b["location"], b["server_type"] = loc, typ
		return b
	}
	wantError(t, call(t, ts, "POST", "/v1/servers", DefaultToken, in("a", "hel1", "cx23")), http.StatusPreconditionFailed, "resource_unavailable")
	wantError(t, call(t, ts, "POST", "/v1/servers", DefaultToken, in("b", "nbg1", "cx23")), http.StatusPreconditionFailed, "resource_unavailable")
	wantError(t, call(t, ts, "POST", "/v1/servers", DefaultToken, in("c", "ash", "cx23")), http.StatusUnprocessableEntity, "invalid_input")
	for _, ok := range []map[string]any{in("d", "hel1", "cx33"), in("e", "fsn1", "cx23")} {
		if a := call(t, ts, "POST", "/v1/servers", DefaultToken, ok); a.status != http.StatusCreated {
			t.Errorf("create %v = %d %s", ok, a.status, a.body)
		}
	}
	types := decode[serverTypeListResponse](t, call(t, ts, "GET", "/v1/server_types?name=cx23", DefaultToken, nil)).ServerTypes
	if len(types) != 1 {
		t.Fatalf("server types %+v", types)
	}
	for _, l := range types[0].Locations {
		if l.Available != (l.Name != "hel1") {
			t.Errorf("cx23 in %s: available %v", l.Name, l.Available)
		}
	}
	if n := len(f.Servers()); n != 2 {
		t.Errorf("%d servers, want 2", n)
	}
}
