package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"
)

// CommandType is the first byte of every log entry. Values are append-only:
// never renumber or reuse one, since old logs and snapshots name them.
type CommandType uint8

// The command types. IgnoreUnknown may be OR-ed into a new type so that older
// binaries skip it instead of stopping (for commands that are safe to miss).
const (
	CmdSubmitTask         CommandType = 1
	CmdCancelTask         CommandType = 2
	CmdSetStatus          CommandType = 3
	CmdRegisterMember     CommandType = 4
	CmdRemoveMember       CommandType = 5
	CmdStepStarted        CommandType = 6
	CmdStepResult         CommandType = 7
	CmdDecideStep         CommandType = 8
	CmdStepTimeout        CommandType = 9
	CmdFailTask           CommandType = 10
	CmdReschedule         CommandType = 11
	CmdSetSettings        CommandType = 12
	CmdNodeAlarmFired     CommandType = 13
	CmdNodeDestroyResult  CommandType = 14
	CmdNodeReady          CommandType = 15
	CmdNodeHeartbeat      CommandType = 16
	CmdNodeErrors         CommandType = 17
	CmdWorkspaceReady     CommandType = 18
	CmdWorkspaceFailed    CommandType = 19
	CmdTaskStatusCallback CommandType = 20
	CmdIdleReset          CommandType = 21
	CmdAddSigningKey      CommandType = 22
	CmdRecordError        CommandType = 23
	CmdPurgeErrors        CommandType = 24

	// IgnoreUnknown marks a command that a replica which does not know its
	// type may skip.
	IgnoreUnknown CommandType = 0x80
)

// bodyVersion is the encoding version written after the type byte: 1 is a
// JSON body, binaryBodyVersion (stepcodec.go) a binary one. Decoders accept
// every version they know; a body change bumps it.
const bodyVersion = 1

// headerLen is the type byte plus the version byte.
const headerLen = 2

// ErrDecode wraps every malformed-command error.
var ErrDecode = errors.New("fsm: malformed command")

// Command is a change to the replicated state. The leader fills in every
// time and id before encoding; Apply uses nothing else.
type Command interface {
	Type() CommandType
}

// SubmitTask creates a task as queued at node_selection. RequestID (from the
// client's Idempotency-Key, or made up by the API) makes a retry return the
// first result; Fingerprint tells a retry from a different request that
// reuses the key.
type SubmitTask struct {
	RequestID   string    `json:"request_id"`
	Fingerprint string    `json:"fingerprint,omitempty"`
	TaskID      string    `json:"task_id"`
	Spec        TaskSpec  `json:"spec"`
	Policy      Policy    `json:"policy"`
	At          time.Time `json:"at"`
	// Owner is the API token subject that submitted the task ("" when the
	// API runs without authentication).
	Owner string `json:"owner,omitempty"`
}

// CancelTask cancels a task at whatever step it is. Cancelling a cancelled
// task is a no-op.
type CancelTask struct {
	TaskID string    `json:"task_id"`
	Actor  Actor     `json:"actor"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// SetStatus moves a task to a user-settable status (see UserSettable) along
// the transition table, for example re-opening a failed task to ready.
type SetStatus struct {
	TaskID string    `json:"task_id"`
	To     Status    `json:"to"`
	Actor  Actor     `json:"actor"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// RegisterMember records (or updates) a raft server's addresses.
type RegisterMember struct {
	Member Member `json:"member"`
}

// RemoveMember drops a raft server from the member table.
type RemoveMember struct {
	ID string `json:"id"`
}

// Type implements Command.
func (SubmitTask) Type() CommandType { return CmdSubmitTask }

// Type implements Command.
func (CancelTask) Type() CommandType { return CmdCancelTask }

// Type implements Command.
func (SetStatus) Type() CommandType { return CmdSetStatus }

// Type implements Command.
func (RegisterMember) Type() CommandType { return CmdRegisterMember }

// Type implements Command.
func (RemoveMember) Type() CommandType { return CmdRemoveMember }

// Encode serialises a command as its type byte, the body version and the
// body: binary for the step commands, JSON for the rest.
func Encode(c Command) ([]byte, error) {
	switch c := c.(type) {
	case Batch:
		return encodeBatch(c)
	case binaryCommand:
		return encodeBinary(c), nil
	}
	body, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("fsm: encode %T: %w", c, err)
	}
	buf := make([]byte, headerLen, headerLen+len(body))
	buf[0] = byte(c.Type())
	buf[1] = bodyVersion
	return append(buf, body...), nil
}

// commands maps each type to a constructor of its empty command.
var commands = map[CommandType]func() Command{
	CmdSubmitTask:         func() Command { return &SubmitTask{} },
	CmdCancelTask:         func() Command { return &CancelTask{} },
	CmdSetStatus:          func() Command { return &SetStatus{} },
	CmdRegisterMember:     func() Command { return &RegisterMember{} },
	CmdRemoveMember:       func() Command { return &RemoveMember{} },
	CmdStepStarted:        func() Command { return &StepStarted{} },
	CmdStepResult:         func() Command { return &StepResult{} },
	CmdDecideStep:         func() Command { return &DecideStep{} },
	CmdStepTimeout:        func() Command { return &StepTimeout{} },
	CmdFailTask:           func() Command { return &FailTask{} },
	CmdReschedule:         func() Command { return &Reschedule{} },
	CmdSetSettings:        func() Command { return &SetSettings{} },
	CmdNodeAlarmFired:     func() Command { return &NodeAlarmFired{} },
	CmdNodeDestroyResult:  func() Command { return &NodeDestroyResult{} },
	CmdNodeReady:          func() Command { return &NodeReady{} },
	CmdNodeHeartbeat:      func() Command { return &NodeHeartbeat{} },
	CmdNodeErrors:         func() Command { return &NodeErrors{} },
	CmdWorkspaceReady:     func() Command { return &WorkspaceReady{} },
	CmdWorkspaceFailed:    func() Command { return &WorkspaceFailed{} },
	CmdTaskStatusCallback: func() Command { return &TaskStatusCallback{} },
	CmdIdleReset:          func() Command { return &IdleReset{} },
	CmdAddSigningKey:      func() Command { return &AddSigningKey{} },
	CmdRecordError:        func() Command { return &RecordError{} },
	CmdPurgeErrors:        func() Command { return &PurgeErrors{} },
	CmdSetCredential:      func() Command { return &SetCredential{} },
	CmdCreateAPIToken:     func() Command { return &CreateAPIToken{} },
	CmdRevokeAPIToken:     func() Command { return &RevokeAPIToken{} },
	CmdDeleteCredential:   func() Command { return &DeleteCredential{} },
	CmdImportTask:         func() Command { return &ImportTask{} },
	CmdSetControlPlane:    func() Command { return &SetControlPlane{} },
	CmdSetClusterID:       func() Command { return &SetClusterID{} },
	CmdRecordMessages:     func() Command { return &RecordMessages{} },
	CmdReconcileRun:       func() Command { return &ReconcileRun{} },
	CmdNodeAdmin:          func() Command { return &NodeAdmin{} },    // node cordon / drain / destroy
	CmdForget:             func() Command { return &Forget{} },       // task retention
	CmdNodeDeadline:       func() Command { return &NodeDeadline{} }, // node lifetime: busy nodes cordoned
}

// newCommand returns a pointer to an empty command of type t, or nil if t
// is unknown.
func newCommand(t CommandType) Command {
	if mk, ok := commands[t]; ok {
		return mk()
	}
	return nil
}

// ErrUnknownCommand is returned by Decode for a type this binary does not
// know. If the type carries IgnoreUnknown the entry may be skipped.
var ErrUnknownCommand = errors.New("fsm: unknown command type")

// Decode parses an encoded command. It never panics, whatever the input.
func Decode(buf []byte) (Command, error) {
	if len(buf) < headerLen {
		return nil, fmt.Errorf("%w: %d bytes, need at least %d", ErrDecode, len(buf), headerLen)
	}
	t := CommandType(buf[0])
	if t == CmdBatch && buf[1] == bodyVersion {
		return decodeBatch(buf[headerLen:])
	}
	cmd := newCommand(t &^ IgnoreUnknown)
	if cmd == nil {
		return nil, fmt.Errorf("%w %d", ErrUnknownCommand, t)
	}
	switch v := buf[1]; v {
	case bodyVersion:
	case binaryBodyVersion:
		return decodeBinary(t, cmd, buf[headerLen:])
	default:
		return nil, fmt.Errorf("%w: type %d has body version %d, this binary knows %d and %d", ErrDecode, t, v, bodyVersion, binaryBodyVersion)
	}
	if err := json.Unmarshal(buf[headerLen:], cmd); err != nil {
		return nil, fmt.Errorf("%w: type %d: %v", ErrDecode, t, err)
	}
	return deref(cmd), nil
}

// deref turns the pointer newCommand made back into the value type that
// Encode and Apply's switch use.
func deref(c Command) Command {
	return reflect.ValueOf(c).Elem().Interface().(Command)
}
