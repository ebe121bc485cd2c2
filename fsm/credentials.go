package fsm

import (
	"fmt"
	"time"
)

// Credentials: per-project git tokens and per-user or per-project coding
// agent keys, stored sealed. The leader seals a secret under the cluster
// keyring (package keyring, outside the FSM) before it commits; commands,
// the state and snapshots carry only ciphertext, its nonce and the id of
// the key, so the FSM stays pure and the raft log never holds a secret.
//
// Both commands carry IgnoreUnknown on the wire: an older binary skips
// them (it could not hand credentials out anyway). 25 is CmdImportTask.
const (
	CmdSetCredential    CommandType = 26
	CmdDeleteCredential CommandType = 27
)

// CredentialKind is what a credential is for.
type CredentialKind string

const (
	// CredentialGitToken is a project's git credential (handed out at
	// POST /api/workspaces/{id}/git-token).
	CredentialGitToken CredentialKind = "git-token"
	// CredentialAgentKey is a coding agent's API key for one agent type
	// (handed out at POST /api/workspaces/{id}/agent-key).
	CredentialAgentKey CredentialKind = "agent-key"
)

// CredentialScope is whom a credential belongs to.
type CredentialScope string

const (
	CredentialProject CredentialScope = "project"
	CredentialUser    CredentialScope = "user"
)

// Bounds of a credential record.
const (
	maxCredentialID   = 128
	maxCredentialMeta = 256
	// MaxCredentialSecret bounds a secret (an OAuth credential file is a
	// few KiB).
	MaxCredentialSecret = 16 << 10
	credentialNonceLen  = 12
	credentialTagLen    = 16
)

// CredentialRef names a credential: a git token of a project, or the key
// of one agent type for a user or a project.
type CredentialRef struct {
	Kind      CredentialKind  `json:"kind"`
	Scope     CredentialScope `json:"scope"`
	ScopeID   string          `json:"scope_id"`
	AgentType string          `json:"agent_type,omitempty"`
}

func (r CredentialRef) key() string {
	return string(r.Kind) + "\x00" + string(r.Scope) + "\x00" + r.ScopeID + "\x00" + r.AgentType
}

// Validate checks the combination: git tokens belong to projects and name
// no agent type; agent keys belong to a user or a project and name one.
func (r CredentialRef) Validate() error {
	switch r.Kind {
	case CredentialGitToken:
		if r.Scope != CredentialProject {
			return fmt.Errorf("a git-token belongs to a project, not a %q", r.Scope)
		}
		if r.AgentType != "" {
			return fmt.Errorf("a git-token names no agent type")
		}
	case CredentialAgentKey:
		if r.Scope != CredentialProject && r.Scope != CredentialUser {
			return fmt.Errorf("an agent-key belongs to a user or a project, not a %q", r.Scope)
		}
		if err := checkCredentialField("agent type", r.AgentType, maxCredentialID); err != nil {
			return err
		}
	default:
		return fmt.Errorf("credential kind %q is not git-token or agent-key", r.Kind)
	}
	return checkCredentialField(string(r.Scope)+" id", r.ScopeID, maxCredentialID)
}

// checkCredentialField wants 1..max printable ASCII characters.
func checkCredentialField(what, v string, max int) error {
	if v == "" || len(v) > max {
		return fmt.Errorf("%s must be 1–%d characters", what, max)
	}
	for i := 0; i < len(v); i++ {
		if v[i] <= ' ' || v[i] > '~' {
			return fmt.Errorf("%s must be printable ASCII without spaces", what)
		}
	}
	return nil
}

// AAD is the additional data a credential's secret is sealed with: it
// binds the ciphertext to its name, so that it cannot be moved to another.
func (r CredentialRef) AAD() []byte {
	return []byte("tdf credential v1\x00" + r.key())
}

// Credential is a stored credential: its name, what the agent is told
// about it, and the sealed secret. Records are replaced, never changed in
// place.
type Credential struct {
	CredentialRef
	// SecretKind is how the agent is to use an agent key ("api-key",
	// "oauth-token"); "" means "api-key".
	SecretKind string `json:"secret_kind,omitempty"`
	// Username and Host go with a git token to the agent's credential
	// helper ("" lets the agent choose: x-access-token at github.com).
	Username string `json:"username,omitempty"`
	Host     string `json:"host,omitempty"`
	// GitHubApp, set on a git token only, makes it a GitHub App
	// installation: the sealed secret is then the app's private key (PEM),
	// and the leader mints a short-lived installation token from it for
	// each hand-out. Zero for a static token.
	GitHubApp GitHubApp `json:"github_app,omitzero"`
	// KeyID, Nonce and Ciphertext are the secret sealed with AES-256-GCM.
	KeyID      string `json:"key_id"`
	Nonce      []byte `json:"nonce"`
	Ciphertext []byte `json:"ciphertext"`
	// Fingerprint tells two secrets apart without showing either (a
	// keyed hash the leader computed).
	Fingerprint string    `json:"fingerprint,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// GitHubApp names the GitHub App installation a git token is minted for.
// It is metadata: the app's private key is the credential's sealed secret.
type GitHubApp struct {
	AppID          int64 `json:"app_id"`
	InstallationID int64 `json:"installation_id"`
	// APIBaseURL is the GitHub API to mint at ("" is https://api.github.com;
	// GitHub Enterprise Server: https://HOST/api/v3).
	APIBaseURL string `json:"api_base_url,omitempty"`
}

// IsGitHubApp tells a GitHub App installation from a static secret.
func (c *Credential) IsGitHubApp() bool { return c.GitHubApp != GitHubApp{} }

func (a GitHubApp) validate(kind CredentialKind) error {
	switch {
	case a == GitHubApp{}:
		return nil
	case kind != CredentialGitToken:
		return fmt.Errorf("a GitHub App goes with a git-token only, not a %q", kind)
	case a.AppID <= 0 || a.InstallationID <= 0:
		return fmt.Errorf("a GitHub App needs a positive app id and installation id, not %d and %d", a.AppID, a.InstallationID)
	case a.APIBaseURL != "":
		return checkCredentialField("api base url", a.APIBaseURL, maxCredentialMeta)
	}
	return nil
}

func (c *Credential) validate() error {
	if err := c.CredentialRef.Validate(); err != nil {
		return err
	}
	if err := c.GitHubApp.validate(c.Kind); err != nil {
		return err
	}
	for _, f := range []struct{ what, v string }{{"secret kind", c.SecretKind}, {"username", c.Username}, {"host", c.Host}, {"fingerprint", c.Fingerprint}} {
		if f.v != "" {
			if err := checkCredentialField(f.what, f.v, maxCredentialMeta); err != nil {
				return err
			}
		}
	}
	switch {
	case checkCredentialField("key id", c.KeyID, maxCredentialID) != nil:
		return fmt.Errorf("the sealing key id is missing or malformed")
	case len(c.Nonce) != credentialNonceLen:
		return fmt.Errorf("the nonce is %d bytes, want %d", len(c.Nonce), credentialNonceLen)
	case len(c.Ciphertext) <= credentialTagLen || len(c.Ciphertext) > MaxCredentialSecret+credentialTagLen:
		return fmt.Errorf("the ciphertext is %d bytes, want %d–%d", len(c.Ciphertext), credentialTagLen+1, MaxCredentialSecret+credentialTagLen)
	}
	return nil
}

// SetCredential creates or replaces a credential. At is the leader's time.
type SetCredential struct {
	Credential Credential `json:"credential"`
	At         time.Time  `json:"at"`
}

// DeleteCredential removes a credential; a missing one is ErrNotFound.
type DeleteCredential struct {
	Ref CredentialRef `json:"ref"`
}

// Type implements Command.
func (SetCredential) Type() CommandType { return CmdSetCredential | IgnoreUnknown }

// Type implements Command.
func (DeleteCredential) Type() CommandType { return CmdDeleteCredential | IgnoreUnknown }

func (f *FSM) applySetCredential(c SetCredential, res *Result) {
	cr := c.Credential
	if err := cr.validate(); err != nil {
		res.Err = fmt.Errorf("%w: credential: %v", ErrInvalid, err)
		return
	}
	cr.CreatedAt, cr.UpdatedAt = c.At, c.At
	if old, ok := f.st.creds.Get(&Credential{CredentialRef: cr.CredentialRef}); ok {
		cr.CreatedAt = old.CreatedAt
	}
	f.st.creds.ReplaceOrInsert(&cr)
}

func (f *FSM) applyDeleteCredential(c DeleteCredential, res *Result) {
	if _, ok := f.st.creds.Delete(&Credential{CredentialRef: c.Ref}); !ok {
		res.Err = fmt.Errorf("%w: credential %s %s/%s%s", ErrNotFound, c.Ref.Kind, c.Ref.Scope, c.Ref.ScopeID, agentSuffix(c.Ref.AgentType))
	}
}

func agentSuffix(a string) string {
	if a == "" {
		return ""
	}
	return " for " + a
}

func lessCredential(a, b *Credential) bool { return a.key() < b.key() }

// Credential returns the stored credential of ref.
func (f *FSM) Credential(ref CredentialRef) (Credential, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	c, ok := f.st.creds.Get(&Credential{CredentialRef: ref})
	if !ok {
		return Credential{}, false
	}
	return *c, true
}

// Credentials returns every stored credential, sorted by name. Their
// secrets are sealed; callers show metadata only.
func (f *FSM) Credentials() []Credential {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]Credential, 0, f.st.creds.Len())
	f.st.creds.Ascend(func(c *Credential) bool { out = append(out, *c); return true })
	return out
}

// credentialList is the snapshot's form of the credentials.
func (s *state) credentialList() []*Credential {
	if s.creds.Len() == 0 {
		return nil
	}
	out := make([]*Credential, 0, s.creds.Len())
	s.creds.Ascend(func(c *Credential) bool { out = append(out, c); return true })
	return out
}

func (s *state) loadCredentials(list []*Credential) error {
	for _, c := range list {
		if err := c.validate(); err != nil {
			return fmt.Errorf("credential %q: %v", c.key(), err)
		}
		s.creds.ReplaceOrInsert(c)
	}
	return nil
}
