package sim

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/tdf-project/tdf/vmagent"
)

// Chat messages. The real agent reports an agent session's chat messages
// (POST /api/workspaces/{id}/messages) only when the session was created
// with both a chatSessionId and a projectId. A simulated run reports two:
// the prompt it was given and the agent's answer, tagged with the chat
// session id, before its task status callback.

// maxChatContent is what the real agent cuts a message's content to.
const maxChatContent = 100 << 10

// chatMessagesLocked makes the messages callback of a run of s, or nil if
// the session reports none.
func (a *Agent) chatMessagesLocked(ws *workspace, s *session, tc taskContext) *message {
	if s.chatSessionID == "" {
		return nil
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	prompt := s.LastPrompt
	if len(prompt) > maxChatContent {
		prompt = prompt[:maxChatContent]
	}
	answer := fmt.Sprintf("Simulated agent run on %s finished.", ws.repository)
	var msgs []vmagent.ChatMessage
	for _, m := range []struct{ role, content string }{{"user", prompt}, {"assistant", answer}} {
		a.msgSeq++
		sum := sha1.Sum(fmt.Appendf(nil, "%s/%s/%s/%d", a.cfg.NodeID, ws.id, s.ID, a.msgSeq))
		msgs = append(msgs, vmagent.ChatMessage{MessageID: hex.EncodeToString(sum[:16]), SessionID: s.chatSessionID,
			Role: m.role, Content: m.content, Timestamp: now, Sequence: a.msgSeq})
	}
	m := newMessage(KindMessages, vmagent.MessagesPath(ws.id), ws.callbackToken, vmagent.MessagesRequest{Messages: msgs})
	m.workspaceID, m.projectID, m.taskID = ws.id, tc.projectID, tc.taskID
	m.outbox = true
	return m
}

// sendChatMessages delivers a messages callback under the retry policy.
func (a *Agent) sendChatMessages(ctx context.Context, m *message) {
	if m.token == "" {
		r := m.rec(OutcomeSkipped)
		r.Error = "no callback token"
		a.record(r)
		return
	}
	a.deliverRetried(ctx, m, 1)
}
