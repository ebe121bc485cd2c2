package timers

import (
	"math"
	"slices"
	"time"
)

// arity is the heap's fan-out. Four children per node halve the depth of a
// binary heap and the four siblings compared at each level share one 64-byte
// cache line; at 1M alarms that made replacing an alarm about 20% faster
// than with two, and nothing slower (doc.go).
const arity = 4

// releaseAbove is the slot capacity above which an index that becomes empty
// hands its arrays and owner table back to the allocator. None of them
// shrinks as alarms go, so without this a leader that once held a million
// alarms would keep ~60 MB for the rest of its term.
const releaseAbove = 4096

// node is one heap element. It carries the due time itself, not only a slot
// number, so that sifting compares neighbouring array elements instead of
// chasing an index per comparison; only ties read the owner.
type node struct {
	sec  int64 // due, seconds since the Unix epoch
	nsec int32 // due, nanoseconds within sec
	slot int32 // the alarm's entry in index.slots
}

// slot is the stable home of one alarm: the owner table points here, and
// here points at the alarm's current heap position, so a sift moves nodes and
// updates slots without touching the table.
type slot struct {
	owner string
	pos   int32 // heap position while in use; next free slot while free
}

// index is an indexed d-ary min-heap of alarms ordered by (due, owner), one
// alarm per owner. It is not safe for concurrent use; Wheel guards it.
//
// Per alarm it costs one 16-byte node, one 24-byte slot and 11–21 bytes of
// owner table, plus the slices' growth slack; doc.go has the measured total.
type index struct {
	owners ownerTable
	slots  []slot
	free   int32 // head of the free-slot list threaded through slot.pos; -1 if none
	heap   []node
}

func newIndex() index {
	return index{owners: newOwnerTable(), free: -1}
}

func (x *index) len() int { return len(x.heap) }

// instant splits t the way nodes store it. Seconds and nanoseconds cover
// every time.Time, where UnixNano would overflow outside 1678–2262 (the zero
// Time included), and the pair packs into the same 16-byte node as one int64.
func instant(t time.Time) (int64, int32) { return t.Unix(), int32(t.Nanosecond()) }

func (n node) time() time.Time { return time.Unix(n.sec, int64(n.nsec)).UTC() }

// dueBy reports whether n is due at or before (sec, nsec).
func (n node) dueBy(sec int64, nsec int32) bool {
	return n.sec < sec || n.sec == sec && n.nsec <= nsec
}

// less orders alarms by due time, then owner. Owners are unique, so the
// order is total and firing order never depends on insertion history.
func (x *index) less(a, b node) bool {
	if a.sec != b.sec {
		return a.sec < b.sec
	}
	if a.nsec != b.nsec {
		return a.nsec < b.nsec
	}
	return x.slots[a.slot].owner < x.slots[b.slot].owner
}

// set inserts or replaces owner's alarm and reports whether it is now the
// earliest, which is when the firing goroutine must re-arm its timer.
func (x *index) set(owner string, due time.Time) bool {
	sec, nsec := instant(due)
	h, cell, s, ok := x.find(owner)
	if ok {
		pos := int(x.slots[s].pos)
		x.heap[pos].sec, x.heap[pos].nsec = sec, nsec
		x.fix(pos)
		return x.slots[s].pos == 0
	}
	s = x.alloc(owner)
	x.owners.insertAt(cell, h, s)
	x.heap = append(x.heap, node{sec: sec, nsec: nsec, slot: s})
	x.up(len(x.heap) - 1)
	return x.slots[s].pos == 0
}

// reserve makes room for n more alarms, so that adding them copies no array
// and rehashes no table.
func (x *index) reserve(n int) {
	if n <= 0 {
		return
	}
	x.heap = slices.Grow(x.heap, n)
	// Free slots are reused before the slice grows.
	x.slots = slices.Grow(x.slots, max(0, n-(len(x.slots)-len(x.heap))))
	x.owners.reserve(n)
}

// get returns owner's alarm.
func (x *index) get(owner string) (node, bool) {
	_, _, s, ok := x.find(owner)
	if !ok {
		return node{}, false
	}
	return x.heap[x.slots[s].pos], true
}

// remove drops owner's alarm and reports whether there was one.
func (x *index) remove(owner string) bool {
	_, cell, s, ok := x.find(owner)
	if !ok {
		return false
	}
	x.removeAt(int(x.slots[s].pos))
	x.owners.deleteAt(cell)
	x.release(s)
	return true
}

// find returns owner's hash, the cell that maps owner and owner's slot. When
// owner has no alarm, ok is false and cell is the empty cell where owner
// belongs.
func (x *index) find(owner string) (h uint32, cell int, s int32, ok bool) {
	h = x.owners.hash(owner)
	for cell = x.owners.home(h); ; cell = x.owners.next(cell) {
		c := x.owners.cells[cell]
		if c.empty() {
			return h, cell, -1, false
		}
		if c.hash == h && x.slots[c.slot()].owner == owner {
			return h, cell, c.slot(), true
		}
	}
}

// peek returns the earliest alarm.
func (x *index) peek() (node, bool) {
	if len(x.heap) == 0 {
		return node{}, false
	}
	return x.heap[0], true
}

// pop removes the earliest alarm and returns its owner and due time. The
// index must not be empty.
func (x *index) pop() (string, time.Time) {
	n := x.heap[0]
	owner := x.slots[n.slot].owner
	x.removeAt(0)
	_, cell, _, _ := x.find(owner)
	x.owners.deleteAt(cell)
	x.release(n.slot)
	return owner, n.time()
}

// removeAt takes the node at pos out of the heap; the caller frees its slot.
func (x *index) removeAt(pos int) {
	last := len(x.heap) - 1
	if pos != last {
		x.heap[pos] = x.heap[last]
		x.slots[x.heap[pos].slot].pos = int32(pos)
	}
	x.heap = x.heap[:last]
	if pos != last {
		x.fix(pos)
	}
}

func (x *index) alloc(owner string) int32 {
	if s := x.free; s >= 0 {
		x.free = x.slots[s].pos
		x.slots[s] = slot{owner: owner}
		return s
	}
	if len(x.slots) == math.MaxInt32 {
		panic("timers: more than 2^31-1 alarms")
	}
	x.slots = append(x.slots, slot{owner: owner})
	return int32(len(x.slots) - 1)
}

// release frees slot s once its node and cell are gone.
func (x *index) release(s int32) {
	if len(x.heap) == 0 && cap(x.slots) > releaseAbove {
		*x = newIndex()
		return
	}
	// Clearing owner lets the string be collected while the slot waits
	// for reuse.
	x.slots[s] = slot{pos: x.free}
	x.free = s
}

// fix restores heap order after the node at pos changed.
func (x *index) fix(pos int) {
	if !x.down(pos) {
		x.up(pos)
	}
}

// up sifts the node at pos towards the root. It holds the moving node aside
// and shifts parents down, writing each slot's position once.
func (x *index) up(pos int) {
	h := x.heap
	n := h[pos]
	for pos > 0 {
		parent := (pos - 1) / arity
		if !x.less(n, h[parent]) {
			break
		}
		h[pos] = h[parent]
		x.slots[h[pos].slot].pos = int32(pos)
		pos = parent
	}
	h[pos] = n
	x.slots[n.slot].pos = int32(pos)
}

// down sifts the node at pos towards the leaves and reports whether it moved.
func (x *index) down(pos int) bool {
	h := x.heap
	n := h[pos]
	start := pos
	for {
		first := pos*arity + 1
		if first >= len(h) || first < 0 { // first < 0 after int overflow
			break
		}
		least := first
		for c := first + 1; c < min(first+arity, len(h)); c++ {
			if x.less(h[c], h[least]) {
				least = c
			}
		}
		if !x.less(h[least], n) {
			break
		}
		h[pos] = h[least]
		x.slots[h[pos].slot].pos = int32(pos)
		pos = least
	}
	h[pos] = n
	x.slots[n.slot].pos = int32(pos)
	return pos != start
}
