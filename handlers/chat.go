package handlers

import (
	"strings"

	"github.com/tdf-project/tdf/fsm"
)

// ChatSessionID is the chat session id tdf gives a task's agent session:
// derived from the task like SessionID ("t-abc" → "c-abc"), so a
// re-dispatched create names the same one. The agent reports the session's
// chat messages only when it was created with a chat session id and a
// project id, tagging each message with it; it asks nothing of the id's
// form but that it is not blank.
func ChatSessionID(t *fsm.Task) string { return "c" + strings.TrimPrefix(t.ID, "t") }
