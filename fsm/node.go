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
}

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
