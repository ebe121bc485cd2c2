package hetzner

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/tdf-project/tdf/cloud"
	"github.com/tdf-project/tdf/cloud/apicheck"
	"github.com/tdf-project/tdf/cloud/fakecloud"
)

// checkedEnv is newEnv with every exchange checked against Hetzner's API
// description.
func checkedEnv(t *testing.T, fo fakecloud.Options, po Options) (*env, *apicheck.Checker) {
	t.Helper()
	chk, err := apicheck.New()
	if err != nil {
		t.Fatal(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	po.Transport = chk.Transport(tr)
	return newEnv(t, fo, po), chk
}

// reportConformance fails the test for every deviation and logs what was
// covered.
func reportConformance(t *testing.T, chk *apicheck.Checker) {
	t.Helper()
	devs := chk.Deviations()
	for _, d := range devs {
		t.Errorf("outside the API description: %s", d)
	}
	t.Logf("%d exchanges checked, %d outside the description; operations: %v", chk.Exchanges(), len(devs), chk.Operations())
}

// TestConformanceProviderCalls drives every call the provider makes, and
// the error answers it must understand, through the API description.
func TestConformanceProviderCalls(t *testing.T) {
	fo := fakecloud.DefaultOptions()
	fo.CreateDuration, fo.StartDuration, fo.DeleteDuration, fo.RateLimit = 100*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond, -1
	fo.SSHKeys = []fakecloud.SSHKey{{Name: "ops", PublicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx3 ops@example"}}
	fo.Networks = []fakecloud.Network{{Name: "agents", IPRange: "10.0.0.0/16"}}
	e, chk := checkedEnv(t, fo, Options{MaxRetries: -1, Firewall: testFirewall(), SSHKeys: []string{"ops"}, Network: "agents", AgentOverNetwork: true})
	ctx := ctxFor(t, time.Minute)

	cat, err := e.p.Catalog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := cat.Check("cx23", "fsn1"); err != nil {
		t.Fatal(err)
	}

	srv, act, err := e.p.CreateServer(ctx, spec("node-c1"))
	if err != nil {
		t.Fatal(err)
	}
	if srv.IPv4 != "10.0.0.2" {
		t.Errorf("the agent's address is %q, want its address in the private network, 10.0.0.2", srv.IPv4)
	}
	// Adopting while the create runs lists the server's actions.
	if _, _, err := e.p.CreateServer(ctx, spec("node-c1")); err != nil {
		t.Fatal(err)
	}
	e.waitDone(t, act.ID)
	if _, err := e.p.GetServer(ctx, srv.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.GetServerByName(ctx, "node-c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.ListServers(ctx, "managed-by=tdf,node in (node-c1,node-c2)"); err != nil {
		t.Fatal(err)
	}
	if s, _ := e.p.GetServer(ctx, 999999999); s != nil {
		t.Fatal("an absent server was found")
	}
	if _, err := e.p.GetAction(ctx, 999999999); err == nil {
		t.Fatal("an absent action was found")
	}

	// The error answers, each once.
	for _, f := range []fakecloud.Fault{
		{Endpoint: fakecloud.EndpointCreateServer, Kind: fakecloud.FaultError, Status: http.StatusConflict, Code: "uniqueness_error", Count: 1},
		{Endpoint: fakecloud.EndpointCreateServer, Kind: fakecloud.FaultResourceUnavailable, Count: 1},
		{Endpoint: fakecloud.EndpointCreateServer, Kind: fakecloud.FaultRateLimit, Count: 1},
		{Endpoint: fakecloud.EndpointCreateServer, Kind: fakecloud.FaultError, Status: http.StatusLocked, Code: "locked", Count: 1},
		{Endpoint: fakecloud.EndpointCreateServer, Kind: fakecloud.FaultServerError, Count: 1},
	} {
		if err := e.fake.SetFaults(f); err != nil {
			t.Fatal(err)
		}
		_, _, err := e.p.CreateServer(ctx, spec("node-c2"))
		if err == nil || cloud.Classify(err) == cloud.Permanent {
			t.Errorf("fault %s %s: error %v, want a transient or unknown one", f.Kind, f.Code, err)
		}
	}
	_ = e.fake.SetFaults()

	// A full location: the fallback places the server elsewhere.
	e.fake.SetUnavailable(map[string][]string{"fsn1": nil})
	fb := spec("node-c3")
	fb.FallbackLocations = []string{"nbg1"}
	placed, _, err := e.p.CreateServer(ctx, fb)
	if err != nil || placed.Location != "nbg1" || placed.Placement == "" {
		t.Fatalf("fallback create: %+v, %v", placed, err)
	}
	e.fake.SetUnavailable(nil)

	// A firewall of an earlier configuration, unused: swept.
	old := testFirewall()
	old.AgentSources = []string{"198.51.100.0/24"}
	p2, err := New(Options{Endpoint: e.ts.URL + "/v1", Token: fakecloud.DefaultToken, Firewall: old, Transport: chk.Transport(nil), MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if _, err := p2.ensureFirewall(ctx); err != nil {
		t.Fatal(err)
	}
	// A server made before firewalls were configured gets one on adoption.
	p3, err := New(Options{Endpoint: e.ts.URL + "/v1", Token: fakecloud.DefaultToken, Transport: chk.Transport(nil), MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p3.Close()
	bare, _, err := p3.CreateServer(ctx, spec("node-c4"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.p.CreateServer(ctx, spec("node-c4")); err != nil {
		t.Fatal(err)
	}
	for _, fw := range e.fake.Firewalls() {
		if slices.Contains(fw.Servers, bare.ID) != (fw.Name == fwName(testFirewall())) {
			t.Errorf("firewall %s applied to %v; server %d should have only the current one", fw.Name, fw.Servers, bare.ID)
		}
	}
	if n, err := e.p.SweepFirewalls(ctx); err != nil || n != 1 {
		t.Fatalf("SweepFirewalls = %d, %v; want the unused old firewall deleted", n, err)
	}
	if err := e.p.DeleteServer(ctx, srv.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.p.DeleteServer(ctx, 999999999); err != nil {
		t.Fatal(err)
	}
	for _, op := range []struct{ op, status string }{
		{"POST /servers", "201"}, {"GET /servers", "200"}, {"GET /servers/{id}", "200"}, {"GET /servers/{id}", "404"},
		{"DELETE /servers/{id}", "200"}, {"GET /servers/{id}/actions", "200"}, {"GET /actions/{id}", "200"},
		{"POST /firewalls", "201"}, {"POST /firewalls/{id}/actions/apply_to_resources", "201"}, {"GET /firewalls", "200"}, {"DELETE /firewalls/{id}", "204"},
		{"GET /server_types", "200"}, {"GET /ssh_keys", "200"}, {"GET /networks", "200"}, {"GET /locations", "200"}, {"GET /pricing", "200"},
		{"POST /servers", "409"}, {"POST /servers", "412"}, {"POST /servers", "423"}, {"POST /servers", "429"},
	} {
		if !chk.Covered(op.op, op.status) {
			t.Errorf("%s %s was never exercised", op.op, op.status)
		}
	}
	reportConformance(t, chk)
}

func fwName(f *FirewallOptions) string { return f.name() }

func testFirewall() *FirewallOptions {
	return &FirewallOptions{Labels: map[string]string{"managed-by": "tdf", "tdf-cluster": "conf"}, AgentPort: 8080,
		AgentSources: []string{"203.0.113.0/24"}, SSHSources: []string{"192.0.2.10/32"}}
}
