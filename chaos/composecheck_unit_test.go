package chaos

import (
	"slices"
	"strings"
	"testing"
)

// goodComposeRun is one task that ran through, its node and the ledger it left.
func goodComposeRun() ([]composeTask, map[string]string, []composeNode, []composeLedgerEvent) {
	tk := composeTask{ID: "t1", Status: "completed", NodeID: "nd1", WorkspaceID: "ws1", AgentSessionID: "s1"}
	for _, s := range composeCompletedPath {
		tk.History = append(tk.History, struct {
			To string `json:"to"`
		}{s})
	}
	for _, s := range composeEffectSteps {
		tk.Steps = append(tk.Steps, struct {
			Step    string `json:"step"`
			Outcome string `json:"outcome"`
		}{s, "success"})
	}
	nodes := []composeNode{{ID: "nd1", Status: "deleted", ServerName: "node-nd1"}}
	events := []composeLedgerEvent{
		{Kind: "server_create", Name: "node-nd1"},
		{Kind: "workspace_create", NodeID: "nd1", WorkspaceID: "ws1", TaskID: "t1"},
		{Kind: "session_create", NodeID: "nd1", WorkspaceID: "ws1", SessionID: "s1"},
		{Kind: "agent_run_done", NodeID: "nd1", WorkspaceID: "ws1", TaskID: "t1"},
		{Kind: "callback_delivered", NodeID: "nd1", WorkspaceID: "ws1", TaskID: "t1"},
		{Kind: "server_delete", Name: "node-nd1"},
	}
	return []composeTask{tk}, map[string]string{"t1": "key-1"}, nodes, events
}

func TestComposeChecksPassAGoodRun(t *testing.T) {
	tasks, acked, nodes, events := goodComposeRun()
	if bad := checkComposeTasks(tasks, acked, lostStatusCallbacks(events)); bad != nil {
		t.Errorf("checkTasks: %v", bad)
	}
	if bad := checkComposeLedger(events, tasks, nodes); bad != nil {
		t.Errorf("checkLedger: %v", bad)
	}
	if bad := checkComposeNoLeak(nodes, nil); bad != nil {
		t.Errorf("checkNoLeak: %v", bad)
	}
	if bad := checkComposeConverged([]composeStateHash{{"n1", 9, "ab"}, {"n2", 9, "ab"}, {"n3", 9, "ab"}}); bad != nil {
		t.Errorf("checkConverged: %v", bad)
	}
}

// TestComposeChecksCatchViolations breaks a good run in one way at a time.
func TestComposeChecksCatchViolations(t *testing.T) {
	for name, tc := range map[string]struct {
		mutate func(tasks []composeTask, acked map[string]string, nodes []composeNode, events []composeLedgerEvent) ([]composeTask, []composeNode, []composeLedgerEvent)
		want   string
	}{
		"lost task": {func(tk []composeTask, a map[string]string, n []composeNode, e []composeLedgerEvent) ([]composeTask, []composeNode, []composeLedgerEvent) {
			a["t2"] = "key-2"
			return tk, n, e
		}, "t2 (key key-2) is missing"},
		"task done twice": {func(tk []composeTask, a map[string]string, n []composeNode, e []composeLedgerEvent) ([]composeTask, []composeNode, []composeLedgerEvent) {
			dup := tk[0]
			dup.ID = "t9"
			return append(tk, dup), n, e
		}, "no submission was acknowledged"},
		"failed task": {func(tk []composeTask, a map[string]string, n []composeNode, e []composeLedgerEvent) ([]composeTask, []composeNode, []composeLedgerEvent) {
			tk[0].Status = "failed"
			return tk, n, e
		}, "want completed"},
		"step twice": {func(tk []composeTask, a map[string]string, n []composeNode, e []composeLedgerEvent) ([]composeTask, []composeNode, []composeLedgerEvent) {
			tk[0].Steps = append(tk[0].Steps, tk[0].Steps[2])
			return tk, n, e
		}, "workspace_creation succeeded 2 times"},
		"history backwards": {func(tk []composeTask, a map[string]string, n []composeNode, e []composeLedgerEvent) ([]composeTask, []composeNode, []composeLedgerEvent) {
			tk[0].History = append(tk[0].History[:2], tk[0].History[1:]...)
			return tk, n, e
		}, "history"},
		"duplicate server": {func(tk []composeTask, a map[string]string, n []composeNode, e []composeLedgerEvent) ([]composeTask, []composeNode, []composeLedgerEvent) {
			return tk, n, append(e, composeLedgerEvent{Kind: "server_create", Name: "node-nd1"})
		}, "created 2 times"},
		"leaked server": {func(tk []composeTask, a map[string]string, n []composeNode, e []composeLedgerEvent) ([]composeTask, []composeNode, []composeLedgerEvent) {
			return tk, n, e[:len(e)-1]
		}, "deleted 0 times"},
		"failed though its status callback was delivered": {func(tk []composeTask, a map[string]string, n []composeNode, e []composeLedgerEvent) ([]composeTask, []composeNode, []composeLedgerEvent) {
			tk[0].Status, tk[0].ErrorMessage = "failed", "max execution time exceeded"
			tk[0].History[3].To = "failed"
			return tk, n, e
		}, "want completed"},
		"failed on its deadline after a lost status callback": {func(tk []composeTask, a map[string]string, n []composeNode, e []composeLedgerEvent) ([]composeTask, []composeNode, []composeLedgerEvent) {
			tk[0].Status, tk[0].ErrorMessage = "failed", "max execution time exceeded"
			tk[0].History[3].To = "failed"
			return tk, n, slices.DeleteFunc(e, func(ev composeLedgerEvent) bool { return ev.Kind == "callback_delivered" })
		}, "want completed"},
		"orphan server": {func(tk []composeTask, a map[string]string, n []composeNode, e []composeLedgerEvent) ([]composeTask, []composeNode, []composeLedgerEvent) {
			return tk, n, append(e, composeLedgerEvent{Kind: "server_create", Name: "node-x"}, composeLedgerEvent{Kind: "server_delete", Name: "node-x"})
		}, "belongs to no cluster node"},
		"duplicate workspace": {func(tk []composeTask, a map[string]string, n []composeNode, e []composeLedgerEvent) ([]composeTask, []composeNode, []composeLedgerEvent) {
			return tk, n, append(e, composeLedgerEvent{Kind: "workspace_create", NodeID: "nd1", WorkspaceID: "ws2", TaskID: "t1"})
		}, "workspaces created for it"},
		"duplicate session": {func(tk []composeTask, a map[string]string, n []composeNode, e []composeLedgerEvent) ([]composeTask, []composeNode, []composeLedgerEvent) {
			return tk, n, append(e, composeLedgerEvent{Kind: "session_create", NodeID: "nd1", WorkspaceID: "ws1", SessionID: "s2"})
		}, "sessions created in its workspace"},
	} {
		tasks, acked, nodes, events := goodComposeRun()
		tasks, nodes, events = tc.mutate(tasks, acked, nodes, events)
		bad := append(checkComposeTasks(tasks, acked, lostStatusCallbacks(events)), checkComposeLedger(events, tasks, nodes)...)
		if !strings.Contains(strings.Join(bad, "\n"), tc.want) {
			t.Errorf("%s: violations %q, want one with %q", name, bad, tc.want)
		}
	}
	if bad := checkComposeNoLeak([]composeNode{{ID: "nd1", Status: "warm"}}, []string{"node-nd1"}); len(bad) != 2 {
		t.Errorf("checkNoLeak of a warm node and its server: %q, want two violations", bad)
	}
	if bad := checkComposeConverged([]composeStateHash{{"n1", 9, "ab"}, {"n2", 9, "ac"}}); len(bad) != 1 {
		t.Errorf("checkConverged of different hashes: %q", bad)
	}
	if bad := checkComposeConverged([]composeStateHash{{"n1", 9, "ab"}, {"n2", 8, "ab"}}); len(bad) != 1 {
		t.Errorf("checkConverged of different indexes: %q", bad)
	}
}

// TestComposeChecksAcceptALostCallback: a task whose agent's status
// callback no node acknowledged completes all the same (the run reconcile
// learns of the run's end from the agent), and the checks accept that.
func TestComposeChecksAcceptALostCallback(t *testing.T) {
	tasks, acked, nodes, events := goodComposeRun()
	events = slices.DeleteFunc(events, func(e composeLedgerEvent) bool { return e.Kind == "callback_delivered" })
	lost := lostStatusCallbacks(events)
	if !lost["t1"] || len(lost) != 1 {
		t.Fatalf("lost status callbacks %v, want t1", lost)
	}
	if bad := append(checkComposeTasks(tasks, acked, lost), checkComposeLedger(events, tasks, nodes)...); bad != nil {
		t.Errorf("a task completed through the run reconcile after a lost callback: %q", bad)
	}
}
