package tokens

import "fmt"

// CallbackClaims checks a callback token as VerifyCallback does, for a
// route whose path does not name the node or workspace the token must be
// about (the agents' project-level callbacks): the caller learns it from
// the claims and checks it against its own records.
func (is *Issuer) CallbackClaims(raw string, scope Scope) (*Claims, error) {
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
	if c.Workspace == "" || c.Subject != c.Workspace {
		return nil, fmt.Errorf("%w: token names no %s", ErrInvalid, scope)
	}
	return c, nil
}
