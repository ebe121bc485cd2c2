package timers

import (
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

// delivered reports whether tm has a value ready, without waiting. A
// FakeClock delivers inside Advance, so no wait is needed to observe it.
func delivered(tm Timer) bool {
	select {
	case <-tm.C():
		return true
	default:
		return false
	}
}

func TestFakeTimerFiresAtDeadline(t *testing.T) {
	c := NewFakeClock(t0)
	tm := c.NewTimer(10 * time.Second)
	if d, ok := c.NextDeadline(); !ok || !d.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("NextDeadline() = %v, %v; want %v, true", d, ok, t0.Add(10*time.Second))
	}
	c.Advance(9 * time.Second)
	if delivered(tm) {
		t.Fatal("timer fired 1s before its deadline")
	}
	c.Advance(time.Second)
	select {
	case got := <-tm.C():
		if !got.Equal(t0.Add(10 * time.Second)) {
			t.Errorf("timer delivered %v, want %v", got, t0.Add(10*time.Second))
		}
	default:
		t.Fatal("timer did not fire at its deadline")
	}
	if n := c.Timers(); n != 0 {
		t.Errorf("Timers() after firing = %d, want 0", n)
	}
	if tm.Stop() {
		t.Error("Stop() on a fired timer = true, want false")
	}
}

func TestFakeTimerStopAndReset(t *testing.T) {
	c := NewFakeClock(t0)
	tm := c.NewTimer(time.Second)
	if !tm.Stop() {
		t.Error("Stop() on an armed timer = false, want true")
	}
	c.Advance(time.Hour)
	if delivered(tm) {
		t.Error("stopped timer fired")
	}

	// A value left undelivered must not survive Reset.
	tm = c.NewTimer(time.Second)
	c.Advance(time.Second)
	if tm.Reset(time.Minute) {
		t.Error("Reset() on a fired timer = true, want false")
	}
	if delivered(tm) {
		t.Error("value from before Reset was received after it")
	}
	c.Advance(59 * time.Second)
	if delivered(tm) {
		t.Error("reset timer fired early")
	}
	if !tm.Reset(2 * time.Second) {
		t.Error("Reset() on an armed timer = false, want true")
	}
	c.Advance(2 * time.Second)
	if !delivered(tm) {
		t.Error("reset timer did not fire at its new deadline")
	}
}

func TestFakeTimerNonPositiveFiresAtOnce(t *testing.T) {
	c := NewFakeClock(t0)
	for _, d := range []time.Duration{0, -time.Second} {
		if tm := c.NewTimer(d); !delivered(tm) {
			t.Errorf("NewTimer(%v) did not deliver at once", d)
		}
	}
}

func TestFakeClockSetBackwards(t *testing.T) {
	c := NewFakeClock(t0)
	tm := c.NewTimer(time.Minute)
	c.Set(t0.Add(-time.Hour))
	if got := c.Now(); !got.Equal(t0.Add(-time.Hour)) {
		t.Errorf("Now() = %v, want %v", got, t0.Add(-time.Hour))
	}
	c.Set(t0.Add(time.Minute - time.Nanosecond))
	if delivered(tm) {
		t.Error("timer fired before the time reached its deadline")
	}
	c.Set(t0.Add(time.Minute))
	if !delivered(tm) {
		t.Error("timer did not fire when the time reached its deadline")
	}
}

// TestFakeClockConcurrent is for the race detector.
func TestFakeClockConcurrent(t *testing.T) {
	c := NewFakeClock(t0)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			tm := c.NewTimer(time.Millisecond)
			for range 200 {
				c.Advance(time.Millisecond)
				tm.Reset(time.Millisecond)
				c.Now()
				c.NextDeadline()
			}
			tm.Stop()
		})
	}
	wg.Wait()
	if want := t0.Add(800 * time.Millisecond); !c.Now().Equal(want) {
		t.Errorf("Now() = %v, want %v", c.Now(), want)
	}
}

func TestRealClockTimer(t *testing.T) {
	c := RealClock()
	start := c.Now()
	tm := c.NewTimer(5 * time.Millisecond)
	select {
	case <-tm.C():
	case <-time.After(10 * time.Second):
		t.Fatal("real timer did not fire within 10s")
	}
	if el := c.Now().Sub(start); el < 5*time.Millisecond {
		t.Errorf("real timer fired after %v, want at least 5ms", el)
	}
	if tm.Stop() {
		t.Error("Stop() on a fired real timer = true, want false")
	}
}
