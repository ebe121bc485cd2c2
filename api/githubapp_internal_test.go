package api

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tdf-project/tdf/api/fakegithub"
	"github.com/tdf-project/tdf/fsm"
)

// appCred is a stored app credential; nonce stands for a sealing (each
// PUT seals anew, so a new nonce is a new version of the credential).
func appCred(appID, installationID int64, baseURL string, nonce byte) fsm.Credential {
	return fsm.Credential{CredentialRef: fsm.CredentialRef{Kind: fsm.CredentialGitToken, Scope: fsm.CredentialProject, ScopeID: "p1"},
		GitHubApp: fsm.GitHubApp{AppID: appID, InstallationID: installationID, APIBaseURL: baseURL},
		KeyID:     "k-1", Nonce: []byte{nonce, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}}
}

// mint gets a token for p1 the way the git-token route does.
func mint(t *testing.T, g *githubApps, cr fsm.Credential, open func() (string, error)) (string, time.Time, error) {
	t.Helper()
	m, err := g.minter("p1", cr, open)
	if err != nil {
		return "", time.Time{}, err
	}
	return m.token(context.Background())
}

// TestGitHubAppMintCacheRefresh: a token is minted with the app's JWT,
// kept while it is valid (GitHub is not asked again, the key not opened
// again), minted anew once within a minute of its expiry, and for a
// credential set again; the expiry is GitHub's.
func TestGitHubAppMintCacheRefresh(t *testing.T) {
	gh := fakegithub.New()
	defer gh.Close()
	key, pemKey, err := fakegithub.NewAppKey()
	if err != nil {
		t.Fatal(err)
	}
	gh.Install(7, 70, &key.PublicKey)
	opens := 0
	open := func() (string, error) { opens++; return pemKey, nil }
	g := &githubApps{}
	cr := appCred(7, 70, gh.URL, 1)

	start := time.Now()
	tok1, exp1, err := mint(t, g, cr, open)
	if err != nil || !strings.HasPrefix(tok1, "ghs_") {
		t.Fatalf("first mint = %q, %v (GitHub refused: %v)", tok1, err, gh.Refusals())
	}
	if d := exp1.Sub(start); d < 59*time.Minute || d > 61*time.Minute {
		t.Fatalf("expiry %v is %v away, want GitHub's hour", exp1, d)
	}
	tok2, exp2, err := mint(t, g, cr, open)
	if err != nil || tok2 != tok1 || !exp2.Equal(exp1) || gh.Minted(70) != 1 || opens != 1 {
		t.Fatalf("second call = %q %v %v; minted %d, key opened %d times; want the cached token, one mint, one opening", tok2, exp2, err, gh.Minted(70), opens)
	}

	// Tokens due for refresh (GitHub gives 30 s; ghinstallation renews a
	// minute before expiry) are minted anew on every call.
	gh.SetLifetime(30 * time.Second)
	cr = appCred(7, 70, gh.URL, 2) // set again: a new Transport
	tok3, _, err := mint(t, g, cr, open)
	if err != nil || tok3 == tok1 || gh.Minted(70) != 2 || opens != 2 {
		t.Fatalf("after the credential was set again = %q, %v; minted %d, opened %d", tok3, err, gh.Minted(70), opens)
	}
	tok4, exp4, err := mint(t, g, cr, open)
	if err != nil || tok4 == tok3 || gh.Minted(70) != 3 || exp4.Sub(time.Now()) > 31*time.Second {
		t.Fatalf("a token past its refresh time = %q %v, %v; minted %d; want a new one", tok4, exp4, err, gh.Minted(70))
	}
	gh.SetLifetime(time.Hour)
	tok5, _, _ := mint(t, g, cr, open)
	tok6, _, err := mint(t, g, cr, open)
	if err != nil || tok5 == tok4 || tok6 != tok5 || gh.Minted(70) != 4 {
		t.Fatalf("refreshed token %q then %q, %v; minted %d, want one new token, then cached", tok5, tok6, err, gh.Minted(70))
	}

	g.forget("p1")
	if _, _, err := mint(t, g, cr, open); err != nil || opens != 3 {
		t.Fatalf("after forget: %v, opened %d times, want a new Transport", err, opens)
	}
}

// TestGitHubAppMintErrors: GitHub's refusal (a key that is not the app's,
// an unknown installation) and an unreachable GitHub are errors naming
// GitHub's answer, never the key; a failed mint is not cached.
func TestGitHubAppMintErrors(t *testing.T) {
	gh := fakegithub.New()
	appKey, _, err := fakegithub.NewAppKey()
	if err != nil {
		t.Fatal(err)
	}
	_, otherPEM, err := fakegithub.NewAppKey()
	if err != nil {
		t.Fatal(err)
	}
	gh.Install(7, 70, &appKey.PublicKey)
	open := func() (string, error) { return otherPEM, nil }
	g := &githubApps{}
	body := otherPEM[40:100]

	_, _, err = mint(t, g, appCred(7, 70, gh.URL, 1), open)
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "JSON web token") || strings.Contains(err.Error(), body) {
		t.Fatalf("wrong key = %v, want GitHub's 401 and its message, without the key", err)
	}
	if _, _, err := mint(t, g, appCred(7, 70, gh.URL, 1), open); err == nil || len(gh.Refusals()) != 2 {
		t.Fatalf("second call with the wrong key = %v, %d refusals; a failure must not be cached", err, len(gh.Refusals()))
	}
	if _, _, err := mint(t, g, appCred(7, 71, gh.URL, 2), open); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("unknown installation = %v, want GitHub's 404", err)
	}
	gh.Close()
	if _, _, err := mint(t, g, appCred(7, 70, gh.URL, 3), open); err == nil || strings.Contains(err.Error(), body) {
		t.Fatalf("unreachable GitHub = %v, want an error", err)
	}
	if _, err := g.minter("p1", appCred(7, 70, gh.URL, 4), func() (string, error) { return "not a key", nil }); !errors.Is(err, errStoredKey) {
		t.Fatalf("a stored key that does not parse = %v, want errStoredKey", err)
	}
}

// TestGitHubAppRequestChecks: the PUT body of an app credential.
func TestGitHubAppRequestChecks(t *testing.T) {
	_, pemKey, err := fakegithub.NewAppKey()
	if err != nil {
		t.Fatal(err)
	}
	git := fsm.CredentialRef{Kind: fsm.CredentialGitToken, Scope: fsm.CredentialProject, ScopeID: "p1"}
	agent := fsm.CredentialRef{Kind: fsm.CredentialAgentKey, Scope: fsm.CredentialProject, ScopeID: "p1", AgentType: "claude-code"}
	app := func(mod func(r *CredentialRequest)) *CredentialRequest {
		r := &CredentialRequest{GitHubApp: &GitHubAppRequest{AppID: 1, InstallationID: 2, PrivateKey: pemKey}, APIBaseURL: "https://ghe.example/api/v3"}
		if mod != nil {
			mod(r)
		}
		return r
	}
	if err := app(nil).check(git); err != nil {
		t.Fatalf("a valid app credential = %v", err)
	}
	if err := app(func(r *CredentialRequest) { r.GitHubApp.PrivateKey = strings.TrimSuffix(pemKey, "\n") }).check(git); err != nil {
		t.Fatalf("a key without its final newline (as the CLI reads it) = %v", err)
	}
	for name, c := range map[string]struct {
		r     *CredentialRequest
		ref   fsm.CredentialRef
		field string
	}{
		"on an agent key":      {app(nil), agent, "github_app"},
		"with a secret too":    {app(func(r *CredentialRequest) { r.Secret = "x" }), git, "secret"},
		"no app id":            {app(func(r *CredentialRequest) { r.GitHubApp.AppID = 0 }), git, "github_app.app_id"},
		"no installation":      {app(func(r *CredentialRequest) { r.GitHubApp.InstallationID = -3 }), git, "github_app.installation_id"},
		"no key":               {app(func(r *CredentialRequest) { r.GitHubApp.PrivateKey = "" }), git, "github_app.private_key"},
		"not a key":            {app(func(r *CredentialRequest) { r.GitHubApp.PrivateKey = "ghp_notapem" }), git, "github_app.private_key"},
		"ftp base url":         {app(func(r *CredentialRequest) { r.APIBaseURL = "ftp://ghe.example" }), git, "api_base_url"},
		"base url with a user": {app(func(r *CredentialRequest) { r.APIBaseURL = "https://u:p@ghe.example" }), git, "api_base_url"},
		"base url, no app":     {&CredentialRequest{Secret: "x", APIBaseURL: "https://ghe.example"}, git, "api_base_url"},
	} {
		err := c.r.check(c.ref)
		var fe *fieldError
		if !errors.As(err, &fe) || !strings.HasPrefix(err.Error(), c.field) {
			t.Errorf("%s: check = %v, want an error about %s", name, err, c.field)
		}
		if err != nil && strings.Contains(err.Error(), pemKey[40:100]) {
			t.Errorf("%s: the error quotes the key", name)
		}
	}
}
