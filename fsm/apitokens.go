package fsm

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"time"
)

// API tokens: the bearer tokens clients present to the HTTP API, kept
// replicated so that every node accepts and refuses the same ones, and a
// revocation holds on every node as soon as it has applied the entry. Only
// the SHA-256 of a token is stored: the raft log, the state and snapshots
// never hold one that could be presented.
//
// Command types 29 and 30 (API tokens). Both carry IgnoreUnknown on the
// wire: an older binary that skips them knows no such token at all, so
// skipping a revocation cannot keep a token alive there.
const (
	CmdCreateAPIToken CommandType = 29
	CmdRevokeAPIToken CommandType = 30
)

// Scopes of API tokens.
const (
	TokenScopeAdmin = "admin"
	TokenScopeUser  = "user"
)

// Bounds of the token table.
const (
	// MaxLiveAPITokens bounds the tokens that are neither revoked nor
	// expired; MaxAPITokens every record (revoked ones are kept for list).
	MaxLiveAPITokens = 1000
	MaxAPITokens     = 10000
	maxTokenProjects = 100
)

// APIToken is one API token's record; the token itself is not kept.
type APIToken struct {
	ID string `json:"id"`
	// Hash is the hex SHA-256 of the token.
	Hash  string `json:"hash"`
	Scope string `json:"scope"`
	// Subject is the user a user token acts as, or the name of an admin.
	Subject string `json:"subject"`
	// Projects, if any, are the only projects a user token may submit to
	// and read.
	Projects  []string  `json:"projects,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt is zero for a token that does not expire.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	// Bootstrap marks the admin token the first leader made.
	Bootstrap bool `json:"bootstrap,omitempty"`
}

// HashAPIToken is what the table keeps of a token.
func HashAPIToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// LiveAt reports whether the token may be used at now.
func (t *APIToken) LiveAt(now time.Time) bool {
	return t.RevokedAt.IsZero() && (t.ExpiresAt.IsZero() || now.Before(t.ExpiresAt))
}

func (t *APIToken) validate() error {
	switch {
	case t.ID == "" || len(t.ID) > maxCredentialID:
		return fmt.Errorf("%w: token id must be 1–%d characters", ErrInvalid, maxCredentialID)
	case len(t.Hash) != 2*sha256.Size:
		return fmt.Errorf("%w: token %s: hash is not a hex SHA-256", ErrInvalid, t.ID)
	case t.Scope != TokenScopeAdmin && t.Scope != TokenScopeUser:
		return fmt.Errorf("%w: token %s: scope %q is not admin or user", ErrInvalid, t.ID, t.Scope)
	case t.Subject == "" || len(t.Subject) > maxCredentialID:
		return fmt.Errorf("%w: token %s: subject must be 1–%d characters", ErrInvalid, t.ID, maxCredentialID)
	case len(t.Projects) > maxTokenProjects:
		return fmt.Errorf("%w: token %s: more than %d projects", ErrInvalid, t.ID, maxTokenProjects)
	case t.Bootstrap && t.Scope != TokenScopeAdmin:
		return fmt.Errorf("%w: the bootstrap token must be an admin token", ErrInvalid)
	}
	return nil
}

// CreateAPIToken adds a token. A bootstrap token is added only if the
// cluster never had one: the first leader's; another leader racing it gets
// ErrExists (or Unchanged for its own retry).
type CreateAPIToken struct {
	Token APIToken `json:"token"`
}

// Type implements Command.
func (CreateAPIToken) Type() CommandType { return CmdCreateAPIToken | IgnoreUnknown }

// RevokeAPIToken revokes a token by id; revoking twice is a no-op.
type RevokeAPIToken struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
}

// Type implements Command.
func (RevokeAPIToken) Type() CommandType { return CmdRevokeAPIToken | IgnoreUnknown }

func (f *FSM) applyCreateAPIToken(c CreateAPIToken, res *Result) {
	t := c.Token
	if err := t.validate(); err != nil {
		res.Err = err
		return
	}
	live := 0
	for _, x := range f.st.apiTokens {
		switch {
		case x.ID == t.ID && x.Hash == t.Hash:
			res.Unchanged = true
			return
		case x.ID == t.ID || x.Hash == t.Hash:
			res.Err = fmt.Errorf("%w: token %s", ErrExists, t.ID)
			return
		case t.Bootstrap && x.Bootstrap:
			res.Err = fmt.Errorf("%w: the cluster already has its bootstrap token", ErrExists)
			return
		}
		if x.LiveAt(t.CreatedAt) {
			live++
		}
	}
	if live >= MaxLiveAPITokens || len(f.st.apiTokens) >= MaxAPITokens {
		res.Err = fmt.Errorf("%w: the cluster holds %d live tokens (at most %d); revoke some first", ErrInvalid, live, MaxLiveAPITokens)
		return
	}
	t.Projects = append([]string(nil), t.Projects...)
	// Replaced, never changed in place: clones share the slice.
	f.st.apiTokens = append(append([]*APIToken(nil), f.st.apiTokens...), &t)
}

func (f *FSM) applyRevokeAPIToken(c RevokeAPIToken, res *Result) {
	for i, x := range f.st.apiTokens {
		if x.ID != c.ID {
			continue
		}
		if !x.RevokedAt.IsZero() {
			res.Unchanged = true
			return
		}
		revoked := *x
		revoked.RevokedAt = c.At
		list := append([]*APIToken(nil), f.st.apiTokens...)
		list[i] = &revoked
		f.st.apiTokens = list
		return
	}
	res.Err = fmt.Errorf("%w: token %s", ErrNotFound, c.ID)
}

// LookupAPIToken finds the live token whose hash is that of the presented
// token. Every record is compared in constant time, so the answer's timing
// tells nothing of which (if any) matched.
func (f *FSM) LookupAPIToken(token string, now time.Time) (APIToken, bool) {
	h := []byte(HashAPIToken(token))
	f.mu.RLock()
	list := f.st.apiTokens
	f.mu.RUnlock()
	var found *APIToken
	for _, x := range list {
		if subtle.ConstantTimeCompare(h, []byte(x.Hash)) == 1 {
			found = x
		}
	}
	if found == nil || !found.LiveAt(now) {
		return APIToken{}, false
	}
	return *found, true
}

// APITokens lists every token record (revoked ones too), oldest first.
func (f *FSM) APITokens() []APIToken {
	f.mu.RLock()
	list := f.st.apiTokens
	f.mu.RUnlock()
	out := make([]APIToken, len(list))
	for i, x := range list {
		out[i] = *x
	}
	return out
}

// HasBootstrapToken reports whether the cluster's first admin token was
// made (it may since have been revoked).
func (f *FSM) HasBootstrapToken() bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, x := range f.st.apiTokens {
		if x.Bootstrap {
			return true
		}
	}
	return false
}

func (s *state) loadAPITokens(list []*APIToken) error {
	for _, t := range list {
		if err := t.validate(); err != nil {
			return err
		}
	}
	s.apiTokens = list
	return nil
}

// APITokenLive reports whether the token with this id exists and may be
// used at now.
func (f *FSM) APITokenLive(id string, now time.Time) bool {
	f.mu.RLock()
	list := f.st.apiTokens
	f.mu.RUnlock()
	for _, x := range list {
		if x.ID == id {
			return x.LiveAt(now)
		}
	}
	return false
}
