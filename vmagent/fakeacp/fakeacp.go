// Package fakeacp is a stand-in for the coding agent the real VM agent
// drives (claude-agent-acp and its kind): it speaks the Agent Client
// Protocol, JSON-RPC 2.0 as one JSON object a line over stdio, enough for
// the VM agent to initialize it, open a session and send prompts. Tests
// put it on the VM agent's PATH under the coding agent's name (`tdf
// fake-acp` behind a two-line wrapper), so that a task runs through the
// real VM agent without a model.
//
// A prompt is answered with one agent_message_chunk update and the stop
// reason end_turn, after writing the prompt to a file in the session's
// working directory (so the agent has a change to commit and push). A
// prompt containing FailMarker is refused with a JSON-RPC error, which the
// VM agent reports as a failed task.
package fakeacp

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// FailMarker in a prompt makes the prompt fail.
const FailMarker = "FAKEACP_FAIL"

// OutputFile is the file each prompt writes in the working directory.
const OutputFile = "FAKEACP_OUTPUT.md"

// Options tune the fake.
type Options struct {
	// WorkDelay is how long a prompt "works" before it answers.
	WorkDelay time.Duration
}

type message struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
	Result  any             `json:"result,omitempty"`
	Error   *rpcError       `json:"error,omitempty"`
}

type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// JSON-RPC error codes.
const (
	codeMethodNotFound = -32601
	codeInternal       = -32603
)

type agent struct {
	opts Options
	out  *json.Encoder
	mu   sync.Mutex // serializes writes
	cwd  map[string]string
	next int
}

// Serve answers requests from in until it ends.
func Serve(in io.Reader, out io.Writer, opts Options) error {
	a := &agent{opts: opts, out: json.NewEncoder(out), cwd: map[string]string{}}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var wg sync.WaitGroup
	defer wg.Wait()
	for sc.Scan() {
		var m message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			continue // not ours to judge; the protocol has no answer for a broken line
		}
		if m.Method == "" || len(m.ID) == 0 {
			continue // a notification (session/cancel) or an answer to us
		}
		// Prompts take time: answer each request on its own so that a
		// cancel or a second request is not stuck behind one.
		wg.Add(1)
		go func() { defer wg.Done(); a.handle(m) }()
	}
	return sc.Err()
}

func (a *agent) send(m message) {
	m.JSONRPC = "2.0"
	a.mu.Lock()
	defer a.mu.Unlock()
	_ = a.out.Encode(m)
}

func (a *agent) reply(id json.RawMessage, result any, err *rpcError) {
	a.send(message{ID: id, Result: result, Error: err})
}

func (a *agent) handle(m message) {
	switch m.Method {
	case "initialize":
		var p struct {
			ProtocolVersion int `json:"protocolVersion"`
		}
		_ = json.Unmarshal(m.Params, &p)
		a.reply(m.ID, map[string]any{
			"protocolVersion":   p.ProtocolVersion,
			"agentCapabilities": map[string]any{"loadSession": false},
			"agentInfo":         map[string]any{"name": "tdf-fake-acp", "version": "1"},
			"authMethods":       []any{},
		}, nil)
	case "session/new":
		var p struct {
			Cwd string `json:"cwd"`
		}
		_ = json.Unmarshal(m.Params, &p)
		a.mu.Lock()
		a.next++
		id := fmt.Sprintf("fake-acp-%d-%d", os.Getpid(), a.next)
		a.cwd[id] = p.Cwd
		a.mu.Unlock()
		a.reply(m.ID, map[string]any{"sessionId": id}, nil)
	case "session/prompt":
		a.prompt(m)
	case "session/set_mode", "session/set_config_option", "session/set_model":
		a.reply(m.ID, map[string]any{}, nil)
	default:
		a.reply(m.ID, nil, &rpcError{Code: codeMethodNotFound, Message: "method not found: " + m.Method})
	}
}

func (a *agent) prompt(m message) {
	var p struct {
		SessionID string `json:"sessionId"`
		Prompt    []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"prompt"`
	}
	if err := json.Unmarshal(m.Params, &p); err != nil {
		a.reply(m.ID, nil, &rpcError{Code: codeInternal, Message: "bad prompt: " + err.Error()})
		return
	}
	var text strings.Builder
	for _, b := range p.Prompt {
		text.WriteString(b.Text)
	}
	time.Sleep(a.opts.WorkDelay)
	if strings.Contains(text.String(), FailMarker) {
		a.reply(m.ID, nil, &rpcError{Code: codeInternal, Message: "fake coding agent: the prompt asked to fail"})
		return
	}
	a.mu.Lock()
	cwd := a.cwd[p.SessionID]
	a.mu.Unlock()
	if err := work(cwd, text.String()); err != nil {
		a.reply(m.ID, nil, &rpcError{Code: codeInternal, Message: "fake coding agent: " + err.Error()})
		return
	}
	a.send(message{Method: "session/update", Params: mustJSON(map[string]any{
		"sessionId": p.SessionID,
		"update": map[string]any{
			"sessionUpdate": "agent_message_chunk",
			"content":       map[string]any{"type": "text", "text": "Done: " + text.String()},
		},
	})})
	a.reply(m.ID, map[string]any{"stopReason": "end_turn"}, nil)
}

// branchRe finds the branch the prompt asks the work to go on
// (pipeline.BranchInstruction).
var branchRe = regexp.MustCompile("git branch `([^`]+)`")

// PromptBranch is the branch a prompt asks the work to go on
// (pipeline.BranchInstruction), or "" when it names none. The simulated
// agent (vmagent/sim) follows it too.
func PromptBranch(prompt string) string {
	if m := branchRe.FindStringSubmatch(prompt); m != nil {
		return m[1]
	}
	return ""
}

// work does what a coding agent told the prompt would: switch to the
// branch the prompt names, if any, and change a file.
func work(cwd, prompt string) error {
	if cwd == "" {
		return nil
	}
	if branch := PromptBranch(prompt); branch != "" && isGitRepo(cwd) {
		// -B: a follow-up prompt finds the branch already there.
		if out, err := exec.Command("git", "-C", cwd, "checkout", "-B", branch).CombinedOutput(); err != nil {
			return fmt.Errorf("git checkout -B %s: %v: %s", branch, err, out)
		}
	}
	return os.WriteFile(filepath.Join(cwd, OutputFile), []byte(prompt+"\n"), 0o644)
}

func isGitRepo(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, ".git"))
	return err == nil
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}
