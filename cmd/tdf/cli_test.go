package main

import (
	"context"
	"encoding/json"
	"flag"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/fsm"
)

// Help of every command and command group is on stdout with exit 0.
func TestHelpOnStdout(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"help", "task"}, {"task", "--help"}, {"task", "-h"}, {"cluster", "--help"}, {"snapshot", "--help"},
		{"credential", "--help"}, {"token", "help"}, {"node", "--help"}, {"keyring", "--help"}, {"tls", "--help"},
		{"task", "submit", "--help"}, {"task", "list", "--help"}, {"task", "rerun", "--help"}, {"task", "prompt", "-h"},
		{"server", "--help"}, {"dev", "--help"}, {"fakecloud", "--help"}, {"nodes", "--help"}, {"version", "--help"},
	} {
		out, errOut, err := capture(t, func() error { return run(context.Background(), args) })
		if code := exitCode(err); code != exitOK || !strings.Contains(out, "Usage") || errOut != "" {
			t.Errorf("tdf %s: exit %d (%v), stdout %q…, stderr %q", strings.Join(args, " "), code, err, first(out, 80), errOut)
		}
	}
	out, _, _ := capture(t, func() error { return run(context.Background(), []string{"server", "--help"}) })
	if strings.Count(out, "-session-idle-timeout") != 1 || !strings.Contains(out, "TDF_<FLAG>") {
		t.Errorf("tdf server --help lacks the flags or their environment:\n%s", first(out, 400))
	}
	out, _, _ = capture(t, func() error { return run(context.Background(), []string{"task", "get", "--help"}) })
	if !strings.Contains(out, "Usage: tdf task get [flags] ID") || !strings.Contains(out, "Exit codes") {
		t.Errorf("tdf task get --help does not document its argument and exit codes:\n%s", out)
	}
}

func first(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Missing required flags are named before any request: exit 2 against an
// address where nothing listens.
func TestRequiredFlagsBeforeNetwork(t *testing.T) {
	dead := deadAddr(t)
	_, _, err := capture(t, func() error {
		return run(context.Background(), []string{"task", "submit", "--addr", dead, "--project", "p1"})
	})
	if exitCode(err) != exitUsage || err == nil || strings.Contains(err.Error(), "cannot reach") {
		t.Fatalf("submit without --user --repo --prompt: exit %d, %v; want 2 naming the flags", exitCode(err), err)
	}
	for _, f := range []string{"--user", "--repo", "--prompt"} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not name %s", err, f)
		}
	}
	_, _, err = capture(t, func() error {
		return run(context.Background(), []string{"task", "submit", "--addr", dead, "--project", "p1", "--user", "u", "--repo", "r", "--prompt", "x"})
	})
	if exitCode(err) != exitUnreachable {
		t.Errorf("submit to a dead address: exit %d (%v), want 3", exitCode(err), err)
	}
	if _, _, err = capture(t, func() error { return run(context.Background(), []string{"task", "get", "--addr", dead}) }); exitCode(err) != exitUsage {
		t.Errorf("task get without an id: exit %d (%v), want 2", exitCode(err), err)
	}
	if _, _, err = capture(t, func() error { return run(context.Background(), []string{"task", "list", "--bogus"}) }); exitCode(err) != exitUsage {
		t.Errorf("an unknown flag: exit %d (%v), want 2", exitCode(err), err)
	}
}

// deadAddr is an http URL where nothing listens.
func deadAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// tdf task watch and submit --wait exit 1 when the task failed or was
// cancelled, 0 when it completed; an API error answer is exit 4.
func TestWatchExitCodes(t *testing.T) {
	status := atomic.Value{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/tasks/t-1", func(w http.ResponseWriter, r *http.Request) {
		tk := &api.Task{ID: "t-1", Status: status.Load().(fsm.Status), Cleanup: api.CleanupDone, ErrorMessage: "boom"}
		_ = json.NewEncoder(w).Encode(api.TaskResponse{Task: tk})
	})
	mux.HandleFunc("POST /v1/tasks", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(api.TaskResponse{Task: &api.Task{ID: "t-1", Status: fsm.StatusQueued}})
	})
	mux.HandleFunc("GET /v1/tasks/t-404", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: api.ErrorDetail{Code: api.CodeNotFound, Message: "task t-404 not found"}})
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for st, want := range map[fsm.Status]int{fsm.StatusFailed: exitFailed, fsm.StatusCancelled: exitFailed, fsm.StatusCompleted: exitOK} {
		status.Store(st)
		_, _, err := capture(t, func() error { return run(ctx, []string{"task", "watch", "t-1", "--addr", srv.URL}) })
		if got := exitCode(err); got != want {
			t.Errorf("watch of a %s task: exit %d (%v), want %d", st, got, err, want)
		}
		_, _, err = capture(t, func() error {
			return run(ctx, []string{"task", "submit", "--wait", "--addr", srv.URL, "--project", "p", "--user", "u", "--repo", "r", "--prompt", "x"})
		})
		if got := exitCode(err); got != want {
			t.Errorf("submit --wait of a %s task: exit %d (%v), want %d", st, got, err, want)
		}
	}
	_, _, err := capture(t, func() error { return run(ctx, []string{"task", "get", "t-404", "--addr", srv.URL}) })
	if exitCode(err) != exitRefused || !strings.Contains(err.Error(), "not found") {
		t.Errorf("get of an unknown task: exit %d (%v), want 4 and the server's message", exitCode(err), err)
	}
}

// Only documented variables configure a command: TDF_TOKEN (the client's
// API token) is not the fake cloud's token; TDF_CLOUD_TOKEN is. The
// server reads TDF_<FLAG>; other commands read none.
func TestOnlyDocumentedEnvironment(t *testing.T) {
	t.Setenv("TDF_TOKEN", "client-token")
	t.Setenv("TDF_HTTP_ADDR", "127.0.0.1:1")
	cloud := flag.NewFlagSet("fakecloud", flag.ContinueOnError)
	token := cloud.String("token", "default", "")
	addr := cloud.String("http-addr", "127.0.0.1:9000", "")
	if err := parseFlags(cloud, nil); err != nil || *token != "default" || *addr != "127.0.0.1:9000" {
		t.Errorf("fakecloud read TDF_TOKEN or TDF_HTTP_ADDR: token %q addr %q (%v)", *token, *addr, err)
	}
	t.Setenv("TDF_CLOUD_TOKEN", "cloud-token")
	cloud = flag.NewFlagSet("fakecloud", flag.ContinueOnError)
	token = cloud.String("token", "default", "")
	if err := parseFlags(cloud, nil); err != nil || *token != "cloud-token" {
		t.Errorf("fakecloud --token = %q (%v), want TDF_CLOUD_TOKEN's", *token, err)
	}
	srv := flag.NewFlagSet("server", flag.ContinueOnError)
	httpAddr := srv.String("http-addr", "127.0.0.1:8001", "")
	if err := parseFlags(srv, []string{}); err != nil || *httpAddr != "127.0.0.1:1" {
		t.Errorf("server --http-addr = %q (%v), want TDF_HTTP_ADDR's", *httpAddr, err)
	}
}

func TestVersion(t *testing.T) {
	out, _, err := capture(t, func() error { return run(context.Background(), []string{"version"}) })
	if err != nil || !strings.HasPrefix(out, "tdf ") || !strings.Contains(out, "commit ") || !strings.Contains(out, "go1.") {
		t.Errorf("tdf version = %q (%v), want version, commit and Go version", out, err)
	}
}
