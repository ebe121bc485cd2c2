package fsm

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// SnapshotDifference compares two snapshot streams (format 2, as Hash
// encodes the state) and describes the records in which they differ, up
// to maxDiffs of them: which record, and which of its fields differ with
// both values, or that one side lacks it. It returns "" when the streams
// hold the same records. Replicas whose state hashes disagree at one index
// are compared with it, so that a divergence names the tasks, nodes or
// settings it is in.
func SnapshotDifference(a, b io.Reader) (string, error) {
	ra, err := newRecordReader(a)
	if err != nil {
		return "", fmt.Errorf("first snapshot: %w", err)
	}
	rb, err := newRecordReader(b)
	if err != nil {
		return "", fmt.Errorf("second snapshot: %w", err)
	}
	var out []string
	more := 0
	report := func(format string, args ...any) {
		if len(out) < maxDiffs {
			out = append(out, fmt.Sprintf(format, args...))
		} else {
			more++
		}
	}
	x, errA := ra.next()
	y, errB := rb.next()
	for errA == nil && errB == nil && (x.kind != kindEnd || y.kind != kindEnd) {
		switch c := x.compare(y); {
		case c < 0:
			report("%s %s only in the first: %s", kindName(x.kind), x.key, clip(x.js))
			x, errA = ra.next()
		case c > 0:
			report("%s %s only in the second: %s", kindName(y.kind), y.key, clip(y.js))
			y, errB = rb.next()
		default:
			if !bytes.Equal(x.body, y.body) {
				report("%s %s differs: %s\n  first:  %s\n  second: %s", kindName(x.kind), x.key, fieldDiff(x.js, y.js), clip(x.js), clip(y.js))
			}
			x, errA = ra.next()
			y, errB = rb.next()
		}
	}
	switch {
	case errA != nil:
		return "", fmt.Errorf("first snapshot: %w", errA)
	case errB != nil:
		return "", fmt.Errorf("second snapshot: %w", errB)
	case more > 0:
		out = append(out, fmt.Sprintf("… and %d more differing records", more))
	}
	return strings.Join(out, "\n"), nil
}

// maxDiffs bounds the records SnapshotDifference describes.
const maxDiffs = 10

// record is one snapshot record, with its key and JSON form.
type record struct {
	kind recordKind
	body []byte
	key  string
	js   []byte
}

// compare orders records as the snapshot writes them: by kind, then key
// (error records by sequence number); the trailer comes last.
func (r record) compare(o record) int {
	switch {
	case r.kind == o.kind:
	case r.kind == kindEnd:
		return 1
	case o.kind == kindEnd:
		return -1
	default:
		return int(r.kind) - int(o.kind)
	}
	if r.kind == kindError {
		a, _ := strconv.ParseUint(r.key, 10, 64)
		b, _ := strconv.ParseUint(o.key, 10, 64)
		return cmp.Compare(a, b)
	}
	return strings.Compare(r.key, o.key)
}

// recordReader walks the records of a format-2 snapshot.
type recordReader struct{ r *bufio.Reader }

func newRecordReader(r io.Reader) (*recordReader, error) {
	br := bufio.NewReader(r)
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != snapshotMagic {
		return nil, corrupt("not a format-2 snapshot")
	}
	return &recordReader{r: br}, nil
}

// next returns the next record; kindEnd at the trailer.
func (rr *recordReader) next() (record, error) {
	kb, err := rr.r.ReadByte()
	if err != nil {
		return record{}, corrupt("truncated")
	}
	if recordKind(kb) == kindEnd {
		return record{kind: kindEnd}, nil
	}
	n, err := binary.ReadUvarint(rr.r)
	if err != nil || n > maxRecordLen {
		return record{}, corrupt("bad record length")
	}
	r := record{kind: recordKind(kb), body: make([]byte, n)}
	if _, err := io.ReadFull(rr.r, r.body); err != nil {
		return record{}, corrupt("truncated record")
	}
	r.js = recordJSON(r.kind, r.body)
	r.key = recordKey(r.kind, r.js)
	return r, nil
}

var kindNames = map[recordKind]string{
	kindMeta: "meta", kindMember: "member", kindTask: "task", kindNode: "node", kindWorkspace: "workspace",
	kindIdem: "idempotency key", kindError: "error record", kindNodeLog: "node event log", kindMessages: "task messages",
	kindEnd: "end of snapshot",
}

func kindName(k recordKind) string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("kind %d", k)
}

// recordJSON renders a record as JSON, decoding binary records.
func recordJSON(k recordKind, body []byte) []byte {
	if k == kindEnd {
		return []byte("null")
	}
	var v any
	var err error
	d := &decoder{b: body}
	switch k {
	case kindTask:
		var t *Task
		if t, err = d.task(); err == nil {
			t = t.loaded()
			// Unexported fields are not in Task's JSON; the bookkeeping is.
			v = t
		}
	case kindWorkspace:
		v, err = d.workspace()
	case kindIdem:
		v, err = d.idem()
	case kindMessages:
		v, err = d.messages()
	default:
		return body
	}
	if err != nil {
		return []byte(fmt.Sprintf("%q", fmt.Sprintf("undecodable %s record: %v", kindName(k), err)))
	}
	js, err := json.Marshal(v)
	if err != nil {
		return []byte(fmt.Sprintf("%q", err.Error()))
	}
	return js
}

// recordKey is what identifies a record of its kind: its id, key or
// sequence number.
func recordKey(k recordKind, js []byte) string {
	if k == kindMeta {
		return "record"
	}
	var m map[string]any
	if json.Unmarshal(js, &m) != nil {
		return ""
	}
	for _, k := range []string{"id", "task_id", "node_id", "key", "seq"} {
		if v, ok := m[k]; ok {
			return fmt.Sprint(v)
		}
	}
	return ""
}

// fieldDiff lists the top-level fields whose values differ.
func fieldDiff(a, b []byte) string {
	var ma, mb map[string]any
	if json.Unmarshal(a, &ma) != nil || json.Unmarshal(b, &mb) != nil {
		return "(not objects)"
	}
	keys := map[string]bool{}
	for k := range ma {
		keys[k] = true
	}
	for k := range mb {
		keys[k] = true
	}
	var names []string
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	var out []string
	for _, k := range names {
		if !reflect.DeepEqual(ma[k], mb[k]) {
			ja, _ := json.Marshal(ma[k])
			jb, _ := json.Marshal(mb[k])
			out = append(out, fmt.Sprintf("%s: %s vs %s", k, clip(ja), clip(jb)))
		}
	}
	if len(out) == 0 {
		return "(the same fields; the encodings differ)"
	}
	return strings.Join(out, "; ")
}

// clip shortens a long JSON text for a log line.
func clip(b []byte) string {
	const maxLen = 2000
	if len(b) <= maxLen {
		return string(b)
	}
	return string(b[:maxLen]) + fmt.Sprintf("… (%d bytes)", len(b))
}
