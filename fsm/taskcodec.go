package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Binary records (codec.go) of tasks, workspaces and idempotency keys.
// Each field is written in declaration order; TestTaskCodecCoversEveryField
// fails when a field is added to Task without being added here.

// taskRecordVersion leads every task record, so that a field can be added
// later without guessing which layout a record has. Version 2 adds the
// output's push result and agent error after its summary. A task without
// them is still written as version 1: the same bytes as before version 2
// existed, which a binary from before it can read.
const (
	taskRecordV1      = 1
	taskRecordVersion = 2
)

// encodeTask appends t's record. The ID comes first, so that tools can
// rewrite it without decoding the rest (bench's multiplySnapshot does).
func (e *encoder) task(t *Task, scratch *encoder) {
	e.str(t.ID)
	v := uint64(taskRecordV1)
	if t.Output.reportsRun() {
		v = taskRecordVersion
	}
	e.uvarint(v)
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
	if v >= 2 {
		e.pushResult(t.Output.Push)
		e.str(t.Output.AgentError)
	}
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
// timeline packed (aliasing the record if d.alias, else in a copy); any
// other task has it decoded.
func (d *decoder) task() (*Task, error) {
	t := &Task{ID: d.str()}
	v := d.uvarint()
	if d.err == nil && (v < taskRecordV1 || v > taskRecordVersion) {
		return nil, fmt.Errorf("task %s: record version %d is unknown", t.ID, v)
	}
	t.ProjectID, t.UserID, t.Prompt, t.Repository = d.istr(), d.istr(), d.str(), d.istr()
	t.Branch, t.VMSize, t.VMLocation, t.PreferredNodeID, t.Owner = d.istr(), d.istr(), d.istr(), d.str(), d.istr()
	t.Status, t.Step = Status(d.str()), Step(d.str())
	t.NodeID, t.WorkspaceID, t.AgentSessionID, t.ErrorMessage = d.str(), d.str(), d.str(), d.str()
	t.CreatedAt, t.UpdatedAt = d.time(), d.time()
	t.StartedAt, t.CompletedAt = d.timePtr(), d.timePtr()
	t.Output = Output{Branch: d.str(), PRURL: d.str(), Summary: d.istr()}
	if v >= 2 {
		t.Output.Push, t.Output.AgentError = d.pushResult(), d.str()
		if d.err == nil && !t.Output.reportsRun() {
			// Version 2 is written only for these fields, so that a record
			// re-encodes to the same bytes.
			return nil, fmt.Errorf("task %s: record version 2 without a push result or agent error", t.ID)
		}
	}
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
		if err := checkTimeline(tl); err != nil {
			return nil, fmt.Errorf("task %s: %w", t.ID, err)
		}
		t.timeline = tl
		if !d.alias {
			t.timeline = append([]byte(nil), tl...)
		}
		return t, nil
	}
	var err error
	if t.History, t.Steps, err = decodeTimeline(tl); err != nil {
		return nil, fmt.Errorf("task %s: %w", t.ID, err)
	}
	return t, nil
}

func (e *encoder) pushResult(p *PushResult) {
	e.bool(p != nil)
	if p == nil {
		return
	}
	e.bool(p.Pushed)
	e.str(p.CommitSHA)
	e.str(p.BranchName)
	e.str(p.PRURL)
	e.int(p.PRNumber)
	e.bool(p.HasUncommittedChanges)
	e.str(p.Error)
}

func (d *decoder) pushResult() *PushResult {
	if !d.bool() {
		return nil
	}
	return &PushResult{Pushed: d.bool(), CommitSHA: d.str(), BranchName: d.str(), PRURL: d.str(),
		PRNumber: d.int(), HasUncommittedChanges: d.bool(), Error: d.str()}
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

// The fields of one history event and one step attempt in a packed
// timeline, in the order encoder.timeline writes them, for checkTimeline.
type fieldKind uint8

const (
	fieldStr     fieldKind = iota // uvarint code, maybe followed by bytes
	fieldVarint                   // an int
	fieldTime                     // varint seconds, uvarint nanoseconds
	fieldOptTime                  // a bool, then a time if it is set
)

var (
	historyFields = []fieldKind{fieldStr, fieldStr, fieldStr, fieldStr, fieldStr, fieldTime}
	stepFields    = []fieldKind{fieldStr, fieldVarint, fieldStr, fieldTime, fieldOptTime, fieldStr, fieldStr, fieldStr}
)

// errBadTimeline is checkTimeline's error: made once, as restore checks a
// million timelines.
var (
	errBadTimeline      = fmt.Errorf("timeline: %w", errShortRecord)
	errUnknownCode      = errors.New("timeline: unknown string code")
	errTrailingTimeline = errors.New("timeline: trailing bytes in record")
)

// checkTimeline walks a packed timeline without building anything: what
// restore does for every finished task, so that a timeline that would not
// decode later (when read) is refused with its snapshot. It accepts
// exactly what decodeTimeline accepts (TestCheckTimelineAgreesWithDecode).
func checkTimeline(b []byte) error {
	bad := errBadTimeline
	next := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	for _, fields := range [2][]fieldKind{historyFields, stepFields} {
		prev := time.Time{}.Unix() // each list's first time is absolute
		count, ok := next()
		if !ok || count > uint64(len(b)) {
			return bad
		}
		for range count {
			for _, k := range fields {
				switch k {
				case fieldStr:
					c, ok := next()
					switch {
					case !ok:
						return bad
					case c >= wellKnownSlots:
						if c-wellKnownSlots > uint64(len(b)) {
							return bad
						}
						b = b[c-wellKnownSlots:]
					case c > uint64(len(wellKnown)):
						return errUnknownCode
					}
				case fieldVarint:
					if _, ok := next(); !ok {
						return bad
					}
				case fieldOptTime, fieldTime:
					if k == fieldOptTime {
						if len(b) == 0 || b[0] > 1 {
							return bad
						}
						set := b[0] == 1
						b = b[1:]
						if !set {
							continue
						}
					}
					delta, n := binary.Varint(b)
					if n <= 0 {
						return bad
					}
					b = b[n:]
					ns, ok := next()
					sec := prev + delta
					if !ok || ns >= 1e9 || delta < minUnix-maxUnix || delta > maxUnix-minUnix || sec < minUnix || sec > maxUnix {
						return bad
					}
					if k == fieldTime { // a step's finish time does not move the base
						prev = sec
					}
				}
			}
		}
	}
	if len(b) > 0 {
		return errTrailingTimeline
	}
	return nil
}

// decodeTimeline decodes a packed timeline.
func decodeTimeline(b []byte) ([]StatusEvent, []StepAttempt, error) {
	d := &decoder{b: b}
	var history []StatusEvent
	if n := d.count(); n > 0 {
		history = make([]StatusEvent, n)
	}
	var prev time.Time
	for i := range history {
		h := &history[i]
		h.From, h.To = Status(d.str()), Status(d.str())
		h.Actor = Actor{Type: ActorType(d.str()), ID: d.istr()}
		h.Reason, h.At = d.istr(), d.timeAfter(prev)
		prev = h.At
	}
	var steps []StepAttempt
	if n := d.count(); n > 0 {
		steps = make([]StepAttempt, n)
	}
	prev = time.Time{}
	for i := range steps {
		s := &steps[i]
		s.Step, s.Attempt, s.Leader = Step(d.str()), d.int(), d.istr()
		s.Started = d.timeAfter(prev)
		prev = s.Started
		if d.bool() {
			f := d.timeAfter(prev)
			s.Finished = &f
		}
		s.Outcome, s.Error, s.Note = d.str(), d.str(), d.str()
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
