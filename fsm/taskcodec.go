package fsm

import (
	"fmt"
	"time"
)

// Binary records (codec.go) of tasks, workspaces and idempotency keys.
// Each field is written in declaration order; TestTaskCodecCoversEveryField
// fails when a field is added to Task without being added here.

// taskRecordVersion leads every task record, so that a field can be added
// later without guessing which layout a record has.
const taskRecordVersion = 1

// encodeTask appends t's record. The ID comes first, so that tools can
// rewrite it without decoding the rest (bench's multiplySnapshot does).
func (e *encoder) task(t *Task, scratch *encoder) {
	e.str(t.ID)
	e.uvarint(taskRecordVersion)
	e.str(t.ProjectID)
	e.str(t.UserID)
	e.str(t.Prompt)
	e.str(t.Repository)
	e.str(t.Branch)
	e.str(t.VMSize)
	e.str(t.VMLocation)
	e.str(t.PreferredNodeID)
	e.str(t.Owner)
	e.str(string(t.Status))
	e.str(string(t.Step))
	e.str(t.NodeID)
	e.str(t.WorkspaceID)
	e.str(t.AgentSessionID)
	e.str(t.ErrorMessage)
	e.time(t.CreatedAt)
	e.time(t.UpdatedAt)
	e.timePtr(t.StartedAt)
	e.timePtr(t.CompletedAt)
	e.str(t.Output.Branch)
	e.str(t.Output.PRURL)
	e.str(t.Output.Summary)
	e.int(t.Attempts)
	e.policy(t.Policy)
	e.int(t.Attempt)
	e.int(t.Retries)
	e.bool(t.InFlight)
	e.uvarint(t.ClaimTerm)
	e.bool(t.Alarm != nil)
	if t.Alarm != nil {
		e.time(t.Alarm.Due)
		e.str(string(t.Alarm.Kind))
	}
	e.timePtr(t.StepDeadline)
	e.bool(t.Cleanup)
	e.bool(t.FollowupEarly)
	e.bool(t.Imported != nil)
	if im := t.Imported; im != nil {
		e.time(im.At)
		e.str(string(im.Status))
		e.str(string(im.Step))
		e.varint(im.ServerID)
	}
	e.bool(t.Adopting)
	if t.timeline != nil {
		e.blob(t.timeline)
		return
	}
	scratch.b = scratch.b[:0]
	scratch.timeline(t.History, t.Steps)
	e.blob(scratch.b)
}

func (e *encoder) policy(p Policy) {
	e.varint(int64(p.ClaimTimeout))
	e.varint(int64(p.ProvisionTimeout))
	e.varint(int64(p.AgentReadyTimeout))
	e.varint(int64(p.WorkspaceReadyTimeout))
	e.varint(int64(p.MaxExecution))
	e.varint(int64(p.IdleTimeout))
}

// timeline appends a task's status history and step attempts: the part of
// a finished task that is kept packed in memory. Each list's first time is
// absolute, every later one relative to the time before it.
func (e *encoder) timeline(history []StatusEvent, steps []StepAttempt) {
	e.uvarint(uint64(len(history)))
	var prev time.Time
	for i := range history {
		h := &history[i]
		e.str(string(h.From))
		e.str(string(h.To))
		e.str(string(h.Actor.Type))
		e.str(h.Actor.ID)
		e.str(h.Reason)
		e.timeAfter(prev, h.At)
		prev = h.At
	}
	e.uvarint(uint64(len(steps)))
	prev = time.Time{}
	for i := range steps {
		s := &steps[i]
		e.str(string(s.Step))
		e.int(s.Attempt)
		e.str(s.Leader)
		e.timeAfter(prev, s.Started)
		prev = s.Started
		e.bool(s.Finished != nil)
		if s.Finished != nil {
			e.timeAfter(prev, *s.Finished)
		}
		e.str(s.Outcome)
		e.str(s.Error)
		e.str(s.Note)
	}
}

// task decodes a task record. A finished task (dormant) keeps its
// timeline packed in a copy of the record's bytes; any other task has it
// decoded.
func (d *decoder) task() (*Task, error) {
	t := &Task{ID: d.str()}
	if v := d.uvarint(); d.err == nil && v != taskRecordVersion {
		return nil, fmt.Errorf("task %s: record version %d is unknown", t.ID, v)
	}
	t.ProjectID, t.UserID, t.Prompt, t.Repository = d.istr(), d.istr(), d.str(), d.istr()
	t.Branch, t.VMSize, t.VMLocation, t.PreferredNodeID, t.Owner = d.istr(), d.istr(), d.istr(), d.str(), d.istr()
	t.Status, t.Step = Status(d.str()), Step(d.str())
	t.NodeID, t.WorkspaceID, t.AgentSessionID, t.ErrorMessage = d.str(), d.str(), d.str(), d.str()
	t.CreatedAt, t.UpdatedAt = d.time(), d.time()
	t.StartedAt, t.CompletedAt = d.timePtr(), d.timePtr()
	t.Output = Output{Branch: d.str(), PRURL: d.str(), Summary: d.istr()}
	t.Attempts = d.int()
	t.Policy = d.policy()
	t.Attempt, t.Retries = d.int(), d.int()
	t.InFlight, t.ClaimTerm = d.bool(), d.uvarint()
	if d.bool() {
		t.Alarm = &Alarm{Due: d.time(), Kind: AlarmKind(d.str())}
	}
	t.StepDeadline = d.timePtr()
	t.Cleanup, t.FollowupEarly = d.bool(), d.bool()
	if d.bool() {
		t.Imported = &ImportInfo{At: d.time(), Status: Status(d.str()), Step: Step(d.str()), ServerID: d.varint()}
	}
	t.Adopting = d.bool()
	tl := d.blob()
	if err := d.end(); err != nil {
		return nil, fmt.Errorf("task %q: %w", t.ID, err)
	}
	if t.dormant() {
		if _, _, err := decodeTimeline(tl, true); err != nil {
			return nil, fmt.Errorf("task %s: %w", t.ID, err)
		}
		t.timeline = append([]byte(nil), tl...)
		return t, nil
	}
	var err error
	if t.History, t.Steps, err = decodeTimeline(tl, false); err != nil {
		return nil, fmt.Errorf("task %s: %w", t.ID, err)
	}
	return t, nil
}

func (d *decoder) policy() Policy {
	return Policy{
		ClaimTimeout: Duration(d.varint()), ProvisionTimeout: Duration(d.varint()),
		AgentReadyTimeout: Duration(d.varint()), WorkspaceReadyTimeout: Duration(d.varint()),
		MaxExecution: Duration(d.varint()), IdleTimeout: Duration(d.varint()),
	}
}

// count reads a slice length; a corrupt one cannot ask for gigabytes, as
// each entry takes at least a byte.
func (d *decoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail(errShortRecord)
		return 0
	}
	return int(n)
}

// decodeTimeline decodes a packed timeline. With dry set it only checks
// it, allocating nothing, and returns nil slices.
func decodeTimeline(b []byte, dry bool) ([]StatusEvent, []StepAttempt, error) {
	d := &decoder{b: b, dry: dry}
	n := d.count()
	var history []StatusEvent
	if !dry && n > 0 {
		history = make([]StatusEvent, n)
	}
	var prev time.Time
	for i := 0; i < n && d.err == nil; i++ {
		h := StatusEvent{From: Status(d.str()), To: Status(d.str())}
		h.Actor = Actor{Type: ActorType(d.str()), ID: d.istr()}
		h.Reason, h.At = d.istr(), d.timeAfter(prev)
		prev = h.At
		if !dry {
			history[i] = h
		}
	}
	n = d.count()
	var steps []StepAttempt
	if !dry && n > 0 {
		steps = make([]StepAttempt, n)
	}
	prev = time.Time{}
	for i := 0; i < n && d.err == nil; i++ {
		s := StepAttempt{Step: Step(d.str()), Attempt: d.int(), Leader: d.istr()}
		s.Started = d.timeAfter(prev)
		prev = s.Started
		if d.bool() {
			f := d.timeAfter(prev)
			if !dry {
				s.Finished = &f
			}
		}
		s.Outcome, s.Error, s.Note = d.str(), d.str(), d.str()
		if !dry {
			steps[i] = s
		}
	}
	if err := d.end(); err != nil {
		return nil, nil, fmt.Errorf("timeline: %w", err)
	}
	return history, steps, nil
}

func (e *encoder) workspace(w *Workspace) {
	e.str(w.ID)
	e.str(w.NodeID)
	e.str(w.TaskID)
	e.str(string(w.Status))
	e.str(w.ErrorMessage)
	e.time(w.CreatedAt)
	e.time(w.UpdatedAt)
}

func (d *decoder) workspace() (*Workspace, error) {
	w := &Workspace{ID: d.str(), NodeID: d.str(), TaskID: d.str(), Status: WorkspaceStatus(d.str()), ErrorMessage: d.str()}
	w.CreatedAt, w.UpdatedAt = d.time(), d.time()
	return w, d.end()
}

func (e *encoder) idem(x *idemEntry) {
	e.str(x.Key)
	e.str(x.Fingerprint)
	e.str(x.TaskID)
	e.time(x.At)
}

func (d *decoder) idem() (*idemEntry, error) {
	x := &idemEntry{Key: d.str(), Fingerprint: d.str(), TaskID: d.str(), At: d.time()}
	return x, d.end()
}
