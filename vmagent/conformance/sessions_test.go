package conformance_test

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/tdf-project/tdf/vmagent"
)

// sessionExistence: what tdf's adoption of the old system's tasks relies
// on to learn whether an agent session exists. GET /workspaces' sessions
// counts terminal sessions, not agent sessions (0 here, with agent
// sessions created and started), and the session list refuses a
// management token (401). So the session is created: one the old system
// created (it sends no Idempotency-Key) answers 400 "session already
// exists: <id>" under tdf's key, and again on a repeat (a refused create
// leaves the key unused); one that did not exist is created (201) and the
// same key replays it (201, the same session), so a repeated probe does
// not mistake its own session for the old system's.
func (c *contract) sessionExistence(t *testing.T) {
	list, err := c.cl.ListWorkspaces(c.ctx, c.a.Base, c.a.NodeID, user)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(list, func(w vmagent.Workspace) bool { return w.ID == mainWS })
	if i < 0 || list[i].Sessions != 0 {
		t.Errorf("GET /workspaces = %+v, want %s with sessions 0 (no terminal session)", list, mainWS)
	}

	tok, err := c.a.CP.Issuer.ManagementToken(c.a.NodeID, mainWS, user)
	if err != nil {
		t.Fatal(err)
	}
	if ex := c.raw(t, http.MethodGet, "/workspaces/"+mainWS+"/agent-sessions", tok, mainWS, "", nil); ex.Status != http.StatusUnauthorized {
		t.Errorf("GET agent-sessions with a management token = %d %s, want 401", ex.Status, ex.Body)
	}

	const old = "s-old"
	if ex := c.raw(t, http.MethodPost, "/workspaces/"+mainWS+"/agent-sessions", tok, mainWS, "",
		vmagent.CreateSessionRequest{SessionID: old, Label: "old system", ProjectID: project}); ex.Status != http.StatusCreated {
		t.Fatalf("create without a key = %d %s, want 201", ex.Status, ex.Body)
	}
	probe := vmagent.CreateSessionRequest{SessionID: old, Label: "task t-old", ProjectID: project}
	for i := range 2 {
		_, err := c.cl.CreateAgentSession(c.ctx, c.a.Base, c.a.NodeID, user, mainWS, probe, "t-old/agent_session")
		if !vmagent.IsSessionExists(err, old) || vmagent.IsTransient(err) {
			t.Errorf("probe %d of the old session = %v, want a permanent 400 session already exists: %s", i+1, err, old)
		}
	}

	probe.SessionID = "s-absent"
	first, err := c.cl.CreateAgentSession(c.ctx, c.a.Base, c.a.NodeID, user, mainWS, probe, "t-new/agent_session")
	if err != nil {
		t.Fatalf("probe of an absent session: %v", err)
	}
	c.last(t, http.StatusCreated)
	again, err := c.cl.CreateAgentSession(c.ctx, c.a.Base, c.a.NodeID, user, mainWS, probe, "t-new/agent_session")
	if err != nil || again.ID != first.ID || !again.CreatedAt.Equal(first.CreatedAt) {
		t.Errorf("probe repeated = %+v, %v; want the session %+v", again, err, first)
	}
	c.last(t, http.StatusCreated)
}

// promptReceipts: what the leader's run reconcile relies on to learn that a
// prompt ended when its status callback was lost. The receipt of the
// completed start (delivery d-1) says completed, with both times, to a
// management token; a delivery the agent never saw answers 404 not_found.
func (c *contract) promptReceipts(t *testing.T) {
	var rc vmagent.PromptReceipt
	deadline := time.Now().Add(c.a.Timeout)
	for {
		var err error
		rc, err = c.cl.PromptReceipt(c.ctx, c.a.Base, c.a.NodeID, user, mainWS, session1, "d-1")
		if err != nil {
			t.Fatal(err)
		}
		if rc.State == vmagent.ReceiptCompleted || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.last(t, http.StatusOK)
	if rc.State != vmagent.ReceiptCompleted || rc.DeliveryID != "d-1" || rc.AcceptedAt == nil || rc.CompletedAt == nil || *rc.CompletedAt < *rc.AcceptedAt {
		t.Errorf("receipt of the completed prompt = %+v, want completed with its times", rc)
	}
	rc, err := c.cl.PromptReceipt(c.ctx, c.a.Base, c.a.NodeID, user, mainWS, session1, "d-never")
	if err != nil || rc.State != vmagent.ReceiptNotFound {
		t.Errorf("receipt of an unknown delivery = %+v, %v; want not_found", rc, err)
	}
	c.last(t, http.StatusNotFound)
}
