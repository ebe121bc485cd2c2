package cluster

import (
	"sort"
	"time"

	"github.com/hashicorp/raft"
)

// MemberStatus describes one server of the cluster.
type MemberStatus struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr,omitempty"`
	Voter    bool   `json:"voter"`
	// State is "leader", "follower", or "removed" for a member-table entry
	// that is no longer in the raft configuration.
	State string `json:"state"`
	// Health is the leader's view of the member (health.go); a follower
	// asked for the cluster's status gets it from the leader.
	Health *MemberHealth `json:"health,omitempty"`
}

// Status is this node's view of the cluster.
type Status struct {
	NodeID       string         `json:"node_id"`
	ClusterID    string         `json:"cluster_id,omitempty"`
	State        string         `json:"state"`
	LeaderID     string         `json:"leader_id"`
	LeaderAPI    string         `json:"leader_api,omitempty"`
	Term         uint64         `json:"term"`
	CommitIndex  uint64         `json:"commit_index"`
	AppliedIndex uint64         `json:"applied_index"`
	LastIndex    uint64         `json:"last_index"`
	Members      []MemberStatus `json:"members"`
	// Disk is this node's data dir disk (disk.go).
	Disk DiskStatus `json:"disk"`
	// HealthFrom is the leader whose view the members' health is.
	HealthFrom string `json:"health_from,omitempty"`
	// Ready and NotReady are this node's readiness (/readyz).
	Ready    bool   `json:"ready"`
	NotReady string `json:"not_ready,omitempty"`
}

// Status reports this node's view of the cluster, merging the raft
// configuration with the member table.
func (n *Node) Status() Status {
	leaderID, _ := n.Leader()
	_, leaderAPI, _ := n.LeaderAPI()
	st := Status{
		NodeID:       n.cfg.NodeID,
		ClusterID:    n.ClusterID(),
		State:        stateName(n.raft.State()),
		LeaderID:     leaderID,
		LeaderAPI:    leaderAPI,
		Term:         n.raft.CurrentTerm(),
		CommitIndex:  n.raft.CommitIndex(),
		AppliedIndex: n.fsm.AppliedIndex(),
		LastIndex:    n.raft.LastIndex(),
		Disk:         n.DiskStatus(),
	}
	st.Ready, st.NotReady = n.Ready()
	leading := n.IsLeader()
	if leading {
		st.HealthFrom = n.cfg.NodeID
	}
	now := time.Now()
	seen := map[string]bool{}
	if cf := n.raft.GetConfiguration(); cf.Error() == nil {
		for _, s := range cf.Configuration().Servers {
			m := MemberStatus{ID: string(s.ID), RaftAddr: string(s.Address), Voter: s.Suffrage == raft.Voter, State: "follower"}
			if m.ID == leaderID {
				m.State = "leader"
			}
			if leading {
				m.Health = n.memberHealth(s, now)
			}
			if rec, ok := n.fsm.Member(m.ID); ok {
				m.APIAddr = rec.APIAddr
			}
			seen[m.ID] = true
			st.Members = append(st.Members, m)
		}
	}
	for _, rec := range n.fsm.Members() {
		if !seen[rec.ID] {
			st.Members = append(st.Members, MemberStatus{ID: rec.ID, RaftAddr: rec.RaftAddr, APIAddr: rec.APIAddr, State: "removed"})
		}
	}
	sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].ID < st.Members[j].ID })
	return st
}

func stateName(s raft.RaftState) string {
	switch s {
	case raft.Leader:
		return "leader"
	case raft.Candidate:
		return "candidate"
	case raft.Follower:
		return "follower"
	}
	return "shutdown"
}
