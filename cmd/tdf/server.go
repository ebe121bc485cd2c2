package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/cluster"
	"github.com/tdf-project/tdf/server"
	"github.com/tdf-project/tdf/steps"
)

// serverFlags binds every flag of `tdf server` onto a server.Config.
func serverFlags(fs *flag.FlagSet, cfg *server.Config, logOpts *logOptions, bootstrap *string) {
	cc, ac := &cfg.Cluster, &cfg.API
	fs.StringVar(&cc.NodeID, "node-id", "", "this node's raft id (required, stable across restarts)")
	fs.StringVar(&cc.DataDir, "data-dir", "", "directory for the raft log, stable store and snapshots (required)")
	fs.StringVar(&cc.RaftAddr, "raft-addr", "127.0.0.1:7001", "address the raft transport binds")
	fs.StringVar(&cc.RaftAdvertise, "raft-advertise", "", "raft address peers dial (default: --raft-addr)")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:8001", "address the HTTP API listens on")
	fs.StringVar(&cfg.AdvertiseHTTP, "advertise-http", "", "API URL peers use to forward to this node (default: http://<http-addr>)")
	fs.StringVar(bootstrap, "bootstrap", "", "initial voters id=host:port,… (first start only; ignored when state exists)")
	fs.StringVar(&cc.JoinURL, "join", "", "API URL of a running member to join through, instead of --bootstrap")
	fs.DurationVar(&cc.HeartbeatTimeout, "heartbeat-timeout", cc.HeartbeatTimeout, "raft heartbeat timeout: a follower starts an election after [T, 2T) without contact")
	fs.DurationVar(&cc.ElectionTimeout, "election-timeout", cc.ElectionTimeout, "raft election timeout (≥ heartbeat timeout)")
	fs.DurationVar(&cc.LeaderLeaseTimeout, "leader-lease-timeout", cc.LeaderLeaseTimeout, "a leader steps down after this long without a quorum's contact (≤ heartbeat timeout)")
	fs.DurationVar(&cc.CommitTimeout, "commit-timeout", cc.CommitTimeout, "longest wait before the leader sends an append with nothing new")
	fs.IntVar(&cc.MaxAppendEntries, "max-append-entries", cc.MaxAppendEntries, "entries per append RPC and per group commit (1–1024)")
	fs.DurationVar(&cc.SnapshotInterval, "snapshot-interval", cc.SnapshotInterval, "how often raft checks whether to snapshot")
	fs.Uint64Var(&cc.SnapshotThreshold, "snapshot-threshold", cc.SnapshotThreshold, "log entries since the last snapshot that trigger a new one")
	fs.Uint64Var(&cc.TrailingLogs, "trailing-logs", cc.TrailingLogs, "log entries kept after a snapshot, for slow followers")
	fs.DurationVar(&cc.ApplyTimeout, "apply-timeout", cc.ApplyTimeout, "longest wait to enqueue one raft apply")
	fs.DurationVar(&ac.HoldTimeout, "hold-timeout", ac.HoldTimeout, "how long a write waits for a leader before 503")
	fs.Int64Var(&ac.MaxBodyBytes, "max-body-bytes", ac.MaxBodyBytes, "largest accepted request body")
	fs.DurationVar(&ac.RequestTimeout, "request-timeout", ac.RequestTimeout, "longest time one API request may take")
	rc, pol := &cfg.Runner, &ac.Policy
	fs.IntVar(&rc.Workers, "workers", rc.Workers, "steps the leader runs at once")
	fs.IntVar(&rc.MaxRetries, "step-max-retries", rc.MaxRetries, "transient failures a step may have before its task fails")
	fs.DurationVar(&rc.RetryBase, "retry-base-delay", rc.RetryBase, "first retry delay; doubles each retry (±20% jitter)")
	fs.DurationVar(&rc.RetryMax, "retry-max-delay", rc.RetryMax, "cap on the retry delay")
	fs.DurationVar(&rc.SweepInterval, "sweep-interval", rc.SweepInterval, "how often the leader's sweeper looks for stuck tasks")
	fs.DurationVar(&rc.StuckQueued, "stuck-queued-timeout", rc.StuckQueued, "a queued task whose alarm has stalled is failed after this long")
	fs.DurationVar(&rc.StuckDelegated, "stuck-delegated-timeout", rc.StuckDelegated, "a delegated task whose alarm has stalled is failed after this long")
	fs.DurationVar(&rc.StuckInProgress, "stuck-in-progress-timeout", rc.StuckInProgress, "an in-progress task whose alarm has stalled is failed after this long")
	fs.DurationVar(&pol.ClaimTimeout, "claim-timeout", pol.ClaimTimeout, "one attempt of a step with external calls is presumed lost after this long")
	fs.DurationVar(&pol.ProvisionTimeout, "provisioning-timeout", pol.ProvisionTimeout, "node_provisioning gives up after this long")
	fs.DurationVar(&pol.AgentReadyTimeout, "agent-ready-timeout", pol.AgentReadyTimeout, "node_agent_ready gives up after this long")
	fs.DurationVar(&pol.WorkspaceReadyTimeout, "workspace-ready-timeout", pol.WorkspaceReadyTimeout, "workspace_ready waits this long for the ready callback")
	fs.DurationVar(&pol.MaxExecution, "max-execution-time", pol.MaxExecution, "the running step's limit")
	fs.DurationVar(&pol.IdleTimeout, "session-idle-timeout", pol.IdleTimeout, "awaiting_followup completes the task after this long idle")
	logOpts.bind(fs)
}

func defaultServerConfig() server.Config {
	return server.Config{Cluster: cluster.DefaultConfig(), API: api.DefaultConfig(), Runner: steps.DefaultConfig()}
}

func runServer(ctx context.Context, args []string) error {
	cfg := defaultServerConfig()
	var logOpts logOptions
	var bootstrap string
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	serverFlags(fs, &cfg, &logOpts, &bootstrap)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var err error
	if cfg.Cluster.Bootstrap, err = cluster.ParseBootstrap(bootstrap); err != nil {
		return fmt.Errorf("--bootstrap: %w", err)
	}
	if cfg.Cluster.NodeID == "" || cfg.Cluster.DataDir == "" {
		return fmt.Errorf("--node-id and --data-dir are required (see tdf server --help)")
	}
	cfg.Logger = logOpts.logger("tdf").With("node", cfg.Cluster.NodeID)
	srv, err := server.Start(cfg)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		cfg.Logger.Info("shutting down")
		return srv.Close()
	case err := <-srv.Done():
		_ = srv.Close()
		return fmt.Errorf("http server: %w", err)
	}
}

// logOptions are the logging flags shared by the long-running commands.
type logOptions struct {
	level string
	json  bool
}

func (o *logOptions) bind(fs *flag.FlagSet) {
	fs.StringVar(&o.level, "log-level", "info", "log level: trace, debug, info, warn, error")
	fs.BoolVar(&o.json, "log-json", false, "log JSON lines instead of text")
}

func (o *logOptions) logger(name string) hclog.Logger {
	level := hclog.LevelFromString(strings.ToLower(o.level))
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: level, JSONFormat: o.json, Output: os.Stderr})
}
