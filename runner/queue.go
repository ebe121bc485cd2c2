package runner

import "sync"

// workItem asks a worker to look at one task. force re-dispatches a claimed
// step without waiting for its claim alarm (used on leadership gain).
type workItem struct {
	taskID string
	force  bool
}

// workQueue is a FIFO of tasks to process that keeps at most one item per
// task in flight: an item for a task that is being processed is parked
// and re-queued when the worker finishes, so one task never runs two steps
// at once. Unbounded, so that the wheel's goroutine never blocks on it.
type workQueue struct {
	mu     sync.Mutex
	items  []string        // task ids in FIFO order
	queued map[string]bool // queued task id → force
	active map[string]bool
	parked map[string]workItem
	notify chan struct{}
	closed bool
}

func newWorkQueue() *workQueue {
	return &workQueue{
		queued: map[string]bool{}, active: map[string]bool{}, parked: map[string]workItem{},
		notify: make(chan struct{}, 1),
	}
}

func (q *workQueue) push(it workItem) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	switch {
	case q.active[it.taskID]:
		p := q.parked[it.taskID]
		q.parked[it.taskID] = workItem{taskID: it.taskID, force: p.force || it.force}
		return
	}
	if force, ok := q.queued[it.taskID]; ok {
		q.queued[it.taskID] = force || it.force
		return
	}
	q.items = append(q.items, it.taskID)
	q.queued[it.taskID] = it.force
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// pop takes the next item, marking its task active. ok is false when the
// queue is empty.
func (q *workQueue) pop() (workItem, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return workItem{}, false
	}
	id := q.items[0]
	q.items[0] = ""
	q.items = q.items[1:]
	it := workItem{taskID: id, force: q.queued[id]}
	delete(q.queued, id)
	q.active[id] = true
	if len(q.items) > 0 {
		select {
		case q.notify <- struct{}{}:
		default:
		}
	}
	return it, true
}

// done marks a task's processing finished and re-queues a parked item.
func (q *workQueue) done(taskID string) {
	q.mu.Lock()
	delete(q.active, taskID)
	it, parked := q.parked[taskID]
	delete(q.parked, taskID)
	q.mu.Unlock()
	if parked {
		q.push(it)
	}
}

func (q *workQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
}
