package api

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/tdf-project/tdf/fsm"
)

// API tokens (admin), replicated in the FSM (fsm/apitokens.go):
//
//	POST   /v1/tokens      {"scope": "admin"|"user", "subject", "projects"?, "ttl"?}  201 {"token", "info"}
//	GET    /v1/tokens      {"tokens": [info]}
//	DELETE /v1/tokens/{id} 200 {"info"}: revoked on every node once applied there
//
// The leader makes the token from 32 random bytes and commits only its
// SHA-256; the token itself is in the 201 answer and nowhere else.

// TokenPrefix starts every replicated API token (so that secret scanners
// and people recognise one).
const TokenPrefix = "tdf_"

// TokenRequest is the body of POST /v1/tokens.
type TokenRequest struct {
	Scope Scope `json:"scope"`
	// Subject is the user id a user token acts as, or an admin's name.
	Subject  string   `json:"subject"`
	Projects []string `json:"projects,omitempty"`
	// TTL is how long the token lives ("720h"; empty: no expiry).
	TTL string `json:"ttl,omitempty"`
}

// TokenInfo is what the API shows of a token: never the token or its hash.
type TokenInfo struct {
	ID        string     `json:"id"`
	Scope     Scope      `json:"scope"`
	Subject   string     `json:"subject"`
	Projects  []string   `json:"projects,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	Bootstrap bool       `json:"bootstrap,omitempty"`
}

// TokenCreated is the answer of POST /v1/tokens.
type TokenCreated struct {
	Token string    `json:"token"`
	Info  TokenInfo `json:"info"`
}

func tokenInfo(t fsm.APIToken) TokenInfo {
	v := TokenInfo{ID: t.ID, Scope: Scope(t.Scope), Subject: t.Subject, Projects: t.Projects, CreatedAt: t.CreatedAt, Bootstrap: t.Bootstrap}
	if !t.ExpiresAt.IsZero() {
		v.ExpiresAt = &t.ExpiresAt
	}
	if !t.RevokedAt.IsZero() {
		v.RevokedAt = &t.RevokedAt
	}
	return v
}

func (s *Server) tokenRoutes(v1 *gin.RouterGroup) {
	v1.POST("/tokens", s.onLeader, s.createToken)
	v1.GET("/tokens", s.listTokens)
	v1.DELETE("/tokens/:id", s.validID("id"), s.onLeader, s.revokeToken)
}

// NewAPIToken returns a new random token and an id for its record.
func NewAPIToken() (token, id string, err error) {
	b := make([]byte, 32+6)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b[:32]), "tok-" + hex.EncodeToString(b[32:]), nil
}

func (r *TokenRequest) check() (time.Duration, error) {
	if r.Scope != ScopeAdmin && r.Scope != ScopeUser {
		return 0, &fieldError{"scope", fmt.Sprintf("%q must be admin or user", r.Scope)}
	}
	if err := checkID("subject", r.Subject, true); err != nil {
		return 0, err
	}
	if r.Scope == ScopeAdmin && len(r.Projects) > 0 {
		return 0, &fieldError{"projects", "only a user token is restricted to projects"}
	}
	for i, p := range r.Projects {
		if err := checkID(fmt.Sprintf("projects[%d]", i), p, true); err != nil {
			return 0, err
		}
	}
	if r.TTL == "" {
		return 0, nil
	}
	ttl, err := time.ParseDuration(r.TTL)
	if err != nil || ttl <= 0 {
		return 0, &fieldError{"ttl", fmt.Sprintf("%q is not a positive duration such as 720h", r.TTL)}
	}
	return ttl, nil
}

func (s *Server) createToken(c *gin.Context) {
	var req TokenRequest
	if !s.decode(c, &req) {
		return
	}
	ttl, err := req.check()
	if err != nil {
		abortError(c, http.StatusBadRequest, CodeInvalidField, err.Error())
		return
	}
	tok, id, err := NewAPIToken()
	if err != nil {
		abortError(c, http.StatusInternalServerError, CodeInternal, "cannot make a token: "+err.Error())
		return
	}
	now := s.now()
	rec := fsm.APIToken{ID: id, Hash: fsm.HashAPIToken(tok), Scope: string(req.Scope), Subject: req.Subject,
		Projects: req.Projects, CreatedAt: now}
	if ttl > 0 {
		rec.ExpiresAt = now.Add(ttl)
	}
	if _, ok := s.commit(c, fsm.CreateAPIToken{Token: rec}); ok {
		c.JSON(http.StatusCreated, TokenCreated{Token: tok, Info: tokenInfo(rec)})
	}
}

func (s *Server) listTokens(c *gin.Context) {
	out := []TokenInfo{}
	for _, t := range s.cfg.Node.FSM().APITokens() {
		out = append(out, tokenInfo(t))
	}
	c.JSON(http.StatusOK, gin.H{"tokens": out})
}

func (s *Server) revokeToken(c *gin.Context) {
	id := c.Param("id")
	if _, ok := s.commit(c, fsm.RevokeAPIToken{ID: id, At: s.now()}); !ok {
		return
	}
	for _, t := range s.cfg.Node.FSM().APITokens() {
		if t.ID == id {
			c.JSON(http.StatusOK, gin.H{"info": tokenInfo(t)})
			return
		}
	}
	c.JSON(http.StatusOK, gin.H{"id": id})
}

// AdminRequest reports whether a request outside the router (the fault
// injection endpoints, server/faults.go) carries an admin token; true
// when authentication is off.
func (s *Server) AdminRequest(r *http.Request) bool {
	if s.cfg.Auth == nil {
		return true
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	p, ok := s.lookupToken(strings.TrimSpace(token))
	return ok && p.IsAdmin()
}
