package cluster

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Config configures one cluster node.
type Config struct {
	// NodeID is this server's raft id; it must be unique and stable.
	NodeID string
	// DataDir holds raft.db (log and stable store) and snapshots/.
	DataDir string
	// RaftAddr is the address the raft transport binds.
	RaftAddr string
	// RaftAdvertise is the raft address peers dial (default RaftAddr).
	RaftAdvertise string
	// APIURL is this node's HTTP API base URL as peers reach it
	// (e.g. http://127.0.0.1:8001); recorded in the member table.
	APIURL string
	// Bootstrap is the initial voter set, used only when DataDir holds no
	// raft state and this node is in the set.
	Bootstrap []raft.Server
	// JoinURL is an existing member's API URL, to join a running cluster.
	JoinURL string

	// Raft timing. The defaults are tuned for a LAN or loopback: a dead
	// leader is replaced in about 0.6 s at the median and 1.2 s at worst
	// (a follower notices in [HT, 3HT), and pre-vote makes the election
	// wait until both survivors have noticed). Heartbeats go every HT/10;
	// under full load on a shared two-core machine the leader's worst
	// contact gap was 250–300 ms, and pre-vote absorbs such a near miss
	// without a term change. BENCHMARKS.md ("Failover") has the figures
	// for 500, 400 and 300 ms.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	MaxAppendEntries   int
	SnapshotInterval   time.Duration
	SnapshotThreshold  uint64
	TrailingLogs       uint64
	// ApplyTimeout bounds how long one Apply waits to be enqueued.
	ApplyTimeout time.Duration

	// DeadServerAfter: the leader removes a voter unreachable for this
	// long, if MinQuorum healthy voters remain (cleanup.go); 0 disables.
	DeadServerAfter time.Duration
	// MinQuorum is how many healthy voters dead-server cleanup leaves.
	MinQuorum int

	// Transport replaces the TCP transport (tests use raft's in-memory one).
	Transport raft.Transport
	// RaftTLS, if set, runs the raft transport over mutual TLS
	// (TLSStreamLayer; see MutualTLSConfig).
	RaftTLS *tls.Config
	// HTTPClient calls other members' APIs (self-registration through
	// the join endpoint); it carries the CA and the join token. Default
	// http.DefaultClient.
	HTTPClient *http.Client
	// FaultInjection puts a FaultLayer under the TCP transport, so that
	// chaos tests can cut the node off from its peers (Node.Faults). Off
	// by default; never for production.
	FaultInjection bool

	// DiskProbeInterval is how often the node test-writes its stable store
	// and reads the free space of its data dir (disk.go); default 1 s.
	DiskProbeInterval time.Duration
	// DiskWarnFreeBytes: below this much free space under the data dir the
	// node warns (log, /healthz, metrics) before writes fail; 0: never.
	DiskWarnFreeBytes uint64
	// DiskFaults, if set, makes disk writes fail on demand (tests).
	DiskFaults *DiskFaults

	// MemberUnhealthyAfter: the leader calls a member unhealthy when it has
	// not answered for this long (default 1.5 × HeartbeatTimeout: the
	// leader heartbeats every HeartbeatTimeout/10, and its worst gap under
	// full load here was about one HeartbeatTimeout).
	MemberUnhealthyAfter time.Duration
	// MemberMaxLag: a member whose log is more entries than this behind
	// the leader's is unhealthy (default 1024).
	MemberMaxLag uint64

	// OnApply, if set, is told how long each committed Apply took (metrics).
	OnApply func(time.Duration)

	Logger hclog.Logger
}

// DefaultConfig returns a configuration with the documented defaults.
func DefaultConfig() Config {
	return Config{
		HeartbeatTimeout:   300 * time.Millisecond,
		ElectionTimeout:    300 * time.Millisecond,
		LeaderLeaseTimeout: 250 * time.Millisecond,
		CommitTimeout:      20 * time.Millisecond,
		MaxAppendEntries:   256,
		SnapshotInterval:   120 * time.Second,
		SnapshotThreshold:  8192,
		TrailingLogs:       10240,
		ApplyTimeout:       10 * time.Second,
		DeadServerAfter:    5 * time.Minute,
		MinQuorum:          3,
		DiskProbeInterval:  time.Second,
		DiskWarnFreeBytes:  1 << 30,
	}
}

// Validate checks the configuration; messages name the field and the limit.
func (c *Config) Validate() error {
	switch {
	case c.NodeID == "":
		return fmt.Errorf("node id is required (--node-id)")
	case c.DataDir == "":
		return fmt.Errorf("data dir is required (--data-dir)")
	case c.RaftAddr == "" && c.Transport == nil:
		return fmt.Errorf("raft address is required (--raft-addr)")
	case c.APIURL == "":
		return fmt.Errorf("API URL is required (--http-addr or --advertise-http)")
	case c.HeartbeatTimeout < 5*time.Millisecond:
		return fmt.Errorf("heartbeat timeout %s is below the 5ms floor", c.HeartbeatTimeout)
	case c.ElectionTimeout < c.HeartbeatTimeout:
		return fmt.Errorf("election timeout %s must be at least the heartbeat timeout %s", c.ElectionTimeout, c.HeartbeatTimeout)
	case c.LeaderLeaseTimeout < 5*time.Millisecond || c.LeaderLeaseTimeout > c.HeartbeatTimeout:
		return fmt.Errorf("leader lease timeout %s must be between 5ms and the heartbeat timeout %s", c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	case c.CommitTimeout < time.Millisecond:
		return fmt.Errorf("commit timeout %s is below 1ms", c.CommitTimeout)
	case c.MaxAppendEntries < 1 || c.MaxAppendEntries > 1024:
		return fmt.Errorf("max append entries %d must be in [1, 1024]", c.MaxAppendEntries)
	case c.ApplyTimeout <= 0:
		return fmt.Errorf("apply timeout must be positive")
	case c.DeadServerAfter < 0:
		return fmt.Errorf("dead server cleanup delay %s is negative (0 disables it)", c.DeadServerAfter)
	case c.DeadServerAfter > 0 && c.DeadServerAfter < 2*c.ElectionTimeout:
		return fmt.Errorf("dead server cleanup delay %s is below twice the election timeout %s: a slow server would be removed", c.DeadServerAfter, c.ElectionTimeout)
	case c.DeadServerAfter > 0 && c.MinQuorum < 2:
		return fmt.Errorf("min quorum %d must be at least 2 when dead server cleanup is on", c.MinQuorum)
	}
	if c.RaftAddr != "" {
		if _, _, err := net.SplitHostPort(c.RaftAddr); err != nil {
			return fmt.Errorf("raft address %q: %v", c.RaftAddr, err)
		}
	}
	return nil
}

// ParseBootstrap parses "n1=127.0.0.1:7001,n2=127.0.0.1:7002,…" into voters.
func ParseBootstrap(s string) ([]raft.Server, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []raft.Server
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("bootstrap entry %q: want id=host:port", part)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("bootstrap entry %q: %v", part, err)
		}
		if seen[id] {
			return nil, fmt.Errorf("bootstrap entry %q: id %s appears twice", part, id)
		}
		seen[id] = true
		out = append(out, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(addr)})
	}
	return out, nil
}

func (c *Config) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.NodeID)
	rc.HeartbeatTimeout = c.HeartbeatTimeout
	rc.ElectionTimeout = c.ElectionTimeout
	rc.LeaderLeaseTimeout = c.LeaderLeaseTimeout
	rc.CommitTimeout = c.CommitTimeout
	rc.MaxAppendEntries = c.MaxAppendEntries
	rc.SnapshotInterval = c.SnapshotInterval
	rc.SnapshotThreshold = c.SnapshotThreshold
	rc.TrailingLogs = c.TrailingLogs
	rc.Logger = c.Logger.Named("raft")
	return rc
}

// RaftConfig is the hashicorp/raft configuration a node with this Config
// runs with (benchmarks compare raw raft against tdf on the same settings).
func (c *Config) RaftConfig() *raft.Config {
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	return c.raftConfig()
}
