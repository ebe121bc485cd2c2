package chaos

import (
	"fmt"
	"slices"
	"sort"
	"time"
)

// The checker: pure functions over the recorded History and the final
// reads of the cluster (every task, every node's state hash) and of the
// fake cloud (ledger, servers). Each returns the violations it found; none
// talks to anything.

// Violation is one broken invariant.
type Violation struct {
	Check  string `json:"check"`
	TaskID string `json:"task_id,omitempty"`
	Detail string `json:"detail"`
}

func (v Violation) String() string {
	if v.TaskID != "" {
		return fmt.Sprintf("%s: task %s: %s", v.Check, v.TaskID, v.Detail)
	}
	return fmt.Sprintf("%s: %s", v.Check, v.Detail)
}

// The checks, by name.
const (
	NameAcknowledged = "acknowledged"   // every acknowledged task exists, terminal within the bound
	NameTimeline     = "step-timeline"  // steps never go backwards, skip, repeat a success or take a stale result
	NameStatus       = "status-history" // the status history is a path of the lifecycle
	NameLinearizable = "linearizable"   // consistent reads, per task
	NameLedger       = "ledger"         // no duplicate effect, no leaked server
	NameConverged    = "converged"      // same applied index and state hash everywhere
)

// StepAttempt is one entry of a task's step timeline (GET /v1/tasks/{id}).
type StepAttempt struct {
	Step     string     `json:"step"`
	Attempt  int        `json:"attempt"`
	Leader   string     `json:"leader,omitempty"`
	Started  time.Time  `json:"started"`
	Finished *time.Time `json:"finished,omitempty"`
	Outcome  string     `json:"outcome,omitempty"`
	Error    string     `json:"error,omitempty"`
	Note     string     `json:"note,omitempty"`
}

// StatusEvent is one entry of a task's status history.
type StatusEvent struct {
	From string    `json:"from"`
	To   string    `json:"to"`
	At   time.Time `json:"at"`
}

// Task is the part of a task the checker reads.
type Task struct {
	ID             string        `json:"id"`
	Status         string        `json:"status"`
	Step           string        `json:"execution_step"`
	NodeID         string        `json:"node_id,omitempty"`
	WorkspaceID    string        `json:"workspace_id,omitempty"`
	AgentSessionID string        `json:"agent_session_id,omitempty"`
	ErrorMessage   string        `json:"error_message,omitempty"`
	CreatedAt      time.Time     `json:"created_at"`
	CompletedAt    *time.Time    `json:"completed_at,omitempty"`
	History        []StatusEvent `json:"history"`
	Steps          []StepAttempt `json:"steps"`
}

// LedgerEvent is one effect in the fake cloud's ledger.
type LedgerEvent struct {
	Kind        string    `json:"kind"`
	ServerID    int64     `json:"server_id,omitempty"`
	Name        string    `json:"name,omitempty"`
	NodeID      string    `json:"node_id,omitempty"`
	WorkspaceID string    `json:"workspace_id,omitempty"`
	SessionID   string    `json:"session_id,omitempty"`
	TaskID      string    `json:"task_id,omitempty"`
	Time        time.Time `json:"time"`
}

// FakeServer is a server the fake cloud still holds.
type FakeServer struct {
	ID     int64  `json:"id"`
	Name   string `json:"name"`
	Status string `json:"status"`
}

// NodeHash is one node's GET /v1/cluster/state-hash.
type NodeHash struct {
	NodeID       string `json:"node_id"`
	AppliedIndex uint64 `json:"applied_index"`
	Hash         string `json:"hash"`
}

// Terminal reports whether a task status is final.
func Terminal(status string) bool {
	return status == "completed" || status == "failed" || status == "cancelled"
}

// statusRank orders the lifecycle; terminal statuses share the last rank.
func statusRank(s string) int {
	switch s {
	case "queued":
		return 1
	case "delegated":
		return 2
	case "in_progress":
		return 3
	case "completed", "failed", "cancelled":
		return 4
	}
	return 0
}

// pipeline is the execution steps in order (fsm.AllSteps).
var pipeline = []string{"node_selection", "node_provisioning", "node_agent_ready", "workspace_creation",
	"workspace_ready", "agent_session", "running", "awaiting_followup"}

func stepOrder(s string) int {
	if i := slices.Index(pipeline, s); i >= 0 {
		return i + 1
	}
	return 0
}

// mayBeAbsent are the steps a task can pass without a timeline entry:
// provisioning when a warm node is claimed; the waiting steps, ended by a
// callback or a timer rather than by a claimed attempt.
var mayBeAbsent = map[string]bool{"node_provisioning": true, "workspace_ready": true, "running": true, "awaiting_followup": true}

// CheckAcknowledgedTasks: every task a client got a 202 for exists in the
// final state and is terminal, within bound of its creation.
func CheckAcknowledgedTasks(ops []Op, tasks []Task, bound time.Duration) []Violation {
	byID := map[string]*Task{}
	for i := range tasks {
		byID[tasks[i].ID] = &tasks[i]
	}
	var out []Violation
	seen := map[string]bool{}
	for _, op := range ops {
		if op.Kind != OpSubmit || seen[op.TaskID] {
			continue
		}
		seen[op.TaskID] = true
		t, ok := byID[op.TaskID]
		switch {
		case !ok:
			out = append(out, Violation{NameAcknowledged, op.TaskID, fmt.Sprintf("acknowledged to client %d (key %s) at %s, missing from the cluster", op.Client, op.Key, op.Return.Format(time.RFC3339Nano))})
		case !Terminal(t.Status):
			out = append(out, Violation{NameAcknowledged, t.ID, fmt.Sprintf("still %s at step %s", t.Status, t.Step)})
		case t.CompletedAt != nil && t.CompletedAt.Sub(t.CreatedAt) > bound:
			out = append(out, Violation{NameAcknowledged, t.ID, fmt.Sprintf("took %s to end, bound %s", t.CompletedAt.Sub(t.CreatedAt).Round(time.Millisecond), bound)})
		}
	}
	return out
}

// CheckStatusHistories: each task's status history is a path of the
// lifecycle (each change moves forward from where the last one ended).
func CheckStatusHistories(tasks []Task) []Violation {
	var out []Violation
	for _, t := range tasks {
		prev := ""
		for i, h := range t.History {
			if i > 0 && h.From != prev {
				out = append(out, Violation{NameStatus, t.ID, fmt.Sprintf("change %d goes from %s, the task was %s", i, h.From, prev)})
			}
			if statusRank(h.To) <= statusRank(h.From) && h.From != "" {
				out = append(out, Violation{NameStatus, t.ID, fmt.Sprintf("change %d goes backwards: %s → %s", i, h.From, h.To)})
			}
			prev = h.To
		}
		if len(t.History) > 0 && prev != t.Status {
			out = append(out, Violation{NameStatus, t.ID, fmt.Sprintf("history ends at %s, the task is %s", prev, t.Status)})
		}
	}
	return out
}

// CheckTimelines checks each task's step timeline (one entry per claimed
// attempt, in claim order):
//
//   - steps never go backwards (pipeline order; cleanup comes last);
//   - a task moves to a later step only after the earlier one succeeded,
//     and skips only steps that may pass without an attempt;
//   - a step succeeds at most once, and no attempt of it follows its
//     success (a step applied twice);
//   - attempts of a step are numbered 1, 2, 3, … in order;
//   - every accepted result belongs to the latest claim: an attempt that
//     has a result was finished before the next attempt was claimed (a
//     superseded claim's late result is exactly what fencing rejects).
func CheckTimelines(tasks []Task) []Violation {
	var out []Violation
	for _, t := range tasks {
		out = append(out, checkTimeline(t)...)
	}
	return out
}

func checkTimeline(t Task) []Violation {
	var out []Violation
	bad := func(format string, args ...any) {
		out = append(out, Violation{NameTimeline, t.ID, fmt.Sprintf(format, args...)})
	}
	succeeded := map[string]bool{}
	lastAttempt := map[string]int{}
	cleanup := false
	for i, s := range t.Steps {
		if s.Step == "cleanup" {
			cleanup = true
		} else {
			if cleanup {
				bad("entry %d: step %s after cleanup began", i, s.Step)
			}
			if stepOrder(s.Step) == 0 {
				bad("entry %d: unknown step %q", i, s.Step)
			}
		}
		if succeeded[s.Step] {
			bad("entry %d: attempt %d of %s after the step had succeeded", i, s.Attempt, s.Step)
		}
		if want := lastAttempt[s.Step] + 1; s.Attempt != want {
			bad("entry %d: %s attempt %d, want %d", i, s.Step, s.Attempt, want)
		}
		lastAttempt[s.Step] = max(lastAttempt[s.Step], s.Attempt)
		if i > 0 {
			p := t.Steps[i-1]
			if p.Finished != nil && p.Finished.After(s.Started) {
				bad("entry %d: result of %s attempt %d (%s, by %s) accepted at %s, after %s attempt %d was claimed at %s by %s: a stale result",
					i-1, p.Step, p.Attempt, p.Outcome, p.Leader, p.Finished.Format("15:04:05.000000"), s.Step, s.Attempt, s.Started.Format("15:04:05.000000"), s.Leader)
			}
			if s.Step != p.Step && s.Step != "cleanup" && p.Step != "cleanup" {
				po, so := stepOrder(p.Step), stepOrder(s.Step)
				switch {
				case so < po:
					bad("entry %d: back from %s to %s", i, p.Step, s.Step)
				case p.Outcome != "success":
					bad("entry %d: moved from %s (last attempt %d: %q) to %s without its success", i, p.Step, p.Attempt, p.Outcome, s.Step)
				default:
					for _, mid := range pipeline[po : so-1] {
						if !mayBeAbsent[mid] {
							bad("entry %d: skipped %s between %s and %s", i, mid, p.Step, s.Step)
						}
					}
				}
			}
		}
		if s.Outcome == "success" {
			succeeded[s.Step] = true
		}
	}
	if t.Status == "completed" {
		for _, must := range []string{"node_selection", "node_agent_ready", "workspace_creation", "agent_session"} {
			if !succeeded[must] {
				bad("completed without a successful %s", must)
			}
		}
	}
	return out
}

// CheckLedger checks the fake cloud's record of effects: each server,
// workspace and session created at most once; a task has at most one
// workspace and one session (exactly one each when completed), the ones
// it names; every created server was deleted and none is left.
func CheckLedger(tasks []Task, events []LedgerEvent, left []FakeServer) []Violation {
	var out []Violation
	bad := func(task, format string, args ...any) {
		out = append(out, Violation{NameLedger, task, fmt.Sprintf(format, args...)})
	}
	count := map[string]map[string]int{}
	wsOfTask := map[string]map[string]bool{}
	sessOfTask := map[string]map[string]bool{}
	add := func(m map[string]map[string]bool, k, v string) {
		if m[k] == nil {
			m[k] = map[string]bool{}
		}
		m[k][v] = true
	}
	wsTask := map[string]string{}
	for _, e := range events {
		var key string
		switch e.Kind {
		case "server_create", "server_delete":
			key = e.Name
		case "workspace_create":
			key = e.WorkspaceID
			add(wsOfTask, e.TaskID, e.WorkspaceID)
			wsTask[e.WorkspaceID] = e.TaskID
		case "session_create":
			key = e.SessionID
		default:
			continue
		}
		if count[e.Kind] == nil {
			count[e.Kind] = map[string]int{}
		}
		count[e.Kind][key]++
	}
	for _, e := range events {
		if e.Kind == "session_create" {
			task := e.TaskID
			if task == "" {
				task = wsTask[e.WorkspaceID]
			}
			add(sessOfTask, task, e.SessionID)
		}
	}
	for _, kind := range []string{"server_create", "workspace_create", "session_create"} {
		for _, k := range sortedKeys(count[kind]) {
			if n := count[kind][k]; n > 1 {
				bad("", "%s %s happened %d times", kind, k, n)
			}
		}
	}
	for _, name := range sortedKeys(count["server_create"]) {
		if count["server_delete"][name] == 0 {
			bad("", "server %s was created and never deleted", name)
		}
	}
	for _, s := range left {
		bad("", "server %s (id %d, %s) is still there at the end: leaked", s.Name, s.ID, s.Status)
	}
	for _, t := range tasks {
		ws, sess := wsOfTask[t.ID], sessOfTask[t.ID]
		if len(ws) > 1 {
			bad(t.ID, "%d workspaces created for it: %v", len(ws), sortedKeys(ws))
		}
		if len(sess) > 1 {
			bad(t.ID, "%d sessions created for it: %v", len(sess), sortedKeys(sess))
		}
		if t.Status != "completed" {
			continue
		}
		if len(ws) != 1 || !ws[t.WorkspaceID] {
			bad(t.ID, "completed with workspace %q, the ledger has %v for it", t.WorkspaceID, sortedKeys(ws))
		}
		if len(sess) != 1 || !sess[t.AgentSessionID] {
			bad(t.ID, "completed with session %q, the ledger has %v for it", t.AgentSessionID, sortedKeys(sess))
		}
	}
	return out
}

// CheckConverged: every node reports the same applied index and state
// hash.
func CheckConverged(hashes []NodeHash) []Violation {
	if len(hashes) == 0 {
		return []Violation{{Check: NameConverged, Detail: "no state hash read"}}
	}
	first := hashes[0]
	for _, h := range hashes[1:] {
		if h.AppliedIndex != first.AppliedIndex || h.Hash != first.Hash {
			var views []string
			for _, x := range hashes {
				views = append(views, fmt.Sprintf("%s@%d:%.16s", x.NodeID, x.AppliedIndex, x.Hash))
			}
			return []Violation{{Check: NameConverged, Detail: fmt.Sprintf("nodes differ: %v", views)}}
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
