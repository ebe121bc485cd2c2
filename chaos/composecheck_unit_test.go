package chaos

import (
	"strings"
	"testing"
)

// goodRun is one task that ran through, its node and the ledger it left.
func goodRun() ([]apiTask, map[string]string, []apiNode, []ledgerEvent) {
	tk := apiTask{ID: "t1", Status: "completed", NodeID: "nd1", WorkspaceID: "ws1", AgentSessionID: "s1"}
	for _, s := range completedPath {
		tk.History = append(tk.History, struct {
			To string `json:"to"`
		}{s})
	}
	for _, s := range effectSteps {
		tk.Steps = append(tk.Steps, struct {
			Step    string `json:"step"`
			Outcome string `json:"outcome"`
		}{s, "success"})
	}
	nodes := []apiNode{{ID: "nd1", Status: "deleted", ServerName: "node-nd1"}}
	events := []ledgerEvent{
		{Kind: "server_create", Name: "node-nd1"},
		{Kind: "workspace_create", NodeID: "nd1", WorkspaceID: "ws1", TaskID: "t1"},
		{Kind: "session_create", NodeID: "nd1", WorkspaceID: "ws1", SessionID: "s1"},
		{Kind: "server_delete", Name: "node-nd1"},
	}
	return []apiTask{tk}, map[string]string{"t1": "key-1"}, nodes, events
}

func TestComposeChecksPassAGoodRun(t *testing.T) {
	tasks, acked, nodes, events := goodRun()
	if bad := checkTasks(tasks, acked); bad != nil {
		t.Errorf("checkTasks: %v", bad)
	}
	if bad := checkLedger(events, tasks, nodes); bad != nil {
		t.Errorf("checkLedger: %v", bad)
	}
	if bad := checkNoLeak(nodes, nil); bad != nil {
		t.Errorf("checkNoLeak: %v", bad)
	}
	if bad := checkConverged([]stateHash{{"n1", 9, "ab"}, {"n2", 9, "ab"}, {"n3", 9, "ab"}}); bad != nil {
		t.Errorf("checkConverged: %v", bad)
	}
}

// TestComposeChecksCatchViolations breaks a good run in one way at a time.
func TestComposeChecksCatchViolations(t *testing.T) {
	for name, tc := range map[string]struct {
		mutate func(tasks []apiTask, acked map[string]string, nodes []apiNode, events []ledgerEvent) ([]apiTask, []apiNode, []ledgerEvent)
		want   string
	}{
		"lost task": {func(tk []apiTask, a map[string]string, n []apiNode, e []ledgerEvent) ([]apiTask, []apiNode, []ledgerEvent) {
			a["t2"] = "key-2"
			return tk, n, e
		}, "t2 (key key-2) is missing"},
		"task done twice": {func(tk []apiTask, a map[string]string, n []apiNode, e []ledgerEvent) ([]apiTask, []apiNode, []ledgerEvent) {
			dup := tk[0]
			dup.ID = "t9"
			return append(tk, dup), n, e
		}, "no submission was acknowledged"},
		"failed task": {func(tk []apiTask, a map[string]string, n []apiNode, e []ledgerEvent) ([]apiTask, []apiNode, []ledgerEvent) {
			tk[0].Status = "failed"
			return tk, n, e
		}, "want completed"},
		"step twice": {func(tk []apiTask, a map[string]string, n []apiNode, e []ledgerEvent) ([]apiTask, []apiNode, []ledgerEvent) {
			tk[0].Steps = append(tk[0].Steps, tk[0].Steps[2])
			return tk, n, e
		}, "workspace_creation succeeded 2 times"},
		"history backwards": {func(tk []apiTask, a map[string]string, n []apiNode, e []ledgerEvent) ([]apiTask, []apiNode, []ledgerEvent) {
			tk[0].History = append(tk[0].History[:2], tk[0].History[1:]...)
			return tk, n, e
		}, "history"},
		"duplicate server": {func(tk []apiTask, a map[string]string, n []apiNode, e []ledgerEvent) ([]apiTask, []apiNode, []ledgerEvent) {
			return tk, n, append(e, ledgerEvent{Kind: "server_create", Name: "node-nd1"})
		}, "created 2 times"},
		"leaked server": {func(tk []apiTask, a map[string]string, n []apiNode, e []ledgerEvent) ([]apiTask, []apiNode, []ledgerEvent) {
			return tk, n, e[:3]
		}, "deleted 0 times"},
		"orphan server": {func(tk []apiTask, a map[string]string, n []apiNode, e []ledgerEvent) ([]apiTask, []apiNode, []ledgerEvent) {
			return tk, n, append(e, ledgerEvent{Kind: "server_create", Name: "node-x"}, ledgerEvent{Kind: "server_delete", Name: "node-x"})
		}, "belongs to no cluster node"},
		"duplicate workspace": {func(tk []apiTask, a map[string]string, n []apiNode, e []ledgerEvent) ([]apiTask, []apiNode, []ledgerEvent) {
			return tk, n, append(e, ledgerEvent{Kind: "workspace_create", NodeID: "nd1", WorkspaceID: "ws2", TaskID: "t1"})
		}, "workspaces created for it"},
		"duplicate session": {func(tk []apiTask, a map[string]string, n []apiNode, e []ledgerEvent) ([]apiTask, []apiNode, []ledgerEvent) {
			return tk, n, append(e, ledgerEvent{Kind: "session_create", NodeID: "nd1", WorkspaceID: "ws1", SessionID: "s2"})
		}, "sessions created in its workspace"},
	} {
		tasks, acked, nodes, events := goodRun()
		tasks, nodes, events = tc.mutate(tasks, acked, nodes, events)
		bad := append(checkTasks(tasks, acked), checkLedger(events, tasks, nodes)...)
		if !strings.Contains(strings.Join(bad, "\n"), tc.want) {
			t.Errorf("%s: violations %q, want one with %q", name, bad, tc.want)
		}
	}
	if bad := checkNoLeak([]apiNode{{ID: "nd1", Status: "warm"}}, []string{"node-nd1"}); len(bad) != 2 {
		t.Errorf("checkNoLeak of a warm node and its server: %q, want two violations", bad)
	}
	if bad := checkConverged([]stateHash{{"n1", 9, "ab"}, {"n2", 9, "ac"}}); len(bad) != 1 {
		t.Errorf("checkConverged of different hashes: %q", bad)
	}
	if bad := checkConverged([]stateHash{{"n1", 9, "ab"}, {"n2", 8, "ab"}}); len(bad) != 1 {
		t.Errorf("checkConverged of different indexes: %q", bad)
	}
}
