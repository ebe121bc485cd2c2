package timers

import "hash/maphash"

// ownerTable maps owners to slots: an open-addressing hash table with linear
// probing whose cells hold a slot number and the owner's hash, not the owner.
//
// It replaces map[string]int32, which at a million owners measured 35–56
// bytes per entry (a Swiss-table slot holds a 16-byte string header padded to
// 24 bytes, at 7/16–7/8 load) and was more than half of the wheel's memory.
// The owner's bytes already sit in the slot array, so a cell needs only 8
// bytes: at 3/8–3/4 load that is 11–21 bytes per owner. Keeping the hash in
// the cell lets probing skip non-matching cells and lets growth and deletion
// run without re-reading or re-hashing any owner.
//
// The table does not compare owners itself; index.find walks the probe
// sequence and checks the owner in its slot when a cell's hash matches.
type ownerTable struct {
	cells []cell // length a power of two
	count int
	seed  maphash.Seed
}

type cell struct {
	hash uint32
	ref  int32 // slot number + 1; 0 marks an empty cell, so make() yields an empty table
}

const minCells = 16

func newOwnerTable() ownerTable {
	return ownerTable{cells: make([]cell, minCells), seed: maphash.MakeSeed()}
}

func (t *ownerTable) hash(owner string) uint32 {
	return uint32(maphash.String(t.seed, owner))
}

// home is the first cell of h's probe sequence; next steps along it.
func (t *ownerTable) home(h uint32) int { return int(h) & (len(t.cells) - 1) }
func (t *ownerTable) next(i int) int    { return (i + 1) & (len(t.cells) - 1) }
func (c cell) empty() bool              { return c.ref == 0 }
func (c cell) slot() int32              { return c.ref - 1 }
func newCell(h uint32, slot int32) cell { return cell{hash: h, ref: slot + 1} }

// insertAt fills empty cell i, which must be where the probe sequence for h
// ended, and grows the table past 3/4 load to keep probe runs short.
func (t *ownerTable) insertAt(i int, h uint32, slot int32) {
	t.cells[i] = newCell(h, slot)
	t.count++
	if t.count > maxLoad(len(t.cells)) {
		t.resize(2 * len(t.cells))
	}
}

func maxLoad(cells int) int { return cells / 4 * 3 }

// reserve sizes the table to take n more owners without growing.
func (t *ownerTable) reserve(n int) {
	size := len(t.cells)
	for t.count+n > maxLoad(size) {
		size *= 2
	}
	if size > len(t.cells) {
		t.resize(size)
	}
}

// resize moves every cell into a table of size cells, a power of two; the
// stored hashes mean no owner is read or hashed again.
func (t *ownerTable) resize(size int) {
	old := t.cells
	t.cells = make([]cell, size)
	for _, c := range old {
		if c.empty() {
			continue
		}
		i := t.home(c.hash)
		for !t.cells[i].empty() {
			i = t.next(i)
		}
		t.cells[i] = c
	}
}

// deleteAt empties cell i and shifts later cells of the same probe run back
// (Knuth's Algorithm R), so the table needs no tombstones and lookups never
// slow down as owners come and go.
func (t *ownerTable) deleteAt(i int) {
	for j := t.next(i); !t.cells[j].empty(); j = t.next(j) {
		// The cell at j may fill the hole at i unless its home lies
		// cyclically in (i, j]: moving it before its home would hide it.
		k := t.home(t.cells[j].hash)
		if i <= j && (k <= i || k > j) || i > j && k <= i && k > j {
			t.cells[i] = t.cells[j]
			i = j
		}
	}
	t.cells[i] = cell{}
	t.count--
}
