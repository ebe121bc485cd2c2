package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/server"
)

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

// A new cluster is never open: the first leader writes a bootstrap admin
// token (0600) into its data directory, every /v1 route but the agents'
// callbacks refuses a caller without a token, and probes and the JWKS
// stay open.
func TestSecureByDefaultBootstrapToken(t *testing.T) {
	c := server.NewTestCluster(t, server.TestOptions{Secure: true})
	admin := c.AdminToken()
	files := 0
	for _, n := range c.Nodes {
		fi, err := os.Stat(filepath.Join(n.DataDir, server.AdminTokenFile))
		if err != nil {
			continue
		}
		files++
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s's admin token file has mode %v, want 0600", n.ID, fi.Mode().Perm())
		}
	}
	if files != 1 {
		t.Fatalf("%d nodes hold an admin token file, want the first leader's only", files)
	}
	for _, n := range c.Nodes {
		for _, p := range []string{"/v1/tasks", "/v1/cluster", "/v1/cluster/snapshot", "/v1/tokens", "/v1/nodes", "/v1/events", "/metrics"} {
			if r := c.Do(n, http.MethodGet, p, nil, nil); r.Status != http.StatusUnauthorized {
				t.Fatalf("GET %s on %s without a token = %d %s, want 401", p, n.ID, r.Status, r.Body)
			}
		}
		for _, p := range []string{"/healthz", "/readyz", "/.well-known/jwks.json"} {
			if r := c.Do(n, http.MethodGet, p, nil, nil); r.Status != http.StatusOK {
				t.Fatalf("GET %s on %s without a token = %d, want 200", p, n.ID, r.Status)
			}
		}
		if r := c.Do(n, http.MethodGet, "/v1/cluster", nil, bearer(admin)); r.Status != http.StatusOK {
			t.Fatalf("GET /v1/cluster on %s with the admin token = %d %s", n.ID, r.Status, r.Body)
		}
	}
	// The list shows the bootstrap token, never a hash or a token.
	r := c.Do(c.Nodes[0], http.MethodGet, "/v1/tokens", nil, bearer(admin))
	if r.Status != http.StatusOK || json.Valid(r.Body) && (contains(r.Body, admin) || contains(r.Body, `"hash"`)) || !contains(r.Body, `"bootstrap":true`) {
		t.Fatalf("token list = %d %s", r.Status, r.Body)
	}
}

// A revoked token is refused by every node once the revocation is
// applied there: the test measures how long after the DELETE answered the
// last node still accepted it.
func TestRevokedTokenRefusedOnEveryNode(t *testing.T) {
	c := server.NewTestCluster(t, server.TestOptions{Secure: true})
	admin := c.AdminToken()
	_, followers := c.Followers()
	r := c.Do(followers[0], http.MethodPost, "/v1/tokens", []byte(`{"scope":"user","subject":"alice"}`), bearer(admin))
	if r.Status != http.StatusCreated {
		t.Fatalf("create through a follower = %d %s", r.Status, r.Body)
	}
	var created api.TokenCreated
	if err := json.Unmarshal(r.Body, &created); err != nil || created.Token == "" || created.Info.Subject != "alice" {
		t.Fatalf("created = %s (%v)", r.Body, err)
	}
	server.WaitFor(t, 10*time.Second, "every node accepts the new token", func() error {
		for _, n := range c.Nodes {
			if r := c.Do(n, http.MethodGet, "/v1/tasks", nil, bearer(created.Token)); r.Status != http.StatusOK {
				return errStatus(n.ID, r)
			}
		}
		return nil
	})
	if r := c.Do(followers[1], http.MethodDelete, "/v1/tokens/"+created.Info.ID, nil, bearer(admin)); r.Status != http.StatusOK || !contains(r.Body, `"revoked_at"`) {
		t.Fatalf("revoke = %d %s", r.Status, r.Body)
	}
	revoked := time.Now()
	server.WaitFor(t, 10*time.Second, "every node refuses the revoked token", func() error {
		for _, n := range c.Nodes {
			if r := c.Do(n, http.MethodGet, "/v1/tasks", nil, bearer(created.Token)); r.Status != http.StatusUnauthorized {
				return errStatus(n.ID, r)
			}
		}
		return nil
	})
	t.Logf("every node refused the revoked token %v after the revocation answered", time.Since(revoked))
	if r := c.Do(c.Nodes[0], http.MethodDelete, "/v1/tokens/nope", nil, bearer(admin)); r.Status != http.StatusNotFound {
		t.Fatalf("revoking an unknown token = %d %s", r.Status, r.Body)
	}
	if r := c.Do(c.Nodes[0], http.MethodPost, "/v1/tokens", []byte(`{"scope":"root","subject":"x"}`), bearer(admin)); r.Status != http.StatusBadRequest || !contains(r.Body, "scope") {
		t.Fatalf("a bad scope = %d %s", r.Status, r.Body)
	}
}

func contains(b []byte, s string) bool { return strings.Contains(string(b), s) }

func errStatus(node string, r server.TestResponse) error {
	return fmt.Errorf("%s answered %d %s", node, r.Status, r.Body)
}

// An event-stream cookie traded for a replicated token dies with it.
func TestSessionCookieDiesWithItsToken(t *testing.T) {
	c := server.NewTestCluster(t, server.TestOptions{Nodes: 1, Secure: true})
	admin := c.AdminToken()
	n := c.Nodes[0]
	alice := newToken(t, c, admin, api.TokenRequest{Scope: api.ScopeUser, Subject: "alice"})
	r := c.Do(n, http.MethodPost, "/v1/session", nil, bearer(alice))
	var cookie string
	for _, sc := range r.Header.Values("Set-Cookie") {
		if v, _, ok := strings.Cut(sc, ";"); ok && strings.HasPrefix(v, "tdf_events=") {
			cookie = v
		}
	}
	if r.Status != http.StatusOK || cookie == "" {
		t.Fatalf("session = %d %v", r.Status, r.Header)
	}
	stream := func() int {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+"/v1/events", nil)
		req.Header.Set("Cookie", cookie)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := stream(); s != http.StatusOK {
		t.Fatalf("the stream with the cookie = %d", s)
	}
	var list struct {
		Tokens []api.TokenInfo `json:"tokens"`
	}
	_ = json.Unmarshal(c.Do(n, http.MethodGet, "/v1/tokens", nil, bearer(admin)).Body, &list)
	for _, tk := range list.Tokens {
		if tk.Subject == "alice" {
			c.Do(n, http.MethodDelete, "/v1/tokens/"+tk.ID, nil, bearer(admin))
		}
	}
	if s := stream(); s != http.StatusUnauthorized {
		t.Fatalf("the stream with the revoked token's cookie = %d, want 401", s)
	}
}

// The token table travels with a backup: a restore replaces it. A backup
// of a cluster that never had a bootstrap token gets the fresh cluster's
// back (the leader's duties restart after the restore); one that had its
// own brings it, and the fresh one's no longer works.
func TestRestoreReplacesTheTokenTable(t *testing.T) {
	open := server.NewTestCluster(t, server.TestOptions{Nodes: 1})
	openBackup := open.Do(open.Nodes[0], http.MethodGet, "/v1/cluster/snapshot", nil, nil)
	secure := server.NewTestCluster(t, server.TestOptions{Nodes: 1, Secure: true})
	oldAdmin := secure.AdminToken()
	secureBackup := secure.Do(secure.Nodes[0], http.MethodGet, "/v1/cluster/snapshot", nil, bearer(oldAdmin))
	if openBackup.Status != http.StatusOK || secureBackup.Status != http.StatusOK {
		t.Fatalf("backups = %d, %d", openBackup.Status, secureBackup.Status)
	}

	fresh := server.NewTestCluster(t, server.TestOptions{Nodes: 1, Secure: true})
	n, admin := fresh.Nodes[0], fresh.AdminToken()
	restore := func(b []byte, tok string) {
		t.Helper()
		hdr := bearer(tok)
		hdr["Content-Type"] = "application/octet-stream"
		if r := fresh.Do(n, http.MethodPost, "/v1/cluster/restore?force=true", b, hdr); r.Status != http.StatusOK {
			t.Fatalf("restore = %d %s", r.Status, r.Body)
		}
	}
	restore(openBackup.Body, admin)
	server.WaitFor(t, 10*time.Second, "the fresh cluster's admin token to work again", func() error {
		if r := fresh.Do(n, http.MethodGet, "/v1/tokens", nil, bearer(admin)); r.Status != http.StatusOK {
			return errStatus(n.ID, r)
		}
		return nil
	})
	restore(secureBackup.Body, admin)
	server.WaitFor(t, 10*time.Second, "the backed-up cluster's admin token, and only it", func() error {
		if r := fresh.Do(n, http.MethodGet, "/v1/tokens", nil, bearer(oldAdmin)); r.Status != http.StatusOK {
			return errStatus(n.ID, r)
		}
		if r := fresh.Do(n, http.MethodGet, "/v1/tokens", nil, bearer(admin)); r.Status != http.StatusUnauthorized {
			return errStatus(n.ID, r)
		}
		return nil
	})
}
