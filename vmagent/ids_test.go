package vmagent_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tdf-project/tdf/vmagent"
	"github.com/tdf-project/tdf/vmagent/sim"
)

func TestValidDeliveryID(t *testing.T) {
	for _, id := range []string{"d1", "t-0190abc:agent_session", "A.b_c:d-9", strings.Repeat("x", vmagent.MaxDeliveryIDLength)} {
		if !vmagent.ValidDeliveryID(id) {
			t.Errorf("ValidDeliveryID(%q) = false, want true", id)
		}
	}
	for _, id := range []string{"", "t-1/agent_session", "a b", "é", "a\n", "a+b", strings.Repeat("x", vmagent.MaxDeliveryIDLength+1)} {
		if vmagent.ValidDeliveryID(id) {
			t.Errorf("ValidDeliveryID(%q) = true, want false", id)
		}
	}
}

// The simulated agent refuses a deliveryId the real one refuses, with the
// same 400, and the client refuses to send one as a permanent error.
func TestStartRefusesInvalidDeliveryID(t *testing.T) {
	f := newFixture(t, sim.Config{AgentWorkDuration: time.Hour})
	f.waitRunning(t, vmagent.CreateWorkspaceRequest{WorkspaceID: "ws1"})
	if _, err := f.client.CreateAgentSession(f.ctx, f.srv.URL, node, user, "ws1", vmagent.CreateSessionRequest{SessionID: "s1"}, "k1"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"t-1/agent_session", "a b", strings.Repeat("x", vmagent.MaxDeliveryIDLength+1)} {
		code, body := f.raw(t, http.MethodPost, "/workspaces/ws1/agent-sessions/s1/start", "ws1",
			`{"agentType":"a","initialPrompt":"p","protocolVersion":1,"deliveryId":"`+id+`"}`, nil)
		if code != http.StatusBadRequest || !strings.Contains(body, "deliveryId has an invalid format") {
			t.Errorf("POST start deliveryId %q = %d %s, want 400 invalid format", id, code, body)
		}
		err := f.client.StartAgentSession(f.ctx, f.srv.URL, node, user, "ws1", "s1",
			vmagent.StartSessionRequest{AgentType: "a", InitialPrompt: "p", DeliveryID: id})
		if !errors.Is(err, vmagent.ErrInvalidRequest) || vmagent.IsTransient(err) {
			t.Errorf("StartAgentSession(deliveryId %q) = %v, want permanent ErrInvalidRequest", id, err)
		}
	}
	// The longest valid id is accepted.
	long := strings.Repeat("y", vmagent.MaxDeliveryIDLength)
	if err := f.client.StartAgentSession(f.ctx, f.srv.URL, node, user, "ws1", "s1",
		vmagent.StartSessionRequest{AgentType: "a", InitialPrompt: "p", DeliveryID: long}); err != nil {
		t.Fatalf("StartAgentSession(%d-byte deliveryId) = %v, want nil", len(long), err)
	}
	// The protocol version is checked first, as the real agent does.
	code, body := f.raw(t, http.MethodPost, "/workspaces/ws1/agent-sessions/s1/start", "ws1",
		`{"agentType":"a","initialPrompt":"p","deliveryId":"a/b"}`, nil)
	if code != http.StatusBadRequest || !strings.Contains(body, "unsupported_protocol_version") {
		t.Fatalf("POST start without version, bad id = %d %s, want 400 unsupported_protocol_version", code, body)
	}
}
