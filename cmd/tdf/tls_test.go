package main

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/cluster"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/server"
)

// `tdf tls init` certificates serve the API over HTTPS; the CLI reaches
// a follower with --ca-file and --token (or TDF_CA_FILE and TDF_TOKEN),
// and without them gets a clear error; the follower forwards to the
// leader over HTTPS.
func TestCLIOverTLSWithToken(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "pki")
	if err := run(ctx, []string{"tls", "init", "--dir", dir, "--nodes", "n1", "--hosts", "127.0.0.1,localhost"}); err != nil {
		t.Fatalf("tls init: %v", err)
	}
	tokensFile := filepath.Join(t.TempDir(), "tokens")
	const alice = "alice-cli-token-0123456789"
	if err := os.WriteFile(tokensFile, []byte("# test\nadmin-cli-token-0123456789 admin ops\n"+alice+" user alice\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	entries, err := api.LoadTokens(tokensFile, "")
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := api.NewTokens(entries)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	// Three nodes serving HTTPS: followers register through the join
	// endpoint and forward to the leader over TLS, trusting the CA.
	forward, err := cluster.NewAPIClient(caFile, "", 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	join, err := cluster.NewAPIClient(caFile, tokens.JoinToken(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := server.NewTestCluster(t, server.TestOptions{
		API:     func(ac *api.Config) { ac.Auth, ac.Client = tokens, forward },
		Cluster: func(cc *cluster.Config) { cc.HTTPClient = join },
		Server: func(sc *server.Config) {
			// Every node has the one certificate: it names 127.0.0.1.
			sc.TLSCertFile, sc.TLSKeyFile = filepath.Join(dir, "n1.pem"), filepath.Join(dir, "n1-key.pem")
		}})
	_, followers := c.Followers()
	n := followers[0]
	if !strings.HasPrefix(n.URL, "https://") {
		t.Fatalf("node URL %s, want https", n.URL)
	}
	submit := []string{"task", "submit", "--addr", n.URL, "--project", "p1", "--user", "alice", "--repo", "github.com/acme/app", "--prompt", "over TLS"}
	// No token saved for any URL: only the ones the test gives count.
	t.Setenv("TDF_CONFIG_DIR", t.TempDir())
	// The commands leave their --token and --ca-file in clientAuth: later
	// tests that make clients directly must not inherit them.
	t.Cleanup(func() { clientAuth.token, clientAuth.caFile = "", "" })

	if err := run(ctx, append(submit, "--token", alice)); err == nil || !strings.Contains(err.Error(), "certificate") || !strings.Contains(err.Error(), "--ca-file") {
		t.Fatalf("without --ca-file: %v, want a certificate error", err)
	}
	if err := run(ctx, append(submit, "--ca-file", caFile)); err == nil || !strings.Contains(err.Error(), "HTTP 401") || !strings.Contains(err.Error(), "API token") {
		t.Fatalf("without a token: %v, want 401 naming the API token", err)
	}
	if err := run(ctx, append(submit, "--ca-file", caFile, "--token", alice)); err != nil {
		t.Fatalf("submit over TLS: %v", err)
	}
	t.Setenv("TDF_TOKEN", alice)
	t.Setenv("TDF_CA_FILE", caFile)
	if err := run(ctx, append(submit[:len(submit):len(submit)], "--idempotency-key", "env")); err != nil {
		t.Fatalf("submit with TDF_TOKEN and TDF_CA_FILE: %v", err)
	}
	c.WaitConverged()
	tasks, _ := n.FSM.ListTasks(fsm.TaskFilter{})
	if len(tasks) != 2 || tasks[0].Owner != "alice" || tasks[1].Owner != "alice" {
		t.Fatalf("tasks after the CLI submits: %d, owners %v", len(tasks), tasks)
	}
	if err := run(ctx, []string{"task", "list", "--addr", n.URL}); err != nil {
		t.Fatalf("task list: %v", err)
	}
	if err := run(ctx, []string{"cluster", "status", "--addr", n.URL}); err == nil || !strings.Contains(err.Error(), "admin token") {
		t.Fatalf("cluster status with a user token: %v, want a 403 naming the admin token", err)
	}
	// watch follows the (parked) task's event stream until cancelled; a
	// refused token would end it at once with HTTP 401.
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := run(wctx, []string{"task", "watch", "--addr", n.URL, tasks[0].ID}); err != nil && strings.Contains(err.Error(), "HTTP") {
		t.Fatalf("watch over TLS with the token: %v", err)
	}
}

// The server's security flags: token files are parsed with line numbers,
// and TLS flags that need each other say so.
func TestServerSecurityFlags(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(bad, []byte("admin-cli-token-0123456789 admin ops\nshort user bob\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tokens-file", bad}, "tokens file " + bad + ": line 2: token of bob is 5 characters"},
		{[]string{"--tokens-file", "/nonexistent/tokens"}, "tokens file"},
		{[]string{"--tls-cert", "x.pem"}, "--tls-cert and --tls-key go together"},
		{[]string{"--raft-tls-cert", "x.pem", "--raft-tls-key", "y.pem"}, "--raft-tls-cert needs --ca-file"},
		{[]string{"--ca-file", "/nonexistent/ca.pem"}, "read CA file"},
	} {
		cfg := defaultServerConfig()
		var sec securityOptions
		fs := flag.NewFlagSet("server", flag.ContinueOnError)
		sec.bind(fs, &cfg)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if err := sec.apply(&cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}
