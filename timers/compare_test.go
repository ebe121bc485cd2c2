package timers

import (
	"cmp"
	"fmt"
	"math/bits"
	"slices"
	"testing"
	"time"
)

// This file holds the measurement behind doc.go's choice of an indexed heap
// over a hierarchical timing wheel. hwheel is a prototype of the wheel, good
// enough to time: it keeps the heap's exact (due, owner) firing order by
// sorting each millisecond's bucket as it fires, but it lacks what the
// production type would also need (a next-deadline search across levels for
// arming the timer, times outside UnixNano's range).

const (
	hwTick     = int64(time.Millisecond)
	hwBits     = 8
	hwSlots    = 1 << hwBits
	hwMask     = hwSlots - 1
	hwLevels   = 4                  // 2^32 ms ≈ 49 days before the overflow list
	hwOverflow = hwLevels * hwSlots // bucket number of the overflow list
)

// hwEntry is an alarm in a doubly linked bucket list. Like the heap's alarms
// it lives in a slab addressed by int32 and is found through the same
// ownerTable, so the two compare on the ordering structure alone.
type hwEntry struct {
	owner      string
	due        int64 // Unix nanoseconds
	prev, next int32
	bucket     int32
}

// hwheel is a hashed hierarchical timing wheel (Varghese & Lauck; the shape
// of Linux's and Kafka's): 4 levels of 256 one-millisecond-based buckets.
type hwheel struct {
	owners  ownerTable
	entries []hwEntry
	free    int32
	head    [hwOverflow + 1]int32
	used    [hwLevels][hwSlots / 64]uint64 // non-empty buckets
	cur     int64                          // current tick; earlier ticks are done
	batch   []int32
}

func newHWheel(now time.Time) *hwheel {
	w := &hwheel{owners: newOwnerTable(), free: -1, cur: now.UnixNano() / hwTick}
	for i := range w.head {
		w.head[i] = -1
	}
	return w
}

func (w *hwheel) bucketFor(due int64) int32 {
	tick := max(due/hwTick, w.cur)
	delta := tick - w.cur
	for l := range hwLevels {
		if delta < 1<<(hwBits*(l+1)) {
			return int32(l*hwSlots + int(tick>>(hwBits*l))&hwMask)
		}
	}
	return hwOverflow
}

func (w *hwheel) link(e, b int32) {
	en := &w.entries[e]
	en.bucket, en.prev, en.next = b, -1, w.head[b]
	if en.next >= 0 {
		w.entries[en.next].prev = e
	}
	w.head[b] = e
	if b < hwOverflow {
		w.used[b/hwSlots][b%hwSlots/64] |= 1 << (b % 64)
	}
}

func (w *hwheel) unlink(e int32) {
	en := &w.entries[e]
	b := en.bucket
	if en.prev >= 0 {
		w.entries[en.prev].next = en.next
	} else {
		w.head[b] = en.next
	}
	if en.next >= 0 {
		w.entries[en.next].prev = en.prev
	}
	if w.head[b] < 0 && b < hwOverflow {
		w.used[b/hwSlots][b%hwSlots/64] &^= 1 << (b % 64)
	}
}

func (w *hwheel) find(owner string) (h uint32, cell int, e int32, ok bool) {
	h = w.owners.hash(owner)
	for cell = w.owners.home(h); ; cell = w.owners.next(cell) {
		c := w.owners.cells[cell]
		if c.empty() {
			return h, cell, -1, false
		}
		if c.hash == h && w.entries[c.slot()].owner == owner {
			return h, cell, c.slot(), true
		}
	}
}

func (w *hwheel) schedule(owner string, due time.Time) {
	ns := due.UnixNano()
	h, cell, e, ok := w.find(owner)
	if ok {
		w.unlink(e)
		w.entries[e].due = ns
		w.link(e, w.bucketFor(ns))
		return
	}
	if w.free >= 0 {
		e, w.free = w.free, w.entries[w.free].next
		w.entries[e] = hwEntry{owner: owner, due: ns}
	} else {
		w.entries = append(w.entries, hwEntry{owner: owner, due: ns})
		e = int32(len(w.entries) - 1)
	}
	w.owners.insertAt(cell, h, e)
	w.link(e, w.bucketFor(ns))
}

func (w *hwheel) cancel(owner string) bool {
	_, cell, e, ok := w.find(owner)
	if !ok {
		return false
	}
	w.unlink(e)
	w.owners.deleteAt(cell)
	w.release(e)
	return true
}

func (w *hwheel) release(e int32) {
	w.entries[e] = hwEntry{next: w.free}
	w.free = e
}

// rehome empties bucket b and files its entries again relative to cur.
func (w *hwheel) rehome(b int32) {
	e := w.head[b]
	w.head[b] = -1
	if b < hwOverflow {
		w.used[b/hwSlots][b%hwSlots/64] &^= 1 << (b % 64)
	}
	for e >= 0 {
		next := w.entries[e].next
		w.link(e, w.bucketFor(w.entries[e].due))
		e = next
	}
}

// cascade runs at the start of each level-0 rotation and pulls the buckets
// that have come into range down a level, as in Linux's old timer wheel.
func (w *hwheel) cascade() {
	for l := 1; l < hwLevels; l++ {
		idx := int32(w.cur>>(hwBits*l)) & hwMask
		w.rehome(int32(l*hwSlots) + idx)
		if idx != 0 {
			return
		}
	}
	w.rehome(hwOverflow)
}

// drain fires, in (due, owner) order, every alarm due at or before now.
func (w *hwheel) drain(now time.Time, fire func(string, time.Time)) {
	nowNs := now.UnixNano()
	target := nowNs / hwTick
	for {
		if w.cur&hwMask == 0 {
			w.cascade()
		}
		slot := int32(w.cur & hwMask)
		if w.head[slot] >= 0 {
			w.fireBucket(slot, nowNs, fire)
		}
		if w.cur >= target {
			return
		}
		// Skip straight to the next non-empty level-0 bucket in this
		// rotation, or to the next rotation's start and its cascade.
		next := int64(w.nextUsed0(int(slot) + 1))
		w.cur = min(w.cur&^hwMask+next, target)
	}
}

func (w *hwheel) nextUsed0(from int) int {
	for word := from / 64; word < hwSlots/64; word++ {
		m := w.used[0][word]
		if word == from/64 {
			m &^= 1<<(from%64) - 1
		}
		if m != 0 {
			return word*64 + bits.TrailingZeros64(m)
		}
	}
	return hwSlots
}

func (w *hwheel) fireBucket(b int32, nowNs int64, fire func(string, time.Time)) {
	w.batch = w.batch[:0]
	for e := w.head[b]; e >= 0; e = w.entries[e].next {
		if w.entries[e].due <= nowNs {
			w.batch = append(w.batch, e)
		}
	}
	for _, e := range w.batch {
		w.unlink(e)
	}
	slices.SortFunc(w.batch, func(a, b int32) int {
		ea, eb := &w.entries[a], &w.entries[b]
		return cmp.Or(cmp.Compare(ea.due, eb.due), cmp.Compare(ea.owner, eb.owner))
	})
	for _, e := range w.batch {
		owner, due := w.entries[e].owner, w.entries[e].due
		_, cell, _, _ := w.find(owner)
		w.owners.deleteAt(cell)
		w.release(e)
		fire(owner, time.Unix(0, due))
	}
}

// alarmSet is what the comparison times: the data structure alone, no lock
// and no goroutine, so the figures show the structures' own costs.
type alarmSet interface {
	schedule(owner string, due time.Time)
	cancel(owner string) bool
	drain(now time.Time, fire func(string, time.Time))
}

type heapSet struct{ index }

func (h *heapSet) schedule(owner string, due time.Time) { h.set(owner, due) }
func (h *heapSet) cancel(owner string) bool             { return h.remove(owner) }
func (h *heapSet) drain(now time.Time, fire func(string, time.Time)) {
	sec, nsec := instant(now)
	for {
		n, ok := h.peek()
		if !ok || !n.dueBy(sec, nsec) {
			return
		}
		fire(h.pop())
	}
}

var (
	_ alarmSet = (*heapSet)(nil)
	_ alarmSet = (*hwheel)(nil)
)

var alarmSets = []struct {
	name string
	new  func() alarmSet
}{
	{"heap", func() alarmSet { return &heapSet{newIndex()} }},
	{"hwheel", func() alarmSet { return newHWheel(t0) }},
}

// TestAlarmSetsAgree checks the prototype against the heap, so the
// comparison times two structures that do the same job.
func TestAlarmSetsAgree(t *testing.T) {
	var got [2][]firing
	for i, impl := range alarmSets {
		s := impl.new()
		base := t0
		for step := range 5 {
			for k := range 3000 {
				// Spread over ~3 days, on a coarse grid so ties are common,
				// and re-schedule owners so replaces happen too.
				due := base.Add(time.Duration((k*7919+step*104729)%4000) * time.Minute)
				s.schedule(ownerName(k%2500), due)
			}
			for k := 0; k < 2500; k += 7 {
				s.cancel(ownerName(k))
			}
			base = base.Add(time.Duration(step+1) * 8 * time.Hour)
			s.drain(base, func(o string, d time.Time) { got[i] = append(got[i], firing{o, d}) })
		}
		s.drain(base.Add(72*time.Hour), func(o string, d time.Time) { got[i] = append(got[i], firing{o, d}) })
	}
	if len(got[0]) == 0 || len(got[0]) != len(got[1]) {
		t.Fatalf("heap fired %d alarms, hwheel %d; want the same, more than 0", len(got[0]), len(got[1]))
	}
	for k := range got[0] {
		if got[0][k].owner != got[1][k].owner || !got[0][k].due.Equal(got[1][k].due) {
			t.Fatalf("firing %d: heap %v, hwheel %v", k, got[0][k], got[1][k])
		}
	}
}

func ownerName(k int) string { return fmt.Sprintf("t%04d", k) }

// BenchmarkCompare times the heap and the wheel prototype on 1M alarms:
// schedule (insert into a full set), cancel (random owner), drain (fire all,
// per alarm) and memory.
func BenchmarkCompare(b *testing.B) {
	d := loadBenchData()
	fill := func(s alarmSet) {
		for i, o := range d.owners {
			s.schedule(o, d.dues[i])
		}
	}
	for _, impl := range alarmSets {
		b.Run(impl.name+"/schedule", func(b *testing.B) {
			s := impl.new()
			fill(s)
			i := 0
			for b.Loop() {
				s.schedule(d.extra[i], d.dues[i])
				if i++; i == benchChunk {
					b.StopTimer()
					for _, o := range d.extra {
						s.cancel(o)
					}
					i = 0
					b.StartTimer()
				}
			}
		})
		b.Run(impl.name+"/cancel", func(b *testing.B) {
			s := impl.new()
			fill(s)
			start, i := 0, 0
			for b.Loop() {
				s.cancel(d.owners[d.order[start+i]])
				if i++; i == benchChunk {
					b.StopTimer()
					for _, k := range d.order[start : start+benchChunk] {
						s.schedule(d.owners[k], d.dues[k])
					}
					start = (start + benchChunk) % (benchN - benchChunk)
					i = 0
					b.StartTimer()
				}
			}
		})
		b.Run(impl.name+"/drain", func(b *testing.B) {
			n := 0
			for b.Loop() {
				b.StopTimer()
				s := impl.new()
				fill(s)
				b.StartTimer()
				s.drain(t0.Add(48*time.Hour), func(string, time.Time) { n++ })
			}
			if n != b.N*benchN {
				b.Fatalf("drain fired %d alarms, want %d", n, b.N*benchN)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/alarm")
		})
		b.Run(impl.name+"/memory", func(b *testing.B) {
			var perAlarm float64
			for b.Loop() {
				perAlarm = heapGrowth(func() any {
					s := impl.new()
					fill(s)
					return s
				}) / benchN
			}
			b.ReportMetric(perAlarm, "bytes/alarm")
		})
	}
}
