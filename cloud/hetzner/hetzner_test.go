package hetzner

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tdf-project/tdf/cloud"
	"github.com/tdf-project/tdf/cloud/fakecloud"
)

// env is a fake cloud on a free port and a provider talking to it.
type env struct {
	fake *fakecloud.Server
	ts   *httptest.Server
	p    *Provider
}

func newEnv(t *testing.T, fo fakecloud.Options, po Options) *env {
	t.Helper()
	return newWrappedEnv(t, fo, po, nil)
}

// newWrappedEnv is newEnv with the fake's handler wrapped by wrap.
func newWrappedEnv(t *testing.T, fo fakecloud.Options, po Options, wrap func(http.Handler) http.Handler) *env {
	t.Helper()
	fake := fakecloud.New(fo)
	h := fake.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	ts := httptest.NewServer(h)
	po.Endpoint = ts.URL + "/v1"
	if po.Token == "" {
		po.Token = fakecloud.DefaultToken
	}
	if po.PollInterval == 0 {
		po.PollInterval = 20 * time.Millisecond
	}
	if po.RetryBackoff == 0 {
		po.RetryBackoff = 20 * time.Millisecond
	}
	p, err := New(po)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Close()
		fake.Close()
		ts.Close()
	})
	return &env{fake: fake, ts: ts, p: p}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func spec(name string) cloud.ServerSpec {
	return cloud.ServerSpec{
		Name: name, ServerType: "cx23", Location: "fsn1", UserData: "#cloud-config\n",
		Labels: map[string]string{"managed-by": "tdf", "node": name},
	}
}

// waitDone waits for an action to finish.
func (e *env) waitDone(t *testing.T, id int64) cloud.Action {
	t.Helper()
	a, err := e.p.WaitAction(ctxFor(t, 20*time.Second), id)
	if err != nil {
		t.Fatalf("WaitAction(%d): %v", id, err)
	}
	return a
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func count(events []fakecloud.Event, kind string) int {
	n := 0
	for _, e := range events {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

func TestCreatePollRunning(t *testing.T) {
	e := newEnv(t, fakecloud.Options{CreateDuration: 300 * time.Millisecond}, Options{})
	ctx := ctxFor(t, 30*time.Second)
	s, a, err := e.p.CreateServer(ctx, spec("node-1"))
	if err != nil {
		t.Fatalf("CreateServer: %v", err)
	}
	if s.ID == 0 || s.Name != "node-1" || s.Status != "initializing" || s.IPv4 != "127.0.1.1" || s.Created.IsZero() {
		t.Errorf("CreateServer server = %+v", s)
	}
	if a.ID == 0 || a.Status != cloud.ActionRunning {
		t.Errorf("CreateServer action = %+v, want a running one", a)
	}
	if a := e.waitDone(t, a.ID); a.Status != cloud.ActionSuccess || a.Progress != 100 {
		t.Errorf("final action = %+v, want success at 100", a)
	}
	got, err := e.p.GetServer(ctx, s.ID)
	if err != nil || got == nil || got.Status != cloud.StatusRunning {
		t.Fatalf("GetServer = %+v, %v; want running", got, err)
	}
	byName, err := e.p.GetServerByName(ctx, "node-1")
	if err != nil || byName == nil || byName.ID != s.ID || byName.Labels["node"] != "node-1" {
		t.Errorf("GetServerByName = %+v, %v", byName, err)
	}
	if absent, err := e.p.GetServerByName(ctx, "node-2"); absent != nil || err != nil {
		t.Errorf("GetServerByName(absent) = %+v, %v; want nil, nil", absent, err)
	}
	if absent, err := e.p.GetServer(ctx, 42); absent != nil || err != nil {
		t.Errorf("GetServer(absent) = %+v, %v; want nil, nil", absent, err)
	}
	_, err = e.p.GetAction(ctx, 42)
	if ce := (*cloud.Error)(nil); !errors.As(err, &ce) || ce.Code != "not_found" || cloud.Classify(err) != cloud.Permanent {
		t.Errorf("GetAction(absent) error = %v, want a permanent not_found", err)
	}
	// Creating again adopts the running server: no new server, no action.
	again, a2, err := e.p.CreateServer(ctx, spec("node-1"))
	if err != nil || again.ID != s.ID || a2.ID != 0 {
		t.Errorf("CreateServer again = %+v, %+v, %v; want server %d with no action", again, a2, err, s.ID)
	}
	if n := count(e.fake.Ledger(), fakecloud.EventServerCreate); n != 1 {
		t.Errorf("ledger has %d server_create, want 1", n)
	}
}

func TestListAcrossPages(t *testing.T) {
	e := newEnv(t, fakecloud.Options{CreateDuration: 50 * time.Millisecond}, Options{ListPageSize: 7})
	ctx := ctxFor(t, 60*time.Second)
	const n = 55
	for i := range n {
		sp := spec(fmt.Sprintf("node-%d", i))
		sp.Labels["parity"] = fmt.Sprint(i % 2)
		if _, _, err := e.p.CreateServer(ctx, sp); err != nil {
			t.Fatalf("CreateServer %d: %v", i, err)
		}
	}
	foreign := cloud.ServerSpec{Name: "foreign", ServerType: "cx23", Labels: map[string]string{"managed-by": "someone-else"}}
	if _, _, err := e.p.CreateServer(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		sel  string
		want int
	}{
		{"", n + 1},
		{"managed-by=tdf", n},
		{"managed-by!=tdf", 1},
		{"managed-by=tdf,parity=0", 28},
		{"parity in (0,1)", n},
		{"node in (node-3,node-40,node-99)", 2},
		{"managed-by, !parity", 1},
		{"parity notin (1)", 29},
	}
	for _, tt := range tests {
		got, err := e.p.ListServers(ctx, tt.sel)
		if err != nil {
			t.Fatalf("ListServers(%q): %v", tt.sel, err)
		}
		if len(got) != tt.want {
			t.Errorf("ListServers(%q) = %d servers, want %d", tt.sel, len(got), tt.want)
		}
		seen := map[int64]bool{}
		for _, s := range got {
			if seen[s.ID] {
				t.Errorf("ListServers(%q) lists %d twice", tt.sel, s.ID)
			}
			seen[s.ID] = true
		}
	}
	_, err := e.p.ListServers(ctx, "a in (")
	if cloud.Classify(err) != cloud.Permanent {
		t.Errorf("ListServers(bad selector) = %v (%v), want permanent", err, cloud.Classify(err))
	}
}

func TestDelete(t *testing.T) {
	var mu sync.Mutex
	var deleted []int64
	e := newEnv(t, fakecloud.Options{
		CreateDuration: 50 * time.Millisecond, DeleteDuration: 50 * time.Millisecond,
		OnServerDeleted: func(vm fakecloud.VM) { mu.Lock(); deleted = append(deleted, vm.ID); mu.Unlock() },
	}, Options{})
	ctx := ctxFor(t, 30*time.Second)
	s, a, err := e.p.CreateServer(ctx, spec("node-1"))
	if err != nil {
		t.Fatal(err)
	}
	e.waitDone(t, a.ID)
	if err := e.p.DeleteServer(ctx, s.ID); err != nil {
		t.Fatalf("DeleteServer: %v", err)
	}
	if err := e.p.DeleteServer(ctx, s.ID); err != nil {
		t.Errorf("DeleteServer while deleting: %v", err)
	}
	eventually(t, 10*time.Second, "the server to be gone", func() bool {
		got, err := e.p.GetServer(ctx, s.ID)
		return err == nil && got == nil
	})
	if err := e.p.DeleteServer(ctx, s.ID); err != nil {
		t.Errorf("DeleteServer after it is gone: %v, want nil", err)
	}
	if err := e.p.DeleteServer(ctx, 12345); err != nil {
		t.Errorf("DeleteServer(never existed): %v, want nil", err)
	}
	eventually(t, 5*time.Second, "OnServerDeleted", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(deleted) == 1 && deleted[0] == s.ID
	})
	if n := count(e.fake.Ledger(), fakecloud.EventServerDelete); n != 1 {
		t.Errorf("ledger has %d server_delete, want 1", n)
	}
}

func TestClassifyInjectedFaults(t *testing.T) {
	tests := []struct {
		kind fakecloud.FaultKind
		want cloud.Class
		code string
	}{
		{fakecloud.FaultRateLimit, cloud.Transient, "rate_limit_exceeded"},
		{fakecloud.FaultConflict, cloud.Transient, "conflict"},
		{fakecloud.FaultResourceUnavailable, cloud.Transient, "resource_unavailable"},
		{fakecloud.FaultServerError, cloud.Unknown, "server_error"},
		{fakecloud.FaultBadGateway, cloud.Transient, "bad_gateway"},
		{fakecloud.FaultUnavailable, cloud.Unknown, "unavailable"},
		{fakecloud.FaultTimeout, cloud.Transient, "timeout"},
	}
	// hcloud-go's own retries off, so each fault surfaces.
	e := newEnv(t, fakecloud.Options{}, Options{MaxRetries: -1})
	ctx := ctxFor(t, 30*time.Second)
	for _, tt := range tests {
		for _, ep := range []string{fakecloud.EndpointCreateServer, fakecloud.EndpointGetServer} {
			if err := e.fake.SetFaults(fakecloud.Fault{Endpoint: ep, Kind: tt.kind, Count: 1}); err != nil {
				t.Fatal(err)
			}
			var err error
			if ep == fakecloud.EndpointCreateServer {
				_, _, err = e.p.CreateServer(ctx, spec("node-x"))
			} else {
				_, err = e.p.GetServer(ctx, 1)
			}
			var ce *cloud.Error
			if !errors.As(err, &ce) || ce.Code != tt.code || ce.StatusCode == 0 {
				t.Errorf("%s on %s: error %v, want a *cloud.Error with code %s", tt.kind, ep, err, tt.code)
			}
			if got := cloud.Classify(err); got != tt.want {
				t.Errorf("%s on %s: Classify(%v) = %v, want %v", tt.kind, ep, err, got, tt.want)
			}
			if hcloud.IsError(err, hcloud.ErrorCode(tt.code)) != true {
				t.Errorf("%s: hcloud.IsError does not see through the wrapping", tt.kind)
			}
		}
	}
	if n := len(e.fake.Servers()); n != 0 {
		t.Errorf("failed creates left %d servers", n)
	}

	// A 429 carries the rate limit's reset.
	_ = e.fake.SetFaults(fakecloud.Fault{Endpoint: fakecloud.EndpointListServers, Kind: fakecloud.FaultRateLimit, Count: 1})
	_, err := e.p.ListServers(ctx, "")
	if ce := (*cloud.Error)(nil); !errors.As(err, &ce) || ce.RateLimitReset.IsZero() {
		t.Errorf("429 error %#v lacks RateLimitReset", err)
	}

	// A wrong token is permanent.
	bad, err := New(Options{Endpoint: e.ts.URL + "/v1", Token: "wrong", MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if _, err := bad.GetServer(ctx, 1); cloud.Classify(err) != cloud.Permanent || !strings.Contains(err.Error(), "unauthorized") {
		t.Errorf("wrong token: %v (%v), want permanent unauthorized", err, cloud.Classify(err))
	}
	// An invalid spec is permanent and sends nothing.
	if _, _, err := e.p.CreateServer(ctx, cloud.ServerSpec{Name: "n", ServerType: "cx23"}); !errors.Is(err, cloud.ErrInvalidSpec) || cloud.Classify(err) != cloud.Permanent {
		t.Errorf("CreateServer without labels: %v, want ErrInvalidSpec", err)
	}
	// So is a create the API rejects.
	sp := spec("node-y")
	sp.ServerType = "cx999"
	if _, _, err := e.p.CreateServer(ctx, sp); cloud.Classify(err) != cloud.Permanent {
		t.Errorf("CreateServer(unknown type): %v (%v), want permanent", err, cloud.Classify(err))
	}
}

func TestClassifyTimeoutsAndDialFailures(t *testing.T) {
	e := newEnv(t, fakecloud.Options{}, Options{MaxRetries: -1, Timeout: 200 * time.Millisecond})
	ctx := ctxFor(t, 30*time.Second)
	_ = e.fake.SetFaults(fakecloud.Fault{Endpoint: fakecloud.EndpointGetServer, Kind: fakecloud.FaultSlow, Delay: fakecloud.Duration(time.Minute)})
	if _, err := e.p.GetServer(ctx, 1); cloud.Classify(err) != cloud.Unknown {
		t.Errorf("HTTP client timeout: %v (%v), want unknown", err, cloud.Classify(err))
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	p2, err := New(Options{Endpoint: e.ts.URL + "/v1", Token: fakecloud.DefaultToken, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if _, err := p2.GetServer(short, 1); cloud.Classify(err) != cloud.Unknown || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("context deadline: %v (%v), want unknown", err, cloud.Classify(err))
	}

	// Nothing listens: the request was never sent.
	dead := httptest.NewServer(nil)
	url := dead.URL
	dead.Close()
	p3, err := New(Options{Endpoint: url + "/v1", Token: "t", MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p3.Close()
	if _, err := p3.GetServer(ctx, 1); cloud.Classify(err) != cloud.Transient {
		t.Errorf("connection refused: %v (%v), want transient", err, cloud.Classify(err))
	}
}

func TestRetriesAbsorbTransientFaults(t *testing.T) {
	e := newEnv(t, fakecloud.Options{CreateDuration: 50 * time.Millisecond}, Options{MaxRetries: 3})
	ctx := ctxFor(t, 30*time.Second)
	_ = e.fake.SetFaults(
		fakecloud.Fault{Endpoint: fakecloud.EndpointCreateServer, Kind: fakecloud.FaultRateLimit, Count: 1},
		fakecloud.Fault{Endpoint: fakecloud.EndpointCreateServer, Kind: fakecloud.FaultConflict, Count: 1},
	)
	// The first error fault fires alone; the second on the retry.
	s, _, err := e.p.CreateServer(ctx, spec("node-1"))
	if err != nil {
		t.Fatalf("CreateServer through a 429 and a 409 conflict: %v", err)
	}
	if n := len(e.fake.Servers()); n != 1 || s.ID == 0 {
		t.Errorf("%d servers, want 1", n)
	}
	for _, f := range e.fake.Faults() {
		if f.Fired != 1 {
			t.Errorf("fault %s fired %d times, want 1", f.Kind, f.Fired)
		}
	}
}

// TestResendAfterTimeout is HETZNER.md's double-create hazard: the API
// creates the server but answers after the client's timeout; hcloud-go
// re-sends the POST, which meets uniqueness_error. The provider adopts the
// server; exactly one exists.
func TestResendAfterTimeout(t *testing.T) {
	e := newEnv(t, fakecloud.Options{
		CreateDuration: 3 * time.Second,
		Faults: []fakecloud.Fault{{
			Endpoint: fakecloud.EndpointCreateServer, Kind: fakecloud.FaultSlowAnswer,
			Delay: fakecloud.Duration(time.Minute), Count: 1,
		}},
	}, Options{Timeout: time.Second, MaxRetries: 3})
	ctx := ctxFor(t, 60*time.Second)
	s, a, err := e.p.CreateServer(ctx, spec("node-1"))
	if err != nil {
		t.Fatalf("CreateServer: %v, want the re-sent create adopted", err)
	}
	if f := e.fake.Faults(); f[0].Fired != 1 {
		t.Fatalf("slow answer fired %d times, want 1", f[0].Fired)
	}
	servers := e.fake.Servers()
	if len(servers) != 1 || servers[0].ID != s.ID {
		t.Fatalf("fake has %+v, want exactly server %d", servers, s.ID)
	}
	if n := count(e.fake.Ledger(), fakecloud.EventServerCreate); n != 1 {
		t.Errorf("ledger has %d server_create, want 1", n)
	}
	// Adopted while still being created, it comes with the create action;
	// if the machine was slow enough for it to be running, with none.
	if a.ID != 0 {
		if a = e.waitDone(t, a.ID); a.Status != cloud.ActionSuccess {
			t.Errorf("adopted action = %+v, want success", a)
		}
	}
	eventually(t, 20*time.Second, "the adopted server to run", func() bool {
		got, err := e.p.GetServer(ctx, s.ID)
		return err == nil && got != nil && got.Status == cloud.StatusRunning
	})
}

func TestAdoptOurs(t *testing.T) {
	e := newEnv(t, fakecloud.Options{CreateDuration: time.Minute}, Options{})
	ctx := ctxFor(t, 30*time.Second)
	s, a, err := e.p.CreateServer(ctx, spec("node-1"))
	if err != nil {
		t.Fatal(err)
	}
	// Still initializing: adopted with its create action. Our labels may
	// be a subset of the server's. (TestCreatePollRunning adopts a running
	// one.)
	sub := spec("node-1")
	delete(sub.Labels, "node")
	for _, sp := range []cloud.ServerSpec{spec("node-1"), sub} {
		s2, a2, err := e.p.CreateServer(ctx, sp)
		if err != nil || s2.ID != s.ID || a2.ID != a.ID || a2.Status != cloud.ActionRunning {
			t.Errorf("adopt while initializing with labels %v = %+v, %+v, %v; want server %d with running action %d",
				sp.Labels, s2, a2, err, s.ID, a.ID)
		}
	}
	if n := len(e.fake.Servers()); n != 1 {
		t.Errorf("%d servers, want 1", n)
	}
}

func TestAdoptAfterUniquenessError(t *testing.T) {
	// The look-up misses; while the create is held up, another creator
	// takes the name. The create meets uniqueness_error and looks again.
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   error
	}{
		{"ours", map[string]string{"managed-by": "tdf", "node": "node-1", "extra": "x"}, nil},
		{"foreign", map[string]string{"managed-by": "someone-else"}, cloud.ErrNameTaken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			held, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			holdFirstCreate := func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.Method == http.MethodPost && r.URL.Path == "/v1/servers" {
						first := false
						once.Do(func() { first = true })
						if first {
							close(held)
							<-release
						}
					}
					next.ServeHTTP(w, r)
				})
			}
			e := newWrappedEnv(t, fakecloud.Options{CreateDuration: 50 * time.Millisecond}, Options{}, holdFirstCreate)
			ctx := ctxFor(t, 30*time.Second)
			type result struct {
				s   cloud.Server
				err error
			}
			done := make(chan result, 1)
			go func() {
				s, _, err := e.p.CreateServer(ctx, spec("node-1"))
				done <- result{s, err}
			}()
			select {
			case <-held:
			case r := <-done:
				t.Fatalf("CreateServer returned before its POST: %+v", r)
			case <-ctx.Done():
				t.Fatal("the create never reached the API")
			}
			other := cloud.ServerSpec{Name: "node-1", ServerType: "cx23", Labels: tc.labels}
			first, _, err := e.p.CreateServer(ctx, other)
			close(release)
			if err != nil {
				t.Fatalf("competing create: %v", err)
			}
			r := <-done
			if !errors.Is(r.err, tc.want) {
				t.Fatalf("CreateServer = %v, want %v", r.err, tc.want)
			}
			if r.s.ID != first.ID {
				t.Errorf("CreateServer returned server %d, want %d", r.s.ID, first.ID)
			}
			if tc.want != nil && cloud.Classify(r.err) != cloud.Permanent {
				t.Errorf("Classify(%v) = %v, want permanent", r.err, cloud.Classify(r.err))
			}
			if n := len(e.fake.Servers()); n != 1 {
				t.Errorf("%d servers, want 1", n)
			}
			if n := count(e.fake.Ledger(), fakecloud.EventServerCreate); n != 1 {
				t.Errorf("ledger has %d server_create, want 1", n)
			}
		})
	}
}

func TestNameTakenByForeignServer(t *testing.T) {
	e := newEnv(t, fakecloud.Options{CreateDuration: 50 * time.Millisecond}, Options{})
	ctx := ctxFor(t, 30*time.Second)
	foreign := cloud.ServerSpec{Name: "node-1", ServerType: "cx23", Labels: map[string]string{"managed-by": "tdf", "node": "node-other"}}
	f, _, err := e.p.CreateServer(ctx, foreign)
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := e.p.CreateServer(ctx, spec("node-1"))
	if !errors.Is(err, cloud.ErrNameTaken) || cloud.Classify(err) != cloud.Permanent || s.ID != f.ID {
		t.Errorf("CreateServer over a foreign server = %+v, %v; want ErrNameTaken naming server %d", s, err, f.ID)
	}
}

func TestFailedCreateActionThenDelete(t *testing.T) {
	e := newEnv(t, fakecloud.Options{
		CreateDuration: 100 * time.Millisecond, DeleteDuration: 50 * time.Millisecond,
		Faults: []fakecloud.Fault{{Endpoint: fakecloud.EndpointCreateServer, Kind: fakecloud.FaultActionError, Count: 1}},
	}, Options{})
	ctx := ctxFor(t, 30*time.Second)
	s, a, err := e.p.CreateServer(ctx, spec("node-1"))
	if err != nil {
		t.Fatal(err)
	}
	a = e.waitDone(t, a.ID)
	if !a.Failed() || a.ErrorCode == "" || a.ErrorMessage == "" {
		t.Fatalf("action = %+v, want a failure with a code", a)
	}
	left, err := e.p.GetServer(ctx, s.ID)
	if err != nil || left == nil {
		t.Fatalf("after a failed create: GetServer = %+v, %v; want the server left behind", left, err)
	}
	// The caller's contract: delete it by id, then create again.
	if err := e.p.DeleteServer(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the failed server to be gone", func() bool {
		got, err := e.p.GetServer(ctx, s.ID)
		return err == nil && got == nil
	})
	s2, a2, err := e.p.CreateServer(ctx, spec("node-1"))
	if err != nil || s2.ID == s.ID {
		t.Fatalf("re-create = %+v, %v", s2, err)
	}
	if a2 = e.waitDone(t, a2.ID); a2.Status != cloud.ActionSuccess {
		t.Errorf("second create action = %+v, want success", a2)
	}
	ledger := e.fake.Ledger()
	if count(ledger, fakecloud.EventServerCreateFailed) != 1 || count(ledger, fakecloud.EventServerDelete) != 1 || count(ledger, fakecloud.EventServerCreate) != 2 {
		t.Errorf("ledger = %+v", ledger)
	}
}

func TestAdoptStoppedServerPowersItOn(t *testing.T) {
	e := newEnv(t, fakecloud.Options{
		CreateDuration: 50 * time.Millisecond, StartDuration: 50 * time.Millisecond,
		Faults: []fakecloud.Fault{{Endpoint: fakecloud.EndpointCreateServer, Kind: fakecloud.FaultActionError, Count: 1}},
	}, Options{})
	ctx := ctxFor(t, 30*time.Second)
	s, a, err := e.p.CreateServer(ctx, spec("node-1"))
	if err != nil {
		t.Fatal(err)
	}
	e.waitDone(t, a.ID)
	s2, a2, err := e.p.CreateServer(ctx, spec("node-1"))
	if err != nil || s2.ID != s.ID || s2.Status != "off" || a2.ID == 0 {
		t.Fatalf("adopt off server = %+v, %+v, %v; want a poweron action", s2, a2, err)
	}
	if a2 = e.waitDone(t, a2.ID); a2.Status != cloud.ActionSuccess {
		t.Errorf("poweron = %+v", a2)
	}
	if got, _ := e.p.GetServer(ctx, s.ID); got == nil || got.Status != cloud.StatusRunning {
		t.Errorf("after poweron: %+v", got)
	}
}

func TestAdoptDeletingServerIsBusy(t *testing.T) {
	e := newEnv(t, fakecloud.Options{CreateDuration: 50 * time.Millisecond, DeleteDuration: time.Minute}, Options{})
	ctx := ctxFor(t, 30*time.Second)
	s, _, err := e.p.CreateServer(ctx, spec("node-1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.p.DeleteServer(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.p.CreateServer(ctx, spec("node-1")); !errors.Is(err, cloud.ErrServerBusy) || cloud.Classify(err) != cloud.Transient {
		t.Errorf("CreateServer while the old one is deleting = %v, want transient ErrServerBusy", err)
	}
}

func TestInstrumentation(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, fakecloud.Options{}, Options{Registerer: reg, Application: Application{"tdf-test", "1.2.3"}})
	if _, err := e.p.ListServers(ctxFor(t, 10*time.Second), ""); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "hcloud_api_requests_total" {
			found = true
		}
	}
	if !found {
		t.Errorf("no hcloud_api_requests_total among %d metric families", len(mfs))
	}
	// A second provider on the same registry reuses the collectors.
	p2, err := New(Options{Endpoint: e.ts.URL + "/v1", Token: fakecloud.DefaultToken, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	p2.Close()
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{
		{},
		{Token: "a\nb"},
		{Token: "t", Endpoint: "ftp://x"},
		{Token: "t", ListPageSize: 51},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) succeeded, want an error", o)
		}
	}
}

// TestFakeServesWaitFor checks the fake against hcloud-go's own waiter
// (GET /actions?id=…), which other code may use even though Provider polls.
func TestFakeServesWaitFor(t *testing.T) {
	e := newEnv(t, fakecloud.Options{CreateDuration: 100 * time.Millisecond}, Options{})
	ctx := ctxFor(t, 30*time.Second)
	res, _, err := e.p.client.Server.Create(ctx, hcloud.ServerCreateOpts{
		Name: "node-1", ServerType: &hcloud.ServerType{Name: "cx23"}, Image: &hcloud.Image{Name: DefaultImage},
		Location: &hcloud.Location{Name: "nbg1"}, StartAfterCreate: hcloud.Ptr(true),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.p.client.Action.WaitFor(ctx, append([]*hcloud.Action{res.Action}, res.NextActions...)...); err != nil {
		t.Fatalf("WaitFor: %v", err)
	}
	s, _, err := e.p.client.Server.GetByID(ctx, res.Server.ID)
	if err != nil || s.Status != hcloud.ServerStatusRunning || s.Location.Name != "nbg1" || s.PublicNet.IPv6.Network == nil {
		t.Errorf("server after WaitFor = %+v, %v", s, err)
	}
}
