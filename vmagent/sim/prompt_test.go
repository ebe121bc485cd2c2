package sim_test

import (
	"errors"
	"testing"
	"time"

	"github.com/tdf-project/tdf/vmagent"
	"github.com/tdf-project/tdf/vmagent/sim"
)

// A follow-up prompt to a session that finished its run starts a new run,
// which reports through the task status callback like the first; the same
// delivery again is a replay (no third run); an empty prompt is refused.
func TestFollowUpPrompt(t *testing.T) {
	e := newEnv(t, func(c *sim.Config, _ *controlPlane) { c.AgentWorkDuration = 50 * time.Millisecond })
	e.createWorkspace(t, "ws1")
	startSession(t, e, "ws1", "s1", vmagent.StartSessionRequest{AgentType: "claude-code", InitialPrompt: "fix it", TaskID: "t1", ProjectID: "p1"})
	path := vmagent.TaskStatusPath("p1", "t1")
	waitFor(t, "the first run's status callback", func() bool { return len(e.cp.on(path)) == 1 })

	req := vmagent.SendPromptRequest{Prompt: "now add a test", MessageID: "m-2", DeliveryID: "f-1"}
	if err := e.client.SendPrompt(e.ctx, e.srv.URL, node, user, "ws1", "s1", req); err != nil {
		t.Fatalf("SendPrompt() = %v", err)
	}
	waitFor(t, "the follow-up run's status callback", func() bool { return len(e.cp.on(path)) == 2 })
	var body vmagent.TaskStatusRequest
	e.cp.on(path)[1].decode(t, &body)
	if body.ExecutionStep != vmagent.ExecutionStepAwaitingFollowup {
		t.Fatalf("follow-up run reported %+v, want awaiting_followup", body)
	}
	if err := e.client.SendPrompt(e.ctx, e.srv.URL, node, user, "ws1", "s1", req); err != nil {
		t.Fatalf("replayed SendPrompt() = %v", err)
	}
	e.waitHeartbeats(t, 2)
	if n := len(e.cp.on(path)); n != 2 {
		t.Fatalf("%d status callbacks after a replayed delivery, want 2", n)
	}
	req.Prompt = "something else"
	var ae *vmagent.Error
	if err := e.client.SendPrompt(e.ctx, e.srv.URL, node, user, "ws1", "s1", req); !errors.As(err, &ae) || ae.Status != 409 {
		t.Fatalf("another prompt under the same delivery id = %v, want 409", err)
	}
	if err := e.client.SendPrompt(e.ctx, e.srv.URL, node, user, "ws1", "nope", vmagent.SendPromptRequest{Prompt: "x"}); !errors.As(err, &ae) || ae.Status != 404 {
		t.Fatalf("prompt to an unknown session = %v, want 404", err)
	}
}
