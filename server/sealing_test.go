package server_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/server"
	"github.com/tdf-project/tdf/tokens"
)

// privateForms are the forms a signing key's private part would take in
// an answer, a log, a snapshot or the raft log if it were kept in the
// clear: its PEM's body lines, and the base64 of the whole PEM (how JSON
// carries bytes).
func privateForms(keys []tokens.Key) []string {
	var out []string
	for _, k := range keys {
		pem := k.EncodePEM()
		out = append(out, base64.StdEncoding.EncodeToString(pem)[:64])
		// The second half of the body: the private exponent and primes
		// (the first lines carry the public modulus, which the JWKS shows).
		lines := strings.Split(strings.TrimSpace(string(pem)), "\n")
		body := lines[1 : len(lines)-1]
		for _, l := range body[len(body)/2:] {
			if len(l) >= 40 {
				out = append(out, l)
			}
		}
	}
	return out
}

// TestSigningKeysSealed: a cluster with a keyring keeps its token signing
// keys sealed: no backup, raft snapshot, raft log, API answer or log line
// (at trace level) holds a private key, while every node signs and
// verifies with them. A backup
// restored onto a node without the keyring is answered with exactly the
// keys and credentials it cannot unseal.
func TestSigningKeysSealed(t *testing.T) {
	dataDir := t.TempDir()
	logs := &logBuffer{} // ops_test.go
	a := newAgentRoutesCluster(t, server.TestOptions{DataDir: dataDir,
		Logger: hclog.New(&hclog.LoggerOptions{Name: "tdf", Level: hclog.Trace, Output: logs})})
	a.do(t, a.c.Leader(), http.MethodPut, "/v1/credentials/git-token/project/p1", []byte(`{"secret":"sealed-git-secret-0123456789"}`), nil)
	for _, n := range a.c.Nodes {
		for _, k := range n.FSM.SigningKeys() {
			if !k.Sealed() || len(k.PEM) != 0 {
				t.Fatalf("%s holds signing key %s unsealed", n.ID, k.ID)
			}
		}
		// Every node opens the sealed keys: it verifies an agent's token.
		if r := a.c.Do(n, http.MethodPost, "/api/workspaces/"+a.wsID+"/git-token", []byte(`{}`), a.bearer(t, tokens.ScopeWorkspace, a.wsID)); r.Status != http.StatusOK {
			t.Fatalf("git-token on %s = %d %s", n.ID, r.Status, r.Body)
		}
	}
	forms := privateForms(a.c.Leader().Tokens.Keys())
	if len(forms) == 0 {
		t.Fatal("no signing keys to look for")
	}
	backup := a.do(t, a.c.Leader(), http.MethodGet, "/v1/cluster/snapshot", nil, nil)
	if backup.Status != http.StatusOK {
		t.Fatalf("backup = %d %s", backup.Status, backup.Body)
	}
	for _, n := range a.c.Nodes {
		a.do(t, n, http.MethodGet, "/.well-known/jwks.json", nil, nil)
		a.do(t, n, http.MethodGet, "/v1/cluster/state-hash?snapshot=true", nil, nil)
		if err := n.Node.Raft().Snapshot().Error(); err != nil {
			t.Fatalf("snapshot of %s: %v", n.ID, err)
		}
	}
	for _, ans := range a.answers {
		for _, f := range forms {
			if bytes.Contains(ans, []byte(f)) {
				t.Fatalf("an API answer holds a private signing key: %.200s", ans)
			}
		}
	}

	// Restored onto a node without the keyring: it says what it cannot open.
	fresh := server.NewTestCluster(t, server.TestOptions{Nodes: 1})
	fn := fresh.Nodes[0]
	waitFor(t, "the fresh node's own signing key", func() bool { return len(fn.FSM.SigningKeys()) > 0 })
	// The search below is not blind: a cluster without a keyring keeps its
	// keys in the clear, and its backup shows them.
	if own := fresh.Do(fn, http.MethodGet, "/v1/cluster/snapshot", nil, nil); !bytes.Contains(own.Body, []byte(privateForms(fn.Tokens.Keys())[0])) {
		t.Fatal("a keyring-less cluster's backup does not show its clear key: the search for sealed keys would be blind")
	}
	r := fresh.Do(fn, http.MethodPost, "/v1/cluster/restore", backup.Body, map[string]string{"Content-Type": "application/octet-stream"})
	var ans api.RestoreAnswer
	if r.Status != http.StatusOK || json.Unmarshal(r.Body, &ans) != nil || ans.Unsealable == nil {
		t.Fatalf("restore without the keyring = %d %s, want 200 naming what it cannot unseal", r.Status, r.Body)
	}
	if got, want := len(ans.Unsealable.SigningKeys), len(a.c.Leader().FSM.SigningKeys()); got != want {
		t.Fatalf("unsealable signing keys = %+v, want all %d", ans.Unsealable.SigningKeys, want)
	}
	creds := ans.Unsealable.Credentials
	if len(creds) != len(a.c.Leader().FSM.Credentials()) || !strings.Contains(string(r.Body), `"name":"git-token/project/p1","key_id":"k-`) {
		t.Fatalf("unsealable credentials = %+v, want every one, git-token/project/p1 with its key id among them", creds)
	}

	a.c.Close()
	var files int
	err := filepath.WalkDir(dataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, f := range append(forms, "PRIVATE KEY") {
			if bytes.Contains(data, []byte(f)) {
				t.Errorf("%s holds a private signing key (%.20s…)", path, f)
			}
		}
		return nil
	})
	if err != nil || files < 6 {
		t.Fatalf("searched %d files: %v", files, err)
	}
	logged := logs.String()
	for _, f := range forms {
		if bytes.Contains(backup.Body, []byte(f)) {
			t.Fatal("the backup holds a private signing key")
		}
		if strings.Contains(logged, f) {
			t.Fatal("a log line holds a private signing key")
		}
	}
	if len(logged) < 10000 {
		t.Fatalf("only %d bytes of trace logs to search", len(logged))
	}
}
