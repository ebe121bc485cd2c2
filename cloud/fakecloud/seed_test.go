package fakecloud

import (
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
)

// TestSeed: a seeded server exists at once with the id asked for, running
// (its hook fired) or off, is served by the API like any other, is in the
// ledger as seeded, and refuses a taken name or id.
func TestSeed(t *testing.T) {
	var mu sync.Mutex
	var running []VM
	f, ts := startFake(t, Options{RateLimit: -1, OnServerRunning: func(vm VM) {
		mu.Lock()
		running = append(running, vm)
		mu.Unlock()
	}})
	vm, err := f.Seed(SeedServer{ID: 52000001, Name: "node-old-1", UserData: "#cloud-config", Labels: map[string]string{"managed-by": "sam"}})
	if err != nil || vm.ID != 52000001 || vm.Status != "running" || vm.UserData != "#cloud-config" || vm.ServerType != "cx23" {
		t.Fatalf("seed = %+v, %v", vm, err)
	}
	off, err := f.Seed(SeedServer{Name: "node-old-2", Off: true})
	if err != nil || off.Status != "off" || off.ID == vm.ID {
		t.Fatalf("seed off = %+v, %v", off, err)
	}
	for _, bad := range []SeedServer{{Name: "node-old-1"}, {ID: 52000001, Name: "other"}, {Name: "bad name!"}, {Name: "x", ServerType: "cx999"}} {
		if _, err := f.Seed(bad); err == nil {
			t.Errorf("seed %+v succeeded", bad)
		}
	}
	a := call(t, ts, http.MethodGet, "/v1/servers/52000001", DefaultToken, nil)
	var got schema.ServerGetResponse
	if a.status != http.StatusOK || json.Unmarshal(a.body, &got) != nil || got.Server.Name != "node-old-1" || got.Server.Status != "running" ||
		got.Server.Labels["managed-by"] != "sam" {
		t.Fatalf("GET seeded server = %d %s", a.status, a.body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(running)
		mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("OnServerRunning fired %d times, want once (the off server never runs)", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	seeded := 0
	for _, e := range f.Ledger() {
		if e.Kind == EventServerCreate && e.Detail == "seeded" {
			seeded++
		}
	}
	if seeded != 2 {
		t.Fatalf("ledger has %d seeded creates, want 2", seeded)
	}
}
