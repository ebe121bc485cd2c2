package tokens

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// JWKSVerifier checks management tokens the way the VM agent does: against
// the public keys it fetches from the control plane's JWKS, checking the
// issuer, the audience, the node and (on workspace routes) the workspace.
// An unknown key id makes it fetch the set again (at most every few
// seconds), which is how it learns of a rotated key.
type JWKSVerifier struct {
	url, issuer string
	client      *http.Client
	now         func() time.Time

	mu        sync.Mutex
	keys      map[string]*rsa.PublicKey
	fetchedAt time.Time
}

// NewJWKSVerifier fetches the key set once; like the agent, it fails if it
// cannot.
func NewJWKSVerifier(ctx context.Context, jwksURL, issuer string, client *http.Client) (*JWKSVerifier, error) {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	v := &JWKSVerifier{url: jwksURL, issuer: issuer, client: client, now: time.Now}
	if err := v.fetch(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

func (v *JWKSVerifier) fetch(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.url, nil)
	if err != nil {
		return err
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return fmt.Errorf("fetch JWKS %s: %w", v.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch JWKS %s: %s", v.url, resp.Status)
	}
	var set JWKS
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return fmt.Errorf("fetch JWKS %s: %w", v.url, err)
	}
	keys := map[string]*rsa.PublicKey{}
	for _, k := range set.Keys {
		if k.Kty != "RSA" {
			continue
		}
		n, err1 := base64.RawURLEncoding.DecodeString(k.N)
		e, err2 := base64.RawURLEncoding.DecodeString(k.E)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("JWKS key %s is malformed", k.Kid)
		}
		keys[k.Kid] = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	}
	v.mu.Lock()
	v.keys, v.fetchedAt = keys, v.now()
	v.mu.Unlock()
	return nil
}

func (v *JWKSVerifier) key(kid string) (*rsa.PublicKey, bool) {
	v.mu.Lock()
	k, ok := v.keys[kid]
	stale := v.now().Sub(v.fetchedAt) > 5*time.Second
	v.mu.Unlock()
	if ok || !stale {
		return k, ok
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if v.fetch(ctx) != nil {
		return nil, false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	k, ok = v.keys[kid]
	return k, ok
}

// Verify checks a management token for a call about a node and, on
// workspace routes, a workspace. It returns ErrInvalid (401) or
// ErrWrongAuth (403).
func (v *JWKSVerifier) Verify(raw, nodeID, workspaceID string) error {
	c := &Claims{}
	_, err := jwt.ParseWithClaims(raw, c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if k, ok := v.key(kid); ok {
			return k, nil
		}
		return nil, fmt.Errorf("unknown key id %q", kid)
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithAudience(AudManagement), jwt.WithIssuer(v.issuer),
		jwt.WithExpirationRequired(), jwt.WithTimeFunc(v.now))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if c.Type != AudManagement {
		return fmt.Errorf("%w: type %q", ErrInvalid, c.Type)
	}
	if c.Node != nodeID {
		return fmt.Errorf("%w: token for node %q, not %q", ErrWrongAuth, c.Node, nodeID)
	}
	if workspaceID != "" && c.Workspace != workspaceID {
		return fmt.Errorf("%w: token for workspace %q, not %q", ErrWrongAuth, c.Workspace, workspaceID)
	}
	return nil
}
