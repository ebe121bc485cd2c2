package timers

import (
	"sync"
	"time"
)

// maxSleep bounds one wait of the firing goroutine. Timers run on the
// monotonic clock but alarms are wall-clock instants, so after a wall-clock
// step forward (NTP, a resumed VM) a long wait would fire late; waking at
// least this often bounds that lateness at the cost of one cheap look per
// minute.
const maxSleep = time.Minute

// Wheel is the leader's alarm index: at most one pending alarm per owner (a
// task id), each an absolute due time, fired by one goroutine driven by one
// timer armed for the earliest alarm.
//
// Schedule, Cancel, Due, Len and Reset are safe for concurrent use and never
// wait for the fire callback, so the raft apply goroutine that feeds the
// wheel keeps going however slow firing is. The zero Wheel is not usable;
// call New.
type Wheel struct {
	clock Clock
	fire  func(owner string, due time.Time)

	mu     sync.Mutex
	alarms index // guarded by mu

	// wake tells the firing goroutine that the earliest alarm moved earlier
	// and its timer must be re-armed. One buffered slot is enough: the
	// goroutine re-reads the whole index whenever it wakes, so signals that
	// pile up carry nothing more.
	wake chan struct{}

	// life serialises Start and Stop. It is separate from mu because Stop
	// waits for the goroutine, which needs mu to finish.
	life sync.Mutex
	stop chan struct{} // closed to stop the goroutine; nil while stopped
	done chan struct{} // closed by the goroutine when it returns
}

// New returns a stopped wheel with no alarms. fire is called from the
// wheel's single goroutine, never concurrently with itself, once for each
// alarm whose due time has passed, in order of due time and then owner. The
// alarm is removed before fire is called, so fire (or anyone else) may
// Schedule the owner again at once.
//
// Due times passed to fire and returned by Due are in UTC with no monotonic
// reading; compare them with time.Time.Equal.
func New(clock Clock, fire func(owner string, due time.Time)) *Wheel {
	return &Wheel{
		clock:  clock,
		fire:   fire,
		alarms: newIndex(),
		wake:   make(chan struct{}, 1),
	}
}

// Schedule sets owner's alarm to due, replacing any alarm owner already has:
// a task waits for one thing at a time, so its newest alarm supersedes the
// old one. A due time at or before Now fires as soon as the wheel runs.
func (w *Wheel) Schedule(owner string, due time.Time) {
	w.mu.Lock()
	earliest := w.alarms.set(owner, due)
	w.mu.Unlock()
	if earliest {
		// Never block: a pending signal already makes the goroutine
		// re-read the index, which will see this alarm.
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// Grow makes room for n more alarms. A leader rebuilding the wheel from the
// FSM knows how many alarms it is about to add; growing once up front spares
// the copies and rehashes of growing step by step, each of which holds the
// wheel's lock for a moment proportional to its size.
func (w *Wheel) Grow(n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.alarms.reserve(n)
}

// Cancel removes owner's alarm and reports whether it had one. An alarm
// already handed to fire cannot be cancelled; fire must re-check the task's
// state, as it must anyway because the wheel is only an index of the FSM.
func (w *Wheel) Cancel(owner string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	// The goroutine's timer may now be armed for an alarm that is gone. It
	// is left to fire: the goroutine then finds nothing due and re-arms, which
	// is cheaper than waking it on every cancel.
	return w.alarms.remove(owner)
}

// Due returns owner's pending alarm, if it has one.
func (w *Wheel) Due(owner string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, ok := w.alarms.get(owner)
	if !ok {
		return time.Time{}, false
	}
	return n.time(), true
}

// Len returns the number of pending alarms.
func (w *Wheel) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.alarms.len()
}

// Start starts the firing goroutine; alarms already overdue fire at once.
// Starting a running wheel does nothing.
func (w *Wheel) Start() {
	w.life.Lock()
	defer w.life.Unlock()
	if w.stop != nil {
		return
	}
	w.stop = make(chan struct{})
	w.done = make(chan struct{})
	go w.run(w.stop, w.done)
}

// Stop stops the firing goroutine and waits for it to return, letting a fire
// call in progress finish first, so that once Stop returns nothing fires
// until the next Start. Alarms stay in the wheel. Stopping a stopped wheel
// does nothing. Stop must not be called from fire: it would wait for itself.
func (w *Wheel) Stop() {
	w.life.Lock()
	defer w.life.Unlock()
	if w.stop == nil {
		return
	}
	close(w.stop)
	<-w.done
	w.stop, w.done = nil, nil
}

// run is the firing goroutine: fire everything due, then sleep until the
// earliest alarm, a stop, or a wake-up saying an earlier alarm arrived.
func (w *Wheel) run(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	var timer Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		// Checked before each fire so Stop waits for at most one fire call,
		// not for a backlog of a million overdue alarms.
		select {
		case <-stop:
			return
		default:
		}

		// Read the clock outside the lock: a fake clock's lock is also taken
		// while it delivers to timers, and Schedule should not wait on either.
		now := w.clock.Now()
		sec, nsec := instant(now)
		w.mu.Lock()
		head, ok := w.alarms.peek()
		if ok && head.dueBy(sec, nsec) {
			owner, due := w.alarms.pop()
			// Unlock before firing: fire may be slow, and Schedule from the
			// apply goroutine must go on meanwhile.
			w.mu.Unlock()
			w.fire(owner, due)
			continue
		}
		w.mu.Unlock()

		var fired <-chan time.Time
		switch {
		case ok:
			if at, isAt := w.clock.(absoluteClock); isAt {
				// A fake clock may have jumped since now was read; arming
				// at the absolute due time cannot overshoot it.
				if timer != nil {
					timer.Stop()
				}
				timer = at.NewTimerAt(minTime(head.time(), now.Add(maxSleep)))
			} else {
				d := min(head.time().Sub(now), maxSleep)
				if timer == nil {
					timer = w.clock.NewTimer(d)
				} else {
					timer.Reset(d)
				}
			}
			fired = timer.C()
		case timer != nil:
			timer.Stop()
		}

		// An alarm scheduled after the unlock above has either left a
		// signal in wake or is not the earliest, so nothing is missed here.
		// Any wake-up, even a stale one, only costs another pass.
		select {
		case <-stop:
			return
		case <-w.wake:
		case <-fired:
		}
	}
}

// absoluteClock is a Clock that can arm a timer at an absolute time. The
// wheel prefers it: with a relative timer, a clock that jumps between the
// wheel's reading of Now and its arming of the timer (a fake clock moved by
// a test) would push the alarm out by the jump.
type absoluteClock interface {
	NewTimerAt(deadline time.Time) Timer
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
