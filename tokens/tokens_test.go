package tokens

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func issuer(t *testing.T, now *time.Time) (*Issuer, Key) {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return &Issuer{URL: "http://cp.example", Keys: func() []Key { return []Key{k} }, Now: func() time.Time { return *now }}, k
}

func TestVerifyCallback(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	is, _ := issuer(t, &now)
	other, _ := issuer(t, &now)
	nodeTok, _ := is.CallbackToken(ScopeNode, "n1")
	wsTok, _ := is.CallbackToken(ScopeWorkspace, "ws1")
	forged, _ := other.CallbackToken(ScopeWorkspace, "ws1")
	mgmt, _ := is.ManagementToken("n1", "ws1", "u1")
	// A token with the right key id but signed by another key.
	k2, _ := GenerateKey()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, Claims{Type: TypeCallback, Scope: ScopeWorkspace, Workspace: "ws1",
		RegisteredClaims: jwt.RegisteredClaims{Issuer: is.URL, Subject: "ws1", Audience: jwt.ClaimStrings{AudCallback}, ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}})
	tok.Header["kid"] = is.Keys()[0].ID
	badSig, _ := tok.SignedString(k2.Private)

	cases := []struct {
		name  string
		raw   string
		scope Scope
		id    string
		want  error
		later time.Duration
	}{
		{"valid workspace token", wsTok, ScopeWorkspace, "ws1", nil, 0},
		{"valid node token", nodeTok, ScopeNode, "n1", nil, 0},
		{"expired", wsTok, ScopeWorkspace, "ws1", ErrInvalid, CallbackTTL + time.Minute},
		{"wrong audience (management token)", mgmt, ScopeWorkspace, "ws1", ErrInvalid, 0},
		{"node token on a workspace route", nodeTok, ScopeWorkspace, "n1", ErrWrongAuth, 0},
		{"other workspace", wsTok, ScopeWorkspace, "ws2", ErrWrongAuth, 0},
		{"other node", nodeTok, ScopeNode, "n2", ErrWrongAuth, 0},
		{"signed by an unknown key", forged, ScopeWorkspace, "ws1", ErrInvalid, 0},
		{"forged signature", badSig, ScopeWorkspace, "ws1", ErrInvalid, 0},
		{"garbage", "not.a.jwt", ScopeWorkspace, "ws1", ErrInvalid, 0},
	}
	for _, c := range cases {
		saved := now
		now = now.Add(c.later)
		_, err := is.VerifyCallback(c.raw, c.scope, c.id)
		now = saved
		if (c.want == nil) != (err == nil) || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s: VerifyCallback = %v, want %v", c.name, err, c.want)
		}
	}
}

func TestManagementTokenClaims(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	is, _ := issuer(t, &now)
	raw, err := is.ManagementToken("n1", "ws1", "u1")
	if err != nil {
		t.Fatal(err)
	}
	if err := is.VerifyManagement(raw, "n1", "ws1"); err != nil {
		t.Fatalf("VerifyManagement = %v", err)
	}
	if err := is.VerifyManagement(raw, "n2", ""); !errors.Is(err, ErrWrongAuth) {
		t.Fatalf("other node: %v, want ErrWrongAuth", err)
	}
	c := &Claims{}
	if _, _, err := jwt.NewParser().ParseUnverified(raw, c); err != nil {
		t.Fatal(err)
	}
	if c.Type != AudManagement || c.Subject != "u1" || c.Issuer != is.URL || c.ExpiresAt.Sub(now) != ManagementTTL || c.Audience[0] != AudManagement {
		t.Fatalf("claims = %+v", c)
	}
	if len(is.JWKS().Keys) != 1 || is.JWKS().Keys[0].Alg != "RS256" {
		t.Fatalf("JWKS = %+v", is.JWKS())
	}
}

func TestKeyPEMRoundTrip(t *testing.T) {
	k, _ := GenerateKey()
	back, err := ParsePEM(k.EncodePEM())
	if err != nil || back.ID != k.ID {
		t.Fatalf("ParsePEM = %v, id %s vs %s", err, back.ID, k.ID)
	}
	if _, err := ParsePEM([]byte("nope")); err == nil {
		t.Fatalf("ParsePEM accepted garbage")
	}
}

func TestJWKSVerifierChecksLikeTheAgent(t *testing.T) {
	now := time.Now()
	is, _ := issuer(t, &now)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(is.JWKS())
	}))
	defer srv.Close()
	v, err := NewJWKSVerifier(context.Background(), srv.URL, is.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := is.ManagementToken("n1", "ws1", "u1")
	nodeTok, _ := is.ManagementToken("n1", "", "u1")
	other, _ := issuer(t, &now)
	foreign, _ := other.ManagementToken("n1", "ws1", "u1")
	cb, _ := is.CallbackToken(ScopeWorkspace, "ws1")
	for _, c := range []struct {
		name, raw, node, ws string
		want                error
	}{
		{"valid workspace route", tok, "n1", "ws1", nil},
		{"valid node route", nodeTok, "n1", "", nil},
		{"other node", tok, "n2", "ws1", ErrWrongAuth},
		{"other workspace", tok, "n1", "ws2", ErrWrongAuth},
		{"node token on a workspace route", nodeTok, "n1", "ws1", ErrWrongAuth},
		{"signed by another key", foreign, "n1", "ws1", ErrInvalid},
		{"callback token", cb, "n1", "ws1", ErrInvalid},
	} {
		if err := v.Verify(c.raw, c.node, c.ws); (c.want == nil) != (err == nil) || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s: Verify = %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := NewJWKSVerifier(context.Background(), "http://127.0.0.1:1/jwks", is.URL, nil); err == nil {
		t.Errorf("NewJWKSVerifier succeeded without a reachable JWKS")
	}
}

// An issuer that reads its URL from a setting signs and verifies with the
// URL in force at each call, and signs nothing while there is none.
func TestIssuerFollowsTheControlPlaneSetting(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	base, _ := issuer(t, &now)
	url := ""
	is := &Issuer{URL: "http://ignored.example", ControlPlane: func() string { return url }, Keys: base.Keys, Now: base.Now}
	if _, err := is.CallbackToken(ScopeNode, "n1"); !errors.Is(err, ErrNoControlPlane) {
		t.Fatalf("CallbackToken without a URL: %v, want ErrNoControlPlane", err)
	}
	if _, err := is.ManagementToken("n1", "", "u1"); !errors.Is(err, ErrNoControlPlane) {
		t.Fatalf("ManagementToken without a URL: %v, want ErrNoControlPlane", err)
	}
	url = "http://lb.example"
	tok, err := is.CallbackToken(ScopeNode, "n1")
	if err != nil {
		t.Fatal(err)
	}
	c, err := is.VerifyCallback(tok, ScopeNode, "n1")
	if err != nil || c.Issuer != "http://lb.example" {
		t.Fatalf("VerifyCallback = %+v, %v; want issuer http://lb.example", c, err)
	}
	// Another issuer with the same keys and setting (another node)
	// accepts it; one whose setting differs does not.
	peer := &Issuer{ControlPlane: func() string { return "http://lb.example" }, Keys: base.Keys, Now: base.Now}
	if _, err := peer.VerifyCallback(tok, ScopeNode, "n1"); err != nil {
		t.Fatalf("peer with the same setting: %v", err)
	}
	url = "http://other.example"
	if _, err := is.VerifyCallback(tok, ScopeNode, "n1"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("after the URL changed: %v, want ErrInvalid (issuer)", err)
	}
	url = ""
	if _, err := is.VerifyCallback(tok, ScopeNode, "n1"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("without a URL: %v, want ErrInvalid", err)
	}
}
