package handlers

import (
	"context"

	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/vmagent"
)

// FollowUp returns the function that sends a follow-up prompt to the agent
// session of a task awaiting one (the agent's own prompt route). The
// delivery id makes a retry of the same request a replay, not a second
// prompt; the agent then reports the run like the first one.
func FollowUp(cfg Config) func(ctx context.Context, t *fsm.Task, prompt, deliveryID string) error {
	p := &pipeline{cfg: cfg}
	return func(ctx context.Context, t *fsm.Task, prompt, deliveryID string) error {
		n, err := p.node(t)
		if err != nil {
			return err
		}
		base, err := p.agentURL(n)
		if err != nil {
			return err
		}
		return cfg.Agents.SendPrompt(ctx, base, n.ID, t.UserID, t.WorkspaceID, t.AgentSessionID, vmagent.SendPromptRequest{
			Prompt: prompt, MessageID: deliveryID, DeliveryID: deliveryID,
		})
	}
}
