package vmagent

import (
	"context"
	"fmt"
	"strings"
)

// SendPrompt asks POST /workspaces/{id}/agent-sessions/{sid}/prompt: the
// agent works on a follow-up prompt in the session and reports through the
// task status callback when done, as after its first prompt. 202 (accepted)
// and 200 (a replay of the same DeliveryID) are success; 409 (busy, not
// ready, or another prompt under the same DeliveryID) is an *Error.
func (c *Client) SendPrompt(ctx context.Context, base, nodeID, userID, workspaceID, sessionID string, req SendPromptRequest) error {
	for what, v := range map[string]string{"node id": nodeID, "workspace id": workspaceID, "session id": sessionID} {
		if err := required(what, v); err != nil {
			return err
		}
	}
	if strings.TrimSpace(req.Prompt) == "" {
		return fmt.Errorf("%w: the prompt is empty", ErrInvalidRequest)
	}
	if err := checkDelivery(req.DeliveryID, &req.ProtocolVersion); err != nil {
		return err
	}
	return c.deliverPrompt(ctx, base, nodeID, userID, workspaceID, sessionID, "prompt", req)
}
