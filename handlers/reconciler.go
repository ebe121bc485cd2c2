package handlers

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tdf-project/tdf/cloud"
	"github.com/tdf-project/tdf/fsm"
)

// Reconciler is the leader's periodic leak sweep: it lists the servers
// carrying this cluster's labels and deletes those no live node owns once
// they are older than a grace period (a create whose server id has not
// been committed yet is not a leak), recording each deletion in the error
// database. In a healthy run it never acts.
type Reconciler struct {
	Config   Config
	Apply    func(ctx context.Context, cmd fsm.Command) (*fsm.Result, error)
	Interval time.Duration
	Grace    time.Duration
	Now      func() time.Time
	Logger   hclog.Logger
}

// Run is the leader hook: it reconciles every Interval until ctx ends.
func (r *Reconciler) Run(ctx context.Context, _ uint64) {
	if r.Config.Cloud == nil || r.Interval <= 0 {
		return
	}
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := r.Reconcile(ctx); err != nil {
			r.Logger.Warn("leak reconcile failed", "error", err)
		} else if n > 0 {
			r.Logger.Warn("leaked servers deleted", "count", n)
		}
		// Firewalls of an earlier configuration that no server uses.
		if fs, ok := r.Config.Cloud.(cloud.FirewallSweeper); ok {
			if n, err := fs.SweepFirewalls(ctx); err != nil {
				r.Logger.Warn("firewall sweep failed", "error", err)
			} else if n > 0 {
				r.Logger.Info("unused firewalls deleted", "count", n)
			}
		}
	}
}

// Selector is the label selector of this cluster's servers.
func (c Config) Selector() string {
	return fmt.Sprintf("%s=%s,%s=%s", LabelManagedBy, ManagedBy, LabelCluster, c.Cluster)
}

// Reconcile runs one pass and returns how many servers it deleted.
func (r *Reconciler) Reconcile(ctx context.Context) (int, error) {
	servers, err := r.Config.Cloud.ListServers(ctx, r.Config.Selector())
	if err != nil {
		return 0, err
	}
	now := r.Now()
	deleted := 0
	for _, srv := range servers {
		if r.owned(srv) || now.Sub(srv.Created) < r.Grace {
			continue
		}
		if err := r.Config.Cloud.DeleteServer(ctx, srv.ID); err != nil {
			return deleted, fmt.Errorf("delete leaked server %s: %w", srv.Name, err)
		}
		deleted++
		msg := fmt.Sprintf("deleted leaked server %s (id %d, created %s): no live node owns it", srv.Name, srv.ID, srv.Created.Format(time.RFC3339))
		if _, err := r.Apply(ctx, fsm.RecordError{Record: fsm.ErrorRecord{Kind: fsm.ErrKindReconciler,
			NodeID: srv.Labels[LabelNode], Message: msg, At: now.UTC().Round(0)}}); err != nil {
			return deleted, err
		}
	}
	return deleted, nil
}

// owned reports whether a live (or destroying) node claims the server.
func (r *Reconciler) owned(srv cloud.Server) bool {
	n, ok := r.Config.FSM.Node(srv.Labels[LabelNode])
	if !ok || n.Status == fsm.NodeDeleted {
		return false
	}
	return n.ServerID == 0 || n.ServerID == srv.ID
}
