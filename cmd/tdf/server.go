package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/cloud/hetzner"
	"github.com/tdf-project/tdf/cluster"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/handlers"
	"github.com/tdf-project/tdf/runner"
	"github.com/tdf-project/tdf/server"
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
	fs.DurationVar(&cc.MemberUnhealthyAfter, "member-unhealthy-after", cc.MemberUnhealthyAfter, "the leader reports a member unhealthy after this long without an answer (0: 1.5 × heartbeat timeout)")
	fs.Uint64Var(&cc.MemberMaxLag, "member-max-lag", cc.MemberMaxLag, "the leader reports a member unhealthy when its log is more entries behind (0: 1024)")
	fs.DurationVar(&cc.SnapshotInterval, "snapshot-interval", cc.SnapshotInterval, "how often raft checks whether to snapshot")
	fs.Uint64Var(&cc.SnapshotThreshold, "snapshot-threshold", cc.SnapshotThreshold, "log entries since the last snapshot that trigger a new one")
	fs.Uint64Var(&cc.TrailingLogs, "trailing-logs", cc.TrailingLogs, "log entries kept after a snapshot, for slow followers")
	fs.BoolVar(&cc.FaultInjection, "fault-injection", false, "chaos testing only: let POST /debug/faults/isolate and /heal cut this node's raft traffic (never in production)")
	fs.DurationVar(&cc.ApplyTimeout, "apply-timeout", cc.ApplyTimeout, "longest wait to enqueue one raft apply")
	fs.DurationVar(&cc.DeadServerAfter, "dead-server-cleanup", cc.DeadServerAfter, "the leader removes a voter unreachable this long, if --min-quorum healthy voters remain (0: never)")
	fs.IntVar(&cc.MinQuorum, "min-quorum", cc.MinQuorum, "healthy voters dead-server cleanup must leave; with 3, a dead server of a 3-node cluster goes only once a replacement joined")
	fs.DurationVar(&cc.DiskProbeInterval, "disk-probe-interval", cc.DiskProbeInterval, "how often the node test-writes its data dir and reads its free space; a failed write makes it not ready and keeps it from leading until a write succeeds")
	fs.Uint64Var(&cc.DiskWarnFreeBytes, "disk-warn-free-bytes", cc.DiskWarnFreeBytes, "warn (log, /healthz, tdf_disk_low_space) when the data dir's filesystem has less free space than this (0: never)")
	fs.DurationVar(&ac.HoldTimeout, "hold-timeout", ac.HoldTimeout, "how long a write waits for a leader before 503")
	fs.DurationVar(&ac.MaxStale, "max-stale", 250*time.Millisecond, "a follower answers a read without ?index or ?stale itself only within this time of the leader's last contact (and of applying what it knows is committed); otherwise the leader answers")
	fs.DurationVar(&ac.CallbackHoldTimeout, "callback-hold-timeout", ac.CallbackHoldTimeout, "how long an agent's callback waits for a leader before 503 (agents send some callbacks once and wait 30s)")
	fs.Int64Var(&ac.MaxBodyBytes, "max-body-bytes", ac.MaxBodyBytes, "largest accepted request body")
	fs.DurationVar(&ac.RequestTimeout, "request-timeout", ac.RequestTimeout, "longest time one API request may take")
	rc, pol := &cfg.Runner, &ac.Policy
	fs.IntVar(&rc.Workers, "workers", rc.Workers, "steps the leader works on at once, waits for raft commits included")
	fs.IntVar(&rc.Calls, "calls", rc.Calls, "cloud API and VM agent calls the leader's steps make at once")
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
	pc, st := cfg.Pipeline, &cfg.Settings
	fs.StringVar(&pc.Cluster, "cluster-name", pc.Cluster, "name of this cluster in server labels (keeps clusters sharing a cloud project apart)")
	fs.StringVar(&cfg.ControlPlaneURL, "control-plane-url", "", "the cluster's one URL for agents (a load balancer in front of every node), also the tokens' issuer; seeds the replicated setting of a new cluster, changed later with PUT /v1/cluster/control-plane (default: the first leader's API URL)")
	fs.IntVar(&pc.AgentPort, "agent-port", pc.AgentPort, "port the VM agents listen on")
	fs.StringVar(&pc.Image, "server-image", pc.Image, "image of new servers")
	bindAgentBinary(fs, pc)
	fs.DurationVar(&pc.ActionPoll, "provisioning-poll-interval", pc.ActionPoll, "how often a server's create action is polled")
	fs.DurationVar(&pc.AgentPoll, "agent-ready-poll-interval", pc.AgentPoll, "how often a new node's agent /health is polled")
	fs.DurationVar(&pc.NodeReadyGrace, "node-ready-grace", pc.NodeReadyGrace, "after this long with a healthy agent but no node-ready callback, the node counts as ready")
	fs.DurationVar(&cfg.AgentTimeout, "agent-request-timeout", cfg.AgentTimeout, "timeout of each call to a VM agent")
	fs.DurationVar(&cfg.KeyRotation, "key-rotation", cfg.KeyRotation, "how often the leader adds a new token signing key; old keys verify until their tokens expire (0: never)")
	fs.DurationVar(&cfg.ErrorRetention, "error-retention", cfg.ErrorRetention, "error records older than this are purged (besides the 10,000-record bound)")
	fs.DurationVar(&cfg.ReconcileInterval, "reconcile-interval", cfg.ReconcileInterval, "how often the leader looks for leaked servers")
	fs.DurationVar(&cfg.ReconcileGrace, "reconcile-grace", cfg.ReconcileGrace, "a server no node owns is deleted once it is this old")
	fs.DurationVar(&cfg.RunReconcileInterval, "run-reconcile-interval", cfg.RunReconcileInterval, "how often the leader asks each running task's agent what became of its run, so a lost status callback costs this long (0: never)")
	fs.DurationVar(&cfg.RunFinishGrace, "run-finish-grace", cfg.RunFinishGrace, "how long a finished prompt's own status callback is waited for before the run reconcile reports it")
	fs.DurationVar(&st.NodeWarmTimeout, "node-warm-timeout", st.NodeWarmTimeout, "a warm node nobody claims is destroyed after this long")
	fs.DurationVar(&st.MaxNodeLifetime, "max-node-lifetime", st.MaxNodeLifetime, "an auto-provisioned node takes no new task after this long (cordoned) and is destroyed once its last task ends; an idle one is destroyed then")
	fs.DurationVar(&st.NodeHardLifetime, "node-hard-lifetime", st.NodeHardLifetime, "a node still busy at this age is destroyed and its tasks fail (0: --max-node-lifetime plus 4h, the default --max-execution-time)")
	fs.DurationVar(&cfg.TaskRetention, "task-retention", 30*24*time.Hour, "finished tasks, deleted nodes and stopped workspaces leave the replicated state this long after they ended, archived first (0: keep forever; at least 24h, the idempotency window)")
	fs.StringVar(&cfg.ArchiveDir, "archive-dir", "", "where this node archives what retention removes, as gzip JSON lines per day (default <data-dir>/archive)")
	fs.IntVar(&st.MaxNodesPerUser, "max-nodes-per-user", st.MaxNodesPerUser, "node_provisioning fails with LIMIT_EXCEEDED at this many nodes")
	fs.IntVar(&st.MaxWorkspacesPerNode, "max-workspaces-per-node", st.MaxWorkspacesPerNode, "a node with this many workspaces takes no more")
	fs.Float64Var(&st.CPUThreshold, "cpu-threshold", st.CPUThreshold, "a node at or above this CPU percent takes no more workspaces")
	fs.Float64Var(&st.MemoryThreshold, "memory-threshold", st.MemoryThreshold, "a node at or above this memory percent takes no more workspaces")
	fs.DurationVar(&st.HeartbeatStale, "heartbeat-stale", st.HeartbeatStale, "a node is healthy while its last heartbeat is this fresh, stale up to twice it")
	logOpts.bind(fs)
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// cloudFlags are the Hetzner connection flags.
type cloudFlags struct{ opts hetzner.Options }

func (c *cloudFlags) bind(fs *flag.FlagSet) {
	c.opts = hetzner.DefaultOptions()
	fs.StringVar(&c.opts.Endpoint, "cloud-endpoint", "https://api.hetzner.cloud/v1", "Hetzner Cloud API base URL")
	fs.StringVar(&c.opts.Token, "cloud-token", "", "Hetzner Cloud API token (prefer TDF_CLOUD_TOKEN: flags show in ps)")
	fs.DurationVar(&c.opts.Timeout, "hetzner-timeout", c.opts.Timeout, "timeout of each Hetzner API request")
}

func defaultServerConfig() server.Config {
	pc := handlers.DefaultConfig()
	return server.Config{Cluster: cluster.DefaultConfig(), API: api.DefaultConfig(), Runner: runner.DefaultConfig(),
		Pipeline: &pc, Settings: fsm.DefaultSettings(), AgentTimeout: 30 * time.Second,
		ReconcileInterval: 5 * time.Minute, ReconcileGrace: 10 * time.Minute, RunReconcileInterval: time.Minute, RunFinishGrace: 45 * time.Second, KeyRotation: 24 * time.Hour, ErrorRetention: 7 * 24 * time.Hour}
}

func runServer(ctx context.Context, args []string) error {
	cfg := defaultServerConfig()
	var logOpts logOptions
	var bootstrap string
	var cf cloudFlags
	var pf placementFlags
	var sec securityOptions
	var ef eventFlags
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	serverFlags(fs, &cfg, &logOpts, &bootstrap)
	cf.bind(fs)
	pf.bind(fs, &cf)
	sec.bind(fs, &cfg)
	ef.bind(fs)
	keyringFile := fs.String("keyring-file", "", "the cluster keyring sealing credentials, the same file on every node (default: keyring.json in --data-dir, if there)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := sec.apply(&cfg); err != nil {
		return err
	}
	if err := ef.apply(&cfg); err != nil {
		return err
	}
	var err error
	if cfg.Cluster.Bootstrap, err = cluster.ParseBootstrap(bootstrap); err != nil {
		return fmt.Errorf("--bootstrap: %w", err)
	}
	if cfg.Cluster.NodeID == "" || cfg.Cluster.DataDir == "" {
		return fmt.Errorf("--node-id and --data-dir are required (see tdf server --help)")
	}
	if err := pf.apply(cfg.Pipeline, &cf); err != nil {
		return err
	}
	cf.opts.Application = hetzner.Application{Name: "tdf", Version: version}
	cfg.Registry = prometheus.NewRegistry()
	cf.opts.Registerer = cfg.Registry
	if cf.opts.Token != "" {
		provider, err := hetzner.New(cf.opts)
		if err != nil {
			return fmt.Errorf("cloud: %w", err)
		}
		defer provider.Close()
		cfg.Pipeline.Cloud = provider
		// Sizes and locations the cloud cannot serve are refused at submit.
		cfg.API.Placement = cfg.Pipeline.CheckPlacement
		cfg.API.Pricing = cfg.Pipeline.HourlyPrice
	}
	cfg.Logger = logOpts.logger("tdf").With("node", cfg.Cluster.NodeID)
	kr, krPath, err := loadNodeKeyring(*keyringFile, cfg.Cluster.DataDir)
	if err != nil {
		return err
	}
	if cfg.API.Keyring = kr; kr == nil {
		cfg.Logger.Warn("no keyring (--keyring-file, or keyring.json in --data-dir): this node can neither set nor hand out credentials, agents' git-token and agent-key calls fail, and a cluster without one keeps its token signing keys unsealed; see docs/security.md")
	} else {
		cfg.Logger.Info("keyring loaded", "file", krPath, "keys", kr.Len(), "active", kr.ActiveID())
	}
	if cfg.ControlPlaneURL == "" && len(cfg.Cluster.Bootstrap) > 1 {
		cfg.Logger.Warn("no --control-plane-url: a new cluster takes its first leader's API URL as the URL agents call back to; production needs a stable load-balancer URL in front of every node (--control-plane-url, or PUT /v1/cluster/control-plane)")
	}
	if cfg.Pipeline.Cloud == nil {
		cfg.Logger.Warn("no cloud token (--cloud-token or TDF_CLOUD_TOKEN): tasks that need a new node will fail")
	}
	if err := checkAgentBinary(cfg.Pipeline, cfg.Logger); err != nil {
		return err
	}
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
