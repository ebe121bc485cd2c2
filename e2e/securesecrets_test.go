package e2e_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tdf-project/tdf/e2e"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/keyring"
	"github.com/tdf-project/tdf/tokens"
)

// TestNoSecretInTheClearAfterAFullRun: a secure-by-default cluster of
// three processes with a keyring runs tasks through the whole pipeline,
// holds a credential, and is backed up; then no HTTP answer, no log line
// and no file of any data directory (raft.db, snapshots) nor the backup
// holds a token signing key's private part or the credential in the
// clear.
func TestNoSecretInTheClearAfterAFullRun(t *testing.T) {
	krPath := filepath.Join(t.TempDir(), "keyring.json")
	kr, err := keyring.Generate()
	if err != nil {
		t.Fatal(err)
	}
	if err := kr.Save(krPath); err != nil {
		t.Fatal(err)
	}
	c := e2e.StartCluster(t, e2e.Options{
		Secure:   true,
		LogLevel: "debug",
		// Raft snapshots within the run, so that their files are searched too.
		ExtraArgs: append(slices.Clone(pipeServerArgs), "--keyring-file", krPath, "--snapshot-threshold", "64", "--snapshot-interval", "1s"),
		FakeCloud: &e2e.FakeCloudOptions{Args: slices.Clone(pipeCloudArgs)},
	})
	// The bootstrap token, from the first leader's data directory: the
	// cluster's own routes (the leader's, the keys') need it.
	c.Token = c.AdminToken()
	c.Leader()
	c.WaitSigningKeys()
	const secret = "ghp_full-run-credential-0123456789abcdef"
	var answers [][]byte
	do := func(method, path string, body any) *e2e.Response {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		r, err := c.Do(ctx, c.Leader(), method, path, nil, body)
		if err != nil || r.Status/100 != 2 {
			t.Fatalf("%s %s: %v %v", method, path, err, r)
		}
		answers = append(answers, r.Body)
		return r
	}
	do(http.MethodPut, "/v1/credentials/git-token/project/p-pipeline", map[string]string{"secret": secret})
	r := newPipeRun(t, c)
	if err := r.submitAll(r.specs(0, 6), 3, 0, c.Nodes); err != nil {
		t.Fatal(err)
	}
	r.waitCompleted(pipeCompleteWait)
	r.checkEnd()
	for _, p := range []string{"/v1/tasks", "/v1/nodes", "/v1/errors", "/v1/credentials", "/v1/tokens", "/v1/cluster", "/.well-known/jwks.json", "/metrics"} {
		do(http.MethodGet, p, nil)
	}
	backup := do(http.MethodGet, "/v1/cluster/snapshot", nil).Body

	// The private keys, opened from the backup with the keyring.
	st := fsm.New()
	if err := st.Restore(nopCloser{bytes.NewReader(backup)}); err != nil {
		t.Fatal(err)
	}
	var forms []string
	for _, k := range st.SigningKeys() {
		if !k.Sealed() || len(k.PEM) != 0 {
			t.Fatalf("signing key %s is not sealed in the backup", k.ID)
		}
		pem, err := kr.Open(keyring.Sealed{KeyID: k.SealKeyID, Nonce: k.Nonce, Ciphertext: k.Ciphertext}, k.SealAAD())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tokens.ParsePEM(pem); err != nil {
			t.Fatal(err)
		}
		forms = append(forms, privateKeyForms(pem)...)
	}
	if len(forms) == 0 {
		t.Fatal("no signing keys in the backup")
	}
	forms = append(forms, "PRIVATE KEY", secret, base64.StdEncoding.EncodeToString([]byte(secret))[:24])

	for _, n := range c.Nodes {
		c.Stop(n)
	}
	c.Stop(c.Cloud.Node)
	check := func(where string, data []byte) {
		for _, f := range forms {
			if bytes.Contains(data, []byte(f)) {
				t.Errorf("%s holds a secret in the clear (%.24s…)", where, f)
			}
		}
	}
	check("the backup", backup)
	for i, a := range answers {
		check("API answer "+string(rune('A'+i)), a)
	}
	var logBytes, files int
	for _, p := range c.LogPaths() {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		logBytes += len(data)
		check(p, data)
	}
	for _, n := range c.Nodes {
		err := filepath.WalkDir(n.DataDir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.HasSuffix(path, "admin-token") {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			files++
			check(path, data)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if files < 6 || logBytes < 5000 {
		t.Fatalf("searched only %d files and %d bytes of logs", files, logBytes)
	}
	t.Logf("searched %d API answers, %d bytes of logs, %d files and the backup (%d bytes) for %d forms of secrets", len(answers), logBytes, files, len(backup), len(forms))
}

// privateKeyForms are a PEM's private parts as they would show: the second
// half of its body lines (the first carry the public modulus, which the
// JWKS shows), and the base64 of the whole PEM (how JSON carries bytes).
func privateKeyForms(pem []byte) []string {
	out := []string{base64.StdEncoding.EncodeToString(pem)[:64]}
	lines := strings.Split(strings.TrimSpace(string(pem)), "\n")
	body := lines[1 : len(lines)-1]
	for _, l := range body[len(body)/2:] {
		if len(l) >= 40 {
			out = append(out, l)
		}
	}
	return out
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }
