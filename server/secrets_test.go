package server_test

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tdf-project/tdf/api/fakegithub"
	"github.com/tdf-project/tdf/server"
	"github.com/tdf-project/tdf/tokens"
)

// TestCredentialSecretsStayOut sets a git token and an agent key through
// the admin API of a three-node cluster logging at trace level, hands both
// out to the workspace's agent, then sets the git credential to a GitHub
// App (its private key the secret) and hands out tokens minted with it,
// takes raft snapshots on every node and a backup through the API, then
// searches the nodes' logs, every API answer but the hand-outs, the
// snapshot files and the raft logs (raft.db) of every data directory for
// any secret in clear text (any line of the PEM; the minted tokens too,
// which are never committed): none may hold one.
func TestCredentialSecretsStayOut(t *testing.T) {
	logs := &logBuffer{} // ops_test.go
	dataDir := t.TempDir()
	a := newAgentRoutesCluster(t, server.TestOptions{
		DataDir: dataDir,
		Logger:  hclog.New(&hclog.LoggerOptions{Name: "tdf", Level: hclog.Trace, Output: logs}),
	})
	wsTok := a.bearer(t, tokens.ScopeWorkspace, a.wsID)
	// Replace both (the old and the new secret must stay out), and hand
	// them out on every node.
	secrets := []string{testGitSecret, testAgentSecret, testGitSecret + "-v2", testAgentSecret + "-v2"}
	a.do(t, a.c.Nodes[1], http.MethodPut, "/v1/credentials/git-token/project/p1", []byte(`{"secret":"`+secrets[2]+`"}`), nil)
	a.do(t, a.c.Nodes[2], http.MethodPut, "/v1/credentials/agent-key/project/p1/claude-code", []byte(`{"secret":"`+secrets[3]+`"}`), nil)
	var handouts [][]byte
	for _, n := range a.c.Nodes {
		for _, p := range []struct{ path, body string }{{"/git-token", `{}`}, {"/agent-key", `{"agentType":"claude-code"}`}} {
			r := a.c.Do(n, http.MethodPost, "/api/workspaces/"+a.wsID+p.path, []byte(p.body), wsTok)
			if r.Status != http.StatusOK {
				t.Fatalf("%s on %s = %d %s", p.path, n.ID, r.Status, r.Body)
			}
			handouts = append(handouts, r.Body)
		}
		// A credential-sync carries a secret in; its answer must not.
		a.do(t, n, http.MethodPost, "/api/workspaces/"+a.wsID+"/agent-credential-sync",
			[]byte(`{"agentType":"claude-code","credentialKind":"api-key","credential":"`+secrets[1]+`"}`), wsTok)
		a.do(t, n, http.MethodGet, "/v1/credentials", nil, nil)
		a.do(t, n, http.MethodGet, "/v1/cluster/state-hash", nil, nil)
		a.do(t, n, http.MethodGet, "/v1/cluster/state-hash?snapshot=true", nil, nil) // the node's own state
	}
	if !bytes.Contains(bytes.Join(handouts, nil), []byte(secrets[2])) || !bytes.Contains(bytes.Join(handouts, nil), []byte(testAgentSecret)) {
		t.Fatalf("the hand-outs do not carry the secrets: %s", bytes.Join(handouts, []byte("\n")))
	}
	secrets = append(secrets, appCredentialHandouts(t, a, wsTok)...)
	// A backup through the API, and a raft snapshot on every node.
	a.do(t, a.c.Leader(), http.MethodGet, "/v1/cluster/snapshot", nil, nil)
	for _, n := range a.c.Nodes {
		if err := n.Node.Raft().Snapshot().Error(); err != nil {
			t.Fatalf("snapshot of %s: %v", n.ID, err)
		}
	}
	a.c.Close() // flushes and closes every raft.db

	var files, snapshots, witnessed, appWitnessed int
	err := filepath.WalkDir(dataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		if strings.HasSuffix(path, "state.bin") {
			snapshots++
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, s := range secrets {
			if bytes.Contains(data, []byte(s)) {
				t.Errorf("%s holds a secret in clear text", path)
			}
		}
		// The search is not blind: the credentials' names are there in
		// clear text, next to their ciphertext.
		if (strings.HasSuffix(path, "raft.db") || strings.HasSuffix(path, "state.bin")) && bytes.Contains(data, []byte(`"ciphertext"`)) {
			witnessed++
		}
		if bytes.Contains(data, []byte(`"github_app":{"app_id":9,`)) {
			appWitnessed++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if witnessed < 6 || appWitnessed < 6 {
		t.Errorf("%d raft logs and snapshots hold a sealed credential, %d the app credential; want every node's", witnessed, appWitnessed)
	}
	if snapshots < 3 || files < 6 {
		t.Fatalf("searched %d files with %d snapshots, want every node's raft.db and snapshot", files, snapshots)
	}
	logged := []byte(logs.String())
	if !bytes.Contains(logged, []byte("entering leader state")) {
		t.Fatalf("the nodes' logs were not captured: %.500s", logged)
	}
	for _, s := range secrets {
		if i := bytes.Index(logged, []byte(s)); i >= 0 {
			t.Errorf("the logs hold a secret: …%s…", logged[max(0, i-200):i])
		}
		for _, ans := range a.answers {
			if bytes.Contains(ans, []byte(s)) {
				t.Errorf("an API answer holds a secret: %.300s", ans)
			}
		}
	}
	t.Logf("searched %d bytes of logs, %d API answers and %d files (%d snapshots)", len(logged), len(a.answers), files, snapshots)
}

// appCredentialHandouts sets p1's git credential to a GitHub App and hands
// out minted tokens on every node; it returns the secrets to search for:
// the lines of the app's key and the tokens.
func appCredentialHandouts(t *testing.T, a *agentRoutesCluster, wsTok map[string]string) []string {
	t.Helper()
	gh := fakegithub.New()
	t.Cleanup(gh.Close)
	appKey, pemKey, err := fakegithub.NewAppKey()
	if err != nil {
		t.Fatal(err)
	}
	gh.Install(9, 90, &appKey.PublicKey)
	gh.SetLifetime(30 * time.Second) // within ghinstallation's refresh margin: minted on every call
	a.setAppCredential(t, 9, 90, pemKey, gh.URL)
	out := pemLines(pemKey)
	for _, n := range a.c.Nodes {
		r := a.c.Do(n, http.MethodPost, "/api/workspaces/"+a.wsID+"/git-token", []byte(`{}`), wsTok)
		var tok struct{ Token string }
		if err := json.Unmarshal(r.Body, &tok); err != nil || r.Status != http.StatusOK || tok.Token == "" {
			t.Fatalf("app git-token on %s = %d %s", n.ID, r.Status, r.Body)
		}
		out = append(out, tok.Token)
	}
	if gh.Minted(90) != len(a.c.Nodes) || len(out) < 20 {
		t.Fatalf("minted %d tokens, %d secrets to search for", gh.Minted(90), len(out))
	}
	return out
}
