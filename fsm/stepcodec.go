package fsm

import "fmt"

// Binary bodies (body version 2, codec.go) for the commands the runner
// commits for every step of every task. JSON encoding and decoding of
// these was half of the FSM's CPU per task (`go test -bench FinishTask
// -cpuprofile` in bench/); every other command keeps its JSON body
// (version 1), which stays readable for entries already in a log.
//
// A replica older than this code cannot decode a version-2 body and stops
// with an error naming the version: upgrade every node before the new
// leader commits one (the same rule as Batch).

// binaryBodyVersion is the body version of a binary command.
const binaryBodyVersion = 2

// binaryCommand is a command with a binary body. decodeBody is on the
// pointer that newCommand makes.
type binaryCommand interface {
	Command
	encodeBody(e *encoder)
}

type binaryDecoder interface {
	decodeBody(d *decoder)
}

func encodeBinary(c binaryCommand) []byte {
	e := encoder{b: make([]byte, headerLen, 64)}
	e.b[0], e.b[1] = byte(c.Type()), binaryBodyVersion
	c.encodeBody(&e)
	return e.b
}

func decodeBinary(t CommandType, cmd Command, body []byte) (Command, error) {
	bd, ok := cmd.(binaryDecoder)
	if !ok {
		return nil, fmt.Errorf("%w: type %d has no binary body", ErrDecode, t)
	}
	d := &decoder{b: body}
	bd.decodeBody(d)
	if err := d.end(); err != nil {
		return nil, fmt.Errorf("%w: type %d: %v", ErrDecode, t, err)
	}
	return deref(cmd), nil
}

func (c StepStarted) encodeBody(e *encoder) {
	e.str(c.TaskID)
	e.str(string(c.Step))
	e.int(c.Attempt)
	e.uvarint(c.Term)
	e.str(c.Leader)
	e.time(c.At)
}

func (c *StepStarted) decodeBody(d *decoder) {
	c.TaskID, c.Step, c.Attempt, c.Term = d.str(), Step(d.str()), d.int(), d.uvarint()
	c.Leader, c.At = d.str(), d.time()
}

func (c StepResult) encodeBody(e *encoder) {
	e.str(c.TaskID)
	e.str(string(c.Step))
	e.int(c.Attempt)
	e.uvarint(c.Term)
	e.str(string(c.Outcome))
	e.str(string(c.Class))
	e.str(c.Error)
	e.time(c.RetryAt)
	e.stepData(&c.Data)
	e.str(c.Leader)
	e.time(c.At)
}

func (c *StepResult) decodeBody(d *decoder) {
	c.TaskID, c.Step, c.Attempt, c.Term = d.str(), Step(d.str()), d.int(), d.uvarint()
	c.Outcome, c.Class, c.Error = Outcome(d.str()), ErrorClass(d.str()), d.str()
	c.RetryAt = d.time()
	d.stepData(&c.Data)
	c.Leader, c.At = d.str(), d.time()
}

func (e *encoder) stepData(s *StepData) {
	e.str(s.NodeID)
	e.varint(s.ServerID)
	e.varint(s.ActionID)
	e.str(s.IPv4)
	e.bool(s.ServerGone)
	e.str(s.WorkspaceID)
	e.str(s.SessionID)
	e.bool(s.WorkspaceStopped)
	e.str(s.Recovered)
	e.str(string(s.AdoptTo))
	e.bool(s.AdoptComplete)
	e.str(s.AdoptNote)
	e.bool(s.NodeReady)
	e.str(string(s.WorkspaceStatus))
}

func (d *decoder) stepData(s *StepData) {
	s.NodeID, s.ServerID, s.ActionID, s.IPv4 = d.str(), d.varint(), d.varint(), d.str()
	s.ServerGone, s.WorkspaceID, s.SessionID, s.WorkspaceStopped = d.bool(), d.str(), d.str(), d.bool()
	s.Recovered, s.AdoptTo, s.AdoptComplete, s.AdoptNote = d.str(), Step(d.str()), d.bool(), d.str()
	s.NodeReady, s.WorkspaceStatus = d.bool(), WorkspaceStatus(d.str())
}

func (c DecideStep) encodeBody(e *encoder) {
	e.str(c.TaskID)
	e.str(string(c.Step))
	e.str(c.Leader)
	e.time(c.At)
}

func (c *DecideStep) decodeBody(d *decoder) {
	c.TaskID, c.Step, c.Leader, c.At = d.str(), Step(d.str()), d.str(), d.time()
}

func (c StepTimeout) encodeBody(e *encoder) {
	e.str(c.TaskID)
	e.str(string(c.Step))
	e.time(c.Due)
	e.time(c.At)
}

func (c *StepTimeout) decodeBody(d *decoder) {
	c.TaskID, c.Step, c.Due, c.At = d.str(), Step(d.str()), d.time(), d.time()
}
