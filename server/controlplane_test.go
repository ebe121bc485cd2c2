package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/server"
	"github.com/tdf-project/tdf/tokens"
)

const (
	cpAdminToken = "admin-token-0123456789"
	cpUserToken  = "user-token-0123456789ab"
)

// waitControlPlane waits until every node has url as its control-plane
// URL and a signing key.
func waitControlPlane(t *testing.T, c *server.TestCluster, url string) {
	t.Helper()
	server.WaitFor(t, server.TestWait, "every node has control-plane URL "+url, func() error {
		for _, n := range c.Nodes {
			if got := n.Tokens.ControlPlaneURL(); got != url {
				return fmt.Errorf("%s has %q", n.ID, got)
			}
			if len(n.FSM.SigningKeys()) == 0 {
				return fmt.Errorf("%s has no signing key", n.ID)
			}
		}
		return nil
	})
}

// agentVerifies checks a management token as the VM agent does: against
// a node's JWKS, with the issuer the agent was booted with.
func agentVerifies(t *testing.T, jwksFrom *server.TestNode, issuer, tok, node string) error {
	t.Helper()
	v, err := tokens.NewJWKSVerifier(context.Background(), jwksFrom.URL+"/.well-known/jwks.json", issuer, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v.Verify(tok, node, "")
}

// A cluster started without --control-plane-url has one control-plane URL
// all the same: the first leader's API URL, replicated. Tokens the leader
// signs verify on every node and, after a leader change, tokens the new
// leader signs carry the same issuer, which agents booted before expect.
// An admin may then set the URL (PUT /v1/cluster/control-plane on any
// node); a user may not; a bad URL is a 400.
func TestControlPlaneURLIsOneForTheClusterAcrossFailover(t *testing.T) {
	auth, err := api.NewTokens([]api.TokenEntry{{Token: cpAdminToken, Scope: api.ScopeAdmin, Subject: "ops"},
		{Token: cpUserToken, Scope: api.ScopeUser, Subject: "alice"}})
	if err != nil {
		t.Fatal(err)
	}
	c := server.NewTestCluster(t, server.TestOptions{API: func(ac *api.Config) { ac.Auth = auth }})
	leader := c.Leader()
	url := leader.URL
	waitControlPlane(t, c, url)

	nodeTok, err := leader.Tokens.CallbackToken(tokens.ScopeNode, "n-vm1")
	if err != nil {
		t.Fatal(err)
	}
	mgmt, err := leader.Tokens.ManagementToken("n-vm1", "", "u1")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes {
		if _, err := n.Tokens.VerifyCallback(nodeTok, tokens.ScopeNode, "n-vm1"); err != nil {
			t.Fatalf("%s refuses the leader's callback token: %v", n.ID, err)
		}
		// Through the API, as an agent's callback: past authentication
		// (the node is unknown, so not a 2xx; but not a 401 either).
		r := c.Do(n, http.MethodPost, "/api/nodes/n-vm1/heartbeat", []byte(`{}`), map[string]string{"Authorization": "Bearer " + nodeTok})
		if r.Status == http.StatusUnauthorized || r.Status == http.StatusForbidden {
			t.Fatalf("callback through %s = %d %s", n.ID, r.Status, r.Body)
		}
		if err := agentVerifies(t, n, url, mgmt, "n-vm1"); err != nil {
			t.Fatalf("an agent refuses the leader's management token with %s's JWKS: %v", n.ID, err)
		}
	}

	// The leader is cut off; another takes over and signs with the same
	// issuer, and the first leader's tokens still verify there.
	c.Partition(leader)
	next := c.WaitLeaderNot(leader)
	c.Heal()
	c.Leader()
	if got := next.Tokens.ControlPlaneURL(); got != url {
		t.Fatalf("new leader %s has control-plane URL %q, want the first leader's %q", next.ID, got, url)
	}
	mgmt2, err := next.Tokens.ManagementToken("n-vm1", "ws1", "u1")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes {
		if err := agentVerifies(t, n, url, mgmt2, "n-vm1"); err != nil {
			t.Fatalf("after the leader change an agent refuses %s's management token: %v", next.ID, err)
		}
		if _, err := n.Tokens.VerifyCallback(nodeTok, tokens.ScopeNode, "n-vm1"); err != nil {
			t.Fatalf("after the leader change %s refuses the first leader's callback token: %v", n.ID, err)
		}
	}

	// An operator sets a load balancer's URL through a follower.
	follower := c.Others(next)[0]
	admin := map[string]string{"Authorization": "Bearer " + cpAdminToken}
	if r := c.Do(follower, http.MethodPut, "/v1/cluster/control-plane", []byte(`{"url":"http://lb.test:8000/"}`), admin); r.Status != http.StatusOK {
		t.Fatalf("PUT as admin = %d %s", r.Status, r.Body)
	}
	waitControlPlane(t, c, "http://lb.test:8000")
	var got api.ControlPlane
	r := c.Do(follower, http.MethodGet, "/v1/cluster/control-plane", nil, admin)
	if err := json.Unmarshal(r.Body, &got); r.Status != http.StatusOK || err != nil || got.URL != "http://lb.test:8000" {
		t.Fatalf("GET = %d %s", r.Status, r.Body)
	}
	if _, err := next.Tokens.VerifyCallback(nodeTok, tokens.ScopeNode, "n-vm1"); !errors.Is(err, tokens.ErrInvalid) {
		t.Fatalf("a token of the old issuer after the change: %v, want ErrInvalid", err)
	}
	user := map[string]string{"Authorization": "Bearer " + cpUserToken}
	if r := c.Do(follower, http.MethodPut, "/v1/cluster/control-plane", []byte(`{"url":"http://evil.test"}`), user); r.Status != http.StatusForbidden {
		t.Fatalf("PUT as a user = %d %s, want 403", r.Status, r.Body)
	}
	for _, body := range []string{`{"url":"lb.test:8000"}`, `{"url":""}`, `{"url":"http://lb?x=1"}`, `{"uri":"http://lb"}`, `not json`} {
		r := c.Do(follower, http.MethodPut, "/v1/cluster/control-plane", []byte(body), admin)
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if r.Status != http.StatusBadRequest || json.Unmarshal(r.Body, &e) != nil || e.Error.Code == "" {
			t.Fatalf("PUT %s = %d %s, want 400 with an error body", body, r.Status, r.Body)
		}
	}
	if got := next.Tokens.ControlPlaneURL(); got != "http://lb.test:8000" {
		t.Fatalf("bad PUTs changed the URL to %q", got)
	}
}

// A node started with a bad --control-plane-url does not start.
func TestBadControlPlaneFlagIsRefused(t *testing.T) {
	_, err := server.Start(server.Config{HTTPAddr: "127.0.0.1:0", ControlPlaneURL: "lb.test:8000"})
	if err == nil {
		t.Fatal("Start with a bad --control-plane-url succeeded")
	}
}
