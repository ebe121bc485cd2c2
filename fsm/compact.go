package fsm

import "unique"

// Memory of stored tasks. Most tasks in the state are finished and are
// never written again, so each is compacted once: when its run's cleanup
// is done, and when it is loaded from a snapshot. JSON decoding and
// one-at-a-time appends leave the Steps and History arrays up to twice
// their length, and every decoded string (step names, leader ids,
// outcomes, reasons, user and project ids) is its own allocation although
// a handful of values repeat across a million tasks.

// compact copies the task's slices into arrays of their exact length and
// replaces its short strings by canonical copies. The arrays are always
// copied, never modified in place: the old ones may be shared with a
// snapshot being persisted.
func (t *Task) compact() {
	t.History = exactCopy(t.History)
	for i := range t.History {
		h := &t.History[i]
		h.From, h.To = Status(intern(string(h.From))), Status(intern(string(h.To)))
		h.Actor.Type, h.Actor.ID = ActorType(intern(string(h.Actor.Type))), intern(h.Actor.ID)
		h.Reason = intern(h.Reason)
	}
	t.Steps = exactCopy(t.Steps)
	for i := range t.Steps {
		s := &t.Steps[i]
		s.Step, s.Leader, s.Outcome = Step(intern(string(s.Step))), intern(s.Leader), intern(s.Outcome)
	}
	t.Status, t.Step = Status(intern(string(t.Status))), Step(intern(string(t.Step)))
	t.ProjectID, t.UserID, t.Repository = intern(t.ProjectID), intern(t.UserID), intern(t.Repository)
	t.Branch, t.VMSize, t.VMLocation = intern(t.Branch), intern(t.VMSize), intern(t.VMLocation)
}

func exactCopy[S ~[]E, E any](s S) S {
	if s == nil {
		return nil
	}
	c := make(S, len(s))
	copy(c, s)
	return c
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
