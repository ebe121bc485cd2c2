package server

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tdf-project/tdf/archive"
	"github.com/tdf-project/tdf/fsm"
)

// forgetBatch bounds the ids of each kind one Forget command carries, so
// that a first run over a long history is many modest log entries.
const forgetBatch = 500

// defaultRetentionInterval is how often the leader looks for records past
// the retention.
const defaultRetentionInterval = 10 * time.Minute

// openArchive opens this node's task archive (Config.ArchiveDir, default
// <data-dir>/archive) and installs it as the FSM's archive hook, before
// raft replays the log into the FSM. Without a directory nil is returned.
func openArchive(cfg Config, f *fsm.FSM) (*archive.Archive, error) {
	dir := cfg.ArchiveDir
	if dir == "" && cfg.Cluster.DataDir != "" {
		dir = filepath.Join(cfg.Cluster.DataDir, "archive")
	}
	if dir == "" {
		return nil, nil
	}
	log := cfg.Logger.Named("archive")
	a, err := archive.Open(dir, log.Error)
	if err != nil {
		return nil, fmt.Errorf("task archive: %w", err)
	}
	f.SetArchiveHook(a.Write)
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tdf_archive_write_errors_total",
			Help: "Archive writes that failed: records retention removed from the state that this node's archive lacks.",
		}, func() float64 { return float64(a.Errors()) }))
	}
	return a, nil
}

// retentionDuty returns the leader hook that forgets what is older than the
// retention: every interval it commits Forget commands (archived on every
// node as they apply) until nothing is left past the cutoff. The cutoff is
// never within the idempotency window, so a retried submission still finds
// its task.
func retentionDuty(f *fsm.FSM, apply func(context.Context, fsm.Command) (*fsm.Result, error), retention, interval time.Duration, log hclog.Logger) func(context.Context, uint64) {
	retention = max(retention, fsm.DefaultIdempotencyRetention)
	if interval <= 0 {
		interval = defaultRetentionInterval
	}
	return func(ctx context.Context, _ uint64) {
		for {
			forgetOld(ctx, f, apply, retention, log)
			select {
			case <-ctx.Done():
				return
			case <-time.After(interval):
			}
		}
	}
}

func forgetOld(ctx context.Context, f *fsm.FSM, apply func(context.Context, fsm.Command) (*fsm.Result, error), retention time.Duration, log hclog.Logger) {
	for ctx.Err() == nil {
		now := time.Now().UTC().Round(0)
		c := f.ForgetCandidates(now.Add(-retention), forgetBatch)
		n := len(c.TaskIDs) + len(c.NodeIDs) + len(c.WorkspaceIDs)
		if n == 0 {
			return
		}
		c.At = now
		if _, err := apply(ctx, c); err != nil {
			if ctx.Err() == nil {
				log.Warn("cannot forget records past the retention", "error", err)
			}
			return
		}
		log.Info("forgot records past the retention", "tasks", len(c.TaskIDs), "nodes", len(c.NodeIDs), "workspaces", len(c.WorkspaceIDs), "cutoff", c.Cutoff)
		if len(c.TaskIDs) < forgetBatch && len(c.NodeIDs) < forgetBatch && len(c.WorkspaceIDs) < forgetBatch {
			return
		}
	}
}
