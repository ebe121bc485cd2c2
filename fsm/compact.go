package fsm

import (
	"fmt"
	"sync"
	"unique"
)

// Memory of stored tasks. Most tasks in the state are finished and are
// never written again ("dormant"). Their status history and step attempts
// — a dozen structs of 100–120 bytes, each with 24-byte times and 16-byte
// string headers — are most of a task's memory, so a dormant task is
// stored with them packed into the binary form of its snapshot record
// (taskcodec.go), about a quarter of the size, and unpacked on read.
//
// Every *Task the FSM hands out (Task, ListTasks, Result, the change feed)
// is loaded; only ForEachTask and Watch's visitTask pass stored tasks as
// they are, for callers that look at status, step and alarm only.

// dormant reports whether a task's run is over for good: finished, cleaned
// up, nothing scheduled.
func (t *Task) dormant() bool {
	return t.Status.Terminal() && !t.Cleanup && !t.InFlight && t.Alarm == nil && !t.Adopting
}

// packed returns the stored form of a dormant task: a copy with its short
// strings interned and its timeline packed.
func (t *Task) packed() *Task {
	c := *t
	e := packScratch.Get().(*encoder)
	e.b = e.b[:0]
	e.timeline(t.History, t.Steps)
	c.timeline = append([]byte(nil), e.b...) // exact length: kept for good
	packScratch.Put(e)
	c.History, c.Steps = nil, nil
	c.Status, c.Step = Status(intern(string(c.Status))), Step(intern(string(c.Step)))
	c.ProjectID, c.UserID, c.Repository, c.Owner = intern(c.ProjectID), intern(c.UserID), intern(c.Repository), intern(c.Owner)
	c.Branch, c.VMSize, c.VMLocation = intern(c.Branch), intern(c.VMSize), intern(c.VMLocation)
	c.Output.Summary = intern(c.Output.Summary)
	return &c
}

// packScratch holds encoders for packed: Apply is serial, but Restore
// and tests may pack concurrently.
var packScratch = sync.Pool{New: func() any { return new(encoder) }}

// loaded returns t with History and Steps in place: t itself when it is
// not packed, else a fresh copy.
func (t *Task) loaded() *Task {
	if t.timeline == nil {
		return t
	}
	c := *t
	var err error
	c.History, c.Steps, err = decodeTimeline(t.timeline)
	if err != nil {
		// Packed by this process or checked when its snapshot was loaded.
		panic(fmt.Sprintf("fsm: task %s: packed timeline unreadable: %v", t.ID, err))
	}
	c.timeline = nil
	return &c
}

// storeDormant replaces t by its packed form if t is what the state
// stores for its id and its run is over.
func (s *state) storeDormant(t *Task) {
	if t.timeline != nil || !t.dormant() {
		return
	}
	if cur, ok := s.tasks.Get(t); ok && cur == t {
		s.tasks.ReplaceOrInsert(t.packed())
	}
}

// maxInterned bounds the strings worth sharing: longer ones (prompts,
// error messages) are rarely repeated.
const maxInterned = 64

// intern returns the canonical copy of a short string (unique holds it
// weakly: values no task uses any more are dropped).
func intern(s string) string {
	if s == "" || len(s) > maxInterned {
		return s
	}
	return unique.Make(s).Value()
}
