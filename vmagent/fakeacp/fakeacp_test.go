package fakeacp

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// session drives the fake over pipes as the VM agent would.
type session struct {
	t   *testing.T
	in  *io.PipeWriter
	out *bufio.Scanner
	id  int
}

func start(t *testing.T) *session {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- Serve(inR, outW, Options{}); outW.Close() }()
	t.Cleanup(func() {
		inW.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &session{t: t, in: inW, out: bufio.NewScanner(outR)}
}

// call sends a request and returns its answer, collecting the
// notifications that came before it.
func (s *session) call(method string, params any) (result map[string]any, rpcErr *rpcError, notes []map[string]any) {
	s.t.Helper()
	s.id++
	req, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": s.id, "method": method, "params": params})
	if _, err := s.in.Write(append(req, '\n')); err != nil {
		s.t.Fatal(err)
	}
	for s.out.Scan() {
		var m struct {
			ID     *int           `json:"id"`
			Method string         `json:"method"`
			Params map[string]any `json:"params"`
			Result map[string]any `json:"result"`
			Error  *rpcError      `json:"error"`
		}
		if err := json.Unmarshal(s.out.Bytes(), &m); err != nil {
			s.t.Fatalf("bad line %q: %v", s.out.Text(), err)
		}
		if m.ID == nil {
			notes = append(notes, m.Params)
			continue
		}
		if *m.ID != s.id {
			s.t.Fatalf("answer to %d, want %d", *m.ID, s.id)
		}
		return m.Result, m.Error, notes
	}
	s.t.Fatalf("no answer to %s", method)
	return nil, nil, nil
}

func TestPromptWritesAndAnswers(t *testing.T) {
	s := start(t)
	dir := t.TempDir()
	res, err, _ := s.call("initialize", map[string]any{"protocolVersion": 1})
	if err != nil || res["protocolVersion"] != float64(1) {
		t.Fatalf("initialize = %v, %v", res, err)
	}
	res, err, _ = s.call("session/new", map[string]any{"cwd": dir, "mcpServers": []any{}})
	sid, _ := res["sessionId"].(string)
	if err != nil || sid == "" {
		t.Fatalf("session/new = %v, %v", res, err)
	}
	prompt := []map[string]any{{"type": "text", "text": "fix it"}}
	res, err, notes := s.call("session/prompt", map[string]any{"sessionId": sid, "prompt": prompt})
	if err != nil || res["stopReason"] != "end_turn" {
		t.Fatalf("prompt = %v, %v", res, err)
	}
	if len(notes) != 1 || notes[0]["sessionId"] != sid {
		t.Fatalf("updates = %v, want one agent_message_chunk for %s", notes, sid)
	}
	if b, rerr := os.ReadFile(filepath.Join(dir, OutputFile)); rerr != nil || !strings.Contains(string(b), "fix it") {
		t.Fatalf("output file: %q, %v", b, rerr)
	}
	if _, err, _ = s.call("session/prompt", map[string]any{"sessionId": sid, "prompt": []map[string]any{{"type": "text", "text": "please " + FailMarker}}}); err == nil || err.Code != codeInternal {
		t.Fatalf("failing prompt answered %v, want an internal error", err)
	}
	if _, err, _ = s.call("session/fork", map[string]any{}); err == nil || err.Code != codeMethodNotFound {
		t.Fatalf("unknown method answered %v, want method not found", err)
	}
}
