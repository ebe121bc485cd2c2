package chaos

// The compose chaos test's own checks, from plain API reads: every
// acknowledged task completed along the one normal path, the fake cloud's
// ledger shows each effect once and no server left, and the nodes hold the
// same state. Each check takes what was read and returns the violations,
// so the shared checker can replace them one by one.

import (
	"fmt"
	"slices"
	"sort"
)

// composeTask is the part of a task (GET /v1/tasks) the checks read.
type composeTask struct {
	ID             string `json:"id"`
	Status         string `json:"status"`
	Step           string `json:"execution_step"`
	NodeID         string `json:"node_id"`
	WorkspaceID    string `json:"workspace_id"`
	AgentSessionID string `json:"agent_session_id"`
	ErrorMessage   string `json:"error_message"`
	Cleanup        string `json:"cleanup"` // "pending" until the run's cleanup ran
	History        []struct {
		To string `json:"to"`
	} `json:"history"`
	Steps []struct {
		Step    string `json:"step"`
		Outcome string `json:"outcome"`
	} `json:"steps"`
}

// composeNode is the part of a cluster node (GET /v1/nodes) the checks read.
type composeNode struct {
	ID         string `json:"id"`
	Status     string `json:"status"`
	ServerName string `json:"server_name"`
}

// composeLedgerEvent is one effect in the fake cloud's ledger (GET /fake/ledger).
type composeLedgerEvent struct {
	Kind        string `json:"kind"`
	Name        string `json:"name,omitempty"`
	NodeID      string `json:"node_id,omitempty"`
	WorkspaceID string `json:"workspace_id,omitempty"`
	SessionID   string `json:"session_id,omitempty"`
	TaskID      string `json:"task_id,omitempty"`
}

// composeStateHash is a node's GET /v1/cluster/state-hash.
type composeStateHash struct {
	NodeID       string `json:"node_id"`
	AppliedIndex uint64 `json:"applied_index"`
	Hash         string `json:"hash"`
}

// composeCompletedPath is the status history of a task that runs through.
var composeCompletedPath = []string{"queued", "delegated", "in_progress", "completed"}

// composeEffectSteps are the steps each completed task succeeds in exactly once.
var composeEffectSteps = []string{"node_selection", "node_agent_ready", "workspace_creation", "agent_session", "cleanup"}

// lostStatusCallbacks names the tasks whose agent finished its run but
// whose status callback no node acknowledged (the fake cloud records each
// delivered one): the agent sends it once, so a leader that was down,
// frozen or cut off when it came may have lost it.
func lostStatusCallbacks(events []composeLedgerEvent) map[string]bool {
	lost := map[string]bool{}
	for _, e := range events {
		if e.Kind == "agent_run_done" {
			lost[e.TaskID] = true
		}
	}
	for _, e := range events {
		if e.Kind == "callback_delivered" {
			delete(lost, e.TaskID)
		}
	}
	return lost
}

// checkComposeTasks: the cluster holds exactly the acknowledged tasks
// (acked: task id → idempotency key), each completed along
// composeCompletedPath with node, workspace and session set, each effect
// step succeeding once. A task whose status callback was lost (lost)
// completes too: the leader's run reconcile learns the run's end from the
// agent.
func checkComposeTasks(tasks []composeTask, acked map[string]string, lost map[string]bool) []string {
	var bad []string
	seen := map[string]bool{}
	for _, tk := range tasks {
		seen[tk.ID] = true
		if _, ok := acked[tk.ID]; !ok {
			bad = append(bad, fmt.Sprintf("task %s exists but no submission was acknowledged with it (a duplicate?)", tk.ID))
			continue
		}
		var path []string
		for _, h := range tk.History {
			path = append(path, h.To)
		}
		wantPath, wantStatus, wantError := composeCompletedPath, "completed", ""
		if !slices.Equal(path, wantPath) {
			bad = append(bad, fmt.Sprintf("task %s: history %v, want %v (status callback lost: %v)", tk.ID, path, wantPath, lost[tk.ID]))
		}
		if tk.Status != wantStatus || tk.ErrorMessage != wantError || tk.Cleanup == "pending" || tk.NodeID == "" || tk.WorkspaceID == "" || tk.AgentSessionID == "" {
			bad = append(bad, fmt.Sprintf("task %s: %s (cleanup pending %v), node %q, workspace %q, session %q, error %q; want %s (error %q) with all three",
				tk.ID, tk.Status, tk.Cleanup, tk.NodeID, tk.WorkspaceID, tk.AgentSessionID, tk.ErrorMessage, wantStatus, wantError))
		}
		succeeded := map[string]int{}
		for _, s := range tk.Steps {
			if s.Outcome == "success" {
				succeeded[s.Step]++
			}
		}
		for _, step := range composeEffectSteps {
			if succeeded[step] != 1 {
				bad = append(bad, fmt.Sprintf("task %s: step %s succeeded %d times, want once", tk.ID, step, succeeded[step]))
			}
		}
	}
	for id, key := range acked {
		if !seen[id] {
			bad = append(bad, fmt.Sprintf("acknowledged task %s (key %s) is missing", id, key))
		}
	}
	sort.Strings(bad)
	return bad
}

// checkComposeLedger: every server was created once and deleted once and
// belongs to a cluster node; each task has exactly one workspace (its
// own, created once, on its node) and one session (its own, created once).
func checkComposeLedger(events []composeLedgerEvent, tasks []composeTask, nodes []composeNode) []string {
	var bad []string
	count := func(kind string, key func(composeLedgerEvent) string) map[string]int {
		m := map[string]int{}
		for _, e := range events {
			if e.Kind == kind {
				m[key(e)]++
			}
		}
		return m
	}
	created := count("server_create", func(e composeLedgerEvent) string { return e.Name })
	deleted := count("server_delete", func(e composeLedgerEvent) string { return e.Name })
	owned := map[string]bool{}
	for _, n := range nodes {
		owned[n.ServerName] = true
	}
	for name, n := range created {
		if n != 1 || deleted[name] != 1 {
			bad = append(bad, fmt.Sprintf("server %s created %d times, deleted %d times; want once each (no duplicate, no leak)", name, n, deleted[name]))
		}
		if !owned[name] {
			bad = append(bad, fmt.Sprintf("server %s belongs to no cluster node", name))
		}
	}
	wsOfTask := map[string][]string{}
	wsNode := map[string]string{}
	for _, e := range events {
		if e.Kind == "workspace_create" {
			wsOfTask[e.TaskID] = append(wsOfTask[e.TaskID], e.WorkspaceID)
			wsNode[e.WorkspaceID] = e.NodeID
		}
	}
	sessOfWS := map[string][]string{}
	for _, e := range events {
		if e.Kind == "session_create" {
			sessOfWS[e.WorkspaceID] = append(sessOfWS[e.WorkspaceID], e.SessionID)
		}
	}
	taskIDs := map[string]bool{}
	for _, tk := range tasks {
		taskIDs[tk.ID] = true
		if ws := wsOfTask[tk.ID]; len(ws) != 1 || ws[0] != tk.WorkspaceID {
			bad = append(bad, fmt.Sprintf("task %s (workspace %s): workspaces created for it %v, want exactly its own once", tk.ID, tk.WorkspaceID, ws))
		} else if wsNode[tk.WorkspaceID] != tk.NodeID {
			bad = append(bad, fmt.Sprintf("task %s: workspace %s created on node %s, the task ran on %s", tk.ID, tk.WorkspaceID, wsNode[tk.WorkspaceID], tk.NodeID))
		}
		if s := sessOfWS[tk.WorkspaceID]; len(s) != 1 || s[0] != tk.AgentSessionID {
			bad = append(bad, fmt.Sprintf("task %s (session %s): sessions created in its workspace %v, want exactly its own once", tk.ID, tk.AgentSessionID, s))
		}
	}
	for id, ws := range wsOfTask {
		if !taskIDs[id] {
			bad = append(bad, fmt.Sprintf("workspaces %v were created for task %s, which the cluster does not hold", ws, id))
		}
	}
	sort.Strings(bad)
	return bad
}

// checkComposeNoLeak: once idle nodes have timed out, no cluster node is left
// undeleted and the fake cloud holds no server.
func checkComposeNoLeak(nodes []composeNode, servers []string) []string {
	var bad []string
	for _, n := range nodes {
		if n.Status != "deleted" {
			bad = append(bad, fmt.Sprintf("node %s (server %s) is %s", n.ID, n.ServerName, n.Status))
		}
	}
	for _, s := range servers {
		bad = append(bad, fmt.Sprintf("server %s is still in the fake cloud", s))
	}
	return bad
}

// checkComposeConverged: every node reports the same applied index and state hash.
func checkComposeConverged(hashes []composeStateHash) []string {
	if len(hashes) == 0 {
		return []string{"no state hashes"}
	}
	for _, h := range hashes[1:] {
		if h.AppliedIndex != hashes[0].AppliedIndex || h.Hash != hashes[0].Hash {
			var views []string
			for _, h := range hashes {
				views = append(views, fmt.Sprintf("%s@%d:%.12s", h.NodeID, h.AppliedIndex, h.Hash))
			}
			return []string{fmt.Sprintf("nodes differ: %v", views)}
		}
	}
	return nil
}
