package api

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// The dashboard follows GET /v1/events with EventSource, which cannot send
// an Authorization header. Rather than put the long-lived token in a URL
// (where it lands in logs and history), the page trades its token for a
// short-lived session cookie: POST /v1/session with the bearer token sets
// an HttpOnly, SameSite=Strict cookie scoped to Path=/v1/events, signed by
// this node with a key that exists only in its memory. The cookie is
// accepted on the event stream and nowhere else, so it cannot be used to
// write; the stream is served by the node the page came from, so a cookie
// from another node (or from before a restart) is refused with 401 and the
// page simply asks for a new one.
const (
	sessionCookie = "tdf_events"
	sessionPath   = "/v1/events"
	// SessionTTL is how long an event-stream cookie is valid.
	SessionTTL = 10 * time.Minute
)

type sessionSigner struct{ key []byte }

func newSessionSigner() *sessionSigner {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return &sessionSigner{key: k}
}

type sessionClaims struct {
	Principal
	Expires int64 `json:"exp"`
}

func (s *sessionSigner) mac(payload string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

func (s *sessionSigner) sign(p Principal, exp time.Time) string {
	b, _ := json.Marshal(sessionClaims{Principal: p, Expires: exp.Unix()})
	payload := base64.RawURLEncoding.EncodeToString(b)
	return payload + "." + base64.RawURLEncoding.EncodeToString(s.mac(payload))
}

func (s *sessionSigner) verify(v string, now time.Time) (Principal, bool) {
	payload, sig, ok := strings.Cut(v, ".")
	if !ok {
		return Principal{}, false
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac(payload)) {
		return Principal{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	var cl sessionClaims
	if err != nil || json.Unmarshal(b, &cl) != nil || now.Unix() >= cl.Expires {
		return Principal{}, false
	}
	return cl.Principal, true
}

// createSession sets the event-stream cookie for the bearer token's
// principal.
func (s *Server) createSession(c *gin.Context) {
	p, ok := caller(c)
	if !ok {
		// Authentication is off: the stream needs no cookie.
		c.JSON(http.StatusOK, gin.H{"auth": false})
		return
	}
	exp := s.now().Add(SessionTTL)
	http.SetCookie(c.Writer, &http.Cookie{
		Name: sessionCookie, Value: s.sessions.sign(p, exp), Path: sessionPath,
		Expires: exp, MaxAge: int(SessionTTL / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.Request.TLS != nil,
	})
	c.JSON(http.StatusOK, gin.H{"auth": true, "subject": p.Subject, "scope": p.Scope, "expires_at": exp})
}

// deleteSession clears the event-stream cookie (the dashboard's sign-out).
func (s *Server) deleteSession(c *gin.Context) {
	http.SetCookie(c.Writer, &http.Cookie{Name: sessionCookie, Value: "", Path: sessionPath, MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.Request.TLS != nil})
	c.Status(http.StatusNoContent)
}
