package bench

import (
	"sync"
	"time"

	"github.com/tdf-project/tdf/fsm"
)

// tracker watches one FSM's change feed and stamps, by wall clock, when
// each task first reached in_progress (the agent session started: the
// running step) and when it completed with its cleanup done. The observer
// runs inside Apply, so it only records.
type tracker struct {
	mu        sync.Mutex
	running   map[string]time.Time
	completed map[string]time.Time
	failed    map[string]string
	stop      func()
}

func newTracker(f *fsm.FSM) *tracker {
	tr := &tracker{running: map[string]time.Time{}, completed: map[string]time.Time{}, failed: map[string]string{}}
	tr.stop = f.Watch(nil, nil, tr.observe)
	return tr
}

func (tr *tracker) observe(c fsm.Change) {
	t := c.Task
	if t == nil {
		return
	}
	now := time.Now()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	switch {
	case t.Status == fsm.StatusInProgress:
		if _, ok := tr.running[t.ID]; !ok {
			tr.running[t.ID] = now
		}
	case t.Status == fsm.StatusCompleted && !t.Cleanup:
		if _, ok := tr.completed[t.ID]; !ok {
			tr.completed[t.ID] = now
		}
	case t.Status == fsm.StatusFailed || t.Status == fsm.StatusCancelled:
		tr.failed[t.ID] = t.ErrorMessage
	}
}

// counts returns how many tasks completed and how many failed so far.
func (tr *tracker) counts() (completed, failed int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.completed), len(tr.failed)
}

// firstFailure returns one failed task's error, for a clear report.
func (tr *tracker) firstFailure() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for id, msg := range tr.failed {
		return id + ": " + msg
	}
	return ""
}

func (tr *tracker) times(id string) (running, completed time.Time) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.running[id], tr.completed[id]
}
