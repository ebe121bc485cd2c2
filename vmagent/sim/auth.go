package sim

import (
	"errors"
	"net/http"
	"strings"

	"github.com/tdf-project/tdf/vmagent"
)

// Verifier checks a management token for a call to this agent: nodeID is
// the agent's own node, workspaceID the workspace the route names ("" on
// node routes). It returns nil, an error wrapping ErrUnauthorized (invalid,
// expired, wrong issuer or audience) or one wrapping ErrForbidden (the
// node or workspace claim names another). The agent answers 401 to
// either, as the real one does: it checks the node and workspace claims
// while validating the token. Only the routing headers earn a 403.
type Verifier interface {
	Verify(token, nodeID, workspaceID string) error
}

// Verification outcomes a Verifier wraps, matched with errors.Is.
var (
	// ErrUnauthorized: the token is invalid; the agent answers 401.
	ErrUnauthorized = errors.New("invalid management token")
	// ErrForbidden: the token is valid for another node or workspace; the
	// agent answers 401 all the same (see Verifier).
	ErrForbidden = errors.New("management token scope mismatch")
)

// VerifierFunc adapts a function to Verifier.
type VerifierFunc func(token, nodeID, workspaceID string) error

// Verify calls f.
func (f VerifierFunc) Verify(token, nodeID, workspaceID string) error {
	return f(token, nodeID, workspaceID)
}

var _ Verifier = VerifierFunc(nil)

// authorize checks a management call the way the real agent does: bearer
// token, then its claims, then the routing headers (X-SAM-Node-Id may be
// absent but not name another node; X-SAM-Workspace-Id must name the
// route's workspace). Without a Verifier the token is not checked, the
// headers still are. It answers and returns false when the call is refused.
func (a *Agent) authorize(w http.ResponseWriter, r *http.Request, workspaceID string) bool {
	if a.cfg.Verifier != nil && !a.verifyToken(w, r, workspaceID) {
		return false
	}
	if node := strings.TrimSpace(r.Header.Get(vmagent.HeaderNodeID)); node != "" && node != a.cfg.NodeID {
		writeError(w, http.StatusForbidden, "node route mismatch")
		return false
	}
	if workspaceID != "" && strings.TrimSpace(r.Header.Get(vmagent.HeaderWorkspaceID)) != workspaceID {
		writeError(w, http.StatusForbidden, "workspace route mismatch")
		return false
	}
	return true
}

// verifyToken checks the bearer token with the Verifier.
func (a *Agent) verifyToken(w http.ResponseWriter, r *http.Request, workspaceID string) bool {
	h := strings.TrimSpace(r.Header.Get("Authorization"))
	if h == "" || !strings.HasPrefix(h, "Bearer ") {
		writeError(w, http.StatusUnauthorized, "missing Authorization header")
		return false
	}
	tok := strings.TrimSpace(strings.TrimPrefix(h, "Bearer "))
	if tok == "" {
		writeError(w, http.StatusUnauthorized, "missing bearer token")
		return false
	}
	if err := a.cfg.Verifier.Verify(tok, a.cfg.NodeID, workspaceID); err != nil {
		// A token for another node or workspace too: the real agent's
		// validator checks those claims and every failure is a 401.
		writeError(w, http.StatusUnauthorized, "invalid management token")
		return false
	}
	return true
}
