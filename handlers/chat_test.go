package handlers_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/tdf-project/tdf/handlers"
	"github.com/tdf-project/tdf/vmagent"
)

// The agent session is created with a chat session id and the project id,
// the agent's condition for reporting the session's chat messages; a
// re-dispatched create asks for the same one.
func TestStartSessionSendsChatSession(t *testing.T) {
	w := newWorld(t, worldOpts{})
	task := w.toAgentSession("t-chat1")
	c := w.claim("t-chat1")
	if out := w.run(c); out.Err != nil {
		t.Fatalf("agent_session = %+v", out)
	}
	if out := w.run(w.claim("t-chat1")); out.Err != nil {
		t.Fatalf("re-dispatched agent_session = %+v", out)
	}
	creates := w.rec.find(http.MethodPost, "/workspaces/"+task.WorkspaceID+"/agent-sessions")
	if len(creates) != 2 || creates[0].Status != http.StatusCreated {
		t.Fatalf("session creates = %+v, want two, the first 201", creates)
	}
	want := handlers.ChatSessionID(task)
	if want != "c-chat1" {
		t.Fatalf("ChatSessionID(%s) = %q, want c-chat1", task.ID, want)
	}
	for i, call := range creates {
		var body vmagent.CreateSessionRequest
		if err := json.Unmarshal(call.Body, &body); err != nil {
			t.Fatal(err)
		}
		if body.ChatSessionID != want || body.ProjectID != task.ProjectID || body.SessionID != handlers.SessionID(task) {
			t.Fatalf("create %d = %+v, want chat session %s and project %s", i, body, want, task.ProjectID)
		}
	}
}
