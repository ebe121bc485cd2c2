package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/api/fakegithub"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/server"
	"github.com/tdf-project/tdf/tokens"
)

// appKeyBody is an app credential's PUT body.
func appKeyBody(t *testing.T, appID, installationID int64, pemKey, baseURL string) []byte {
	t.Helper()
	b, err := json.Marshal(api.CredentialRequest{GitHubApp: &api.GitHubAppRequest{AppID: appID, InstallationID: installationID, PrivateKey: pemKey}, APIBaseURL: baseURL})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pemLines are the base64 lines of a PEM: any of them in clear text is a
// leak of the key.
func pemLines(pemKey string) []string {
	var out []string
	for _, l := range strings.Split(pemKey, "\n") {
		if len(l) >= 40 && !strings.HasPrefix(l, "-----") {
			out = append(out, l)
		}
	}
	return out
}

// setAppCredential sets p1's git credential to a GitHub App through a
// follower and waits until every node has that version.
func (a *agentRoutesCluster) setAppCredential(t *testing.T, appID, installationID int64, pemKey, baseURL string) api.CredentialView {
	t.Helper()
	_, followers := a.c.Followers()
	r := a.do(t, followers[0], http.MethodPut, "/v1/credentials/git-token/project/p1", appKeyBody(t, appID, installationID, pemKey, baseURL), nil)
	var set struct{ Credential api.CredentialView }
	if err := json.Unmarshal(r.Body, &set); err != nil || r.Status != http.StatusOK {
		t.Fatalf("PUT app credential = %d %s", r.Status, r.Body)
	}
	ref := fsm.CredentialRef{Kind: fsm.CredentialGitToken, Scope: fsm.CredentialProject, ScopeID: "p1"}
	waitFor(t, "the app credential on every node", func() bool {
		for _, n := range a.c.Nodes {
			if cr, _ := n.FSM.Credential(ref); cr.Fingerprint != set.Credential.Fingerprint {
				return false
			}
		}
		return true
	})
	return set.Credential
}

// TestCredentialGitHubApp: a project's git credential set as a GitHub App
// installation is shown as ids only; the agent's git-token call, on any
// node, gets an installation token minted with the app's key at the
// configured API, with GitHub's expiry, minted once and then cached; a key
// GitHub refuses is a 502 naming the project and not the key; a static
// token set again works as before.
func TestCredentialGitHubApp(t *testing.T) {
	gh := fakegithub.New()
	defer gh.Close()
	appKey, pemKey, err := fakegithub.NewAppKey()
	if err != nil {
		t.Fatal(err)
	}
	gh.Install(9, 90, &appKey.PublicKey)
	a := newAgentRoutesCluster(t, server.TestOptions{})
	wsTok := a.bearer(t, tokens.ScopeWorkspace, a.wsID)

	view := a.setAppCredential(t, 9, 90, pemKey, gh.URL)
	if view.GitHubApp == nil || view.GitHubApp.AppID != 9 || view.GitHubApp.InstallationID != 90 || view.APIBaseURL != gh.URL {
		t.Fatalf("app credential shown as %+v", view)
	}
	start := time.Now()
	var first string
	for i, n := range append(a.c.Nodes, a.c.Nodes...) {
		r := a.c.Do(n, http.MethodPost, "/api/workspaces/"+a.wsID+"/git-token", []byte(`{}`), wsTok)
		var out struct{ Token, ExpiresAt string }
		if err := json.Unmarshal(r.Body, &out); err != nil || r.Status != http.StatusOK || !strings.HasPrefix(out.Token, "ghs_") {
			t.Fatalf("git-token on %s = %d %s (GitHub refused: %v)", n.ID, r.Status, r.Body, gh.Refusals())
		}
		exp, err := time.Parse(time.RFC3339, out.ExpiresAt)
		if d := exp.Sub(start); err != nil || d < 58*time.Minute || d > 61*time.Minute {
			t.Fatalf("expiresAt %q (%v): want GitHub's expiry, an hour away", out.ExpiresAt, err)
		}
		if i == 0 {
			first = out.Token
		} else if out.Token != first {
			t.Fatalf("call %d on %s got a new token %q; the first one is still valid", i, n.ID, out.Token)
		}
	}
	if gh.Minted(90) != 1 {
		t.Fatalf("GitHub minted %d tokens for six calls, want 1", gh.Minted(90))
	}

	// A key that is not the app's: GitHub answers 401.
	_, otherPEM, err := fakegithub.NewAppKey()
	if err != nil {
		t.Fatal(err)
	}
	a.setAppCredential(t, 9, 90, otherPEM, gh.URL)
	r := a.do(t, a.c.Nodes[0], http.MethodPost, "/api/workspaces/"+a.wsID+"/git-token", []byte(`{}`), wsTok)
	if e := decodeError(t, r); r.Status != http.StatusBadGateway || e.Code != api.CodeGitHubApp ||
		!strings.Contains(e.Message, "project p1") || !strings.Contains(e.Message, "401") {
		t.Fatalf("git-token with a key GitHub refuses = %d %s, want 502 %s naming project p1 and GitHub's 401", r.Status, r.Body, api.CodeGitHubApp)
	}
	t.Logf("GitHub's refusal as the agent gets it: %s", r.Body)
	for _, l := range append(pemLines(otherPEM), pemLines(pemKey)...) {
		if strings.Contains(string(r.Body), l) {
			t.Fatalf("the error answer quotes the key: %s", r.Body)
		}
	}
	// A malformed key is refused at the PUT.
	r = a.do(t, a.c.Nodes[1], http.MethodPut, "/v1/credentials/git-token/project/p1", appKeyBody(t, 9, 90, "-----BEGIN RSA PRIVATE KEY-----\nnope\n-----END RSA PRIVATE KEY-----\n", gh.URL), nil)
	if e := decodeError(t, r); r.Status != http.StatusBadRequest || !strings.Contains(e.Message, "github_app.private_key") {
		t.Fatalf("PUT with a malformed key = %d %s, want 400 naming github_app.private_key", r.Status, r.Body)
	}

	// Back to a static token: handed out as it is.
	if r := a.do(t, a.c.Nodes[2], http.MethodPut, "/v1/credentials/git-token/project/p1", []byte(`{"secret":"`+testGitSecret+`"}`), nil); r.Status != http.StatusOK {
		t.Fatalf("PUT static token = %d %s", r.Status, r.Body)
	}
	waitFor(t, "the static token on the leader", func() bool {
		cr, _ := a.c.Leader().FSM.Credential(fsm.CredentialRef{Kind: fsm.CredentialGitToken, Scope: fsm.CredentialProject, ScopeID: "p1"})
		return !cr.IsGitHubApp()
	})
	r = a.c.Do(a.c.Nodes[0], http.MethodPost, "/api/workspaces/"+a.wsID+"/git-token", []byte(`{}`), wsTok)
	var out struct{ Token string }
	if json.Unmarshal(r.Body, &out); r.Status != http.StatusOK || out.Token != testGitSecret {
		t.Fatalf("git-token after the static token was set again = %d %s", r.Status, r.Body)
	}
}
