package api

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/keyring"
)

// Credentials (admin): per-project git tokens and per-user or per-project
// coding agent keys, set, listed and deleted under /v1/credentials.
//
//	PUT    /v1/credentials/git-token/project/{project}           {"secret", "username"?, "host"?}
//	       or a GitHub App installation (githubapp.go):  {"github_app": {"app_id", "installation_id", "private_key"}, "api_base_url"?, "username"?, "host"?}
//	PUT    /v1/credentials/agent-key/{user|project}/{id}/{agent}  {"secret", "credential_kind"?}
//	DELETE the same paths
//	GET    /v1/credentials?kind=&scope=&id=                       metadata only
//
// The leader seals the secret with the cluster keyring (package keyring)
// before it commits, so the raft log, snapshots and every answer carry
// ciphertext or metadata only; the secret is never logged. The agents get
// it through agentroutes.go.

// CredentialRequest is the body of a credential PUT.
type CredentialRequest struct {
	Secret string `json:"secret,omitempty"`
	// CredentialKind tells the agent how to use an agent key: "api-key"
	// (the default) or "oauth-token".
	CredentialKind string `json:"credential_kind,omitempty"`
	// Username and Host go with a git token to the agent's git credential
	// helper (default: x-access-token at github.com).
	Username string `json:"username,omitempty"`
	Host     string `json:"host,omitempty"`
	// GitHubApp makes a git token a GitHub App installation's, minted for
	// each hand-out, instead of Secret; APIBaseURL is the GitHub API to
	// mint at (default https://api.github.com).
	GitHubApp  *GitHubAppRequest `json:"github_app,omitempty"`
	APIBaseURL string            `json:"api_base_url,omitempty"`
}

// CredentialView is what the API shows of a credential: never the secret.
type CredentialView struct {
	Kind           fsm.CredentialKind  `json:"kind"`
	Scope          fsm.CredentialScope `json:"scope"`
	ID             string              `json:"id"`
	AgentType      string              `json:"agent_type,omitempty"`
	CredentialKind string              `json:"credential_kind,omitempty"`
	Username       string              `json:"username,omitempty"`
	Host           string              `json:"host,omitempty"`
	GitHubApp      *GitHubAppView      `json:"github_app,omitempty"`
	APIBaseURL     string              `json:"api_base_url,omitempty"`
	KeyID          string              `json:"key_id"`
	Fingerprint    string              `json:"fingerprint"`
	CreatedAt      time.Time           `json:"created_at"`
	UpdatedAt      time.Time           `json:"updated_at"`
}

func credentialView(c fsm.Credential) CredentialView {
	v := CredentialView{Kind: c.Kind, Scope: c.Scope, ID: c.ScopeID, AgentType: c.AgentType,
		CredentialKind: c.SecretKind, Username: c.Username, Host: c.Host, KeyID: c.KeyID,
		Fingerprint: c.Fingerprint, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt}
	if c.IsGitHubApp() {
		v.GitHubApp = &GitHubAppView{AppID: c.GitHubApp.AppID, InstallationID: c.GitHubApp.InstallationID}
		v.APIBaseURL = c.GitHubApp.APIBaseURL
	}
	return v
}

// CodeNoKeyring: the node that must seal or open a credential has no
// keyring.
const CodeNoKeyring = "no_keyring"

// credentialKinds are the agent key kinds the real agent knows.
var credentialKinds = map[string]bool{"api-key": true, "oauth-token": true}

func (s *Server) credentialRoutes(v1 *gin.RouterGroup) {
	v1.GET("/credentials", s.listCredentials)
	for _, p := range []string{"/credentials/:kind/:scope/:id", "/credentials/:kind/:scope/:id/:agent"} {
		v1.PUT(p, s.onLeader, s.setCredential)
		v1.DELETE(p, s.onLeader, s.deleteCredential)
	}
}

// credentialRef reads the credential named by the path.
func credentialRef(c *gin.Context) (fsm.CredentialRef, bool) {
	ref := fsm.CredentialRef{Kind: fsm.CredentialKind(c.Param("kind")), Scope: fsm.CredentialScope(c.Param("scope")),
		ScopeID: c.Param("id"), AgentType: c.Param("agent")}
	if err := ref.Validate(); err != nil {
		abortError(c, http.StatusBadRequest, CodeInvalidField, err.Error()+" (paths: /v1/credentials/git-token/project/{project}, /v1/credentials/agent-key/{user|project}/{id}/{agent type})")
		return ref, false
	}
	if !validID(ref.ScopeID) {
		abortError(c, http.StatusBadRequest, CodeInvalidID, fmt.Sprintf("%s id %q must be 1–%d characters of letters, digits and _.:- starting with a letter or digit", ref.Scope, ref.ScopeID, maxIDLen))
		return ref, false
	}
	return ref, true
}

func (s *Server) noKeyring(c *gin.Context) {
	abortError(c, http.StatusServiceUnavailable, CodeNoKeyring, fmt.Sprintf("node %s has no keyring, so it can neither seal nor open credentials: start every node with the same --keyring-file (tdf keyring init; see docs/security.md)", s.cfg.Node.ID()))
}

func (r *CredentialRequest) check(ref fsm.CredentialRef) error {
	if err := r.checkSecret(ref); err != nil {
		return err
	}
	switch {
	case ref.Kind == fsm.CredentialAgentKey && (r.Username != "" || r.Host != ""):
		return &fieldError{"username", "and host go with git tokens only"}
	case ref.Kind == fsm.CredentialGitToken && r.CredentialKind != "":
		return &fieldError{"credential_kind", "goes with agent keys only"}
	case r.CredentialKind != "" && !credentialKinds[r.CredentialKind]:
		return &fieldError{"credential_kind", fmt.Sprintf("%q is not api-key or oauth-token", r.CredentialKind)}
	}
	for _, f := range []struct{ name, v string }{{"username", r.Username}, {"host", r.Host}} {
		if f.v != "" && !validHeaderText(f.v) {
			return &fieldError{f.name, "must be printable ASCII without spaces"}
		}
	}
	return nil
}

// checkSecret checks the static secret, or the GitHub App in its place.
func (r *CredentialRequest) checkSecret(ref fsm.CredentialRef) error {
	if r.GitHubApp != nil {
		return r.checkGitHubApp(ref)
	}
	switch {
	case r.APIBaseURL != "":
		return &fieldError{"api_base_url", "goes with github_app only"}
	case r.Secret == "":
		return &fieldError{"secret", "is required (for a git token: or github_app)"}
	case len(r.Secret) > fsm.MaxCredentialSecret:
		return &fieldError{"secret", fmt.Sprintf("is %d bytes, at most %d", len(r.Secret), fsm.MaxCredentialSecret)}
	case !utf8.ValidString(r.Secret) || strings.ContainsRune(r.Secret, 0):
		return &fieldError{"secret", "must be UTF-8 text without NUL"}
	}
	return nil
}

// secretAndApp is what a request seals, and the app metadata beside it.
func (r *CredentialRequest) secretAndApp() (string, fsm.GitHubApp) {
	if r.GitHubApp == nil {
		return r.Secret, fsm.GitHubApp{}
	}
	return r.GitHubApp.PrivateKey, fsm.GitHubApp{AppID: r.GitHubApp.AppID, InstallationID: r.GitHubApp.InstallationID, APIBaseURL: r.APIBaseURL}
}

func (s *Server) setCredential(c *gin.Context) {
	ref, ok := credentialRef(c)
	if !ok {
		return
	}
	var req CredentialRequest
	if !s.decode(c, &req) {
		return
	}
	if err := req.check(ref); err != nil {
		abortError(c, http.StatusBadRequest, CodeInvalidField, err.Error())
		return
	}
	kr := s.cfg.Keyring
	if kr.Len() == 0 {
		s.noKeyring(c)
		return
	}
	secret, app := req.secretAndApp()
	sealed, err := kr.Seal([]byte(secret), ref.AAD())
	if err != nil {
		abortError(c, http.StatusInternalServerError, CodeInternal, "sealing the credential failed")
		return
	}
	_, existed := s.cfg.Node.FSM().Credential(ref)
	cred := fsm.Credential{CredentialRef: ref, SecretKind: req.CredentialKind, Username: req.Username, Host: req.Host, GitHubApp: app,
		KeyID: sealed.KeyID, Nonce: sealed.Nonce, Ciphertext: sealed.Ciphertext, Fingerprint: kr.Fingerprint([]byte(secret))}
	if _, ok := s.commit(c, fsm.SetCredential{Credential: cred, At: s.now()}); !ok {
		return
	}
	stored, _ := s.cfg.Node.FSM().Credential(ref)
	status := http.StatusCreated
	if existed {
		status = http.StatusOK
	}
	c.JSON(status, gin.H{"credential": credentialView(stored)})
}

func (s *Server) deleteCredential(c *gin.Context) {
	ref, ok := credentialRef(c)
	if !ok {
		return
	}
	if _, ok := s.commit(c, fsm.DeleteCredential{Ref: ref}); ok {
		c.JSON(http.StatusOK, gin.H{"deleted": CredentialView{Kind: ref.Kind, Scope: ref.Scope, ID: ref.ScopeID, AgentType: ref.AgentType}})
	}
}

func (s *Server) listCredentials(c *gin.Context) {
	kind, scope, id := c.Query("kind"), c.Query("scope"), c.Query("id")
	out := []CredentialView{}
	for _, cr := range s.cfg.Node.FSM().Credentials() {
		if (kind == "" || string(cr.Kind) == kind) && (scope == "" || string(cr.Scope) == scope) && (id == "" || cr.ScopeID == id) {
			out = append(out, credentialView(cr))
		}
	}
	c.JSON(http.StatusOK, gin.H{"credentials": out, "keyring": s.cfg.Keyring.Len() > 0})
}

// openCredential decrypts a stored credential on this node.
func (s *Server) openCredential(cr fsm.Credential) (string, error) {
	b, err := s.cfg.Keyring.Open(keyring.Sealed{KeyID: cr.KeyID, Nonce: cr.Nonce, Ciphertext: cr.Ciphertext}, cr.AAD())
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// abortOpen answers a credential that cannot be opened here.
func (s *Server) abortOpen(c *gin.Context, cr fsm.Credential, err error) {
	if errors.Is(err, keyring.ErrNoKeyring) {
		s.noKeyring(c)
		return
	}
	// Never the secret: which credential and which key.
	abortError(c, http.StatusInternalServerError, CodeInternal, fmt.Sprintf("credential %s %s/%s cannot be opened with node %s's keyring (key %s): %v; every node needs the same keyring file",
		cr.Kind, cr.Scope, cr.ScopeID, s.cfg.Node.ID(), cr.KeyID, errorKind(err)))
}

func errorKind(err error) string {
	switch {
	case errors.Is(err, keyring.ErrUnknownKey):
		return "the key is not in this keyring"
	case errors.Is(err, keyring.ErrOpen):
		return "the ciphertext does not authenticate"
	}
	return "unknown error"
}
