package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// What the agents report beyond the pipeline's needs: node reports by
// level, push results and chat messages. All of it is kept, bounded, and
// survives snapshot and restore.

func TestIsErrorLevel(t *testing.T) {
	for level, want := range map[string]bool{
		"error": true, "ERROR": true, "fatal": true, "critical": true, "": true, "panic": true, "bogus": true,
		"warn": false, "Warning": false, "info": false, " info ": false, "debug": false, "trace": false, "notice": false,
	} {
		if got := IsErrorLevel(level); got != want {
			t.Errorf("IsErrorLevel(%q) = %v, want %v", level, got, want)
		}
	}
}

// nodeOf submits a task and selects a new node for it: n-<id>.
func nodeOf(t *testing.T, a *applier, id string) string {
	t.Helper()
	submit(a, id)
	r := a.apply(DecideStep{TaskID: id, Step: StepNodeSelection, At: t0})
	if r.Err != nil || r.Task.NodeID == "" {
		t.Fatalf("node selection: %v", r.Err)
	}
	return r.Task.NodeID
}

func TestNodeReportsRoutedByLevel(t *testing.T) {
	a := newApplier(t)
	node := nodeOf(t, a, "t1")
	batch := []NodeError{
		{IncidentID: "i-ready", Level: "info", Message: "Agent ready", Source: "agent", ReportedAt: "2026-11-25T12:00:00Z"},
		{IncidentID: "i-disk", Level: "warn", Message: "disk 91 %", Source: "resourcemon"},
		{IncidentID: "i-docker", Level: "error", Message: "docker died", Source: "docker", Stack: "goroutine 1", Context: `{"exit":1}`},
		{IncidentID: "i-odd", Level: "catastrophe", Message: "unknown level"},
		{IncidentID: "i-ready", Level: "info", Message: "Agent ready", Source: "agent"}, // twice in one batch
	}
	r := a.apply(NodeErrors{NodeID: node, Errors: batch, SplitLevels: true, At: t0})
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	errs, _ := a.f.Errors(ErrorFilter{NodeID: node, Kind: ErrKindNode})
	if len(errs) != 2 || errs[0].IncidentID != "i-docker" || errs[0].Message != "docker: docker died" || errs[1].IncidentID != "i-odd" {
		t.Fatalf("error records = %+v, want the error and the unknown level only", errs)
	}
	events := a.f.NodeEvents(node)
	if len(events) != 4 {
		t.Fatalf("event log holds %d reports, want 4 (every level, once each): %+v", len(events), events)
	}
	if e := events[0]; e.Level != "info" || e.Message != "Agent ready" || e.Source != "agent" || e.ReportedAt != "2026-11-25T12:00:00Z" || !e.At.Equal(t0) {
		t.Fatalf("first event = %+v", e)
	}
	if e := events[2]; e.Stack != "goroutine 1" || e.Context != `{"exit":1}` {
		t.Fatalf("error event lost its stack or context: %+v", e)
	}
	// The agent re-sends its outbox: nothing is added twice.
	a.apply(NodeErrors{NodeID: node, Errors: batch, SplitLevels: true, At: t0.Add(30 * time.Second)})
	if errs, _ := a.f.Errors(ErrorFilter{NodeID: node}); len(errs) != 2 || len(a.f.NodeEvents(node)) != 4 {
		t.Fatalf("after a re-send: %d error records, %d events", len(errs), len(a.f.NodeEvents(node)))
	}
	// The log keeps the newest MaxNodeEvents.
	var many []NodeError
	for i := range MaxNodeEvents + 50 {
		many = append(many, NodeError{IncidentID: fmt.Sprintf("bulk-%03d", i), Level: "info", Message: "tick"})
	}
	a.apply(NodeErrors{NodeID: node, Errors: many[:120], SplitLevels: true, At: t0.Add(time.Minute)})
	a.apply(NodeErrors{NodeID: node, Errors: many[120:], SplitLevels: true, At: t0.Add(2 * time.Minute)})
	events = a.f.NodeEvents(node)
	if len(events) != MaxNodeEvents || events[0].IncidentID != "bulk-050" || events[len(events)-1].IncidentID != fmt.Sprintf("bulk-%03d", MaxNodeEvents+49) {
		t.Fatalf("bounded log: %d events from %s to %s", len(events), events[0].IncidentID, events[len(events)-1].IncidentID)
	}
	if errs, _ := a.f.Errors(ErrorFilter{NodeID: node}); len(errs) != 2 {
		t.Fatalf("info reports reached the error database: %d records", len(errs))
	}
}

// Entries written before the event log (no SplitLevels) apply exactly as
// they always did: every report, whatever its level, is an error record,
// and no event log is kept. A new binary replaying an old log reaches the
// state the old one did.
func TestNodeErrorsWithoutSplitLevelsAsBefore(t *testing.T) {
	a := newApplier(t)
	node := nodeOf(t, a, "t1")
	batch := []NodeError{
		{IncidentID: "i1", Level: "info", Message: "Agent ready"},
		{IncidentID: "i2", Level: "error", Message: "docker died", Source: "docker"},
	}
	a.apply(NodeErrors{NodeID: node, Errors: batch, At: t0})
	errs, _ := a.f.Errors(ErrorFilter{NodeID: node})
	if len(errs) != 2 || errs[0].Message != "Agent ready" || errs[1].Message != "docker: docker died" {
		t.Fatalf("error records = %+v, want both reports", errs)
	}
	if ev := a.f.NodeEvents(node); ev != nil {
		t.Fatalf("an old entry wrote the event log: %+v", ev)
	}
	// A re-sent old entry is recognised by its incident ids as before.
	a.apply(NodeErrors{NodeID: node, Errors: batch, At: t0.Add(time.Second)})
	if errs, _ := a.f.Errors(ErrorFilter{NodeID: node}); len(errs) != 2 {
		t.Fatalf("re-sent old entry recorded again: %d records", len(errs))
	}
	// The entry's JSON has no new field, so it is byte for byte what an
	// older binary wrote.
	b, _ := Encode(NodeErrors{NodeID: node, Errors: batch[:1], At: t0})
	if bytes.Contains(b, []byte("split_levels")) || bytes.Contains(b, []byte("stack")) {
		t.Fatalf("an entry without the new fields encodes them: %s", b)
	}
}

func TestPushResultKept(t *testing.T) {
	a := newApplier(t)
	cbToRunning(t, a, "t1")
	at := t0.Add(10 * time.Minute)
	pushed := &PushResult{Pushed: true, CommitSHA: "abc123", BranchName: "sam/fix", PRURL: "https://github.com/acme/app/pull/7", PRNumber: 7, HasUncommittedChanges: true}
	r := a.apply(TaskStatusCallback{TaskID: "t1", WorkspaceID: "ws-t1", ExecutionStep: StepAwaitingFollowup,
		Output: Output{Branch: "sam/fix", PRURL: pushed.PRURL, Push: pushed}, At: at})
	if r.Err != nil || r.Task.Step != StepAwaitingFollowup || r.Task.Output.Push == nil || *r.Task.Output.Push != *pushed {
		t.Fatalf("callback: err=%v output %+v", r.Err, r.Task.Output)
	}
	if errs, _ := a.f.Errors(ErrorFilter{TaskID: "t1", Kind: ErrKindPush}); len(errs) != 0 {
		t.Fatalf("a successful push recorded an error: %+v", errs)
	}
	// The same report again (after a follow-up prompt): a duplicate.
	r = a.apply(TaskStatusCallback{TaskID: "t1", WorkspaceID: "ws-t1", ExecutionStep: StepAwaitingFollowup,
		Output: Output{Branch: "sam/fix", PRURL: pushed.PRURL, Push: pushed}, At: at.Add(time.Minute)})
	if !r.Unchanged {
		t.Fatalf("identical report: duplicate=%v err=%v", r.Unchanged, r.Err)
	}
	// A later report whose push failed is kept and recorded; the task
	// goes on waiting for follow-up.
	failed := &PushResult{CommitSHA: "def456", BranchName: "main", HasUncommittedChanges: true, Error: "auto-commit push blocked: HEAD is still on the project default branch"}
	r = a.apply(TaskStatusCallback{TaskID: "t1", WorkspaceID: "ws-t1", ExecutionStep: StepAwaitingFollowup,
		Output: Output{Push: failed, AgentError: "prompt failed"}, At: at.Add(2 * time.Minute)})
	if r.Err != nil || r.Unchanged || r.Task.Status != StatusInProgress || r.Task.Step != StepAwaitingFollowup {
		t.Fatalf("failed push: err=%v duplicate=%v task %s/%s", r.Err, r.Unchanged, r.Task.Status, r.Task.Step)
	}
	if o := r.Task.Output; o.Push == nil || *o.Push != *failed || o.AgentError != "prompt failed" || o.Branch != "sam/fix" {
		t.Fatalf("output after the failed push = %+v", o)
	}
	errs, _ := a.f.Errors(ErrorFilter{TaskID: "t1", Kind: ErrKindPush})
	if len(errs) != 1 || !strings.Contains(errs[0].Message, "auto-commit push blocked") || errs[0].NodeID == "" {
		t.Fatalf("push error records = %+v", errs)
	}
	// A report from before push results were kept (no push, no agent
	// error) stays a duplicate in awaiting_followup, as it always was.
	r = a.apply(TaskStatusCallback{TaskID: "t1", WorkspaceID: "ws-t1", ExecutionStep: StepAwaitingFollowup,
		Output: Output{Branch: "other"}, At: at.Add(3 * time.Minute)})
	if !r.Unchanged {
		t.Fatalf("old-style report in awaiting_followup: duplicate=%v", r.Unchanged)
	}
	// The push result survives snapshot and restore.
	restored := restoreBytes(t, snapshotBytes(t, a.f))
	got, _ := restored.Task("t1")
	if got.Output.Push == nil || *got.Output.Push != *failed || got.Output.AgentError != "prompt failed" {
		t.Fatalf("restored output = %+v", got.Output)
	}
}

// A completing callback with a failed push completes the task and keeps
// the push result.
func TestPushResultOnCompletion(t *testing.T) {
	a := newApplier(t)
	cbToRunning(t, a, "t1")
	p := &PushResult{Error: "git push failed: exit status 128: permission denied"}
	r := a.apply(TaskStatusCallback{TaskID: "t1", WorkspaceID: "ws-t1", ToStatus: StatusCompleted, Output: Output{Summary: "done", Push: p}, At: t0.Add(time.Hour)})
	if r.Err != nil || r.Task.Status != StatusCompleted || r.Task.Output.Push == nil || r.Task.Output.Push.Error != p.Error {
		t.Fatalf("err=%v status %s output %+v", r.Err, r.Task.Status, r.Task.Output)
	}
	if errs, _ := a.f.Errors(ErrorFilter{TaskID: "t1", Kind: ErrKindPush}); len(errs) != 1 {
		t.Fatalf("push error records = %d, want 1", len(errs))
	}
}

func msg(id, content string) Message {
	return Message{MessageID: id, SessionID: "c-t1", Role: "assistant", Content: content, Timestamp: "2026-11-25T12:00:00Z"}
}

func TestMessagesBoundedAndDeduped(t *testing.T) {
	a := newApplier(t)
	cbToRunning(t, a, "t1")
	r := a.apply(RecordMessages{WorkspaceID: "ws-t1", Messages: []Message{msg("m1", "hello"), msg("m2", "working"), msg("m1", "hello")}, At: t0})
	if r.Err != nil || r.Persisted != 2 || r.Duplicates != 1 {
		t.Fatalf("first batch: err=%v persisted %d duplicates %d", r.Err, r.Persisted, r.Duplicates)
	}
	// The agent re-sends the batch: all duplicates, nothing changes.
	before, _ := a.f.Messages("t1")
	r = a.apply(RecordMessages{WorkspaceID: "ws-t1", Messages: []Message{msg("m1", "hello"), msg("m2", "working")}, At: t0.Add(time.Second)})
	if r.Persisted != 0 || r.Duplicates != 2 || !r.Unchanged {
		t.Fatalf("re-sent batch: persisted %d duplicates %d", r.Persisted, r.Duplicates)
	}
	tm, ok := a.f.Messages("t1")
	if !reflect.DeepEqual(tm, before) {
		t.Fatalf("a re-sent batch changed the messages")
	}
	if !ok || tm.Total != 2 || tm.Dropped != 0 || len(tm.Messages) != 2 || tm.Messages[1].Content != "working" {
		t.Fatalf("messages = %+v", tm)
	}
	// By count: the newest MaxTaskMessages.
	for i := range 5 {
		var batch []Message
		for j := range 50 {
			batch = append(batch, msg(fmt.Sprintf("c%d-%02d", i, j), "x"))
		}
		a.apply(RecordMessages{WorkspaceID: "ws-t1", Messages: batch, At: t0.Add(time.Minute)})
	}
	tm, _ = a.f.Messages("t1")
	if len(tm.Messages) != MaxTaskMessages || tm.Total != 252 || tm.Dropped != 52 || tm.Messages[0].MessageID != "c1-00" {
		t.Fatalf("by count: %d kept, total %d, dropped %d, first %s", len(tm.Messages), tm.Total, tm.Dropped, tm.Messages[0].MessageID)
	}
	// By size: 100 KiB messages, at most 256 KiB kept.
	big := strings.Repeat("y", 100<<10)
	for i := range 3 {
		a.apply(RecordMessages{WorkspaceID: "ws-t1", Messages: []Message{msg(fmt.Sprintf("big%d", i), big)}, At: t0.Add(time.Hour)})
	}
	tm, _ = a.f.Messages("t1")
	size := 0
	for _, m := range tm.Messages {
		size += m.size()
	}
	if size > MaxTaskMessageBytes || tm.Messages[len(tm.Messages)-1].MessageID != "big2" || tm.Messages[0].MessageID != "big1" {
		t.Fatalf("by size: %d bytes in %d messages, first %s", size, len(tm.Messages), tm.Messages[0].MessageID)
	}
	if tm.Total != tm.Dropped+len(tm.Messages) {
		t.Fatalf("total %d != dropped %d + kept %d", tm.Total, tm.Dropped, len(tm.Messages))
	}
	if r := a.apply(RecordMessages{WorkspaceID: "ws-nope", Messages: []Message{msg("m9", "x")}, At: t0}); !errors.Is(r.Err, ErrNotFound) {
		t.Fatalf("unknown workspace: err = %v", r.Err)
	}
	if _, ok := a.f.Messages("t-none"); ok {
		t.Fatalf("a task without messages reports some")
	}
}

// TestAgentReportsSurviveSnapshot: node event logs, messages and push
// results restore to the same state, byte for byte.
func TestAgentReportsSurviveSnapshot(t *testing.T) {
	a := newApplier(t)
	cbToRunning(t, a, "t1")
	cancelledTask(t, a, "t2") // a task record of version 1
	a.apply(NodeErrors{NodeID: "n-t1", SplitLevels: true, At: t0, Errors: []NodeError{
		{IncidentID: "i1", Level: "info", Message: "Agent ready"}, {IncidentID: "i2", Level: "error", Message: "boom", Context: `{"a":"ü"}`}}})
	a.apply(RecordMessages{WorkspaceID: "ws-t1", Messages: []Message{msg("m1", "hi"), {MessageID: "m2", Role: "tool", Content: "ran", ToolMetadata: `{"tool":"bash"}`, Origin: "system", Sequence: 42}}, At: t0})
	a.apply(TaskStatusCallback{TaskID: "t1", WorkspaceID: "ws-t1", ExecutionStep: StepAwaitingFollowup,
		Output: Output{Push: &PushResult{Pushed: true, CommitSHA: "abc", PRNumber: 3}}, At: t0.Add(time.Minute)})
	snap := snapshotBytes(t, a.f)
	restored := restoreBytes(t, snap)
	if again := snapshotBytes(t, restored); !bytes.Equal(again, snap) {
		t.Fatalf("snapshot of the restored state differs")
	}
	for _, f := range []*FSM{a.f, restored} {
		if ev := f.NodeEvents("n-t1"); len(ev) != 2 || ev[1].Context != `{"a":"ü"}` {
			t.Fatalf("node events = %+v", ev)
		}
	}
	want, _ := a.f.Messages("t1")
	if got, _ := restored.Messages("t1"); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored messages = %+v\nwant %+v", got, want)
	}
	// A state without agent reports snapshots to records of kinds 1 to 7
	// only and task records of version 1: what a binary from before them
	// wrote, and reads.
	b := newApplier(t)
	cbToRunning(t, b, "t1")
	cancelledTask(t, b, "t2")
	for _, r := range snapshotRecords(t, snapshotBytes(t, b.f)) {
		if r.kind > kindError {
			t.Fatalf("record of kind %d in a snapshot without agent reports", r.kind)
		}
		if r.kind == kindTask {
			d := &decoder{b: r.body}
			if d.str(); d.uvarint() != taskRecordV1 {
				t.Fatalf("task record of version 2 without a push result")
			}
		}
	}
	kinds := map[recordKind]int{}
	for _, r := range snapshotRecords(t, snap) {
		kinds[r.kind]++
	}
	if kinds[kindNodeLog] != 1 || kinds[kindMessages] != 1 {
		t.Fatalf("snapshot record kinds = %v, want one node log and one message record", kinds)
	}
}

type snapRecord struct {
	kind recordKind
	body []byte
}

// snapshotRecords splits a format-2 snapshot into its records.
func snapshotRecords(t *testing.T, snap []byte) []snapRecord {
	t.Helper()
	b := snap[len(snapshotMagic):]
	var out []snapRecord
	for len(b) > 0 && recordKind(b[0]) != kindEnd {
		n, k := binary.Uvarint(b[1:])
		if k <= 0 {
			t.Fatalf("bad record length")
		}
		out = append(out, snapRecord{recordKind(b[0]), b[1+k : 1+k+int(n)]})
		b = b[1+k+int(n):]
	}
	return out
}

// A task without the fields of record version 2 is written as version 1,
// the bytes an older binary wrote and reads; one with them as version 2.
// A version-2 record without them is refused (it would not re-encode to
// itself).
func TestTaskRecordVersions(t *testing.T) {
	plain := &Task{ID: "t1", Status: StatusQueued, Output: Output{Branch: "b", Summary: "s"}}
	rec := encodeRecord(plain)
	d := &decoder{b: rec}
	if d.str(); d.uvarint() != taskRecordV1 {
		t.Fatalf("a task without a push result is not written as version 1")
	}
	got, err := (&decoder{b: rec}).task()
	if err != nil || got.Output != plain.Output {
		t.Fatalf("version 1 round trip: %+v, %v", got, err)
	}
	withPush := &Task{ID: "t1", Status: StatusQueued, Output: Output{Push: &PushResult{Error: "e"}}}
	rec2 := encodeRecord(withPush)
	d = &decoder{b: rec2}
	if d.str(); d.uvarint() != taskRecordVersion {
		t.Fatalf("a task with a push result is not written as version 2")
	}
	if got, err := (&decoder{b: rec2}).task(); err != nil || !reflect.DeepEqual(got.Output, withPush.Output) {
		t.Fatalf("version 2 round trip: %+v, %v", got, err)
	}
	if _, err := (&decoder{b: versionTwoWithoutPush(plain)}).task(); err == nil {
		t.Fatalf("a version-2 record without a push result decoded")
	}
}

// versionTwoWithoutPush writes t's record as version 2 with the push
// result absent and the agent error empty: a form the encoder never writes.
func versionTwoWithoutPush(t *Task) []byte {
	rec := encodeRecord(t)
	d := &decoder{b: rec}
	d.str()
	d.uvarint()
	afterVersion := len(rec) - len(d.b)
	for range 15 { // ProjectID … ErrorMessage
		d.str()
	}
	d.time()
	d.time()
	d.timePtr()
	d.timePtr()
	for range 3 { // Branch, PRURL, Summary
		d.str()
	}
	afterSummary := len(rec) - len(d.b)
	var e encoder
	e.str(t.ID)
	e.uvarint(taskRecordVersion)
	e.b = append(e.b, rec[afterVersion:afterSummary]...)
	e.bool(false) // no push result
	e.str("")     // no agent error
	return append(e.b, rec[afterSummary:]...)
}
