package fsm

import (
	"encoding/binary"
	"errors"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"
)

// The binary codec of the records that grow with the number of tasks
// (tasks, workspaces, idempotency keys): snapshot records and the packed
// timelines of finished tasks. JSON was 87–96 % of snapshot CPU
// (BENCHMARKS.md); this codec is a few appends per field.
//
// Integers are varints. A time is its Unix seconds (zigzag varint) and
// nanoseconds (uvarint); time.Time{} round-trips, and every decoded time is
// UTC. A string is one uvarint code: 0 is "", 1..wellKnownSlots-1 name an
// entry of wellKnown, and wellKnownSlots+n is a literal of n bytes that
// follows.

// wellKnownSlots reserves the codes of wellKnown. The table may grow up to
// wellKnownSlots-1 entries by appending; existing entries never change
// (their codes are in snapshots on disk).
const wellKnownSlots = 64

// wellKnown are the strings that repeat in every task: statuses, steps,
// outcomes, actor types, alarm kinds and the reasons Apply writes.
var wellKnown = []string{
	// statuses
	"queued", "delegated", "in_progress", "completed", "failed", "cancelled", "draft",
	// steps
	"node_selection", "node_provisioning", "node_agent_ready", "workspace_creation",
	"workspace_ready", "agent_session", "running", "awaiting_followup", "cleanup", "adopt",
	// outcomes
	"success", "retry", "poll", "fail", "timeout",
	// actor types, alarm kinds, workspace statuses
	"user", "system", "workspace_callback", "run", "claim", "deadline",
	"creating", "ready", "stopped", "error",
	// reasons Apply writes
	"submitted", "workspace creation accepted", "agent session started", "follow-up idle timeout",
	"agent finished", "import",
}

var wellKnownCode = func() map[string]uint64 {
	if len(wellKnown) >= wellKnownSlots {
		panic("fsm: wellKnown outgrew its slots")
	}
	m := make(map[string]uint64, len(wellKnown))
	for i, s := range wellKnown {
		m[s] = uint64(i + 1)
	}
	return m
}()

var errShortRecord = errors.New("record truncated")

// encoder appends to a byte slice.
type encoder struct{ b []byte }

func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) int(v int)        { e.varint(int64(v)) }

func (e *encoder) bool(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

func (e *encoder) str(s string) {
	if s == "" {
		e.uvarint(0)
		return
	}
	if c, ok := wellKnownCode[s]; ok {
		e.uvarint(c)
		return
	}
	e.uvarint(wellKnownSlots + uint64(len(s)))
	e.b = append(e.b, s...)
}

func (e *encoder) blob(p []byte) {
	e.uvarint(uint64(len(p)))
	e.b = append(e.b, p...)
}

func (e *encoder) time(t time.Time) {
	e.varint(t.Unix())
	e.uvarint(uint64(t.Nanosecond()))
}

// timeAfter writes t relative to an earlier time of the same record:
// seconds since prev's, then nanoseconds. A timeline's times are seconds
// apart, so this takes about half the bytes of time.
func (e *encoder) timeAfter(prev, t time.Time) {
	e.varint(t.Unix() - prev.Unix())
	e.uvarint(uint64(t.Nanosecond()))
}

// timePtr writes presence, then the time.
func (e *encoder) timePtr(t *time.Time) {
	e.bool(t != nil)
	if t != nil {
		e.time(*t)
	}
}

// decoder reads what encoder wrote. The first error sticks: later reads
// return zero values, and err says what went wrong. It never panics on
// malformed input.
type decoder struct {
	b   []byte
	err error
	// alias makes decoded strings point into b instead of copying them:
	// for a record decoded from a private copy that nothing writes to
	// again, its strings cost no allocation each (restore allocates a
	// million tasks' worth).
	alias bool
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	if len(d.b) > 0 && d.b[0] < 0x80 { // most values: one byte, inlined
		v := d.b[0]
		d.b = d.b[1:]
		return uint64(v)
	}
	return d.uvarintSlow()
}

func (d *decoder) uvarintSlow() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(errShortRecord)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if len(d.b) > 0 && d.b[0] < 0x80 {
		v := int64(d.b[0])
		d.b = d.b[1:]
		return v>>1 ^ -(v & 1) // zigzag
	}
	return d.varintSlow()
}

func (d *decoder) varintSlow() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(errShortRecord)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) int() int { return int(d.varint()) }

func (d *decoder) bool() bool {
	if len(d.b) == 0 {
		d.fail(errShortRecord)
		return false
	}
	v := d.b[0]
	d.b = d.b[1:]
	if v > 1 {
		d.fail(errors.New("bad boolean"))
	}
	return v == 1
}

// bytes returns the next n bytes, aliasing the input.
func (d *decoder) bytes(n uint64) []byte {
	if n > uint64(len(d.b)) {
		d.fail(errShortRecord)
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) str() string {
	c := d.uvarint()
	switch {
	case c == 0:
		return ""
	case c < wellKnownSlots:
		if c > uint64(len(wellKnown)) {
			d.fail(errors.New("unknown string code"))
			return ""
		}
		return wellKnown[c-1]
	}
	p := d.bytes(c - wellKnownSlots)
	switch {
	case len(p) == 0:
		return ""
	case !utf8.Valid(p):
		// As JSON would: the state holds only valid UTF-8, so that records
		// still written as JSON (nodes, errors) restore to what they were.
		return strings.ToValidUTF8(string(p), "\uFFFD")
	case d.alias:
		return unsafe.String(&p[0], len(p))
	}
	return string(p)
}

// istr is str for values that repeat across tasks (user and project ids,
// leader ids): short ones are interned, unless they alias the record.
func (d *decoder) istr() string {
	if d.alias {
		return d.str()
	}
	return intern(d.str())
}

// blob returns the next length-prefixed bytes, aliasing the input.
func (d *decoder) blob() []byte { return d.bytes(d.uvarint()) }

func (d *decoder) time() time.Time {
	return d.checkTime(d.varint(), d.uvarint())
}

// minUnix and maxUnix bound a decoded time to the years JSON can write
// (0 to 9999): records still written as JSON must be able to hold it.
const (
	minUnix = -62167219200 // 0000-01-01T00:00:00Z
	maxUnix = 253402300799 // 9999-12-31T23:59:59Z
)

func (d *decoder) checkTime(sec int64, nsec uint64) time.Time {
	switch {
	case nsec >= 1e9:
		d.fail(errors.New("bad nanoseconds"))
		return time.Time{}
	case sec < minUnix || sec > maxUnix:
		d.fail(errors.New("time outside the years 0 to 9999"))
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

func (d *decoder) timeAfter(prev time.Time) time.Time {
	delta := d.varint()
	if delta < minUnix-maxUnix || delta > maxUnix-minUnix {
		d.fail(errors.New("time outside the years 0 to 9999"))
		return time.Time{}
	}
	return d.checkTime(prev.Unix()+delta, d.uvarint())
}

func (d *decoder) timePtr() *time.Time {
	if !d.bool() {
		return nil
	}
	t := d.time()
	return &t
}

// end reports the decoding error, or trailing bytes.
func (d *decoder) end() error {
	if d.err == nil && len(d.b) > 0 {
		d.err = errors.New("trailing bytes in record")
	}
	return d.err
}
