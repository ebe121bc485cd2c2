package tokens

import (
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Member tokens: how a cluster member registers its own addresses through
// the leader's join endpoint without an admin API token. Only a holder of
// the replicated signing keys (a member) can make one, and the endpoint
// lets it only update the record of the node it names, never add a voter.
const (
	AudMember  = "cluster-member"
	TypeMember = "member"
	// MemberTTL is short: a member makes a new one for every call.
	MemberTTL = 5 * time.Minute
)

// MemberToken is the bearer token of member nodeID's own registration.
func (is *Issuer) MemberToken(nodeID string) (string, error) {
	now := is.Now()
	return is.sign(Claims{
		Type: TypeMember, Node: nodeID,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: is.ControlPlaneURL(), Subject: nodeID, Audience: jwt.ClaimStrings{AudMember},
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(MemberTTL)),
		},
	})
}

// VerifyMember checks a member token (signature, issuer, audience, type,
// expiry) and returns the node it names.
func (is *Issuer) VerifyMember(raw string) (string, error) {
	c, err := is.parse(raw, AudMember)
	if err != nil {
		return "", err
	}
	if c.Type != TypeMember || c.Node == "" || c.Subject != c.Node {
		return "", fmt.Errorf("%w: not a member token", ErrInvalid)
	}
	return c.Node, nil
}
