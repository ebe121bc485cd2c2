package fsm

import "time"

// Settings are the cluster-wide rules Apply uses to choose and retire
// nodes. They live in the replicated state (the leader commits SetSettings
// from its configuration when they differ), so that every replica decides
// alike whatever flags it was started with.
type Settings struct {
	MaxWorkspacesPerNode int           `json:"max_workspaces_per_node"`
	CPUThreshold         float64       `json:"cpu_threshold"`
	MemoryThreshold      float64       `json:"memory_threshold"`
	MaxNodesPerUser      int           `json:"max_nodes_per_user"`
	NodeWarmTimeout      time.Duration `json:"node_warm_timeout"`
	MaxNodeLifetime      time.Duration `json:"max_node_lifetime"`
	// NodeHardLifetime bounds a node that was still busy at its max
	// lifetime: then its tasks fail and it is destroyed. Zero (or not
	// above MaxNodeLifetime) means MaxNodeLifetime + DefaultNodeLifetimeGrace.
	NodeHardLifetime time.Duration `json:"node_hard_lifetime,omitempty"`
	// HeartbeatStale: a node is healthy while its last heartbeat is at
	// most this old, stale up to twice it, unhealthy beyond.
	HeartbeatStale time.Duration `json:"heartbeat_stale"`
}

// DefaultSettings returns REFERENCE.md's defaults.
func DefaultSettings() Settings {
	return Settings{
		MaxWorkspacesPerNode: 10,
		CPUThreshold:         80,
		MemoryThreshold:      80,
		MaxNodesPerUser:      10,
		NodeWarmTimeout:      30 * time.Minute,
		MaxNodeLifetime:      4 * time.Hour,
		HeartbeatStale:       180 * time.Second,
	}
}

// DefaultNodeLifetimeGrace is how long past its max lifetime a busy node
// keeps its tasks when no hard lifetime is set: the default max execution
// time, so a task started just before the lifetime can still finish.
const DefaultNodeLifetimeGrace = 4 * time.Hour

// HardLifetime is the node age at which a busy node's tasks fail and the
// node is destroyed.
func (s Settings) HardLifetime() time.Duration {
	if s.NodeHardLifetime > s.MaxNodeLifetime {
		return s.NodeHardLifetime
	}
	return s.MaxNodeLifetime + DefaultNodeLifetimeGrace
}

// SetSettings replaces the cluster-wide settings.
type SetSettings struct {
	Settings Settings `json:"settings"`
}

// Type implements Command.
func (SetSettings) Type() CommandType { return CmdSetSettings }
