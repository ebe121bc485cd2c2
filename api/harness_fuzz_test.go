package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/cluster"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/server"
	"github.com/tdf-project/tdf/tokens"
)

// The harness of the handler fuzz targets: one API server per target over
// a fakeCluster (no raft: a commit is an Apply on the spot, so an input
// costs microseconds, not an fsync), whose FSM is reset to a fixture before
// every input. Requests go straight to the handler, without a socket.

// fuzzT0 is the fixture's clock; the API's clock is a minute later.
var fuzzT0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// fuzzFixture names the fixture's records.
type fuzzFixture struct {
	queued, waiting, running, followup, done, cancelled string // task ids
	waitingWS, runningWS                                string // their workspaces
	node                                                string // the running task's node
}

// fuzzServer is one API server under fuzzing.
type fuzzServer struct {
	fc     *fuzzCluster
	h      http.Handler
	fx     fuzzFixture
	base   []byte // the fixture's snapshot
	index  uint64 // the fixture's applied index
	issuer *tokens.Issuer
	// dirty: the previous input committed something, so the FSM must be
	// put back. Restoring and snapshotting cost more than most inputs; an
	// input that commits nothing is checked with one snapshot instead.
	dirty bool
}

// fuzzCluster is the api test's fakeCluster that also records what each
// input committed and which membership calls reached it.
type fuzzCluster struct {
	*fakeCluster
	cmds      []fsm.Command
	joins     []cluster.JoinRequest
	removes   []string
	transfers []string
}

func (c *fuzzCluster) Join(_ context.Context, j cluster.JoinRequest) error {
	c.joins = append(c.joins, j)
	return nil
}

func (c *fuzzCluster) Remove(_ context.Context, id string) error {
	c.removes = append(c.removes, id)
	return nil
}

func (c *fuzzCluster) TransferLeadershipTo(id string) error {
	c.transfers = append(c.transfers, id)
	return nil
}

func newFuzzServer(f *testing.F) *fuzzServer {
	f.Helper()
	fix, fx, index := buildFuzzFixture(f)
	fc := &fuzzCluster{fakeCluster: &fakeCluster{f: fix, index: index}}
	fc.intercept = func(cmd fsm.Command) (*fsm.Result, error) {
		fc.cmds = append(fc.cmds, cmd)
		return nil, nil // and let the fake apply it
	}
	key, err := tokens.GenerateKey()
	if err != nil {
		f.Fatal(err)
	}
	issuer := &tokens.Issuer{URL: "http://tdf.fuzz", Keys: func() []tokens.Key { return []tokens.Key{key} },
		Now: func() time.Time { return fuzzT0 }}
	srv, err := api.New(api.Config{Node: fc, Logger: hclog.NewNullLogger(), Tokens: issuer,
		Now: func() time.Time { return fuzzT0.Add(time.Minute) }})
	if err != nil {
		f.Fatal(err)
	}
	return &fuzzServer{fc: fc, h: srv.Handler(), fx: fx, base: fsmBytes(f, fix), index: index, issuer: issuer, dirty: true}
}

// buildFuzzFixture commits, as a leader would, tasks queued, waiting for
// their workspace, running, awaiting follow-up, completed and cancelled, with their nodes and
// workspaces.
func buildFuzzFixture(tb testing.TB) (*fsm.FSM, fuzzFixture, uint64) {
	f := fsm.New()
	var index uint64
	apply := func(c fsm.Command) *fsm.Result {
		b, err := fsm.Encode(c)
		if err != nil {
			tb.Fatalf("fixture: Encode(%T) = %v", c, err)
		}
		index++
		return f.ApplyCommand(index, b)
	}
	submit := func(id string) {
		spec := fsm.TaskSpec{ProjectID: "p1", UserID: "u1", Prompt: "fix " + id, Repository: "github.com/acme/app"}
		if r := apply(fsm.SubmitTask{RequestID: "r-" + id, TaskID: id, Spec: spec, Policy: fsm.DefaultPolicy(), At: fuzzT0}); r.Err != nil {
			tb.Fatalf("fixture: submit %s: %v", id, r.Err)
		}
	}
	drive := func(id string, to fsm.Step) *fsm.Task {
		submit(id)
		apply(fsm.DecideStep{TaskID: id, Step: fsm.StepNodeSelection, Leader: "fake1", At: fuzzT0})
		for {
			cur, _ := f.Task(id)
			switch {
			case cur.Step == to:
				return cur
			case cur.Step == fsm.StepWorkspaceReady:
				apply(fsm.WorkspaceReady{WorkspaceID: cur.WorkspaceID, Status: fsm.WorkspaceRunning, At: fuzzT0})
				continue
			case cur.RunnableStep() == fsm.StepNone:
				tb.Fatalf("fixture: task %s stuck at %s/%s", id, cur.Status, cur.Step)
			}
			c := fsm.StepStarted{TaskID: id, Step: cur.RunnableStep(), Attempt: cur.Attempt + 1, Term: 1, Leader: "fake1", At: fuzzT0}
			apply(c)
			if r := apply(fsm.StepResult{TaskID: id, Step: c.Step, Attempt: c.Attempt, Term: 1, Outcome: fsm.OutcomeSuccess,
				Data: fsm.StepData{ServerID: 7, IPv4: "10.0.0.7", SessionID: "s-" + id}, Leader: "fake1", At: fuzzT0}); r.Err != nil {
				tb.Fatalf("fixture: %s/%s: %v", id, c.Step, r.Err)
			}
		}
	}
	fx := fuzzFixture{queued: "t-queued", waiting: "t-waiting", running: "t-running", followup: "t-followup", done: "t-done", cancelled: "t-cancelled"}
	submit(fx.queued)
	fx.waitingWS = drive(fx.waiting, fsm.StepWorkspaceReady).WorkspaceID
	running := drive(fx.running, fsm.StepRunning)
	fx.runningWS, fx.node = running.WorkspaceID, running.NodeID
	fu := drive(fx.followup, fsm.StepRunning)
	apply(fsm.TaskStatusCallback{TaskID: fx.followup, WorkspaceID: fu.WorkspaceID, ExecutionStep: fsm.StepAwaitingFollowup, At: fuzzT0})
	done := drive(fx.done, fsm.StepRunning)
	apply(fsm.TaskStatusCallback{TaskID: fx.done, WorkspaceID: done.WorkspaceID, ToStatus: fsm.StatusCompleted, At: fuzzT0})
	submit(fx.cancelled)
	apply(fsm.CancelTask{TaskID: fx.cancelled, Actor: fsm.Actor{Type: fsm.ActorUser, ID: "u1"}, At: fuzzT0})
	apply(fsm.RecordError{Record: fsm.ErrorRecord{Kind: fsm.ErrKindReconciler, NodeID: fx.node, Message: "leaked server", At: fuzzT0}})
	apply(fsm.RegisterMember{Member: fsm.Member{ID: "fake1", RaftAddr: "fake1:7001", APIAddr: "http://fake1.invalid"}})
	return f, fx, index
}

func fsmBytes(tb testing.TB, f *fsm.FSM) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if err := f.WriteSnapshot(&buf); err != nil {
		tb.Fatalf("WriteSnapshot = %v", err)
	}
	return buf.Bytes()
}

func restoreFSM(tb testing.TB, snap []byte) *fsm.FSM {
	tb.Helper()
	f := fsm.New()
	if err := f.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		tb.Fatalf("Restore = %v", err)
	}
	return f
}

// reset puts the fixture back if the previous input changed it, and
// forgets the previous input's calls.
func (s *fuzzServer) reset(t *testing.T) {
	if s.dirty {
		s.fc.f = restoreFSM(t, s.base)
		s.fc.index = s.index
		s.dirty = false
	}
	s.fc.cmds, s.fc.joins, s.fc.removes, s.fc.transfers = nil, nil, nil, nil
}

// token mints a callback token (the fixed clock makes it valid for the
// whole run).
func (s *fuzzServer) token(tb testing.TB, scope tokens.Scope, id string) string {
	tok, err := s.issuer.CallbackToken(scope, id)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// serve resets the fixture and sends one request. rawQuery is set as is,
// so that it may be anything a client can send.
func (s *fuzzServer) serve(t *testing.T, method, path, rawQuery string, body []byte, hdr map[string]string) server.TestResponse {
	s.reset(t)
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.URL.RawQuery = rawQuery
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, req)
	return server.TestResponse{Status: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
}

// checkAnswer is the contract every answer to any input keeps: a 2xx or a
// 4xx, never a 5xx; JSON; an error is exactly {"error":{code,message}}.
// It returns the error code of a 4xx.
func checkAnswer(t *testing.T, what string, r server.TestResponse) string {
	t.Helper()
	if r.Status < 200 || r.Status > 499 || (r.Status > 299 && r.Status < 400) {
		t.Fatalf("%s = %d %s, want a 2xx or a 4xx", what, r.Status, r.Body)
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		t.Fatalf("%s = %d with Content-Type %q, want application/json", what, r.Status, r.Header.Get("Content-Type"))
	}
	if !json.Valid(r.Body) {
		t.Fatalf("%s = %d with a body that is not JSON: %q", what, r.Status, r.Body)
	}
	checkNodeHeaders(t, what, r, "fake1", "fake1")
	if r.Status < 400 {
		return ""
	}
	var outer map[string]json.RawMessage
	var inner map[string]any
	var eb api.ErrorBody
	if json.Unmarshal(r.Body, &outer) != nil || len(outer) != 1 || json.Unmarshal(outer["error"], &inner) != nil ||
		len(inner) != 2 || json.Unmarshal(r.Body, &eb) != nil || eb.Error.Code == "" || eb.Error.Message == "" {
		t.Fatalf("%s = %d %s, want exactly {\"error\":{\"code\":…,\"message\":…}}", what, r.Status, r.Body)
	}
	return eb.Error.Code
}

// checkState is what any input leaves behind: a request that committed
// nothing left the state byte for byte as it was; every committed command
// survives encode→decode→encode; the state snapshots and restores to the
// same bytes; and a refused request (4xx) changed nothing, except the
// applied index of a command the FSM itself refused.
func (s *fuzzServer) checkState(t *testing.T, what string, r server.TestResponse) {
	t.Helper()
	after := fsmBytes(t, s.fc.f)
	if len(s.fc.cmds) == 0 {
		// Nothing committed, so nothing may have changed: not even a
		// record a handler got from the FSM and modified in place.
		if !bytes.Equal(after, s.base) {
			s.dirty = true
			t.Fatalf("%s = %d %s changed the state without committing anything", what, r.Status, r.Body)
		}
		return
	}
	s.dirty = true
	for _, c := range s.fc.cmds {
		b, err := fsm.Encode(c)
		if err != nil {
			t.Fatalf("%s committed %#v, which does not encode: %v", what, c, err)
		}
		c2, err := fsm.Decode(b)
		if err != nil {
			t.Fatalf("%s committed %q, which does not decode: %v", what, b, err)
		}
		if b2, _ := fsm.Encode(c2); !bytes.Equal(b, b2) {
			t.Fatalf("%s committed %q, which re-encodes as %q", what, b, b2)
		}
	}
	if again := fsmBytes(t, restoreFSM(t, after)); !bytes.Equal(again, after) {
		t.Fatalf("after %s the state does not survive snapshot and restore", what)
	}
	if r.Status < 400 {
		return
	}
	unchanged := restoreFSM(t, s.base)
	for i := range s.fc.cmds {
		// An ignorable entry of an unknown type moves only the index.
		unchanged.ApplyCommand(s.index+uint64(i)+1, []byte{0xff, 1})
	}
	if !bytes.Equal(after, fsmBytes(t, unchanged)) {
		t.Fatalf("%s = %d %s, yet the state changed", what, r.Status, r.Body)
	}
}

// committed returns the only command the input committed, of type C.
func committed[C fsm.Command](t *testing.T, s *fuzzServer, what string) C {
	t.Helper()
	var zero C
	if len(s.fc.cmds) != 1 {
		t.Fatalf("%s succeeded having committed %d commands, want one %T", what, len(s.fc.cmds), zero)
	}
	c, ok := s.fc.cmds[0].(C)
	if !ok {
		t.Fatalf("%s committed %T, want %T", what, s.fc.cmds[0], zero)
	}
	return c
}

func describe(method, path, rawQuery string, body []byte) string {
	if rawQuery != "" {
		path += "?" + rawQuery
	}
	return fmt.Sprintf("%s %s %q", method, path, body)
}
