package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/runner"
	"github.com/tdf-project/tdf/server"
)

// capture runs f with os.Stdout and os.Stderr redirected, and returns
// what it printed.
func capture(t *testing.T, f func() error) (stdout, stderr string, err error) {
	t.Helper()
	outR, outW, _ := os.Pipe()
	errR, errW, _ := os.Pipe()
	oldOut, oldErr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = outW, errW
	done := make(chan [2]string)
	go func() {
		o, _ := io.ReadAll(outR)
		e, _ := io.ReadAll(errR)
		done <- [2]string{string(o), string(e)}
	}()
	err = f()
	os.Stdout, os.Stderr = oldOut, oldErr
	outW.Close()
	errW.Close()
	got := <-done
	return got[0], got[1], err
}

func TestImportCLI(t *testing.T) {
	park := runner.HandlerFunc(func(context.Context, *fsm.Task, string) runner.Result { return runner.PollIn(time.Hour) })
	hs := server.TestHandlers()
	hs[fsm.StepAdopt] = park
	c := server.NewTestCluster(t, server.TestOptions{Nodes: 1, Handlers: hs})
	n := c.Nodes[0]
	addr := "--addr=" + n.URL
	ctx := context.Background()
	sample := filepath.Join("..", "..", "docs", "import-sample.jsonl")

	// A bad file is refused before anything is sent, naming line and field.
	data, err := os.ReadFile(sample)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	lines[2] = strings.Replace(lines[2], `"hetzner_server_id":52000003`, `"hetzner_server_id":"52000003"`, 1)
	lines[8] = strings.Replace(lines[8], `"workspace_id":"old-ws09",`, "", 1)
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	if err := os.WriteFile(bad, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := capture(t, func() error { return runImport(ctx, []string{addr, bad}) })
	if err == nil || !strings.Contains(err.Error(), "2 bad lines") ||
		!strings.Contains(stderr, "line 3: field hetzner_server_id: must be a number, not string") ||
		!strings.Contains(stderr, "line 9: field workspace_id: is required at running") {
		t.Fatalf("bad file: err %v, stderr:\n%s", err, stderr)
	}
	if n.FSM.TaskCount() != 0 {
		t.Fatal("a bad file was imported")
	}

	// A dry run of it reports every line and writes nothing. It is sent in
	// parts of five lines: line numbers stay those of the file.
	importPartLines = 5
	defer func() { importPartLines = 200 }()
	stdout, _, err := capture(t, func() error { return runImport(ctx, []string{"--dry-run", addr, bad}) })
	if err != nil || !strings.Contains(stdout, "line 3 old-003: error: field hetzner_server_id:") ||
		!strings.Contains(stdout, "line 1 old-001: adopt at step node_selection") ||
		!strings.Contains(stdout, "line 9 old-009: error: field workspace_id: is required at running") ||
		!strings.Contains(stdout, "line 17 old-017: import as draft (not started)") ||
		!strings.Contains(stdout, "17 tasks (dry run, nothing written): 11 adopt, 3 history, 1 not started, 0 skipped (already imported), 2 errors") {
		t.Fatalf("dry run: err %v, stdout:\n%s", err, stdout)
	}
	if n.FSM.TaskCount() != 0 {
		t.Fatal("a dry run wrote")
	}

	// The sample imports; a second import is a no-op.
	stdout, _, err = capture(t, func() error { return runImport(ctx, []string{sample, addr}) })
	if err != nil || !strings.Contains(stdout, "17 tasks (imported): 13 adopt, 3 history, 1 not started, 0 skipped") ||
		!strings.Contains(stdout, "line 14 old-014: import as history (completed)") {
		t.Fatalf("import: err %v, stdout:\n%s", err, stdout)
	}
	stdout, _, err = capture(t, func() error { return runImport(ctx, []string{addr, sample}) })
	if err != nil || !strings.Contains(stdout, "line 9 old-009: skip: already imported") || !strings.Contains(stdout, "17 skipped (already imported)") {
		t.Fatalf("second import: err %v, stdout:\n%s", err, stdout)
	}
	if n.FSM.TaskCount() != 17 {
		t.Fatalf("%d tasks", n.FSM.TaskCount())
	}

	// Usage mistakes.
	if _, _, err := capture(t, func() error { return runImport(ctx, []string{addr}) }); !errors.Is(err, errUsage) {
		t.Fatalf("no file: %v", err)
	}
	if _, _, err := capture(t, func() error { return runImport(ctx, []string{addr, filepath.Join(t.TempDir(), "nope")}) }); err == nil {
		t.Fatal("a missing file was accepted")
	}
}

func TestSplitLines(t *testing.T) {
	data := []byte("aaaa\nbbbb\ncccc\ndd")
	parts := splitLines(data, 9, 100)
	if len(parts) != 2 || string(parts[0].data) != "aaaa\nbbbb\n" || parts[0].first != 1 ||
		string(parts[1].data) != "cccc\ndd" || parts[1].first != 3 {
		t.Fatalf("parts = %+v", parts)
	}
	var joined []byte
	if byLines := splitLines(data, 1<<20, 1); len(byLines) != 4 || byLines[3].first != 4 || string(byLines[1].data) != "bbbb\n" {
		t.Fatalf("parts by lines = %+v", byLines)
	}
	for _, p := range splitLines(data, 1, 100) {
		joined = append(joined, p.data...)
	}
	if string(joined) != string(data) {
		t.Fatal("parts do not add up to the data")
	}
}
