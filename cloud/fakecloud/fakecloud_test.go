package fakecloud

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
)

// startFake serves a fake on a free port for the test's duration.
func startFake(t *testing.T, opts Options) (*Server, *httptest.Server) {
	t.Helper()
	f := New(opts)
	ts := httptest.NewServer(f.Handler())
	t.Cleanup(func() {
		f.Close()
		ts.Close()
	})
	return f, ts
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

// call sends a request with the default token (token "" sends none).
func call(t *testing.T, ts *httptest.Server, method, path, token string, body any) answer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, ts.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type = %q, want application/json", method, path, ct)
	}
	if !json.Valid(b) {
		t.Errorf("%s %s: body is not JSON: %q", method, path, b)
	}
	return answer{resp.StatusCode, resp.Header, b}
}

func decode[T any](t *testing.T, a answer) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(a.body, &v); err != nil {
		t.Fatalf("decode %T from %s: %v", v, a.body, err)
	}
	return v
}

func wantError(t *testing.T, a answer, status int, code string) {
	t.Helper()
	if a.status != status {
		t.Errorf("status = %d, want %d (%s)", a.status, status, a.body)
	}
	var e struct {
		Error *struct {
			Code    *string `json:"code"`
			Message *string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(a.body, &e); err != nil || e.Error == nil || e.Error.Code == nil || e.Error.Message == nil {
		t.Fatalf("error body %s lacks error.code or error.message", a.body)
	}
	if *e.Error.Code != code {
		t.Errorf("error.code = %q, want %q", *e.Error.Code, code)
	}
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

func createBody(name string, labels map[string]string) map[string]any {
	return map[string]any{
		"name": name, "server_type": "cx23", "image": "ubuntu-24.04", "location": "fsn1",
		"labels": labels, "start_after_create": true, "user_data": "#cloud-config\n",
	}
}

func TestUnauthorized(t *testing.T) {
	_, ts := startFake(t, Options{Token: "secret"})
	for _, tok := range []string{"", "wrong"} {
		a := call(t, ts, "GET", "/v1/servers", tok, nil)
		wantError(t, a, http.StatusUnauthorized, "unauthorized")
	}
	if a := call(t, ts, "GET", "/v1/servers", "secret", nil); a.status != http.StatusOK {
		t.Errorf("with the token: status %d, want 200", a.status)
	}
}

func TestNotFoundShapes(t *testing.T) {
	_, ts := startFake(t, Options{})
	for _, path := range []string{"/v1/servers/12345", "/v1/actions/12345", "/v1/nothing", "/v1/servers/abc", "/elsewhere"} {
		wantError(t, call(t, ts, "GET", path, DefaultToken, nil), http.StatusNotFound, "not_found")
	}
	wantError(t, call(t, ts, "PUT", "/v1/servers", DefaultToken, nil), http.StatusMethodNotAllowed, "method_not_allowed")
	wantError(t, call(t, ts, "DELETE", "/v1/servers/12345", DefaultToken, nil), http.StatusNotFound, "not_found")
	wantError(t, call(t, ts, "POST", "/v1/servers/12345/actions/poweron", DefaultToken, nil), http.StatusNotFound, "not_found")
}

func TestCreateLifecycle(t *testing.T) {
	var mu sync.Mutex
	var running, deleted []VM
	f, ts := startFake(t, Options{
		CreateDuration: 300 * time.Millisecond,
		DeleteDuration: 50 * time.Millisecond,
		OnServerRunning: func(vm VM) {
			mu.Lock()
			defer mu.Unlock()
			running = append(running, vm)
		},
		OnServerDeleted: func(vm VM) {
			mu.Lock()
			defer mu.Unlock()
			deleted = append(deleted, vm)
		},
	})
	a := call(t, ts, "POST", "/v1/servers", DefaultToken, createBody("node-1", map[string]string{"managed-by": "tdf"}))
	if a.status != http.StatusCreated {
		t.Fatalf("create: status %d: %s", a.status, a.body)
	}
	for _, h := range []string{"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} {
		if _, err := strconv.ParseInt(a.header.Get(h), 10, 64); err != nil {
			t.Errorf("header %s = %q, want a number", h, a.header.Get(h))
		}
	}
	// The raw shape: times are RFC 3339, ids numeric, root_password null.
	var raw map[string]any
	_ = json.Unmarshal(a.body, &raw)
	srvRaw := raw["server"].(map[string]any)
	if _, err := time.Parse(time.RFC3339, srvRaw["created"].(string)); err != nil {
		t.Errorf("server.created %v is not RFC 3339", srvRaw["created"])
	}
	if _, ok := srvRaw["id"].(float64); !ok {
		t.Errorf("server.id %v is not a number", srvRaw["id"])
	}
	if v, ok := raw["root_password"]; !ok || v != nil {
		t.Errorf("root_password = %v, want null", v)
	}
	if fin := raw["action"].(map[string]any)["finished"]; fin != nil {
		t.Errorf("running action's finished = %v, want null", fin)
	}

	cr := decode[schema.ServerCreateResponse](t, a)
	if cr.Server.Status != "initializing" || cr.Action.Status != "running" || cr.Action.Command != "create_server" {
		t.Errorf("create = server %s, action %s %s; want initializing, create_server running",
			cr.Server.Status, cr.Action.Command, cr.Action.Status)
	}
	if cr.Server.PublicNet.IPv4.IP != "127.0.1.1" {
		t.Errorf("ipv4 = %s, want 127.0.1.1", cr.Server.PublicNet.IPv4.IP)
	}
	if !strings.HasSuffix(cr.Server.PublicNet.IPv6.IP, "::/64") {
		t.Errorf("ipv6 = %s, want a /64", cr.Server.PublicNet.IPv6.IP)
	}
	if cr.Server.ServerType.Name != "cx23" || cr.Server.Location.Name != "fsn1" || *cr.Server.Image.Name != "ubuntu-24.04" {
		t.Errorf("server = %+v", cr.Server)
	}
	if len(cr.NextActions) != 1 || cr.NextActions[0].Command != "start_server" {
		t.Errorf("next_actions = %+v, want one start_server", cr.NextActions)
	}

	// The same name again is a uniqueness_error; nothing new exists.
	wantError(t, call(t, ts, "POST", "/v1/servers", DefaultToken, createBody("node-1", nil)), http.StatusConflict, "uniqueness_error")

	// The action's progress moves and it completes.
	actionPath := fmt.Sprintf("/v1/actions/%d", cr.Action.ID)
	eventually(t, 10*time.Second, "create action to succeed", func() bool {
		return decode[schema.ActionGetResponse](t, call(t, ts, "GET", actionPath, DefaultToken, nil)).Action.Status == "success"
	})
	got := decode[schema.ActionGetResponse](t, call(t, ts, "GET", actionPath, DefaultToken, nil)).Action
	if got.Progress != 100 || got.Finished == nil || got.Error != nil {
		t.Errorf("finished action = %+v", got)
	}
	srv := decode[schema.ServerGetResponse](t, call(t, ts, "GET", fmt.Sprintf("/v1/servers/%d", cr.Server.ID), DefaultToken, nil)).Server
	if srv.Status != "running" {
		t.Errorf("server status = %s, want running", srv.Status)
	}
	eventually(t, 5*time.Second, "OnServerRunning", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(running) == 1
	})
	mu.Lock()
	if running[0].ID != cr.Server.ID || running[0].IPv4 != netip.MustParseAddr("127.0.1.1") || running[0].UserData != "#cloud-config\n" {
		t.Errorf("OnServerRunning got %+v", running[0])
	}
	mu.Unlock()

	// Both actions are listed by id; the server's action list has them.
	list := decode[schema.ActionListResponse](t, call(t, ts, "GET",
		fmt.Sprintf("/v1/actions?id=%d&id=%d&id=999", cr.Action.ID, cr.NextActions[0].ID), DefaultToken, nil))
	if len(list.Actions) != 2 {
		t.Errorf("GET /actions?id=…: %d actions, want 2", len(list.Actions))
	}
	wantError(t, call(t, ts, "GET", "/v1/actions", DefaultToken, nil), http.StatusBadRequest, "invalid_input")
	sa := decode[schema.ActionListResponse](t, call(t, ts, "GET", fmt.Sprintf("/v1/servers/%d/actions?status=success", cr.Server.ID), DefaultToken, nil))
	if len(sa.Actions) != 2 {
		t.Errorf("GET /servers/{id}/actions?status=success: %d actions, want 2", len(sa.Actions))
	}

	// Delete: 200 with an action, the server goes, a second delete is 404.
	da := call(t, ts, "DELETE", fmt.Sprintf("/v1/servers/%d", cr.Server.ID), DefaultToken, nil)
	if da.status != http.StatusOK || decode[schema.ServerDeleteResponse](t, da).Action.Command != "delete_server" {
		t.Fatalf("delete: %d %s", da.status, da.body)
	}
	eventually(t, 5*time.Second, "the server to be gone", func() bool {
		return call(t, ts, "GET", fmt.Sprintf("/v1/servers/%d", cr.Server.ID), DefaultToken, nil).status == http.StatusNotFound
	})
	wantError(t, call(t, ts, "DELETE", fmt.Sprintf("/v1/servers/%d", cr.Server.ID), DefaultToken, nil), http.StatusNotFound, "not_found")
	eventually(t, 5*time.Second, "OnServerDeleted", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(deleted) == 1
	})

	// The name is free again; the new server gets the next address.
	a = call(t, ts, "POST", "/v1/servers", DefaultToken, createBody("node-1", nil))
	if a.status != http.StatusCreated {
		t.Fatalf("re-create: %d %s", a.status, a.body)
	}
	if ip := decode[schema.ServerCreateResponse](t, a).Server.PublicNet.IPv4.IP; ip != "127.0.1.2" {
		t.Errorf("second server ipv4 = %s, want 127.0.1.2", ip)
	}

	var kinds []string
	for _, e := range f.Ledger() {
		kinds = append(kinds, e.Kind)
	}
	if want := "server_create server_running server_delete server_create"; strings.Join(kinds, " ") != want {
		t.Errorf("ledger kinds = %v, want %s", kinds, want)
	}
	var lr LedgerResponse
	if err := json.Unmarshal(call(t, ts, "GET", "/fake/ledger", "", nil).body, &lr); err != nil || len(lr.Events) != 4 {
		t.Errorf("GET /fake/ledger = %+v, %v", lr, err)
	}
}

func TestPagination(t *testing.T) {
	_, ts := startFake(t, Options{})
	for i := range 7 {
		labels := map[string]string{"managed-by": "tdf", "parity": strconv.Itoa(i % 2)}
		if a := call(t, ts, "POST", "/v1/servers", DefaultToken, createBody(fmt.Sprintf("node-%d", i), labels)); a.status != http.StatusCreated {
			t.Fatalf("create: %d %s", a.status, a.body)
		}
	}
	type listResp struct {
		schema.ServerListResponse
		schema.MetaResponse
	}
	var names []string
	for page := 1; page <= 3; page++ {
		l := decode[listResp](t, call(t, ts, "GET", fmt.Sprintf("/v1/servers?per_page=3&page=%d", page), DefaultToken, nil))
		p := l.Meta.Pagination
		if p == nil {
			t.Fatal("no meta.pagination")
		}
		wantNext := page + 1
		if page == 3 {
			wantNext = 0
		}
		if p.Page != page || p.PerPage != 3 || p.LastPage != 3 || p.TotalEntries != 7 || p.NextPage != wantNext || p.PreviousPage != page-1 {
			t.Errorf("page %d: meta %+v", page, *p)
		}
		for _, s := range l.Servers {
			names = append(names, s.Name)
		}
	}
	if got := strings.Join(names, ","); got != "node-0,node-1,node-2,node-3,node-4,node-5,node-6" {
		t.Errorf("paged names = %s", got)
	}
	// Beyond the last page: empty, not an error. per_page is capped at 50.
	if l := decode[listResp](t, call(t, ts, "GET", "/v1/servers?page=9", DefaultToken, nil)); len(l.Servers) != 0 || l.Servers == nil {
		t.Errorf("page 9 = %+v, want an empty list", l.Servers)
	}
	if l := decode[listResp](t, call(t, ts, "GET", "/v1/servers?per_page=500", DefaultToken, nil)); l.Meta.Pagination.PerPage != 50 {
		t.Errorf("per_page=500 gave per_page %d, want 50", l.Meta.Pagination.PerPage)
	}
	for _, q := range []string{"page=0", "per_page=x", "label_selector=a%3D%3D%3D"} {
		wantError(t, call(t, ts, "GET", "/v1/servers?"+q, DefaultToken, nil), http.StatusBadRequest, "invalid_input")
	}
	// Filters: by name, by selector.
	if l := decode[listResp](t, call(t, ts, "GET", "/v1/servers?name=node-4", DefaultToken, nil)); len(l.Servers) != 1 || l.Servers[0].Name != "node-4" {
		t.Errorf("name=node-4 = %+v", l.Servers)
	}
	if l := decode[listResp](t, call(t, ts, "GET", "/v1/servers?label_selector=managed-by%3Dtdf,parity%3D1", DefaultToken, nil)); len(l.Servers) != 3 {
		t.Errorf("parity=1: %d servers, want 3", len(l.Servers))
	}
}

func TestCreateValidation(t *testing.T) {
	f, ts := startFake(t, Options{MaxServers: 1})
	bad := []map[string]any{
		{"server_type": "cx23", "image": "ubuntu-24.04"},                       // no name
		{"name": "bad_name", "server_type": "cx23", "image": "ubuntu-24.04"},   // not a hostname
		{"name": "n", "server_type": "cx999", "image": "ubuntu-24.04"},         // unknown type
		{"name": "n", "server_type": "cx23"},                                   // no image
		{"name": "n", "server_type": "cx23", "image": "u", "location": "mars"}, // unknown location
		{"name": "n", "server_type": "cx23", "image": "u", "labels": map[string]string{"hetzner.cloud/x": "1"}},
		{"name": "n", "server_type": "cx23", "image": "u", "labels": map[string]string{"k": "-bad"}},
		{"name": "n", "server_type": "cx23", "image": "u", "user_data": strings.Repeat("x", 33<<10)},
	}
	for _, b := range bad {
		wantError(t, call(t, ts, "POST", "/v1/servers", DefaultToken, b), http.StatusUnprocessableEntity, "invalid_input")
	}
	req, _ := http.NewRequest("POST", ts.URL+"/v1/servers", strings.NewReader("{not json"))
	req.Header.Set("Authorization", "Bearer "+DefaultToken)
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad JSON: status %d, want 400", resp.StatusCode)
	}
	// Type and location by id work too; the quota is enforced.
	if a := call(t, ts, "POST", "/v1/servers", DefaultToken, map[string]any{"name": "n", "server_type": 111, "image": 42, "location": "3"}); a.status != http.StatusCreated {
		t.Fatalf("create by ids: %d %s", a.status, a.body)
	}
	wantError(t, call(t, ts, "POST", "/v1/servers", DefaultToken, createBody("m", nil)), http.StatusForbidden, "resource_limit_exceeded")
	if n := len(f.Servers()); n != 1 {
		t.Errorf("%d servers, want 1", n)
	}
}

func TestFaults(t *testing.T) {
	f, ts := startFake(t, Options{Faults: []Fault{{Endpoint: EndpointListServers, Kind: FaultRateLimit, Count: 2}}})
	for range 2 {
		wantError(t, call(t, ts, "GET", "/v1/servers", DefaultToken, nil), http.StatusTooManyRequests, "rate_limit_exceeded")
	}
	if a := call(t, ts, "GET", "/v1/servers", DefaultToken, nil); a.status != http.StatusOK {
		t.Errorf("third list: %d, want 200 once the count is spent", a.status)
	}
	if got := f.Faults(); len(got) != 1 || got[0].Fired != 2 {
		t.Errorf("Faults() = %+v, want one that fired twice", got)
	}

	// Every error kind, set at run time over HTTP, on create: no effect.
	kinds := map[FaultKind][2]any{
		FaultRateLimit: {429, "rate_limit_exceeded"}, FaultConflict: {409, "conflict"},
		FaultResourceUnavailable: {412, "resource_unavailable"}, FaultServerError: {500, "server_error"},
		FaultBadGateway: {502, "bad_gateway"}, FaultUnavailable: {503, "unavailable"}, FaultTimeout: {504, "timeout"},
	}
	for kind, want := range kinds {
		a := call(t, ts, "POST", "/fake/faults", "", FaultsRequest{Faults: []Fault{{Endpoint: EndpointCreateServer, Kind: kind, Count: 1}}})
		if a.status != http.StatusOK {
			t.Fatalf("POST /fake/faults: %d %s", a.status, a.body)
		}
		wantError(t, call(t, ts, "POST", "/v1/servers", DefaultToken, createBody("x", nil)), want[0].(int), want[1].(string))
	}
	wantError(t, call(t, ts, "POST", "/fake/faults", "", map[string]any{"faults": []any{map[string]any{"kind": "explode"}}}),
		http.StatusUnprocessableEntity, "invalid_input")
	wantError(t, call(t, ts, "POST", "/fake/faults", "", map[string]any{"faults": []any{map[string]any{"kind": "slow"}}}),
		http.StatusUnprocessableEntity, "invalid_input")
	a := call(t, ts, "POST", "/fake/faults", "", map[string]any{"faults": []any{
		map[string]any{"kind": "error", "status": 423, "code": "locked", "endpoint": "get_server"},
		map[string]any{"kind": "slow", "delay": 20, "endpoint": "*"},
	}})
	if a.status != http.StatusOK {
		t.Fatalf("POST /fake/faults: %d %s", a.status, a.body)
	}
	wantError(t, call(t, ts, "GET", "/v1/servers/1", DefaultToken, nil), http.StatusLocked, "locked")
	if got := decode[FaultsRequest](t, call(t, ts, "GET", "/fake/faults", "", nil)); len(got.Faults) != 2 || time.Duration(got.Faults[1].Delay) != 20*time.Millisecond {
		t.Errorf("GET /fake/faults = %+v", got)
	}
	call(t, ts, "DELETE", "/fake/faults", "", nil)
	if len(f.Faults()) != 0 {
		t.Errorf("faults left after DELETE: %+v", f.Faults())
	}
	if n := len(f.Servers()); n != 0 {
		t.Errorf("error faults created %d servers", n)
	}
}

func TestFaultProbability(t *testing.T) {
	f, ts := startFake(t, Options{Seed: 1, Faults: []Fault{{Kind: FaultServerError, Probability: 0.5}}})
	failed := 0
	for range 200 {
		if call(t, ts, "GET", "/v1/servers", DefaultToken, nil).status == http.StatusInternalServerError {
			failed++
		}
	}
	if failed < 60 || failed > 140 {
		t.Errorf("probability 0.5 failed %d of 200", failed)
	}
	if f.Faults()[0].Fired != failed {
		t.Errorf("Fired = %d, want %d", f.Faults()[0].Fired, failed)
	}
}

func TestSlowAnswerCreatesOnce(t *testing.T) {
	f, ts := startFake(t, Options{Faults: []Fault{{Endpoint: EndpointCreateServer, Kind: FaultSlowAnswer, Delay: Duration(time.Minute), Count: 1}}})
	b, _ := json.Marshal(createBody("node-1", nil))
	client := &http.Client{Timeout: 300 * time.Millisecond}
	req, _ := http.NewRequest("POST", ts.URL+"/v1/servers", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+DefaultToken)
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("slow answer came in %v", resp.Status)
	}
	wantError(t, call(t, ts, "POST", "/v1/servers", DefaultToken, createBody("node-1", nil)), http.StatusConflict, "uniqueness_error")
	if n := len(f.Servers()); n != 1 {
		t.Errorf("%d servers, want 1", n)
	}
}

func TestSlowBeforeHasNoEffectIfClientLeaves(t *testing.T) {
	f, ts := startFake(t, Options{Faults: []Fault{{Endpoint: EndpointCreateServer, Kind: FaultSlow, Delay: Duration(time.Minute)}}})
	b, _ := json.Marshal(createBody("node-1", nil))
	client := &http.Client{Timeout: 200 * time.Millisecond}
	req, _ := http.NewRequest("POST", ts.URL+"/v1/servers", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+DefaultToken)
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("slow request answered: %v", resp.Status)
	}
	if n := len(f.Servers()); n != 0 {
		t.Errorf("%d servers, want 0", n)
	}
}

func TestActionErrorThenPoweron(t *testing.T) {
	var mu sync.Mutex
	runs := 0
	f, ts := startFake(t, Options{
		CreateDuration:  100 * time.Millisecond,
		StartDuration:   50 * time.Millisecond,
		Faults:          []Fault{{Endpoint: EndpointCreateServer, Kind: FaultActionError, Count: 1}},
		OnServerRunning: func(VM) { mu.Lock(); runs++; mu.Unlock() },
	})
	cr := decode[schema.ServerCreateResponse](t, call(t, ts, "POST", "/v1/servers", DefaultToken, createBody("bad", nil)))
	eventually(t, 5*time.Second, "create action to fail", func() bool {
		a := decode[schema.ActionGetResponse](t, call(t, ts, "GET", fmt.Sprintf("/v1/actions/%d", cr.Action.ID), DefaultToken, nil)).Action
		return a.Status == "error" && a.Error != nil && a.Error.Code != ""
	})
	if s := decode[schema.ServerGetResponse](t, call(t, ts, "GET", fmt.Sprintf("/v1/servers/%d", cr.Server.ID), DefaultToken, nil)).Server; s.Status != "off" {
		t.Errorf("failed server status %s, want off", s.Status)
	}
	// Powered on, the failed one runs.
	pa := call(t, ts, "POST", fmt.Sprintf("/v1/servers/%d/actions/poweron", cr.Server.ID), DefaultToken, nil)
	if pa.status != http.StatusCreated {
		t.Fatalf("poweron: %d %s", pa.status, pa.body)
	}
	eventually(t, 5*time.Second, "poweron to run the server", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return runs == 1
	})
	// Powering on a running server is a finished action.
	pa = call(t, ts, "POST", fmt.Sprintf("/v1/servers/%d/actions/poweron", cr.Server.ID), DefaultToken, nil)
	if a := decode[schema.ServerActionPoweronResponse](t, pa).Action; pa.status != http.StatusCreated || a.Status != "success" {
		t.Errorf("poweron of a running server: %d %+v", pa.status, a)
	}
	var kinds []string
	for _, e := range f.Ledger() {
		kinds = append(kinds, e.Kind)
	}
	if want := "server_create server_create_failed server_poweron server_running"; strings.Join(kinds, " ") != want {
		t.Errorf("ledger = %v, want %s", kinds, want)
	}
}

func TestDeleteDuringCreate(t *testing.T) {
	var mu sync.Mutex
	var deleted []VM
	f, ts := startFake(t, Options{
		CreateDuration: time.Minute,
		// Long enough that the second DELETE below still finds the server
		// deleting on a loaded machine (at 20 ms it was sometimes gone).
		DeleteDuration:  time.Second,
		OnServerRunning: func(VM) { t.Error("a deleted server ran") },
		OnServerDeleted: func(vm VM) { mu.Lock(); deleted = append(deleted, vm); mu.Unlock() },
	})
	cr := decode[schema.ServerCreateResponse](t, call(t, ts, "POST", "/v1/servers", DefaultToken, createBody("short", nil)))
	wantError(t, call(t, ts, "POST", fmt.Sprintf("/v1/servers/%d/actions/poweron", cr.Server.ID), DefaultToken, nil), http.StatusLocked, "locked")
	call(t, ts, "DELETE", fmt.Sprintf("/v1/servers/%d", cr.Server.ID), DefaultToken, nil)
	a := decode[schema.ActionGetResponse](t, call(t, ts, "GET", fmt.Sprintf("/v1/actions/%d", cr.Action.ID), DefaultToken, nil)).Action
	if a.Status != "error" {
		t.Errorf("create action of a deleted server: %s, want error", a.Status)
	}
	// A second DELETE while deleting answers the same action.
	d2 := decode[schema.ServerDeleteResponse](t, call(t, ts, "DELETE", fmt.Sprintf("/v1/servers/%d", cr.Server.ID), DefaultToken, nil))
	if d2.Action.Command != "delete_server" {
		t.Errorf("second delete = %+v", d2.Action)
	}
	eventually(t, 30*time.Second, "the server to be gone", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(f.Servers()) == 0 && len(deleted) == 1
	})
	var kinds []string
	for _, e := range f.Ledger() {
		kinds = append(kinds, e.Kind)
	}
	if want := "server_create server_delete"; strings.Join(kinds, " ") != want {
		t.Errorf("ledger = %v, want %s", kinds, want)
	}
}

func TestRateLimit(t *testing.T) {
	_, ts := startFake(t, Options{RateLimit: 2})
	for i := range 2 {
		a := call(t, ts, "GET", "/v1/servers", DefaultToken, nil)
		if a.status != http.StatusOK || a.header.Get("RateLimit-Limit") != "2" || a.header.Get("RateLimit-Remaining") != strconv.Itoa(1-i) {
			t.Errorf("request %d: %d, headers %v", i, a.status, a.header)
		}
	}
	a := call(t, ts, "GET", "/v1/servers", DefaultToken, nil)
	wantError(t, a, http.StatusTooManyRequests, "rate_limit_exceeded")
	reset, _ := strconv.ParseInt(a.header.Get("RateLimit-Reset"), 10, 64)
	if d := time.Until(time.Unix(reset, 0)); d < 30*time.Minute {
		t.Errorf("RateLimit-Reset %v away, want about an hour", d)
	}
}

func TestSequentialAllocator(t *testing.T) {
	a := NewSequentialAllocator(netip.MustParseAddr("10.0.0.253"), netip.MustParsePrefix("10.0.0.0/23"))
	var got []string
	for range 3 {
		ip, err := a.Allocate()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ip.String())
	}
	if want := "10.0.0.253 10.0.0.254 10.0.1.1"; strings.Join(got, " ") != want {
		t.Errorf("allocated %v, want %s", got, want)
	}
	small := NewSequentialAllocator(netip.MustParseAddr("10.0.0.254"), netip.MustParsePrefix("10.0.0.0/24"))
	if _, err := small.Allocate(); err != nil {
		t.Fatal(err)
	}
	if _, err := small.Allocate(); err != ErrNoAddress {
		t.Errorf("exhausted allocator: %v, want ErrNoAddress", err)
	}
}

func TestCloseStopsHooks(t *testing.T) {
	var closed, late atomic.Bool
	f, ts := startFake(t, Options{
		CreateDuration: 50 * time.Millisecond,
		OnServerRunning: func(VM) {
			if closed.Load() {
				late.Store(true)
			}
		},
	})
	for i := range 5 {
		call(t, ts, "POST", "/v1/servers", DefaultToken, createBody(fmt.Sprintf("n%d", i), nil))
	}
	f.Close() // waits for a hook that is running
	closed.Store(true)
	// Whether some hooks ran before Close depends on timing; none may run
	// after it. Give a stray timer the chance to prove otherwise.
	time.Sleep(200 * time.Millisecond)
	if late.Load() {
		t.Error("a hook ran after Close returned")
	}
	wantError(t, call(t, ts, "GET", "/v1/servers", DefaultToken, nil), http.StatusServiceUnavailable, "unavailable")
}
