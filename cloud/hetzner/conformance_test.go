package hetzner

import (
	"net/http"
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
	e, chk := checkedEnv(t, fo, Options{MaxRetries: -1})
	ctx := ctxFor(t, time.Minute)

	srv, act, err := e.p.CreateServer(ctx, spec("node-c1"))
	if err != nil {
		t.Fatal(err)
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
	if err := e.p.DeleteServer(ctx, srv.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.p.DeleteServer(ctx, 999999999); err != nil {
		t.Fatal(err)
	}
	reportConformance(t, chk)
}
