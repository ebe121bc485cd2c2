package timers

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitLimit bounds every wait in these tests. It is generous because they
// must pass on a loaded two-core machine under -race; a passing run never
// waits for it.
const waitLimit = 10 * time.Second

// waitFor polls cond until it holds, failing the test after waitLimit.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitLimit, what)
		}
		time.Sleep(time.Millisecond)
	}
}

type firing struct {
	owner string
	due   time.Time
}

// recorder is a fire callback that queues what fired.
type recorder struct{ ch chan firing }

func newRecorder() *recorder { return &recorder{ch: make(chan firing, 10000)} }

func (r *recorder) fire(owner string, due time.Time) { r.ch <- firing{owner, due} }

// expect waits for the next firings and checks their owners, in order.
func (r *recorder) expect(t *testing.T, owners ...string) []firing {
	t.Helper()
	var got []firing
	for _, want := range owners {
		select {
		case f := <-r.ch:
			if f.owner != want {
				t.Fatalf("fired %q (after %v), want %q", f.owner, got, want)
			}
			got = append(got, f)
		case <-time.After(waitLimit):
			t.Fatalf("timed out after %v waiting for %q to fire (fired so far %v)", waitLimit, want, got)
		}
	}
	return got
}

// none checks that nothing has fired. Callers first establish that the wheel
// is asleep (waitArmed or waitIdle), so there is nothing to wait for.
func (r *recorder) none(t *testing.T) {
	t.Helper()
	select {
	case f := <-r.ch:
		t.Fatalf("%q fired, want nothing", f.owner)
	default:
	}
}

// newFakeWheel returns a wheel on a FakeClock at t0; it is stopped at cleanup.
func newFakeWheel(t *testing.T) (*Wheel, *FakeClock, *recorder) {
	c := NewFakeClock(t0)
	r := newRecorder()
	w := New(c, r.fire)
	t.Cleanup(w.Stop)
	return w, c, r
}

// waitArmed waits until the wheel's goroutine has armed its timer for at:
// it then has fired everything due and is asleep, so a test may assert that
// nothing else fired.
func waitArmed(t *testing.T, c *FakeClock, at time.Time) {
	t.Helper()
	waitFor(t, fmt.Sprintf("timer armed for %v", at), func() bool {
		d, ok := c.NextDeadline()
		return ok && d.Equal(at)
	})
}

// waitIdle waits until the wheel's goroutine sleeps with no timer armed,
// which it does only when it holds no alarms.
func waitIdle(t *testing.T, c *FakeClock) {
	t.Helper()
	waitFor(t, "no timer armed", func() bool { return c.Timers() == 0 })
}

func sec(n float64) time.Time { return t0.Add(time.Duration(n * float64(time.Second))) }

func TestFiresInDueOrderThenOwner(t *testing.T) {
	w, c, r := newFakeWheel(t)
	alarms := []firing{
		{"c", sec(2)},
		{"m", sec(1)},
		{"n", sec(1).Add(time.Nanosecond)},
		{"a", sec(1)},
		{"z", sec(0.5)},
		{"x", sec(3)},
		{"b", sec(1)},
	}
	// Insertion order must not matter.
	for _, perm := range [][]int{{0, 1, 2, 3, 4, 5, 6}, {6, 5, 4, 3, 2, 1, 0}, {3, 0, 6, 2, 5, 1, 4}} {
		for _, i := range perm {
			w.Schedule(alarms[i].owner, alarms[i].due)
		}
		w.Start()
		c.Advance(10 * time.Second)
		got := r.expect(t, "z", "a", "b", "m", "n", "c", "x")
		for _, f := range got {
			if want, _ := findDue(alarms, f.owner); !f.due.Equal(want) {
				t.Errorf("fire(%q) due = %v, want %v", f.owner, f.due, want)
			}
		}
		waitIdle(t, c)
		r.none(t)
		w.Stop()
		c.Set(t0)
	}
}

func findDue(fs []firing, owner string) (time.Time, bool) {
	for _, f := range fs {
		if f.owner == owner {
			return f.due, true
		}
	}
	return time.Time{}, false
}

func TestNothingFiresEarly(t *testing.T) {
	w, c, r := newFakeWheel(t)
	w.Schedule("a", sec(10))
	w.Schedule("b", sec(20))
	w.Start()
	waitArmed(t, c, sec(10))

	c.Advance(5 * time.Second)
	waitArmed(t, c, sec(10))
	r.none(t)

	c.Advance(5*time.Second - time.Nanosecond)
	waitArmed(t, c, sec(10))
	r.none(t)

	c.Advance(time.Nanosecond) // exactly due
	r.expect(t, "a")
	waitArmed(t, c, sec(20))
	r.none(t)

	c.Advance(9 * time.Second)
	waitArmed(t, c, sec(20))
	r.none(t)
	if w.Len() != 1 {
		t.Errorf("Len() = %d, want 1", w.Len())
	}

	c.Advance(time.Hour)
	r.expect(t, "b")
	waitIdle(t, c)
	r.none(t)
}

func TestCancel(t *testing.T) {
	w, c, r := newFakeWheel(t)
	w.Schedule("a", sec(1))
	w.Schedule("b", sec(2))
	w.Schedule("c", sec(3))
	for _, tc := range []struct {
		owner string
		want  bool
	}{{"b", true}, {"b", false}, {"nobody", false}} {
		if got := w.Cancel(tc.owner); got != tc.want {
			t.Errorf("Cancel(%q) = %v, want %v", tc.owner, got, tc.want)
		}
	}
	if _, ok := w.Due("b"); ok {
		t.Error("Due(b) after Cancel found an alarm")
	}
	if w.Len() != 2 {
		t.Errorf("Len() = %d, want 2", w.Len())
	}
	w.Start()
	waitArmed(t, c, sec(1))

	// Cancelling the alarm the timer is armed for leaves a timer that fires
	// for nothing; the wheel must shrug it off and move on to the next.
	w.Cancel("a")
	c.Advance(time.Second)
	waitArmed(t, c, sec(3))
	r.none(t)
	c.Advance(2 * time.Second)
	r.expect(t, "c")
	waitIdle(t, c)
	r.none(t)
}

func TestReplace(t *testing.T) {
	w, c, r := newFakeWheel(t)
	w.Schedule("a", sec(1))
	w.Schedule("b", sec(2))
	w.Schedule("c", sec(10))
	w.Start()
	waitArmed(t, c, sec(1))

	w.Schedule("a", sec(3)) // later: a moves behind b
	w.Schedule("c", sec(2)) // earlier: c ties with b and sorts after it
	if w.Len() != 3 {
		t.Errorf("Len() after replacing = %d, want 3 (one alarm per owner)", w.Len())
	}
	for _, tc := range []firing{{"a", sec(3)}, {"b", sec(2)}, {"c", sec(2)}} {
		if got, ok := w.Due(tc.owner); !ok || !got.Equal(tc.due) {
			t.Errorf("Due(%q) = %v, %v; want %v, true", tc.owner, got, ok, tc.due)
		}
	}

	c.Advance(time.Second) // a's old due time: nothing
	waitArmed(t, c, sec(2))
	r.none(t)
	c.Advance(time.Second)
	r.expect(t, "b", "c")
	waitArmed(t, c, sec(3))
	r.none(t)
	c.Advance(time.Second)
	got := r.expect(t, "a")
	if !got[0].due.Equal(sec(3)) {
		t.Errorf("fire(a) due = %v, want %v", got[0].due, sec(3))
	}
}

func TestEarlierAlarmRearmsTimer(t *testing.T) {
	w, c, r := newFakeWheel(t)
	w.Schedule("late", sec(30))
	w.Start()
	waitArmed(t, c, sec(30))

	w.Schedule("early", sec(2))
	waitArmed(t, c, sec(2))
	c.Advance(2 * time.Second)
	r.expect(t, "early")
	waitArmed(t, c, sec(30))
	r.none(t)

	// A later alarm must not pull the timer back.
	w.Schedule("later", sec(40))
	w.Schedule("earlier", sec(25))
	waitArmed(t, c, sec(25))
	c.Advance(time.Hour)
	r.expect(t, "earlier", "late", "later")
}

func TestLongWaitIsCappedAtMaxSleep(t *testing.T) {
	w, c, r := newFakeWheel(t)
	w.Schedule("a", t0.Add(2*time.Hour))
	w.Start()
	waitArmed(t, c, t0.Add(maxSleep))
	c.Advance(maxSleep)
	waitArmed(t, c, t0.Add(2*maxSleep))
	r.none(t)
	c.Advance(2 * time.Hour)
	r.expect(t, "a")
}

func TestOverdueFireOnStart(t *testing.T) {
	w, c, r := newFakeWheel(t)
	w.Schedule("future", sec(3600))
	w.Schedule("now", t0)
	w.Schedule("hour-ago", sec(-3600))
	w.Schedule("zero", time.Time{})
	w.Schedule("second-ago", sec(-1))
	w.Start()
	r.expect(t, "zero", "hour-ago", "second-ago", "now")
	waitArmed(t, c, t0.Add(maxSleep))
	r.none(t)
	if w.Len() != 1 {
		t.Errorf("Len() = %d, want 1", w.Len())
	}
}

func TestStopThenStartKeepsAlarms(t *testing.T) {
	w, c, r := newFakeWheel(t)
	w.Schedule("a", sec(1))
	w.Schedule("b", sec(2))
	w.Start()
	w.Start() // no second goroutine
	c.Advance(time.Second)
	r.expect(t, "a")
	waitArmed(t, c, sec(2))

	w.Stop()
	w.Stop()
	if n := c.Timers(); n != 0 {
		t.Errorf("Timers() after Stop = %d, want 0 (the wheel's timer stopped)", n)
	}
	c.Advance(time.Hour)
	r.none(t)
	if due, ok := w.Due("b"); !ok || !due.Equal(sec(2)) {
		t.Fatalf("Due(b) after Stop = %v, %v; want %v, true", due, ok, sec(2))
	}

	w.Schedule("c", sec(1800)) // scheduling while stopped works too
	w.Start()
	r.expect(t, "b", "c")
	waitIdle(t, c)
	r.none(t)
}

func TestStopWaitsForFire(t *testing.T) {
	c := NewFakeClock(t0)
	entered := make(chan struct{})
	release := make(chan struct{})
	var finished atomic.Bool
	var fired atomic.Int32
	w := New(c, func(string, time.Time) {
		fired.Add(1)
		close(entered)
		<-release
		finished.Store(true)
	})
	w.Schedule("a", t0)
	w.Schedule("b", t0) // overdue too, but Stop must not wait for it
	w.Start()
	<-entered

	stopped := make(chan struct{})
	go func() {
		w.Stop()
		close(stopped)
	}()
	// A correct Stop can never return here, so this bounded look cannot
	// flake; it only gives a broken Stop a chance to be caught.
	select {
	case <-stopped:
		t.Fatal("Stop returned while fire was still running")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	select {
	case <-stopped:
	case <-time.After(waitLimit):
		t.Fatal("Stop did not return after fire finished")
	}
	if !finished.Load() {
		t.Error("Stop returned before the fire call finished")
	}
	if n := fired.Load(); n != 1 {
		t.Errorf("fire called %d times before Stop returned, want 1", n)
	}
	if _, ok := w.Due("b"); !ok {
		t.Error("b was lost by Stop")
	}
}

// TestScheduleDoesNotWaitForFire holds fire blocked and checks that Schedule,
// Cancel, Due and Len all complete meanwhile.
func TestScheduleDoesNotWaitForFire(t *testing.T) {
	c := NewFakeClock(t0)
	entered := make(chan string, 1)
	release := make(chan struct{})
	r := newRecorder()
	w := New(c, func(owner string, due time.Time) {
		if owner == "slow" {
			entered <- owner
			<-release
		}
		r.fire(owner, due)
	})
	t.Cleanup(w.Stop)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	w.Schedule("slow", t0)
	w.Start()
	<-entered

	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 1000 {
			w.Schedule(fmt.Sprintf("o%04d", i), t0)
		}
		w.Cancel("o0000")
		w.Due("o0001")
		w.Len()
	}()
	select {
	case <-done:
	case <-time.After(waitLimit):
		t.Fatal("Schedule blocked while fire was running")
	}
	if w.Len() != 999 {
		t.Errorf("Len() = %d, want 999", w.Len())
	}
	close(release)
	r.expect(t, "slow", "o0001", "o0002")
	waitFor(t, "all alarms fired", func() bool { return len(r.ch) == 997 })
}

// TestFireMayReschedule checks that fire can schedule its own owner again,
// which works only because the alarm is removed and the lock released first.
func TestFireMayReschedule(t *testing.T) {
	c := NewFakeClock(t0)
	r := newRecorder()
	var w *Wheel
	w = New(c, func(owner string, due time.Time) {
		r.fire(owner, due)
		if due.Before(sec(3)) {
			w.Schedule(owner, due.Add(time.Second))
		}
	})
	t.Cleanup(w.Stop)
	w.Schedule("a", sec(1))
	w.Start()
	for _, want := range []time.Time{sec(1), sec(2), sec(3)} {
		c.Advance(time.Second)
		if got := r.expect(t, "a"); !got[0].due.Equal(want) {
			t.Errorf("fire(a) due = %v, want %v", got[0].due, want)
		}
	}
	waitIdle(t, c)
	r.none(t)
}

func TestRealClockFires(t *testing.T) {
	r := newRecorder()
	w := New(RealClock(), r.fire)
	t.Cleanup(w.Stop)
	w.Start()
	due := time.Now().Add(20 * time.Millisecond)
	w.Schedule("soon", due)
	w.Schedule("later", due.Add(time.Hour))
	got := r.expect(t, "soon")
	if !got[0].due.Equal(due) {
		t.Errorf("fire(soon) due = %v, want %v", got[0].due, due)
	}
	if n := w.Len(); n != 1 {
		t.Errorf("Len() = %d, want 1", n)
	}
}

// TestConcurrentScheduleWhileFiring runs schedulers, cancellers and readers
// against a running wheel on the real clock, for the race detector, and
// checks that every alarm fires exactly once unless Cancel removed it first.
func TestConcurrentScheduleWhileFiring(t *testing.T) {
	const workers, perWorker = 4, 300
	var (
		mu        sync.Mutex
		fired     = map[string]int{}
		cancelled = map[string]bool{}
	)
	w := New(RealClock(), func(owner string, _ time.Time) {
		mu.Lock()
		fired[owner]++
		mu.Unlock()
	})
	t.Cleanup(w.Stop)
	w.Start()

	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for i := range perWorker {
				owner := fmt.Sprintf("w%d-%d", g, i)
				// Placed far out first so that the replacement below
				// always replaces, never re-creates an alarm that fired.
				w.Schedule(owner, time.Now().Add(time.Hour))
				w.Schedule(owner, time.Now().Add(time.Duration(rng.IntN(3000))*time.Microsecond))
				if rng.IntN(5) == 0 && w.Cancel(owner) {
					mu.Lock()
					cancelled[owner] = true
					mu.Unlock()
				}
				w.Due(owner)
				w.Len()
			}
		})
	}
	wg.Wait()
	waitFor(t, "every alarm to fire or be cancelled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(fired)+len(cancelled) == workers*perWorker
	})
	mu.Lock()
	defer mu.Unlock()
	for owner, n := range fired {
		if n != 1 || cancelled[owner] {
			t.Errorf("%s fired %d times, cancelled %v; want once and not cancelled", owner, n, cancelled[owner])
		}
	}
	if n := w.Len(); n != 0 {
		t.Errorf("Len() = %d, want 0", n)
	}
}

// jumpyClock moves its fake time forward just after the next Now read once
// primed: the jump lands exactly between the wheel reading the time and
// arming its timer, the window a test moving a fake clock can hit by chance.
type jumpyClock struct {
	*FakeClock
	jump   time.Duration
	primed atomic.Bool
}

func (c *jumpyClock) Now() time.Time {
	t := c.FakeClock.Now()
	if c.primed.CompareAndSwap(true, false) {
		c.FakeClock.Advance(c.jump)
	}
	return t
}

// TestFakeClockJumpWhileArming: the alarm fires when the clock reaches its
// due time even if the clock jumped while the wheel was arming its timer.
func TestFakeClockJumpWhileArming(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	due := start.Add(30 * time.Minute)
	clock := &jumpyClock{FakeClock: NewFakeClock(start), jump: 30*time.Minute - time.Second}
	fired := make(chan struct{}, 1)
	w := New(clock, func(string, time.Time) { fired <- struct{}{} })
	w.Start()
	defer w.Stop()
	// Let the goroutine settle, waiting on a far alarm, before priming
	// the jump for its next clock read (the one the earlier alarm causes).
	w.Schedule("later", start.Add(time.Hour))
	deadline := time.Now().Add(10 * time.Second)
	for clock.FakeClock.Timers() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the wheel never armed its timer")
		}
		time.Sleep(time.Millisecond)
	}
	clock.primed.Store(true)
	w.Schedule("a", due)
	for clock.primed.Load() || clock.FakeClock.Timers() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the wheel never armed its timer")
		}
		time.Sleep(time.Millisecond)
	}
	clock.FakeClock.Set(due)
	select {
	case <-fired:
	case <-time.After(10 * time.Second):
		t.Fatalf("alarm due %s did not fire with the clock at %s", due, clock.FakeClock.Now())
	}
}
