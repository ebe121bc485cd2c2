package handlers

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tdf-project/tdf/cloud"
	"github.com/tdf-project/tdf/cloud/fakecloud"
	"github.com/tdf-project/tdf/cloud/hetzner"
	"github.com/tdf-project/tdf/fsm"
)

// The leader's leak pass also deletes this cluster's firewalls that no
// server uses and that are not the current one (left by a change of the
// agent source ranges); the current one stays, used or not.
func TestReconcilerSweepsUnusedFirewalls(t *testing.T) {
	fake := fakecloud.New(fakecloud.Options{RateLimit: -1})
	ts := httptest.NewServer(fake.Handler())
	t.Cleanup(func() { fake.Close(); ts.Close() })
	provider := func(sources ...string) *hetzner.Provider {
		opts := hetzner.DefaultOptions()
		opts.Endpoint, opts.Token = ts.URL+"/v1", fakecloud.DefaultToken
		opts.Firewall = &hetzner.FirewallOptions{AgentPort: 8080, AgentSources: sources,
			Labels: map[string]string{LabelManagedBy: ManagedBy, LabelCluster: "c1"}}
		p, err := hetzner.New(opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		return p
	}
	old, current := provider("198.51.100.0/24"), provider("203.0.113.0/24")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Each makes its firewall by making a server; the old server goes.
	for i, p := range []*hetzner.Provider{old, current} {
		srv, _, err := p.CreateServer(ctx, testServerSpec(i))
		if err != nil {
			t.Fatal(err)
		}
		if p == old {
			if err := p.DeleteServer(ctx, srv.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	cfg := DefaultConfig()
	cfg.FSM, cfg.Cloud, cfg.Cluster = fsm.New(), current, "c1"
	r := &Reconciler{Config: cfg, Interval: 20 * time.Millisecond, Grace: time.Hour, Now: time.Now, Logger: hclog.NewNullLogger(),
		Apply: func(context.Context, fsm.Command) (*fsm.Result, error) { return &fsm.Result{}, nil }}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { r.Run(runCtx, 1); close(done) }()
	defer func() { stop(); <-done }()
	for deadline := time.Now().Add(20 * time.Second); ; {
		fws := fake.Firewalls()
		if len(fws) == 1 && len(fws[0].Servers) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("firewalls %+v, want only the current one", fws)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testServerSpec(i int) cloud.ServerSpec {
	name := fmt.Sprintf("node-fw-%d", i)
	return cloud.ServerSpec{Name: name, ServerType: "cx23", Location: "fsn1",
		Labels: map[string]string{LabelManagedBy: ManagedBy, LabelCluster: "c1", LabelNode: name}}
}
