package api

import (
	"sync"

	"github.com/gin-gonic/gin"

	"github.com/tdf-project/tdf/fsm"
)

// Blocking queries: GET /v1/tasks/{id}?index=N&wait=D answers when the task
// has changed after index N (or D has passed), so a watcher needs no event
// stream: it reads, then asks again with the X-Tdf-Index it got, and can
// ask any member. The node remembers which task changed at which index for
// its most recent changes (from the FSM's change feed); when N is older
// than that window the read is answered at once, which a watcher treats
// like any answer.

// changeWindow is how many recent task changes a node remembers.
const changeWindow = 1 << 16

type changeEntry struct {
	index uint64
	id    string
}

// taskChanges is the window of recent task changes and the reads waiting
// for one.
type taskChanges struct {
	mu   sync.Mutex
	last map[string]uint64
	ring []changeEntry
	head int
	// floor: every change at an index above it is in the window.
	floor   uint64
	waiters map[string][]chan struct{}
}

// taskChangesOf starts following the FSM's changes on first use.
func (s *Server) taskChangesOf() *taskChanges {
	s.blocking.once.Do(func() {
		tc := &taskChanges{last: map[string]uint64{}, waiters: map[string][]chan struct{}{}}
		f := s.cfg.Node.FSM()
		tc.floor = f.AppliedIndex()
		f.Watch(nil, nil, tc.observe)
		s.blocking.changes = tc
	})
	return s.blocking.changes
}

// blockingState is the Server's lazily started change window.
type blockingState struct {
	once    sync.Once
	changes *taskChanges
}

// observe runs inside Apply: it must not block.
func (tc *taskChanges) observe(ch fsm.Change) {
	if ch.Task == nil {
		return
	}
	id := ch.Task.ID
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if len(tc.ring) < changeWindow {
		tc.ring = append(tc.ring, changeEntry{ch.Index, id})
	} else {
		old := tc.ring[tc.head]
		if tc.last[old.id] == old.index {
			delete(tc.last, old.id)
		}
		tc.floor = max(tc.floor, old.index)
		tc.ring[tc.head] = changeEntry{ch.Index, id}
		tc.head = (tc.head + 1) % changeWindow
	}
	tc.last[id] = ch.Index
	for _, w := range tc.waiters[id] {
		close(w)
	}
	delete(tc.waiters, id)
}

// changedAfter says whether the task changed after index; known is false
// when index is older than the window.
func (tc *taskChanges) changedAfter(id string, index uint64) (changed, known bool) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if at, ok := tc.last[id]; ok && at > index {
		return true, true
	}
	return false, tc.floor <= index
}

// wait returns a channel closed at the task's next change, and a function
// that withdraws it.
func (tc *taskChanges) wait(id string) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	tc.mu.Lock()
	tc.waiters[id] = append(tc.waiters[id], ch)
	tc.mu.Unlock()
	return ch, func() {
		tc.mu.Lock()
		defer tc.mu.Unlock()
		ws := tc.waiters[id]
		for i, w := range ws {
			if w == ch {
				ws = append(ws[:i], ws[i+1:]...)
				break
			}
		}
		if len(ws) == 0 {
			delete(tc.waiters, id)
		} else {
			tc.waiters[id] = ws
		}
	}
}

// blockingTaskRead answers GET /v1/tasks/{id}?index=N&wait=D once this node
// has applied N and the task has changed after N, or when D has passed.
func (s *Server) blockingTaskRead(c *gin.Context, f freshness, o readOpts) {
	ctx, cancel := contextWithWait(c, o.wait)
	defer cancel()
	if err := f.WaitCaughtUp(ctx, o.index); err != nil {
		if c.Request.Context().Err() != nil {
			abortErr(c, c.Request.Context().Err())
			return
		}
		// This node is too far behind: the leader has applied N.
		s.onLeaderRead(c)
		return
	}
	tc := s.taskChangesOf()
	id := c.Param("id")
	for {
		ch, withdraw := tc.wait(id)
		if changed, known := tc.changedAfter(id, o.index); changed || !known {
			withdraw()
			break
		}
		select {
		case <-ch:
			continue
		case <-ctx.Done():
			withdraw()
		}
		break
	}
	if c.Request.Context().Err() != nil {
		abortErr(c, c.Request.Context().Err())
		return
	}
	s.serveLocal(c)
}
