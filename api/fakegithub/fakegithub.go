// Package fakegithub is a GitHub API for tests of GitHub App git
// credentials: it mints installation tokens at
// POST /app/installations/{id}/access_tokens, as GitHub does, for a request
// carrying the app's JWT (RS256, signed with the app's private key, iss =
// the app id, a lifetime of at most ten minutes), and counts what it mints.
package fakegithub

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// installation is an installation of an app, holding the app's public key.
type installation struct {
	appID int64
	key   *rsa.PublicKey
}

// Server is a fake GitHub API on 127.0.0.1.
type Server struct {
	// URL is the API base URL (a credential's api_base_url).
	URL string
	srv *httptest.Server

	mu            sync.Mutex
	installations map[int64]installation
	lifetime      time.Duration
	minted        map[int64]int
	refusals      []string
}

// New starts a fake GitHub whose tokens live an hour.
func New() *Server {
	s := &Server{installations: map[int64]installation{}, minted: map[int64]int{}, lifetime: time.Hour}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /app/installations/{id}/access_tokens", s.accessToken)
	s.srv = httptest.NewServer(mux)
	s.URL = s.srv.URL
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Install makes installationID an installation of appID, whose JWTs key
// verifies.
func (s *Server) Install(appID, installationID int64, key *rsa.PublicKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.installations[installationID] = installation{appID: appID, key: key}
}

// SetLifetime sets the lifetime of the tokens minted from now on.
func (s *Server) SetLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lifetime = d
}

// Minted is how many tokens the installation got.
func (s *Server) Minted(installationID int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.minted[installationID]
}

// Refusals are the reasons of the requests refused so far.
func (s *Server) Refusals() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.refusals...)
}

func (s *Server) refuse(w http.ResponseWriter, status int, why string) {
	s.mu.Lock()
	s.refusals = append(s.refusals, why)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": why, "documentation_url": "https://docs.github.com/rest"})
}

func (s *Server) accessToken(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	s.mu.Lock()
	inst, ok := s.installations[id]
	s.mu.Unlock()
	if err != nil || !ok {
		s.refuse(w, http.StatusNotFound, "Not Found")
		return
	}
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		s.refuse(w, http.StatusUnauthorized, "A JSON web token is required")
		return
	}
	if why := verifyAppJWT(raw, inst); why != "" {
		s.refuse(w, http.StatusUnauthorized, why)
		return
	}
	tok := make([]byte, 18)
	_, _ = rand.Read(tok)
	s.mu.Lock()
	s.minted[id]++
	token := "ghs_" + hex.EncodeToString(tok)
	exp := time.Now().Add(s.lifetime).UTC().Truncate(time.Second)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]any{"token": token, "expires_at": exp.Format(time.RFC3339),
		"permissions": map[string]string{"contents": "write"}, "repository_selection": "all"})
}

// verifyAppJWT checks the JWT as GitHub does: RS256 under the app's key,
// iss the app id, issued and expiring within ten minutes. "" is valid.
func verifyAppJWT(raw string, inst installation) string {
	var claims jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return inst.key, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuedAt(), jwt.WithExpirationRequired(), jwt.WithLeeway(time.Minute))
	switch {
	case err != nil:
		return "A JSON web token could not be decoded: " + err.Error()
	case claims.Issuer != strconv.FormatInt(inst.appID, 10):
		return fmt.Sprintf("'Issuer' claim ('iss') %q is not the app %d of this installation", claims.Issuer, inst.appID)
	case claims.IssuedAt == nil || claims.ExpiresAt.Sub(claims.IssuedAt.Time) > 10*time.Minute:
		return "'Expiration time' claim ('exp') is too far in the future"
	}
	return ""
}

// NewAppKey makes an app's private key and its PEM, as GitHub issues it
// (PKCS#1).
func NewAppKey() (*rsa.PrivateKey, string, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, "", err
	}
	return k, string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})), nil
}
