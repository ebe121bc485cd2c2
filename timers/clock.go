package timers

import (
	"slices"
	"sync"
	"time"
)

// Clock is the wheel's only source of time. It is an interface so tests and
// the dev harness can drive alarms deterministically with a FakeClock instead
// of waiting on the wall clock.
type Clock interface {
	// Now returns the current time; the wheel fires every alarm due at or
	// before it.
	Now() time.Time
	// NewTimer returns a timer that delivers on C() after d. A d of zero or
	// less delivers at once.
	NewTimer(d time.Duration) Timer
}

// Timer is the part of *time.Timer the wheel uses, so that a fake clock can
// hand out timers it controls.
//
// Implementations follow the Go 1.23 time.Timer contract: after Stop or
// Reset returns, no value from before the call is received from C(). The
// wheel still tolerates a stale value (it only costs one extra look at the
// alarms), so a clock that cannot promise this is slower, not wrong.
type Timer interface {
	// C returns the channel the timer delivers on.
	C() <-chan time.Time
	// Stop prevents the timer from firing. It reports whether the call
	// stopped an armed timer (false if it had already fired or been stopped).
	Stop() bool
	// Reset re-arms the timer to fire after d. It reports whether the timer
	// was armed before the call.
	Reset(d time.Duration) bool
}

// RealClock returns the Clock backed by package time, used in production.
func RealClock() Clock { return realClock{} }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time        { return r.t.C }
func (r realTimer) Stop() bool                 { return r.t.Stop() }
func (r realTimer) Reset(d time.Duration) bool { return r.t.Reset(d) }

var (
	_ Clock = realClock{}
	_ Clock = (*FakeClock)(nil)
	_ Timer = realTimer{}
	_ Timer = (*fakeTimer)(nil)
)

// FakeClock is a Clock whose time moves only when told to, so tests can say
// exactly when an alarm is due and prove that nothing fires early. Its timers
// fire, in deadline order, inside the Advance or Set call that moves the
// time to or past their deadline. It is safe for concurrent use.
type FakeClock struct {
	mu    sync.Mutex
	now   time.Time
	armed map[*fakeTimer]struct{} // timers waiting for their deadline
}

// NewFakeClock returns a FakeClock that reads start until it is moved.
func NewFakeClock(start time.Time) *FakeClock {
	return &FakeClock{now: start, armed: make(map[*fakeTimer]struct{})}
}

// Now returns the fake's current time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the time forward by d and fires every timer whose deadline
// has been reached. A negative d moves the time back and fires nothing.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setLocked(c.now.Add(d))
}

// Set moves the time to t and fires every timer whose deadline has been
// reached. t may be in the past, to simulate a wall-clock step backwards;
// armed timers then keep their deadlines and wait for the time to catch up.
func (c *FakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setLocked(t)
}

func (c *FakeClock) setLocked(t time.Time) {
	c.now = t
	var due []*fakeTimer
	for ft := range c.armed {
		if !ft.deadline.After(t) {
			due = append(due, ft)
		}
	}
	// Map order is random; fire in deadline order so runs are repeatable.
	slices.SortFunc(due, func(a, b *fakeTimer) int { return a.deadline.Compare(b.deadline) })
	for _, ft := range due {
		c.fireLocked(ft)
	}
}

// fireLocked delivers on a timer's channel. The channel has room for one
// value and is emptied by every Stop and Reset, so the send never blocks
// while the clock's lock is held.
func (c *FakeClock) fireLocked(ft *fakeTimer) {
	delete(c.armed, ft)
	select {
	case ft.c <- c.now:
	default:
	}
}

// NewTimer returns a timer that fires when the fake time reaches Now()+d.
func (c *FakeClock) NewTimer(d time.Duration) Timer {
	ft := &fakeTimer{clock: c, c: make(chan time.Time, 1)}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armLocked(ft, d)
	return ft
}

func (c *FakeClock) armLocked(ft *fakeTimer, d time.Duration) {
	c.armAtLocked(ft, c.now.Add(d))
}

// NewTimerAt returns a timer that fires when the fake time reaches
// deadline (at once if it already has).
func (c *FakeClock) NewTimerAt(deadline time.Time) Timer {
	ft := &fakeTimer{clock: c, c: make(chan time.Time, 1)}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armAtLocked(ft, deadline)
	return ft
}

func (c *FakeClock) armAtLocked(ft *fakeTimer, deadline time.Time) {
	ft.deadline = deadline
	if !deadline.After(c.now) {
		c.fireLocked(ft)
		return
	}
	c.armed[ft] = struct{}{}
}

// Timers returns how many timers are armed. Tests poll it to learn that the
// code under test has gone to sleep.
func (c *FakeClock) Timers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.armed)
}

// NextDeadline returns the earliest deadline among armed timers, and false
// if none is armed. Tests poll it to learn what the code under test is
// waiting for, which is how they prove a wheel has re-armed without sleeping.
func (c *FakeClock) NextDeadline() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var next time.Time
	found := false
	for ft := range c.armed {
		if !found || ft.deadline.Before(next) {
			next, found = ft.deadline, true
		}
	}
	return next, found
}

// fakeTimer is a FakeClock's Timer. Its fields are guarded by the clock's
// mutex, so a timer and the clock never disagree about whether it is armed.
type fakeTimer struct {
	clock    *FakeClock
	c        chan time.Time
	deadline time.Time
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	_, armed := t.clock.armed[t]
	delete(t.clock.armed, t)
	t.drainLocked()
	return armed
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	_, armed := t.clock.armed[t]
	t.drainLocked()
	t.clock.armLocked(t, d)
	return armed
}

// drainLocked drops an undelivered value, giving the Go 1.23 guarantee that
// nothing from before a Stop or Reset is received after it.
func (t *fakeTimer) drainLocked() {
	select {
	case <-t.c:
	default:
	}
}
