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

// SetSettings replaces the cluster-wide settings.
type SetSettings struct {
	Settings Settings `json:"settings"`
}

// Type implements Command.
func (SetSettings) Type() CommandType { return CmdSetSettings }
