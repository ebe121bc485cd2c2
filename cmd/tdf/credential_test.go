package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/keyring"
	"github.com/tdf-project/tdf/server"
)

// TestCredentialCLI: keyring init writes a 0600 file a node loads; the
// credential commands set (secret from a file), list (no secret shown) and
// delete through a node's API.
func TestCredentialCLI(t *testing.T) {
	dir := t.TempDir()
	krFile := filepath.Join(dir, "keyring.json")
	if _, _, err := capture(t, func() error { return runKeyring(context.Background(), []string{"init", "--out", krFile}) }); err != nil {
		t.Fatal(err)
	}
	if err := runKeyring(context.Background(), []string{"init", "--out", krFile}); err == nil || !strings.Contains(err.Error(), "never overwritten") {
		t.Fatalf("second keyring init = %v, want a refusal", err)
	}
	if _, _, err := capture(t, func() error { return runKeyring(context.Background(), []string{"rotate", "--file", krFile}) }); err != nil {
		t.Fatal(err)
	}
	kr, from, err := loadNodeKeyring("", dir)
	if kr.Len() != 2 {
		t.Fatalf("after rotate the keyring holds %d keys, want 2", kr.Len())
	}
	if err != nil || kr == nil || from != krFile {
		t.Fatalf("loadNodeKeyring(data dir) = %v, %q, %v", kr, from, err)
	}
	if k, _, err := loadNodeKeyring("", t.TempDir()); k != nil || err != nil {
		t.Fatalf("no keyring in the data dir = %v, %v; want none, no error", k, err)
	}
	if _, _, err := loadNodeKeyring(filepath.Join(dir, "missing.json"), dir); err == nil {
		t.Fatal("a missing --keyring-file was accepted")
	}

	c := server.NewTestCluster(t, server.TestOptions{Nodes: 1, API: func(ac *api.Config) { ac.Keyring = kr }})
	addr := "--addr=" + c.Nodes[0].URL
	ctx := context.Background()
	const secret = "ghp_CLItestSECRET0123456789"
	secretFile := filepath.Join(dir, "token")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err := capture(t, func() error {
		return runCredential(ctx, []string{"set", "git-token", "project", "p1", "--secret-file", secretFile, addr})
	})
	if err != nil || !strings.Contains(out, "set git-token project/p1") || strings.Contains(out, secret) {
		t.Fatalf("credential set = %v, output %q", err, out)
	}
	stored, ok := c.Nodes[0].FSM.Credential(gitTokenRef("p1"))
	if !ok {
		t.Fatal("no credential stored")
	}
	if got, err := kr.Open(keyring.Sealed{KeyID: stored.KeyID, Nonce: stored.Nonce, Ciphertext: stored.Ciphertext}, stored.AAD()); err != nil || string(got) != secret {
		t.Fatalf("stored secret opens to %q, %v (the final newline must go)", got, err)
	}
	out, _, err = capture(t, func() error { return runCredential(ctx, []string{"list", addr}) })
	if err != nil || !strings.Contains(out, "git-token") || !strings.Contains(out, "hmac-sha256:") || strings.Contains(out, secret) {
		t.Fatalf("credential list = %v, output %q", err, out)
	}
	if err := runCredential(ctx, []string{"set", "agent-key", "user", "u1", addr}); err == nil {
		t.Fatal("an agent key without agent type was accepted")
	}
	if _, _, err := capture(t, func() error { return runCredential(ctx, []string{"delete", "git-token", "project", "p1", addr}) }); err != nil {
		t.Fatal(err)
	}
	if err := runCredential(ctx, []string{"delete", "git-token", "project", "p1", addr}); err == nil || !strings.Contains(err.Error(), "not_found") {
		t.Fatalf("second delete = %v, want not_found", err)
	}
}

func TestReadSecret(t *testing.T) {
	for in, want := range map[string]string{"tok\n": "tok", "tok\r\n": "tok", "tok": "tok", "a b\nc\n": "a b\nc"} {
		got, err := readSecret("-", strings.NewReader(in))
		if err != nil || got != want {
			t.Errorf("readSecret(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := readSecret("-", strings.NewReader("\n")); err == nil {
		t.Error("an empty secret was accepted")
	}
	if _, err := readSecret("-", strings.NewReader(strings.Repeat("x", 20000))); err == nil {
		t.Error("a huge secret was accepted")
	}
}

func gitTokenRef(project string) fsm.CredentialRef {
	return fsm.CredentialRef{Kind: fsm.CredentialGitToken, Scope: fsm.CredentialProject, ScopeID: project}
}
