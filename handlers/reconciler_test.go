package handlers

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tdf-project/tdf/cloud"
	"github.com/tdf-project/tdf/cloud/fakecloud"
	"github.com/tdf-project/tdf/cloud/hetzner"
	"github.com/tdf-project/tdf/fsm"
)

// TestReconcilerDeletesOnlyUnownedServersPastGrace: a server carrying our
// labels that no live node owns is deleted once past the grace period,
// with an error record; owned, young and foreign servers are left alone.
func TestReconcilerDeletesOnlyUnownedServersPastGrace(t *testing.T) {
	fake := fakecloud.New(fakecloud.Options{RateLimit: -1})
	ts := httptest.NewServer(fake.Handler())
	t.Cleanup(func() { fake.Close(); ts.Close() })
	opts := hetzner.DefaultOptions()
	opts.Endpoint, opts.Token, opts.PollInterval = ts.URL+"/v1", fakecloud.DefaultToken, 10*time.Millisecond
	prov, err := hetzner.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer prov.Close()

	f := fsm.New()
	index := uint64(0)
	apply := func(_ context.Context, c fsm.Command) (*fsm.Result, error) {
		b, err := fsm.Encode(c)
		if err != nil {
			return nil, err
		}
		index++
		return f.ApplyCommand(index, b), nil
	}
	cfg := DefaultConfig()
	cfg.FSM, cfg.Cloud, cfg.Cluster = f, prov, "c1"
	ctx := context.Background()
	create := func(name, node, cluster string) cloud.Server {
		t.Helper()
		srv, _, err := prov.CreateServer(ctx, cloud.ServerSpec{Name: name, ServerType: "cx23", Location: "fsn1",
			Labels: map[string]string{LabelManagedBy: ManagedBy, LabelCluster: cluster, LabelNode: node}})
		if err != nil {
			t.Fatal(err)
		}
		return srv
	}
	// An owned server: a task provisioned node n-1 and committed its id.
	apply(ctx, fsm.SubmitTask{TaskID: "t-1", Spec: fsm.TaskSpec{UserID: "u1", ProjectID: "p", Prompt: "x", Repository: "r"}, At: time.Now()})
	apply(ctx, fsm.DecideStep{TaskID: "t-1", Step: fsm.StepNodeSelection, At: time.Now()})
	task, _ := f.Task("t-1")
	owned := create("node-"+task.NodeID, task.NodeID, "c1")
	apply(ctx, fsm.StepStarted{TaskID: "t-1", Step: fsm.StepNodeProvisioning, Attempt: 1, Term: 1, At: time.Now()})
	apply(ctx, fsm.StepResult{TaskID: "t-1", Step: fsm.StepNodeProvisioning, Attempt: 1, Term: 1, Outcome: fsm.OutcomePoll,
		Data: fsm.StepData{ServerID: owned.ID}, RetryAt: time.Now().Add(time.Second), At: time.Now()})
	leaked := create("node-gone", "n-gone", "c1")
	foreign := create("node-other-cluster", "n-x", "c2")

	now := time.Now()
	r := &Reconciler{Config: cfg, Apply: apply, Grace: time.Hour, Now: func() time.Time { return now }}
	if n, err := r.Reconcile(ctx); err != nil || n != 0 {
		t.Fatalf("within the grace period: Reconcile = %d, %v; want 0", n, err)
	}
	now = now.Add(2 * time.Hour)
	if n, err := r.Reconcile(ctx); err != nil || n != 1 {
		t.Fatalf("Reconcile = %d, %v; want 1 deletion", n, err)
	}
	for _, c := range []struct {
		srv  cloud.Server
		gone bool
	}{{owned, false}, {leaked, true}, {foreign, false}} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			s, err := prov.GetServer(ctx, c.srv.ID)
			if err != nil {
				t.Fatal(err)
			}
			if gone := s == nil || s.Status == cloud.StatusDeleting; gone == c.gone {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("server %s: gone = %v, want %v", c.srv.Name, !c.gone, c.gone)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	recs, _ := f.Errors(fsm.ErrorFilter{Kind: fsm.ErrKindReconciler})
	if len(recs) != 1 || !strings.Contains(recs[0].Message, "node-gone") || recs[0].NodeID != "n-gone" {
		t.Fatalf("reconciler records = %+v", recs)
	}
}
