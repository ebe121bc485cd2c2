package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/api/fakegithub"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/keyring"
	"github.com/tdf-project/tdf/server"
)

// TestCredentialCLIGitHubApp: tdf credential set git-token with
// --github-app-id stores a GitHub App credential whose sealed secret is the
// key file's PEM, prints and lists the app's ids but never the key, and
// refuses an incomplete app before it reads any key.
func TestCredentialCLIGitHubApp(t *testing.T) {
	kr, err := keyring.Generate()
	if err != nil {
		t.Fatal(err)
	}
	_, pemKey, err := fakegithub.NewAppKey()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "app.pem")
	if err := os.WriteFile(keyFile, []byte(pemKey), 0o600); err != nil {
		t.Fatal(err)
	}
	keyLine := strings.Split(pemKey, "\n")[3]
	c := server.NewTestCluster(t, server.TestOptions{Nodes: 1, API: func(ac *api.Config) { ac.Keyring = kr }})
	addr := "--addr=" + c.Nodes[0].URL
	ctx := context.Background()

	out, _, err := capture(t, func() error {
		return runCredential(ctx, []string{"set", "git-token", "project", "p1", "--github-app-id", "9", "--installation-id", "90",
			"--api-base-url", "https://ghe.example/api/v3", "--secret-file", keyFile, addr})
	})
	if err != nil || !strings.Contains(out, "GitHub App 9, installation 90") || strings.Contains(out, keyLine) {
		t.Fatalf("credential set (app) = %v, output %q", err, out)
	}
	stored, ok := c.Nodes[0].FSM.Credential(gitTokenRef("p1"))
	if !ok || stored.GitHubApp != (fsm.GitHubApp{AppID: 9, InstallationID: 90, APIBaseURL: "https://ghe.example/api/v3"}) {
		t.Fatalf("stored %+v, %v", stored, ok)
	}
	if got, err := kr.Open(keyring.Sealed{KeyID: stored.KeyID, Nonce: stored.Nonce, Ciphertext: stored.Ciphertext}, stored.AAD()); err != nil || string(got) != strings.TrimSuffix(pemKey, "\n") {
		t.Fatalf("the sealed secret is not the key file's PEM (%v)", err)
	}
	out, _, err = capture(t, func() error { return runCredential(ctx, []string{"list", addr}) })
	if err != nil || !strings.Contains(out, "GITHUB APP") || !strings.Contains(out, "9/90") || strings.Contains(out, keyLine) {
		t.Fatalf("credential list = %v, output %q", err, out)
	}
	out, _, err = capture(t, func() error { return runCredential(ctx, []string{"list", "--json", addr}) })
	if err != nil || !strings.Contains(out, `"installation_id": 90`) || strings.Contains(out, keyLine) {
		t.Fatalf("credential list --json = %v, output %q", err, out)
	}

	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"git-token", "project", "p1", "--github-app-id", "9"}, "--installation-id"},
		{[]string{"git-token", "project", "p1", "--installation-id", "90"}, "--github-app-id"},
		{[]string{"agent-key", "user", "u1", "claude-code", "--github-app-id", "9", "--installation-id", "90"}, "git-token only"},
	} {
		// No --secret-file: a check that came after reading would block on
		// (or fail reading) standard input instead.
		err := runCredential(ctx, append(append([]string{"set"}, bad.args...), addr))
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("set %v = %v, want an error naming %s", bad.args, err, bad.want)
		}
	}
	// The server refuses what is not a key, without quoting it.
	notKey := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(notKey, []byte("ghp_notAkey0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = runCredential(ctx, []string{"set", "git-token", "project", "p1", "--github-app-id", "9", "--installation-id", "90", "--secret-file", notKey, addr})
	if err == nil || !strings.Contains(err.Error(), "github_app.private_key") || strings.Contains(err.Error(), "ghp_notAkey") {
		t.Fatalf("set with a token for a key = %v, want the server's refusal naming github_app.private_key", err)
	}
}
