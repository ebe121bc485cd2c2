package api

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	"github.com/gin-gonic/gin"

	"github.com/tdf-project/tdf/fsm"
)

// GitHub App git credentials: a project's git token may be a GitHub App
// installation rather than a static secret. The credential then holds the
// app's private key, sealed like any secret, and the app and installation
// ids as metadata. The leader (the git-token route runs there) opens the
// key and mints installation tokens through ghinstallation, whose Transport
// keeps a token until a minute before GitHub's expiry; the agent is told
// that expiry. One Transport per project, made again when the credential
// is replaced, so the key is opened once per credential version.

// CodeGitHubApp: GitHub refused or failed to mint an installation token.
const CodeGitHubApp = "github_app_error"

// defaultGitHubAPI is where tokens are minted without api_base_url.
const defaultGitHubAPI = "https://api.github.com"

// githubMintTimeout bounds one call to GitHub (below the handler's time).
const githubMintTimeout = 15 * time.Second

// GitHubAppRequest is the github_app part of a git-token PUT.
type GitHubAppRequest struct {
	AppID          int64 `json:"app_id"`
	InstallationID int64 `json:"installation_id"`
	// PrivateKey is the app's private key (PEM, as GitHub hands it out):
	// the secret, sealed before it is committed and never shown again.
	PrivateKey string `json:"private_key"`
}

// GitHubAppView is what the API shows of an app credential: ids only.
type GitHubAppView struct {
	AppID          int64 `json:"app_id"`
	InstallationID int64 `json:"installation_id"`
}

// checkGitHubApp checks an app credential's request: the key must parse as
// ghinstallation will parse it, the base URL be an http(s) URL.
func (r *CredentialRequest) checkGitHubApp(ref fsm.CredentialRef) error {
	a := r.GitHubApp
	switch {
	case ref.Kind != fsm.CredentialGitToken:
		return &fieldError{"github_app", "goes with git tokens only"}
	case r.Secret != "":
		return &fieldError{"secret", "and github_app exclude each other (the app's key goes in github_app.private_key)"}
	case a.AppID <= 0:
		return &fieldError{"github_app.app_id", "must be a positive number"}
	case a.InstallationID <= 0:
		return &fieldError{"github_app.installation_id", "must be a positive number"}
	case a.PrivateKey == "":
		return &fieldError{"github_app.private_key", "is required"}
	case len(a.PrivateKey) > fsm.MaxCredentialSecret:
		return &fieldError{"github_app.private_key", fmt.Sprintf("is %d bytes, at most %d", len(a.PrivateKey), fsm.MaxCredentialSecret)}
	}
	// The parser's error is not repeated: it could quote the key.
	if _, err := ghinstallation.NewAppsTransport(http.DefaultTransport, a.AppID, []byte(a.PrivateKey)); err != nil {
		return &fieldError{"github_app.private_key", "is not a PEM-encoded RSA private key (PKCS#1 or PKCS#8, as GitHub issues it)"}
	}
	return checkAPIBaseURL(r.APIBaseURL)
}

func checkAPIBaseURL(raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" ||
		len(raw) > 256 || !validHeaderText(raw) {
		return &fieldError{"api_base_url", fmt.Sprintf("%q is not an http(s) URL without credentials, query or fragment, at most 256 characters (e.g. https://ghe.example.com/api/v3)", raw)}
	}
	return nil
}

// githubApps holds the minting Transports of the projects' app credentials.
// The zero value is ready.
type githubApps struct {
	mu        sync.Mutex
	byProject map[string]*appMinter
	base      http.RoundTripper // shared by every Transport (connection reuse)
}

// appMinter is one project's Transport and the credential version it was
// made from.
type appMinter struct {
	version string
	// mu pairs a token with its expiry: ghinstallation's Expiry reads the
	// token a concurrent Token may be replacing.
	mu sync.Mutex
	tr *ghinstallation.Transport
}

// credentialVersion changes whenever a credential is set again (every
// seal draws a new nonce) or its app metadata changes.
func credentialVersion(cr fsm.Credential) string {
	return fmt.Sprintf("%s/%s/%d/%d/%s", cr.KeyID, hex.EncodeToString(cr.Nonce), cr.GitHubApp.AppID, cr.GitHubApp.InstallationID, cr.GitHubApp.APIBaseURL)
}

// minter returns the project's Transport for cr, opening the key (with
// open) only when there is none for this version of the credential.
func (g *githubApps) minter(project string, cr fsm.Credential, open func() (string, error)) (*appMinter, error) {
	v := credentialVersion(cr)
	g.mu.Lock()
	defer g.mu.Unlock()
	if m := g.byProject[project]; m != nil && m.version == v {
		return m, nil
	}
	key, err := open()
	if err != nil {
		return nil, err
	}
	if g.base == nil {
		g.base = http.DefaultTransport.(*http.Transport).Clone()
	}
	tr, err := ghinstallation.New(g.base, cr.GitHubApp.AppID, cr.GitHubApp.InstallationID, []byte(key))
	if err != nil {
		return nil, errStoredKey // never the parser's words: they could quote the key
	}
	tr.BaseURL = cmpOr(cr.GitHubApp.APIBaseURL, defaultGitHubAPI)
	tr.Client = &http.Client{Transport: g.base, Timeout: githubMintTimeout}
	m := &appMinter{version: v, tr: tr}
	if g.byProject == nil {
		g.byProject = map[string]*appMinter{}
	}
	g.byProject[project] = m
	return m, nil
}

// errStoredKey: a stored app key that does not parse (the PUT checked it,
// so the record is damaged).
var errStoredKey = errors.New("the stored private key does not parse")

// forget drops a project's Transport (its credential is gone).
func (g *githubApps) forget(project string) {
	g.mu.Lock()
	delete(g.byProject, project)
	g.mu.Unlock()
}

// token returns a valid installation token and GitHub's expiry of it,
// minting one only when the cached one is within a minute of expiring.
func (m *appMinter) token(ctx context.Context) (string, time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	tok, err := m.tr.Token(ctx)
	if err != nil {
		return "", time.Time{}, describeMintError(err)
	}
	exp, _, err := m.tr.Expiry()
	if err != nil || tok == "" || exp.IsZero() {
		return "", time.Time{}, errors.New("GitHub answered without a token or its expiry")
	}
	return tok, exp, nil
}

// describeMintError says what GitHub answered (its status and message),
// and closes the answer ghinstallation leaves open on a non-2xx status.
func describeMintError(err error) error {
	var he *ghinstallation.HTTPError
	if !errors.As(err, &he) || he.Response == nil {
		return err
	}
	defer he.Response.Body.Close()
	var body struct {
		Message string `json:"message"`
	}
	b, _ := io.ReadAll(io.LimitReader(he.Response.Body, 4<<10))
	msg := he.Response.Status
	if json.Unmarshal(b, &body) == nil && body.Message != "" {
		msg += ": " + printable(body.Message, 200)
	}
	return fmt.Errorf("GitHub answered %s", msg)
}

// printable keeps at most n printable ASCII characters of s.
func printable(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' {
			return ' '
		}
		return r
	}, s)
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// gitHubAppToken answers the git-token route for an app credential.
func (s *Server) gitHubAppToken(c *gin.Context, project string, cr fsm.Credential) {
	var openErr error
	m, err := s.githubApps.minter(project, cr, func() (string, error) {
		key, err := s.openCredential(cr)
		openErr = err
		return key, err
	})
	if openErr != nil {
		s.abortOpen(c, cr, openErr)
		return
	}
	if errors.Is(err, errStoredKey) {
		abortError(c, http.StatusInternalServerError, CodeInternal, fmt.Sprintf("credential git-token project/%s: %v; set it again", project, err))
		return
	}
	var tok string
	var exp time.Time
	if err == nil {
		tok, exp, err = m.token(c.Request.Context())
	}
	if err != nil {
		abortError(c, http.StatusBadGateway, CodeGitHubApp, fmt.Sprintf("minting a GitHub App installation token for project %s (app %d, installation %d at %s) failed: %v",
			project, cr.GitHubApp.AppID, cr.GitHubApp.InstallationID, cmpOr(cr.GitHubApp.APIBaseURL, defaultGitHubAPI), err))
		return
	}
	out := gin.H{"token": tok, "expiresAt": exp.UTC().Format(time.RFC3339)}
	if cr.Host != "" {
		out["host"] = cr.Host
	}
	if cr.Username != "" {
		out["username"] = cr.Username
	}
	c.JSON(http.StatusOK, out)
}
