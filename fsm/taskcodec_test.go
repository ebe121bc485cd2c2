package fsm

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"reflect"
	"testing"
	"time"
)

// fill sets every field reachable from v to a distinct non-zero value, so
// that a codec that forgets a field cannot round-trip it.
func fill(v reflect.Value, n *int) {
	*n++
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d", *n))
	case reflect.Int, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Uint64:
		v.SetUint(uint64(*n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), n)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		fill(v.Index(0), n)
		fill(v.Index(1), n)
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			v.Set(reflect.ValueOf(t0.Add(time.Duration(*n) * 1001 * time.Microsecond)))
			return
		}
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), n)
			}
		}
	default:
		panic(fmt.Sprintf("fill: no value for %s", v.Type()))
	}
}

func encodeRecord(t *Task) []byte {
	var e, scratch encoder
	e.task(t, &scratch)
	return e.b
}

func TestTaskCodecCoversEveryField(t *testing.T) {
	var want Task
	n := 0
	fill(reflect.ValueOf(&want).Elem(), &n)
	got, err := (&decoder{b: encodeRecord(&want)}).task()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, &want) {
		t.Fatalf("task round trip lost fields:\n got %+v\nwant %+v", got, &want)
	}

	// A dormant task comes back packed, and loads to what it was.
	want.Status, want.Cleanup, want.InFlight, want.Alarm, want.Adopting = StatusCompleted, false, false, nil, false
	got, err = (&decoder{b: encodeRecord(&want)}).task()
	if err != nil {
		t.Fatal(err)
	}
	if got.timeline == nil || got.History != nil {
		t.Fatalf("dormant task decoded unpacked")
	}
	if !reflect.DeepEqual(got.loaded(), &want) {
		t.Fatalf("packed task loads to\n %+v\nwant %+v", got.loaded(), &want)
	}
	// Packing in memory and in a record give the same bytes.
	if !bytes.Equal(encodeRecord(want.packed()), encodeRecord(&want)) {
		t.Fatalf("packed and unpacked task encode differently")
	}

	var ws Workspace
	fill(reflect.ValueOf(&ws).Elem(), &n)
	var e encoder
	e.workspace(&ws)
	if gw, err := (&decoder{b: e.b}).workspace(); err != nil || !reflect.DeepEqual(gw, &ws) {
		t.Fatalf("workspace round trip = %+v, %v; want %+v", gw, err, &ws)
	}
	var x idemEntry
	fill(reflect.ValueOf(&x).Elem(), &n)
	e = encoder{}
	e.idem(&x)
	if gx, err := (&decoder{b: e.b}).idem(); err != nil || !reflect.DeepEqual(gx, &x) {
		t.Fatalf("idempotency key round trip = %+v, %v; want %+v", gx, err, &x)
	}
}

func TestCodecTimesAndStrings(t *testing.T) {
	var e encoder
	times := []time.Time{{}, t0, time.Unix(-1, 999_999_999).UTC(), time.Date(9999, 12, 31, 23, 59, 59, 1, time.UTC),
		t0.In(time.FixedZone("x", 3600))}
	for _, tm := range times {
		e.time(tm)
	}
	strs := []string{"", "queued", "n1", string(make([]byte, 300)), "adopt"}
	for _, s := range strs {
		e.str(s)
	}
	d := &decoder{b: e.b}
	for _, tm := range times {
		if got := d.time(); !got.Equal(tm) || got.Location() != time.UTC {
			t.Errorf("time %v decoded as %v", tm, got)
		}
	}
	for _, s := range strs {
		if got := d.str(); got != s {
			t.Errorf("string %q decoded as %q", s, got)
		}
	}
	if err := d.end(); err != nil {
		t.Fatal(err)
	}
}

// cancelledTask submits a task, cancels it before it has a node and runs
// its cleanup, so that its run is over; it returns the task as Apply did.
func cancelledTask(t *testing.T, a *applier, id string) *Task {
	t.Helper()
	if r := a.apply(SubmitTask{RequestID: "req-" + id, TaskID: id, Spec: spec("u1"), At: t0}); r.Err != nil {
		t.Fatal(r.Err)
	}
	r := a.apply(CancelTask{TaskID: id, Actor: Actor{Type: ActorUser, ID: "u1"}, Reason: "changed my mind", At: t0.Add(time.Second)})
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	c := claim(t, a, id, 1, t0.Add(2*time.Second))
	return succeed(t, a, c, StepData{WorkspaceStopped: true}, t0.Add(3*time.Second))
}

func TestDormantTaskIsStoredPackedAndReadWhole(t *testing.T) {
	a := newApplier(t)
	fromApply := cancelledTask(t, a, "t1")
	if len(fromApply.History) != 2 || len(fromApply.Steps) != 1 || !fromApply.dormant() {
		t.Fatalf("Apply's result: %d history events, %d steps, dormant %v", len(fromApply.History), len(fromApply.Steps), fromApply.dormant())
	}
	stored, _ := a.f.st.tasks.Get(&Task{ID: "t1"})
	if stored.timeline == nil || stored.History != nil {
		t.Fatalf("a finished task is stored unpacked")
	}
	got, _ := a.f.Task("t1")
	if !reflect.DeepEqual(got, fromApply) {
		t.Fatalf("Task() = %+v\nwant %+v", got, fromApply)
	}
	page, _ := a.f.ListTasks(TaskFilter{})
	if len(page) != 1 || !reflect.DeepEqual(page[0], fromApply) {
		t.Fatalf("ListTasks() = %+v", page)
	}
	// The API's JSON of a packed task is the JSON of the task.
	j1, _ := json.Marshal(got)
	j2, _ := json.Marshal(fromApply)
	if !bytes.Equal(j1, j2) {
		t.Fatalf("JSON differs:\n%s\n%s", j1, j2)
	}
	// Writing to a dormant task unpacks it: a re-run keeps its history.
	for _, to := range []Status{StatusReady, StatusQueued} {
		if r := a.apply(SetStatus{TaskID: "t1", To: to, Actor: Actor{Type: ActorUser}, At: t0.Add(4 * time.Second)}); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	got, _ = a.f.Task("t1")
	if len(got.History) != 4 || got.History[1].Reason != "changed my mind" {
		t.Fatalf("re-run task history = %+v", got.History)
	}
	// A duplicate submit hands back the stored task loaded.
	cancelledTask(t, a, "t2")
	r := a.apply(SubmitTask{RequestID: "req-t2", TaskID: "t2", Spec: spec("u1"), At: t0})
	if !r.Unchanged || r.Task == nil || len(r.Task.History) == 0 {
		t.Fatalf("duplicate submit returned %+v, %v", r.Task, r.Err)
	}
}

// writeFormat1 writes s as format-1 snapshots were written: every record
// JSON, tasks unpacked.
func writeFormat1(t *testing.T, s *state) []byte {
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	crc := crc32.New(crcTable)
	out := io.MultiWriter(bw, crc)
	out.Write([]byte(snapshotMagicV1))
	count := uint64(0)
	rec := func(kind recordKind, v any) bool {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out.Write([]byte{byte(kind)})
		out.Write(binary.AppendUvarint(nil, uint64(len(b))))
		out.Write(b)
		count++
		return true
	}
	rec(kindMeta, snapshotMeta{Version: 1, Index: s.index, ErrSeq: s.errSeq, Rejected: s.rejected, Settings: s.settings, Keys: s.keys})
	s.members.Ascend(func(m Member) bool { return rec(kindMember, m) })
	s.tasks.Ascend(func(x *Task) bool { return rec(kindTask, x.loaded()) })
	s.nodes.Ascend(func(n *Node) bool { return rec(kindNode, n) })
	s.workspaces.Ascend(func(w *Workspace) bool { return rec(kindWorkspace, w) })
	s.idem.Ascend(func(e *idemEntry) bool { return rec(kindIdem, e) })
	s.errors.Ascend(func(e *ErrorRecord) bool { return rec(kindError, e) })
	out.Write(append([]byte{byte(kindEnd)}, binary.BigEndian.AppendUint64(nil, count)...))
	bw.Write(binary.BigEndian.AppendUint32(nil, crc.Sum32()))
	bw.Flush()
	return buf.Bytes()
}

func TestRestoreReadsFormat1(t *testing.T) {
	a := newApplier(t)
	for i := 0; i < 300; i++ {
		cancelledTask(t, a, fmt.Sprintf("c%03d", i))
	}
	for _, c := range randomLog(3, 2000) {
		a.apply(c)
	}
	old := writeFormat1(t, a.f.st)
	restored := New()
	if err := restored.Restore(io.NopCloser(bytes.NewReader(old))); err != nil {
		t.Fatalf("Restore(format 1) = %v", err)
	}
	if got, want := snapshotBytes(t, restored), snapshotBytes(t, a.f); !bytes.Equal(got, want) {
		t.Fatalf("a format-1 snapshot restored to another state")
	}
	if !bytes.HasPrefix(snapshotBytes(t, restored), []byte(snapshotMagic)) {
		t.Fatalf("snapshots are not written in format 2")
	}
}

// FuzzTaskRecord: no input makes the task decoder panic, and a record it
// accepts encodes back to a record that decodes to the same task.
func FuzzTaskRecord(f *testing.F) {
	var full Task
	n := 0
	fill(reflect.ValueOf(&full).Elem(), &n)
	f.Add(encodeRecord(&full))
	full.Status, full.Cleanup, full.InFlight, full.Alarm, full.Adopting = StatusFailed, false, false, nil, false
	f.Add(encodeRecord(&full))
	f.Add(encodeRecord(&Task{ID: "t1", Status: StatusQueued}))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, derr := decodeTimeline(b)
		if cerr := checkTimeline(b); (cerr == nil) != (derr == nil) {
			t.Fatalf("as a timeline: checkTimeline = %v, decodeTimeline = %v", cerr, derr)
		}
		got, err := (&decoder{b: b}).task()
		if err != nil {
			return
		}
		again, err := (&decoder{b: encodeRecord(got)}).task()
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !reflect.DeepEqual(again.loaded(), got.loaded()) {
			t.Fatalf("round trip changed the task:\n%+v\n%+v", again.loaded(), got.loaded())
		}
	})
}

// TestStepCommandsBinary: the step commands encode to binary bodies that
// keep every field, and their JSON bodies (entries already in logs) still
// decode.
func TestStepCommandsBinary(t *testing.T) {
	n := 0
	for _, c := range []Command{&StepStarted{}, &StepResult{}, &DecideStep{}, &StepTimeout{}} {
		fill(reflect.ValueOf(c).Elem(), &n)
		want := deref(c)
		b, err := Encode(want)
		if err != nil || b[1] != binaryBodyVersion {
			t.Fatalf("Encode(%T) = version %d, %v", want, b[1], err)
		}
		got, err := Decode(b)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("%T round trip = %+v, %v\nwant %+v", want, got, err, want)
		}
		body, _ := json.Marshal(want)
		old := append([]byte{byte(want.Type()), bodyVersion}, body...)
		if got, err := Decode(old); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("%T from a JSON body = %+v, %v", want, got, err)
		}
		if _, err := Decode(b[:len(b)-1]); err == nil {
			t.Fatalf("%T: truncated binary body decoded", want)
		}
	}
	if _, err := Decode(append([]byte{byte(CmdSubmitTask), binaryBodyVersion}, 0)); err == nil {
		t.Fatalf("a binary body for a JSON-only command decoded")
	}
}

// TestCheckTimelineAgreesWithDecode: restore checks a finished task's
// packed timeline without decoding it; the check must accept exactly what
// decoding accepts, for every truncation and every flipped byte.
func TestCheckTimelineAgreesWithDecode(t *testing.T) {
	var full Task
	n := 0
	fill(reflect.ValueOf(&full).Elem(), &n)
	full.Steps[1].Finished = nil
	full.History[0].Reason = "submitted" // a well-known string
	var e encoder
	e.timeline(full.History, full.Steps)
	tl := e.b
	agree := func(b []byte, what string) {
		_, _, derr := decodeTimeline(b)
		if cerr := checkTimeline(b); (cerr == nil) != (derr == nil) {
			t.Fatalf("%s: checkTimeline = %v, decodeTimeline = %v", what, cerr, derr)
		}
	}
	agree(tl, "whole")
	if err := checkTimeline(tl); err != nil {
		t.Fatalf("a valid timeline is refused: %v", err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = checkTimeline(tl) }); n != 0 {
		t.Fatalf("checkTimeline allocates %.0f times per call, want 0", n)
	}
	for i := range tl {
		agree(tl[:i], fmt.Sprintf("truncated to %d", i))
		for _, x := range []byte{0x01, 0x40, 0x80, 0xFF} {
			b := append([]byte(nil), tl...)
			b[i] ^= x
			agree(b, fmt.Sprintf("byte %d ^ %#x", i, x))
		}
	}
}

// TestDecodedValuesFitJSON: what a binary body decodes to must survive the
// JSON records of a snapshot (nodes, errors), so strings come out as valid
// UTF-8 and times are refused outside the years 0 to 9999.
func TestDecodedValuesFitJSON(t *testing.T) {
	var e encoder
	e.str("10.\xff\xff0.8")
	if got := (&decoder{b: e.b}).str(); got != "10.\uFFFD0.8" {
		t.Fatalf("invalid UTF-8 decoded as %q", got)
	}
	for _, sec := range []int64{minUnix - 1, maxUnix + 1} {
		e = encoder{}
		e.varint(sec)
		e.uvarint(0)
		d := &decoder{b: e.b}
		if d.time(); d.err == nil {
			t.Fatalf("time at Unix %d decoded", sec)
		}
	}
	for _, tm := range []time.Time{time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)} {
		e = encoder{}
		e.time(tm)
		if got := (&decoder{b: e.b}).time(); !got.Equal(tm) {
			t.Fatalf("time %v decoded as %v", tm, got)
		}
	}
}
