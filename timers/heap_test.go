package timers

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// checkIndex verifies the heap property and that map, slots and heap agree.
func checkIndex(t *testing.T, x *index) {
	t.Helper()
	if x.owners.count != len(x.heap) {
		t.Fatalf("owners.count = %d, len(heap) = %d; want equal", x.owners.count, len(x.heap))
	}
	checkOwnerTable(t, &x.owners)
	for pos, n := range x.heap {
		if got := int(x.slots[n.slot].pos); got != pos {
			t.Fatalf("slots[%d].pos = %d, want %d", n.slot, got, pos)
		}
		owner := x.slots[n.slot].owner
		if _, _, s, ok := x.find(owner); !ok || s != n.slot {
			t.Fatalf("find(%q) = slot %d, %v; want %d, true", owner, s, ok, n.slot)
		}
		if pos > 0 {
			if parent := (pos - 1) / arity; x.less(n, x.heap[parent]) {
				t.Fatalf("heap[%d] sorts before its parent heap[%d]", pos, parent)
			}
		}
	}
}

// checkOwnerTable verifies that every filled cell can be reached from its
// home without crossing an empty cell, which is what lookups rely on.
func checkOwnerTable(t *testing.T, o *ownerTable) {
	t.Helper()
	filled := 0
	for i, c := range o.cells {
		if c.empty() {
			continue
		}
		filled++
		for j := o.home(c.hash); j != i; j = o.next(j) {
			if o.cells[j].empty() {
				t.Fatalf("cell %d (home %d) is cut off by empty cell %d", i, o.home(c.hash), j)
			}
		}
	}
	if filled != o.count {
		t.Fatalf("%d filled cells, count = %d", filled, o.count)
	}
}

// TestOwnerTableDeletes crowds hashes onto four homes around the end of a
// 16-cell table, so probe runs are long and wrap, and checks after every
// deletion that no run was broken.
func TestOwnerTableDeletes(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	o := newOwnerTable()
	type entry struct {
		slot int32
		hash uint32
	}
	var live []entry
	for step := range 20000 {
		if len(live) < 11 && (len(live) == 0 || rng.IntN(2) == 0) {
			e := entry{int32(step), uint32(rng.IntN(1<<20))<<4 | uint32(13+rng.IntN(4))%16}
			i := o.home(e.hash)
			for !o.cells[i].empty() {
				i = o.next(i)
			}
			o.insertAt(i, e.hash, e.slot)
			live = append(live, e)
		} else {
			k := rng.IntN(len(live))
			e := live[k]
			i := o.home(e.hash)
			for o.cells[i].slot() != e.slot {
				if o.cells[i].empty() {
					t.Fatalf("step %d: slot %d not reachable from its home", step, e.slot)
				}
				i = o.next(i)
			}
			o.deleteAt(i)
			live = append(live[:k], live[k+1:]...)
		}
		if len(o.cells) != minCells {
			t.Fatalf("table grew to %d cells; the test needs it to stay at %d", len(o.cells), minCells)
		}
		checkOwnerTable(t, &o)
	}
}

type modelAlarm struct {
	owner string
	due   time.Time
}

func compareModel(a, b modelAlarm) int {
	if c := a.due.Compare(b.due); c != 0 {
		return c
	}
	return cmp.Compare(a.owner, b.owner)
}

// TestIndexMatchesModel drives the index and a plain map with the same random
// operations and checks they agree after every step. Due times are drawn from
// a few seconds so that ties on due time, broken by owner, are common.
func TestIndexMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	x := newIndex()
	model := map[string]time.Time{}
	for step := range 20000 {
		owner := fmt.Sprintf("t%03d", rng.IntN(300))
		switch op := rng.IntN(10); {
		case op < 5:
			due := base.Add(time.Duration(rng.IntN(8)) * time.Second)
			x.set(owner, due)
			model[owner] = due
		case op < 7:
			_, want := model[owner]
			if got := x.remove(owner); got != want {
				t.Fatalf("step %d: remove(%q) = %v, want %v", step, owner, got, want)
			}
			delete(model, owner)
		case op < 8:
			n, ok := x.get(owner)
			want, wantOK := model[owner]
			if ok != wantOK || ok && !n.time().Equal(want) {
				t.Fatalf("step %d: get(%q) = %v, %v; want %v, %v", step, owner, n.time(), ok, want, wantOK)
			}
		default:
			if len(model) == 0 {
				if _, ok := x.peek(); ok {
					t.Fatalf("step %d: peek() on empty index found an alarm", step)
				}
				continue
			}
			var all []modelAlarm
			for o, d := range model {
				all = append(all, modelAlarm{o, d})
			}
			want := slices.MinFunc(all, compareModel)
			owner, due := x.pop()
			if owner != want.owner || !due.Equal(want.due) {
				t.Fatalf("step %d: pop() = %q, %v; want %q, %v", step, owner, due, want.owner, want.due)
			}
			delete(model, owner)
		}
		checkIndex(t, &x)
		if x.len() != len(model) {
			t.Fatalf("step %d: len() = %d, want %d", step, x.len(), len(model))
		}
	}
}

// TestIndexTimeRange checks that due times outside UnixNano's range, the zero
// Time among them, keep their value and order.
func TestIndexTimeRange(t *testing.T) {
	times := []time.Time{
		{},
		time.Date(1500, 6, 1, 0, 0, 0, 1, time.UTC),
		time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC).Add(-time.Nanosecond),
		time.Date(2030, 1, 1, 0, 0, 0, 999_999_999, time.FixedZone("x", 3600)),
		time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	x := newIndex()
	for i := len(times) - 1; i >= 0; i-- {
		x.set(fmt.Sprint(i), times[i])
	}
	for i, want := range times {
		owner, due := x.pop()
		if owner != fmt.Sprint(i) || !due.Equal(want) {
			t.Errorf("pop() = %q, %v; want %q, %v", owner, due, fmt.Sprint(i), want)
		}
	}
}

// TestIndexReleasesMemoryWhenEmpty checks that a large index that drains
// gives its arrays back, since Go maps never shrink on their own.
func TestIndexReleasesMemoryWhenEmpty(t *testing.T) {
	x := newIndex()
	due := time.Unix(1e9, 0)
	for i := range 2 * releaseAbove {
		x.set(fmt.Sprint(i), due)
	}
	for x.len() > 0 {
		x.pop()
	}
	if cap(x.slots) != 0 || cap(x.heap) != 0 {
		t.Errorf("drained index keeps cap(slots) = %d, cap(heap) = %d; want 0, 0", cap(x.slots), cap(x.heap))
	}
	x.set("again", due)
	checkIndex(t, &x)
}

// TestIndexReserve checks that after reserve(n), n new alarms fit without
// any array or table growing.
func TestIndexReserve(t *testing.T) {
	x := newIndex()
	due := time.Unix(1e9, 0)
	for i := range 100 {
		x.set(fmt.Sprint("old", i), due)
	}
	for i := range 40 {
		x.remove(fmt.Sprint("old", i)) // leaves 40 free slots
	}
	x.reserve(5000)
	heapCap, slotsCap, cells := cap(x.heap), cap(x.slots), len(x.owners.cells)
	for i := range 5000 {
		x.set(fmt.Sprint("new", i), due.Add(time.Duration(i)))
	}
	if cap(x.heap) != heapCap || cap(x.slots) != slotsCap || len(x.owners.cells) != cells {
		t.Errorf("after reserve(5000) and 5000 sets: cap(heap) %d→%d, cap(slots) %d→%d, cells %d→%d; want no growth",
			heapCap, cap(x.heap), slotsCap, cap(x.slots), cells, len(x.owners.cells))
	}
	checkIndex(t, &x)
}
