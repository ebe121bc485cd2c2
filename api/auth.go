package api

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// Scope is what an API token may do.
type Scope string

const (
	// ScopeAdmin sees every task and alone may use the cluster and
	// operations endpoints.
	ScopeAdmin Scope = "admin"
	// ScopeUser submits tasks and sees, cancels and follows only its own.
	ScopeUser Scope = "user"
	// ScopeMember is a cluster member registering its own addresses with
	// a member token (tokens.MemberToken): POST /v1/cluster/join only.
	ScopeMember Scope = "member"
)

// memberRoute is the one route a member token may call.
const memberRoute = "POST /v1/cluster/join"

// Principal is the authenticated caller of one request.
type Principal struct {
	Subject string `json:"subject"`
	Scope   Scope  `json:"scope"`
	// Projects, if any, are the only projects a user token may submit to
	// and read (replicated tokens only; see apitokens.go).
	Projects []string `json:"projects,omitempty"`
	// TokenID names the replicated token ("" for one from --tokens-file),
	// so that a session cookie dies with a revoked token.
	TokenID string `json:"token_id,omitempty"`
}

// IsAdmin reports whether the caller may see everything.
func (p Principal) IsAdmin() bool { return p.Scope == ScopeAdmin }

// MayUseProject reports whether the caller may submit to or read the
// project.
func (p Principal) MayUseProject(id string) bool {
	return p.IsAdmin() || len(p.Projects) == 0 || slices.Contains(p.Projects, id)
}

// TokenEntry is one configured API token.
type TokenEntry struct {
	Token   string `json:"token"`
	Scope   Scope  `json:"scope"`
	Subject string `json:"subject"`
}

// minTokenLen keeps guessable tokens out of the configuration.
const minTokenLen = 16

// Tokens verifies API bearer tokens. Only SHA-256 digests of the tokens
// are kept: comparing fixed-length digests with subtle.ConstantTimeCompare
// leaks neither content nor length through timing. Every entry is compared
// on every lookup, so the position of a match does not show either.
type Tokens struct {
	entries []tokenDigest
	// joinToken is the first admin token, kept for this node's own calls
	// to other members' admin endpoints (registering through join).
	joinToken string
}

type tokenDigest struct {
	sum [sha256.Size]byte
	who Principal
}

// NewTokens checks the entries (scope, subject, length, no duplicates) and
// keeps their digests.
func NewTokens(entries []TokenEntry) (*Tokens, error) {
	t := &Tokens{}
	seen := map[[sha256.Size]byte]bool{}
	for i, e := range entries {
		if err := e.check(); err != nil {
			return nil, fmt.Errorf("token %d: %w", i+1, err)
		}
		sum := sha256.Sum256([]byte(e.Token))
		if seen[sum] {
			return nil, fmt.Errorf("token %d (subject %s): the same token is configured twice", i+1, e.Subject)
		}
		seen[sum] = true
		t.entries = append(t.entries, tokenDigest{sum: sum, who: Principal{Subject: e.Subject, Scope: e.Scope}})
		if e.Scope == ScopeAdmin && t.joinToken == "" {
			t.joinToken = e.Token
		}
	}
	return t, nil
}

// JoinToken is the admin token this node presents when it registers
// through another member's join endpoint ("" if none is configured).
func (t *Tokens) JoinToken() string {
	if t == nil {
		return ""
	}
	return t.joinToken
}

func (e TokenEntry) check() error {
	switch {
	case e.Scope != ScopeAdmin && e.Scope != ScopeUser:
		return fmt.Errorf("scope %q is not admin or user", e.Scope)
	case !validID(e.Subject):
		return fmt.Errorf("subject %q must be 1–%d characters of letters, digits and _.:- starting with a letter or digit", e.Subject, maxIDLen)
	case len(e.Token) < minTokenLen:
		return fmt.Errorf("token of %s is %d characters, at least %d required", e.Subject, len(e.Token), minTokenLen)
	case !validHeaderText(e.Token):
		return fmt.Errorf("token of %s must be printable ASCII without spaces", e.Subject)
	}
	return nil
}

// Len is the number of configured (not replicated) tokens.
func (t *Tokens) Len() int {
	if t == nil {
		return 0
	}
	return len(t.entries)
}

// Lookup returns the principal of a presented token.
func (t *Tokens) Lookup(token string) (Principal, bool) {
	if t == nil {
		return Principal{}, false
	}
	sum := sha256.Sum256([]byte(token))
	var who Principal
	found := 0
	for _, e := range t.entries {
		if subtle.ConstantTimeCompare(sum[:], e.sum[:]) == 1 {
			who, found = e.who, 1
		}
	}
	return who, found == 1
}

// ParseTokens reads a tokens file: either a JSON array of
// {"token","scope","subject"} objects, or lines "token scope subject"
// (blank lines and lines starting with # are skipped). Errors name the line.
func ParseTokens(r io.Reader) ([]TokenEntry, error) {
	data, err := io.ReadAll(io.LimitReader(r, 16<<20))
	if err != nil {
		return nil, err
	}
	if trimmed := strings.TrimSpace(string(data)); strings.HasPrefix(trimmed, "[") {
		var out []TokenEntry
		if err := decodeStrict([]byte(trimmed), &out); err != nil {
			return nil, fmt.Errorf("JSON tokens: %w", err)
		}
		for i, e := range out {
			if err := e.check(); err != nil {
				return nil, fmt.Errorf("JSON tokens: entry %d: %w", i+1, err)
			}
		}
		return out, nil
	}
	var out []TokenEntry
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		f := strings.Fields(text)
		if len(f) != 3 {
			return nil, fmt.Errorf("line %d: want \"token scope subject\", got %d fields", line, len(f))
		}
		e := TokenEntry{Token: f[0], Scope: Scope(f[1]), Subject: f[2]}
		if err := e.check(); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// LoadTokens reads the tokens file at path (if any) and then the
// environment value env (same formats; ';' also separates entries there),
// and builds the verifier. No entries at all means authentication is off:
// it returns nil.
func LoadTokens(path, env string) ([]TokenEntry, error) {
	var all []TokenEntry
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("tokens file: %w", err)
		}
		defer f.Close()
		es, err := ParseTokens(f)
		if err != nil {
			return nil, fmt.Errorf("tokens file %s: %w", path, err)
		}
		all = append(all, es...)
	}
	if strings.TrimSpace(env) != "" {
		if !strings.HasPrefix(strings.TrimSpace(env), "[") {
			env = strings.ReplaceAll(env, ";", "\n")
		}
		es, err := ParseTokens(strings.NewReader(env))
		if err != nil {
			return nil, fmt.Errorf("TDF_TOKENS: %w", err)
		}
		all = append(all, es...)
	}
	return all, nil
}

// access is who may call a route.
type access int

const (
	accessAdmin access = iota // the default: a route not listed below
	accessUser                // any valid token
	accessOpen                // no API token (health, the dashboard's files, agents' own JWTs)
)

// userRoutes are the task endpoints a user token may call; the handlers
// restrict them to the caller's own tasks.
var userRoutes = map[string]bool{
	"POST /v1/tasks":                true,
	"GET /v1/tasks":                 true,
	"GET /v1/tasks/:id":             true,
	"GET /v1/tasks/:id/messages":    true,
	"POST /v1/tasks/:id/cancel":     true,
	"POST /v1/tasks/:id/idle-reset": true,
	"POST /v1/tasks/:id/rerun":      true,
	"POST /v1/tasks/:id/prompt":     true,
	"GET /v1/events":                true,
	"POST /v1/session":              true,
	"GET /v1/whoami":                true,
	// Only the caller's own nodes (ops.go, agentreports.go).
	"GET /v1/nodes":     true,
	"GET /v1/nodes/:id": true,
}

var openRoutes = map[string]bool{
	"GET /healthz":               true,
	"HEAD /healthz":              true,
	"GET /readyz":                true,
	"GET /":                      true,
	"GET /ui":                    true,
	"GET /ui/*file":              true,
	"HEAD /ui/*file":             true,
	"GET /.well-known/jwks.json": true,
	// Sign-out only clears the event-stream cookie; it must work with a
	// token the API no longer accepts.
	"DELETE /v1/session": true,
}

// routeAccess classifies a matched route. Routes added later default to
// admin-only, so a new operations endpoint is never open by accident.
func routeAccess(method, route string) access {
	key := method + " " + route
	switch {
	case openRoutes[key] || isCallbackRoute(method, route):
		return accessOpen
	case userRoutes[key]:
		return accessUser
	}
	return accessAdmin
}

// isCallbackRoute reports the VM agents' callback routes, which carry the
// agents' own signed tokens (see callbacks.go, agentroutes.go) instead of
// API tokens: every route under /api/ (the agents' own paths, some of them
// GET or PUT) and tdf's /v1 callbacks.
func isCallbackRoute(method, route string) bool {
	if strings.HasPrefix(route, "/api/") {
		return true
	}
	if method != http.MethodPost {
		return false
	}
	return (strings.HasPrefix(route, "/v1/nodes/:id/") && !isNodeAdminRoute(route)) ||
		strings.HasPrefix(route, "/v1/workspaces/") || route == "/v1/tasks/:id/status"
}

const ctxPrincipal = "tdf.principal"

// authenticate resolves the caller and enforces the route's access. With
// authentication off (Config.Auth nil: --insecure-no-auth) every request
// passes as an anonymous admin.
func (s *Server) authenticate(c *gin.Context) {
	if s.cfg.Auth == nil {
		c.Next()
		return
	}
	route := c.FullPath()
	need := routeAccess(c.Request.Method, route)
	if need == accessOpen && route != "" {
		c.Next()
		return
	}
	who, ok := s.principal(c)
	if !ok {
		c.Header("WWW-Authenticate", `Bearer realm="tdf"`)
		abortError(c, http.StatusUnauthorized, CodeUnauthorized, "a valid API token is required (Authorization: Bearer <token>)")
		return
	}
	if who.Scope == ScopeMember && c.Request.Method+" "+route != memberRoute {
		// Accepted for registration only (principal); never elsewhere.
		c.Header("WWW-Authenticate", `Bearer realm="tdf"`)
		abortError(c, http.StatusUnauthorized, CodeUnauthorized, "a valid API token is required (Authorization: Bearer <token>)")
		return
	}
	if need == accessAdmin && route != "" && !who.IsAdmin() && who.Scope != ScopeMember {
		abortError(c, http.StatusForbidden, CodeForbidden, fmt.Sprintf("%s %s needs an admin token", c.Request.Method, c.Request.URL.Path))
		return
	}
	c.Set(ctxPrincipal, who)
	c.Next()
}

// principal reads the bearer token, or on the event stream the dashboard's
// session cookie (EventSource cannot send headers).
func (s *Server) principal(c *gin.Context) (Principal, bool) {
	if h := c.GetHeader("Authorization"); h != "" {
		scheme, token, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return Principal{}, false
		}
		token = strings.TrimSpace(token)
		if p, ok := s.lookupToken(token); ok {
			return p, true
		}
		if p, ok := s.lookupTokenCaughtUp(c, token); ok {
			return p, true
		}
		if c.Request.Method+" "+c.FullPath() == memberRoute && s.cfg.Tokens != nil {
			if node, err := s.cfg.Tokens.VerifyMember(token); err == nil {
				return Principal{Subject: node, Scope: ScopeMember}, true
			}
		}
		return Principal{}, false
	}
	if c.FullPath() == "/v1/events" && c.Request.Method == http.MethodGet {
		if v, err := c.Cookie(sessionCookie); err == nil {
			p, ok := s.sessions.verify(v, s.now())
			// A cookie lives no longer than the token it was traded for.
			if ok && p.TokenID != "" && !s.cfg.Node.FSM().APITokenLive(p.TokenID, s.now()) {
				return Principal{}, false
			}
			return p, ok
		}
	}
	return Principal{}, false
}

// lookupToken finds a presented token among the configured ones, then the
// replicated ones (a revoked or expired one is refused as soon as this node
// has applied the revocation).
func (s *Server) lookupToken(token string) (Principal, bool) {
	if p, ok := s.cfg.Auth.Lookup(token); ok {
		return p, true
	}
	t, ok := s.cfg.Node.FSM().LookupAPIToken(token, s.now())
	if !ok {
		return Principal{}, false
	}
	return Principal{Subject: t.Subject, Scope: Scope(t.Scope), Projects: t.Projects, TokenID: t.ID}, true
}

// lookupTokenCaughtUp looks a replicated token up again on a follower that
// may not have applied its creation yet: a token made on the leader a
// moment ago and presented here at once must work, as a write read back
// through another node does. It waits at most the read staleness bound,
// and only for what looks like one of the cluster's tokens.
func (s *Server) lookupTokenCaughtUp(c *gin.Context, token string) (Principal, bool) {
	f, ok := s.cfg.Node.(freshness)
	if !ok || s.cfg.Node.IsLeader() || !strings.HasPrefix(token, TokenPrefix) {
		return Principal{}, false
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.maxStale())
	defer cancel()
	for {
		// The leader's commit index reaches a follower with its next
		// heartbeat, so look again until the bound rather than once.
		_ = f.WaitCaughtUp(ctx, f.CommitIndex())
		if p, ok := s.lookupToken(token); ok || ctx.Err() != nil {
			return p, ok
		}
		select {
		case <-ctx.Done():
			return Principal{}, false
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// caller is the authenticated principal; ok is false when authentication
// is off (everything is visible then).
func caller(c *gin.Context) (Principal, bool) {
	v, ok := c.Get(ctxPrincipal)
	if !ok {
		return Principal{}, false
	}
	p, ok := v.(Principal)
	return p, ok
}

// ownerFilter is the owner a caller's task reads are restricted to ("" for
// an admin or when authentication is off).
func ownerFilter(c *gin.Context) string {
	if p, ok := caller(c); ok && !p.IsAdmin() {
		return p.Subject
	}
	return ""
}

// mayAccessTask reports whether the caller may see the task of owner in
// project; another user's task, or one outside the token's projects, is
// answered as not found, so its existence does not leak.
func mayAccessTask(c *gin.Context, owner, project string) bool {
	o := ownerFilter(c)
	return (o == "" || o == owner) && mayReadProject(c, project)
}

// whoami answers the caller's identity (the dashboard's login check).
func (s *Server) whoami(c *gin.Context) {
	p, ok := caller(c)
	if !ok {
		c.JSON(http.StatusOK, gin.H{"auth": false, "subject": "", "scope": ScopeAdmin})
		return
	}
	c.JSON(http.StatusOK, gin.H{"auth": true, "subject": p.Subject, "scope": p.Scope})
}
