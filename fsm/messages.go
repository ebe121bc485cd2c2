package fsm

import (
	"fmt"
	"time"

	"github.com/google/btree"
)

// The chat messages of a task's agent session, as its agent reports them
// (POST /api/workspaces/{id}/messages). They are kept per task and bounded,
// like a node's event log: the newest MaxTaskMessages, within
// MaxTaskMessageBytes of content and tool metadata.

// CmdRecordMessages records messages (28). It carries IgnoreUnknown on the
// wire: a binary from before messages were kept skips it, as chat
// persistence is not part of running a task.
const CmdRecordMessages CommandType = 28

// Bounds of a task's kept messages; the oldest go first.
const (
	MaxTaskMessages     = 200
	MaxTaskMessageBytes = 256 << 10
)

// Message is one chat message of an agent session, as the agent sent it.
type Message struct {
	MessageID string `json:"message_id"`
	// SessionID is the chat session the agent tagged the message with.
	SessionID string `json:"session_id,omitempty"`
	// Role is user, assistant, system, tool, thinking or plan.
	Role    string `json:"role"`
	Content string `json:"content"`
	// ToolMetadata is the agent's tool call description (JSON text).
	ToolMetadata string `json:"tool_metadata,omitempty"`
	// Origin is "system" for messages the agent injected itself.
	Origin string `json:"origin,omitempty"`
	// Timestamp is the agent's time of the message, as sent.
	Timestamp string `json:"timestamp,omitempty"`
	// Sequence orders the messages of one agent (its outbox row id).
	Sequence int64 `json:"sequence"`
}

// size is what a message counts against MaxTaskMessageBytes.
func (m *Message) size() int { return len(m.Content) + len(m.ToolMetadata) }

// TaskMessages is a task's kept messages, oldest first. Immutable once
// stored, like Task.
type TaskMessages struct {
	TaskID   string    `json:"task_id"`
	Messages []Message `json:"messages"`
	// Total counts the messages ever recorded; Dropped those no longer
	// kept because of the bounds.
	Total   int `json:"total"`
	Dropped int `json:"dropped"`
}

// RecordMessages records a batch of an agent's messages for the task that
// owns the workspace. A message whose id is already kept is a duplicate
// (the agent re-sends a batch whose answer it did not get); the result
// counts both.
type RecordMessages struct {
	WorkspaceID string    `json:"workspace_id"`
	Messages    []Message `json:"messages"`
	At          time.Time `json:"at"`
}

// Type implements Command.
func (RecordMessages) Type() CommandType { return CmdRecordMessages | IgnoreUnknown }

func newMessageTree() *btree.BTreeG[*TaskMessages] {
	return btree.NewG(btreeDegree, func(a, b *TaskMessages) bool { return a.TaskID < b.TaskID })
}

func (f *FSM) applyRecordMessages(c RecordMessages, res *Result) {
	ws, ok := f.st.workspaces.Get(&Workspace{ID: c.WorkspaceID})
	if !ok {
		res.Err = fmt.Errorf("%w: workspace %s", ErrNotFound, c.WorkspaceID)
		return
	}
	cur, ok := f.st.messages.Get(&TaskMessages{TaskID: ws.TaskID})
	if !ok {
		cur = &TaskMessages{TaskID: ws.TaskID}
	}
	// Within a batch and against what is kept. An agent sends its outbox
	// in order and re-sends only the batch it has no answer for, which is
	// always among the newest, so the kept window is enough.
	seen := make(map[string]bool, len(cur.Messages)+len(c.Messages))
	for i := range cur.Messages {
		seen[cur.Messages[i].MessageID] = true
	}
	var add []Message
	for _, m := range c.Messages {
		if seen[m.MessageID] {
			res.Duplicates++
			continue
		}
		seen[m.MessageID] = true
		add = append(add, m)
	}
	res.Persisted = len(add)
	if len(add) == 0 {
		res.Unchanged = true
		return
	}
	f.st.messages.ReplaceOrInsert(cur.with(add))
}

// with returns the messages with add appended and the oldest dropped past
// the bounds (the newest message is always kept).
func (tm *TaskMessages) with(add []Message) *TaskMessages {
	all := make([]Message, 0, len(tm.Messages)+len(add))
	all = append(append(all, tm.Messages...), add...)
	size := 0
	for i := range all {
		size += all[i].size()
	}
	drop := 0
	for len(all)-drop > 1 && (len(all)-drop > MaxTaskMessages || size > MaxTaskMessageBytes) {
		size -= all[drop].size()
		drop++
	}
	if drop > 0 {
		all = append([]Message(nil), all[drop:]...)
	}
	return &TaskMessages{TaskID: tm.TaskID, Messages: all, Total: tm.Total + len(add), Dropped: tm.Dropped + drop}
}

// Messages returns a task's kept messages (none, and false, if its agent
// reported none). The slice is shared: callers must not modify it.
func (f *FSM) Messages(taskID string) (TaskMessages, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if tm, ok := f.st.messages.Get(&TaskMessages{TaskID: taskID}); ok {
		return *tm, true
	}
	return TaskMessages{TaskID: taskID}, false
}

// Binary snapshot records of a task's messages (kindMessages).

const messagesRecordVersion = 1

func (e *encoder) messages(tm *TaskMessages) {
	e.str(tm.TaskID)
	e.uvarint(messagesRecordVersion)
	e.int(tm.Total)
	e.int(tm.Dropped)
	e.uvarint(uint64(len(tm.Messages)))
	for i := range tm.Messages {
		m := &tm.Messages[i]
		e.str(m.MessageID)
		e.str(m.SessionID)
		e.str(m.Role)
		e.str(m.Content)
		e.str(m.ToolMetadata)
		e.str(m.Origin)
		e.str(m.Timestamp)
		e.varint(m.Sequence)
	}
}

func (d *decoder) messages() (*TaskMessages, error) {
	tm := &TaskMessages{TaskID: d.str()}
	if v := d.uvarint(); d.err == nil && v != messagesRecordVersion {
		return nil, fmt.Errorf("messages of %s: record version %d is unknown", tm.TaskID, v)
	}
	tm.Total, tm.Dropped = d.int(), d.int()
	if n := d.count(); n > 0 {
		tm.Messages = make([]Message, n)
	}
	for i := range tm.Messages {
		m := &tm.Messages[i]
		m.MessageID, m.SessionID, m.Role, m.Content = d.str(), d.istr(), d.istr(), d.str()
		m.ToolMetadata, m.Origin, m.Timestamp, m.Sequence = d.str(), d.istr(), d.str(), d.varint()
	}
	if err := d.end(); err != nil {
		return nil, fmt.Errorf("messages of %q: %w", tm.TaskID, err)
	}
	return tm, nil
}
