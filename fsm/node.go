package fsm

import "time"

// NodeStatus is a VM node's lifecycle state: active ⇄ warm → destroying → deleted.
type NodeStatus string

// Node lifecycle states (REFERENCE.md).
const (
	NodeActive     NodeStatus = "active"
	NodeWarm       NodeStatus = "warm"
	NodeDestroying NodeStatus = "destroying"
	NodeDeleted    NodeStatus = "deleted"
)

// NodeMetrics are the load figures a node reports in its heartbeat.
type NodeMetrics struct {
	// CPULoad is what the agent reports as cpuLoadAvg1. The selection
	// rules compare it with the CPU threshold as the old system did.
	CPULoad       float64 `json:"cpu_load"`
	MemoryPercent float64 `json:"memory_percent"`
	DiskPercent   float64 `json:"disk_percent"`
}

// Node is a VM that runs workspaces. Immutable once stored, like Task.
type Node struct {
	ID               string       `json:"id"`
	UserID           string       `json:"user_id"`
	Status           NodeStatus   `json:"status"`
	ServerID         int64        `json:"server_id,omitempty"`
	ServerName       string       `json:"server_name,omitempty"`
	Size             string       `json:"size,omitempty"`
	Location         string       `json:"location,omitempty"`
	IPv4             string       `json:"ipv4,omitempty"`
	AutoProvisioned  bool         `json:"auto_provisioned"`
	Ready            bool         `json:"ready"`
	ReadyAt          *time.Time   `json:"ready_at,omitempty"`
	LastHeartbeat    *time.Time   `json:"last_heartbeat,omitempty"`
	ActiveWorkspaces int          `json:"active_workspaces"`
	Metrics          *NodeMetrics `json:"metrics,omitempty"`
	WarmSince        *time.Time   `json:"warm_since,omitempty"`
	CreatedAt        time.Time    `json:"created_at"`
	UpdatedAt        time.Time    `json:"updated_at"`
	// ActionID is the Hetzner create action being polled.
	ActionID int64 `json:"action_id,omitempty"`
	// TaskID is the task that provisioned the node.
	TaskID string `json:"task_id,omitempty"`
	// Alarm is the node's pending alarm: warm timeout, max lifetime, or
	// the next attempt to delete its server while destroying.
	Alarm *Alarm `json:"alarm,omitempty"`
	// DestroyAttempts counts server deletions tried while destroying.
	DestroyAttempts int        `json:"destroy_attempts,omitempty"`
	LastError       string     `json:"last_error,omitempty"`
	DeletedAt       *time.Time `json:"deleted_at,omitempty"`
	// Cordoned: the node takes no new task (selection skips it); it is
	// destroyed when its last task's cleanup is done (cordon.go).
	Cordoned     bool   `json:"cordoned,omitempty"`
	CordonReason string `json:"cordon_reason,omitempty"`
	// PastLifetime: the node outlived its max lifetime while busy; its
	// alarm is now the hard lifetime limit.
	PastLifetime bool `json:"past_lifetime,omitempty"`
}

// Health is a node's health judged from its heartbeats (REFERENCE.md).
type Health string

// Node health values.
const (
	HealthUnknown   Health = "unknown" // no heartbeat yet
	HealthHealthy   Health = "healthy"
	HealthStale     Health = "stale"
	HealthUnhealthy Health = "unhealthy"
)

// HealthAt judges the node's health at a time, from its last heartbeat.
func (n *Node) HealthAt(now time.Time, s Settings) Health {
	if n.LastHeartbeat == nil {
		return HealthUnknown
	}
	age := now.Sub(*n.LastHeartbeat)
	switch {
	case age <= s.HeartbeatStale:
		return HealthHealthy
	case age <= 2*s.HeartbeatStale:
		return HealthStale
	}
	return HealthUnhealthy
}

func (n *Node) clone() *Node {
	c := *n
	return &c
}

// Live reports whether the node still exists or is being created.
func (n *Node) Live() bool { return n.Status == NodeActive || n.Status == NodeWarm }

// WorkspaceStatus is a workspace's state on its VM.
type WorkspaceStatus string

// Workspace states.
const (
	WorkspaceCreating WorkspaceStatus = "creating"
	WorkspaceRunning  WorkspaceStatus = "running"
	WorkspaceRecovery WorkspaceStatus = "recovery"
	WorkspaceStopping WorkspaceStatus = "stopping"
	WorkspaceStopped  WorkspaceStatus = "stopped"
	WorkspaceError    WorkspaceStatus = "error"
)

// Live reports whether the workspace occupies its node.
func (w *Workspace) Live() bool { return w.Status != WorkspaceStopped && w.Status != WorkspaceError }

// Workspace is a checkout of a repository on a node, owned by one task.
type Workspace struct {
	ID           string          `json:"id"`
	NodeID       string          `json:"node_id"`
	TaskID       string          `json:"task_id"`
	Status       WorkspaceStatus `json:"status"`
	ErrorMessage string          `json:"error_message,omitempty"`
	CreatedAt    time.Time       `json:"created_at"`
	UpdatedAt    time.Time       `json:"updated_at"`
}

// Member is one raft server of the cluster and the address of its HTTP API,
// so that any node can find the leader's API to forward writes to.
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr"`
}

// idemEntry remembers the result of a request that carried a request id.
type idemEntry struct {
	Key         string    `json:"key"`
	Fingerprint string    `json:"fingerprint"`
	TaskID      string    `json:"task_id"`
	At          time.Time `json:"at"`
}
