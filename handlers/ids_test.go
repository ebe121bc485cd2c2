package handlers_test

import (
	"strings"
	"testing"

	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/handlers"
	"github.com/tdf-project/tdf/vmagent"
)

func TestDeliveryID(t *testing.T) {
	long := "t-" + strings.Repeat("a", 126)
	cases := []struct {
		task string
		want string
	}{
		{"t-0190f3a2b4c5d6e7f8a9b0c1", "t-0190f3a2b4c5d6e7f8a9b0c1:agent_session"},
		{"imported.task:7", "imported.task:7:agent_session"},
		{long, ""},          // too long with the step: hashed
		{"odd/task id", ""}, // characters the agent refuses: hashed
	}
	seen := map[string]string{}
	for _, c := range cases {
		got := handlers.DeliveryID(c.task, fsm.StepAgentSession)
		if !vmagent.ValidDeliveryID(got) {
			t.Errorf("DeliveryID(%q) = %q, not valid for the agent", c.task, got)
		}
		if c.want != "" && got != c.want {
			t.Errorf("DeliveryID(%q) = %q, want %q", c.task, got, c.want)
		}
		if c.want == "" && !strings.HasPrefix(got, "d-") {
			t.Errorf("DeliveryID(%q) = %q, want a d- hash", c.task, got)
		}
		if again := handlers.DeliveryID(c.task, fsm.StepAgentSession); again != got {
			t.Errorf("DeliveryID(%q) not deterministic: %q then %q", c.task, got, again)
		}
		if prev, dup := seen[got]; dup {
			t.Errorf("DeliveryID(%q) = DeliveryID(%q) = %q", c.task, prev, got)
		}
		seen[got] = c.task
	}
	if handlers.DeliveryID(long, fsm.StepAgentSession) == handlers.DeliveryID(long, fsm.StepWorkspaceCreate) {
		t.Error("two steps of one task share a delivery id")
	}
}
