// Package tokens issues and verifies the JWTs tdf shares with the VM agents
// (VMAGENT.md): management tokens tdf sends to an agent, and callback
// tokens an agent sends back, node-scoped (delivered in cloud-init) or
// workspace-scoped (delivered in POST /workspaces). All are RS256, signed
// with the cluster's key set; the public keys are served as a JWKS so the
// agents can verify management tokens. Old keys stay in the set, for
// verification only, until every token they signed has expired.
package tokens

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Audiences and types of VMAGENT.md.
const (
	AudManagement = "node-management"
	AudCallback   = "workspace-callback"
	TypeCallback  = "callback"
)

// Scope says what a callback token may call back about.
type Scope string

// Callback token scopes.
const (
	ScopeNode      Scope = "node"
	ScopeWorkspace Scope = "workspace"
)

// Lifetimes of VMAGENT.md.
const (
	ManagementTTL = time.Hour
	CallbackTTL   = 24 * time.Hour
)

// Key is one RSA signing key with its key id.
type Key struct {
	ID      string
	Private *rsa.PrivateKey
}

// GenerateKey makes a new 2048-bit RSA key; its id is a hash of the
// public key.
func GenerateKey() (Key, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return Key{}, err
	}
	return Key{ID: kid(&k.PublicKey), Private: k}, nil
}

func kid(pub *rsa.PublicKey) string {
	sum := sha256.Sum256(x509.MarshalPKCS1PublicKey(pub))
	return hex.EncodeToString(sum[:8])
}

// EncodePEM serialises a key's private part.
func (k Key) EncodePEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k.Private)})
}

// ParsePEM reads a key written by EncodePEM.
func ParsePEM(b []byte) (Key, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return Key{}, errors.New("tokens: no PEM block in key")
	}
	k, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
	if err != nil {
		return Key{}, fmt.Errorf("tokens: parse key: %w", err)
	}
	return Key{ID: kid(&k.PublicKey), Private: k}, nil
}

// Claims are the claims of both token kinds.
type Claims struct {
	Type      string `json:"type"`
	Scope     Scope  `json:"scope,omitempty"`
	Node      string `json:"node,omitempty"`
	Workspace string `json:"workspace,omitempty"`
	jwt.RegisteredClaims
}

// Issuer signs with the newest key of a key set and verifies with any.
type Issuer struct {
	// URL is a fixed control-plane URL: the iss claim agents check. Used
	// only when ControlPlane is nil (tests and tools).
	URL string
	// ControlPlane, if set, returns the current control-plane URL: in a
	// cluster, the replicated setting, read on every call so that every
	// node signs and verifies with the same issuer whichever leads.
	ControlPlane func() string
	// Keys returns the key set, newest last (it is read on every call, so
	// a replicated key set can change underneath).
	Keys func() []Key
	// Now is the clock.
	Now func() time.Time
}

// ErrNoControlPlane: no control-plane URL is set yet (a brand-new
// cluster's leader sets it at once), so there is no issuer to sign as.
var ErrNoControlPlane = errors.New("tokens: no control-plane URL yet")

// ControlPlaneURL is the URL agents call back to, and the issuer.
func (is *Issuer) ControlPlaneURL() string {
	if is.ControlPlane != nil {
		return is.ControlPlane()
	}
	return is.URL
}

func (is *Issuer) sign(c Claims) (string, error) {
	if c.Issuer == "" {
		return "", ErrNoControlPlane
	}
	keys := is.Keys()
	if len(keys) == 0 {
		return "", errors.New("tokens: no signing key yet")
	}
	k := keys[len(keys)-1]
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	t.Header["kid"] = k.ID
	return t.SignedString(k.Private)
}

// ManagementToken is the bearer token for a call to a node's agent
// (workspaceID empty for node routes).
func (is *Issuer) ManagementToken(nodeID, workspaceID, userID string) (string, error) {
	now := is.Now()
	return is.sign(Claims{
		Type: AudManagement, Node: nodeID, Workspace: workspaceID,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: is.ControlPlaneURL(), Subject: userID, Audience: jwt.ClaimStrings{AudManagement},
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ManagementTTL)),
		},
	})
}

// CallbackToken is the token an agent presents on callbacks about one node
// or one workspace.
func (is *Issuer) CallbackToken(scope Scope, id string) (string, error) {
	now := is.Now()
	return is.sign(Claims{
		Type: TypeCallback, Scope: scope, Workspace: id,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: is.ControlPlaneURL(), Subject: id, Audience: jwt.ClaimStrings{AudCallback},
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(CallbackTTL)),
		},
	})
}

// Verification errors.
var (
	ErrInvalid   = errors.New("invalid token")
	ErrWrongAuth = errors.New("token not valid for this resource")
)

// VerifyCallback checks a callback token's signature, audience, type,
// issuer and expiry, and that it is scoped to the given node or workspace.
// ErrInvalid (401) or ErrWrongAuth (403) explains a refusal.
func (is *Issuer) VerifyCallback(raw string, scope Scope, id string) (*Claims, error) {
	c, err := is.parse(raw, AudCallback)
	if err != nil {
		return nil, err
	}
	if c.Type != TypeCallback {
		return nil, fmt.Errorf("%w: type %q", ErrInvalid, c.Type)
	}
	if c.Scope != scope {
		return nil, fmt.Errorf("%w: a %s-scoped token cannot call back about a %s", ErrWrongAuth, c.Scope, scope)
	}
	if c.Workspace != id || c.Subject != id {
		return nil, fmt.Errorf("%w: token is for %s %q, not %q", ErrWrongAuth, scope, c.Workspace, id)
	}
	return c, nil
}

// VerifyManagement checks a management token as the agent does (used by
// the simulated agent): signature, issuer, audience, node and workspace.
func (is *Issuer) VerifyManagement(raw, nodeID, workspaceID string) error {
	c, err := is.parse(raw, AudManagement)
	if err != nil {
		return err
	}
	if c.Node != nodeID || (workspaceID != "" && c.Workspace != workspaceID) {
		return fmt.Errorf("%w: token for node %q workspace %q", ErrWrongAuth, c.Node, c.Workspace)
	}
	return nil
}

func (is *Issuer) parse(raw, aud string) (*Claims, error) {
	iss := is.ControlPlaneURL()
	if iss == "" {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, ErrNoControlPlane)
	}
	keys := is.Keys()
	c := &Claims{}
	_, err := jwt.ParseWithClaims(raw, c, func(t *jwt.Token) (any, error) {
		id, _ := t.Header["kid"].(string)
		for _, k := range keys {
			if k.ID == id {
				return &k.Private.PublicKey, nil
			}
		}
		return nil, fmt.Errorf("unknown key id %q", id)
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithAudience(aud), jwt.WithIssuer(iss),
		jwt.WithExpirationRequired(), jwt.WithTimeFunc(is.Now))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return c, nil
}

// JWK is one public key of a JWKS.
type JWK struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
}

// JWKS is the document served at /.well-known/jwks.json.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// JWKS returns the public half of every key in the set.
func (is *Issuer) JWKS() JWKS {
	out := JWKS{Keys: []JWK{}}
	for _, k := range is.Keys() {
		pub := k.Private.PublicKey
		out.Keys = append(out.Keys, JWK{Kty: "RSA", Kid: k.ID, Use: "sig", Alg: "RS256",
			N: base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
			E: base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes())})
	}
	return out
}
