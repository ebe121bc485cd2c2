package sim_test

import (
	"net/http"
	"testing"

	"github.com/tdf-project/tdf/vmagent"
	"github.com/tdf-project/tdf/vmagent/sim"
)

// startChatSession waits for ws to run, creates session sid with the given
// chat session and project ids, and starts it for task t1 of project p1.
func startChatSession(t *testing.T, e *env, ws, sid, chat, project string) {
	t.Helper()
	waitFor(t, ws+" ready callback", func() bool { return len(e.cp.on(vmagent.WorkspaceReadyPath(ws))) > 0 })
	req := vmagent.CreateSessionRequest{SessionID: sid, Label: "task t1", ChatSessionID: chat, ProjectID: project}
	if _, err := e.client.CreateAgentSession(e.ctx, e.srv.URL, node, user, ws, req, "k-"+sid); err != nil {
		t.Fatalf("CreateAgentSession() = %v", err)
	}
	if err := e.client.StartAgentSession(e.ctx, e.srv.URL, node, user, ws, sid, vmagent.StartSessionRequest{
		AgentType: "claude-code", InitialPrompt: "fix the bug", TaskID: "t1", ProjectID: "p1"}); err != nil {
		t.Fatalf("StartAgentSession() = %v", err)
	}
}

// A session created with a chat session id and a project id reports its
// run's messages, tagged with that chat session, before the status
// callback; a 503 is retried.
func TestChatMessagesWithChatSession(t *testing.T) {
	e := newEnv(t, func(_ *sim.Config, cp *controlPlane) {
		cp.setAnswer(func(path string, n int) (int, any) {
			if path == vmagent.MessagesPath("ws1") && n == 1 {
				return http.StatusServiceUnavailable, map[string]string{"error": "busy"}
			}
			return http.StatusOK, map[string]any{"persisted": 2, "duplicates": 0}
		})
	})
	e.createWorkspace(t, "ws1")
	startChatSession(t, e, "ws1", "s1", "c-1", "p1")
	status := vmagent.TaskStatusPath("p1", "t1")
	waitFor(t, "task status callback", func() bool { return len(e.cp.on(status)) == 1 })
	arr := e.cp.on(vmagent.MessagesPath("ws1"))
	if len(arr) != 2 {
		t.Fatalf("messages arrived %d times, want 2 (a 503, then the retry)", len(arr))
	}
	if arr[1].Time.After(e.cp.on(status)[0].Time) {
		t.Fatalf("messages arrived after the status callback")
	}
	var body vmagent.MessagesRequest
	arr[1].decode(t, &body)
	if arr[1].Auth != "Bearer "+wsToken || string(arr[0].Body) != string(arr[1].Body) || len(body.Messages) != 2 {
		t.Fatalf("messages callback: auth %q, body %s", arr[1].Auth, arr[1].Body)
	}
	u, a := body.Messages[0], body.Messages[1]
	if u.Role != "user" || u.Content != "fix the bug" || a.Role != "assistant" || a.Content == "" {
		t.Fatalf("messages = %+v", body.Messages)
	}
	for _, m := range body.Messages {
		if m.SessionID != "c-1" || m.MessageID == "" || m.Timestamp == "" {
			t.Fatalf("message %+v lacks the chat session, its id or its time", m)
		}
	}
	if u.MessageID == a.MessageID || a.Sequence <= u.Sequence {
		t.Fatalf("message ids %s, %s and sequences %d, %d are not distinct and increasing", u.MessageID, a.MessageID, u.Sequence, a.Sequence)
	}
}

// Without both a chat session id and a project id at creation, a session
// reports no messages, as the real agent does.
func TestNoChatMessagesWithoutChatSession(t *testing.T) {
	for _, tc := range []struct{ name, chat, project string }{
		{"no chat session", "", "p1"},
		{"no project", "c-1", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.createWorkspace(t, "ws1")
			startChatSession(t, e, "ws1", "s1", tc.chat, tc.project)
			waitFor(t, "task status callback", func() bool { return len(e.cp.on(vmagent.TaskStatusPath("p1", "t1"))) == 1 })
			if n := len(e.cp.on(vmagent.MessagesPath("ws1"))); n != 0 {
				t.Fatalf("messages arrived %d times, want none", n)
			}
			if len(e.records(sim.KindMessages)) != 0 {
				t.Fatalf("messages callback logged: %+v", e.records(sim.KindMessages))
			}
		})
	}
}

// A 400 drops the batch for good (the real outbox's permanent errors).
func TestChatMessages400NotRetried(t *testing.T) {
	e := newEnv(t, func(_ *sim.Config, cp *controlPlane) {
		cp.setAnswer(func(path string, _ int) (int, any) {
			if path == vmagent.MessagesPath("ws1") {
				return http.StatusBadRequest, map[string]string{"error": "bad"}
			}
			return http.StatusOK, map[string]any{}
		})
	})
	e.createWorkspace(t, "ws1")
	startChatSession(t, e, "ws1", "s1", "c-1", "p1")
	waitFor(t, "task status callback", func() bool { return len(e.cp.on(vmagent.TaskStatusPath("p1", "t1"))) == 1 })
	if n := len(e.cp.on(vmagent.MessagesPath("ws1"))); n != 1 {
		t.Fatalf("messages arrived %d times after a 400, want once", n)
	}
	if !e.hasRecord(sim.KindMessages, sim.OutcomeRejected) {
		t.Fatalf("the 400 is not logged as rejected: %+v", e.records(sim.KindMessages))
	}
}
