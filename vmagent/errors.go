package vmagent

import (
	"errors"
	"fmt"
	"net/http"
)

// Error codes the agent answers with, in the "error" field of a 409.
const (
	// CodeWorkspaceConflict: a workspace with this id exists with another
	// repository or branch.
	CodeWorkspaceConflict = "workspace_conflict"
	// CodeWorkspaceNotCreatable: a workspace with this id exists and is
	// stopped or failed; it cannot be created again.
	CodeWorkspaceNotCreatable = "workspace_not_creatable"
	// CodeInvalidTransition: the workspace is in a state the call cannot
	// move it from (a second stop, a restart of a running workspace).
	CodeInvalidTransition = "invalid_transition"
	// CodeDeliveryConflict: a session start reused a deliveryId with another
	// prompt.
	CodeDeliveryConflict = "conflict"
	// CodeNotReady: a session start with a deliveryId could not be claimed
	// yet; worth retrying.
	CodeNotReady = "not_ready"
)

// Error is a non-success answer from the agent. Match a kind with
// errors.Is against the sentinels below, or with errors.As to read it.
type Error struct {
	// Op is the call, "POST /workspaces".
	Op string
	// Status is the HTTP status code.
	Status int
	// Code is the machine code of the answer ("workspace_conflict") or ""
	// when the agent answered with a plain message.
	Code string
	// Message is the human-readable explanation.
	Message string
}

// Error reads "vmagent: <op>: <status> <text>: <code>: <message>".
func (e *Error) Error() string {
	s := "vmagent: "
	if e.Op != "" {
		s += e.Op + ": "
	}
	s += fmt.Sprintf("%d %s", e.Status, http.StatusText(e.Status))
	if e.Code != "" {
		s += ": " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Is matches a sentinel *Error: the codes must be equal, and the statuses
// too unless the sentinel's is 0. A sentinel without a code matches by
// status alone.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	if t.Status != 0 && t.Status != e.Status {
		return false
	}
	if t.Code != "" && t.Code != e.Code {
		return false
	}
	return t.Status != 0 || t.Code != ""
}

// Sentinels for errors.Is. They are never returned themselves; the returned
// *Error carries the operation and message.
var (
	// ErrWorkspaceConflict: 409 workspace_conflict. Permanent.
	ErrWorkspaceConflict = &Error{Status: http.StatusConflict, Code: CodeWorkspaceConflict}
	// ErrWorkspaceNotCreatable: 409 workspace_not_creatable. Permanent.
	ErrWorkspaceNotCreatable = &Error{Status: http.StatusConflict, Code: CodeWorkspaceNotCreatable}
	// ErrInvalidTransition: 409 invalid_transition. Permanent.
	ErrInvalidTransition = &Error{Status: http.StatusConflict, Code: CodeInvalidTransition}
	// ErrNotFound: 404, the workspace or session does not exist. Permanent.
	ErrNotFound = &Error{Status: http.StatusNotFound}
	// ErrUnauthorized: 401, a missing or invalid management token, or one
	// for another node or workspace (the agent checks those claims while
	// validating the token). Permanent.
	ErrUnauthorized = &Error{Status: http.StatusUnauthorized}
	// ErrForbidden: 403, the X-SAM-Node-Id or X-SAM-Workspace-Id header
	// names another node or workspace than the token. Permanent.
	ErrForbidden = &Error{Status: http.StatusForbidden}
)

// ErrInvalidRequest is returned, wrapped, when a call cannot be made at all
// (an empty id, an unparsable base URL). Permanent.
var ErrInvalidRequest = errors.New("vmagent: invalid request")

// IsTransient reports whether a failed call is worth retrying: network
// errors, timeouts, cancellations, 408, 429, 5xx and 409 not_ready answers
// are; other 4xx answers and ErrInvalidRequest are not. Unknown errors are transient
// (REFERENCE.md): every call of this client is safe to repeat. nil is not
// transient.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var e *Error
	if errors.As(err, &e) {
		switch {
		case e.Status == http.StatusRequestTimeout, e.Status == http.StatusTooManyRequests:
			return true
		case e.Status == http.StatusConflict && e.Code == CodeNotReady:
			return true
		case e.Status >= 500:
			return true
		default:
			return false
		}
	}
	// Everything else — net.Error, context.DeadlineExceeded, a reset
	// connection, an undecodable answer — may have reached the agent or
	// not; the caller retries, which every call here tolerates.
	return !errors.Is(err, ErrInvalidRequest)
}

// IsPermanent is !IsTransient for a non-nil error.
func IsPermanent(err error) bool { return err != nil && !IsTransient(err) }

// sessionExistsPrefix starts the agent's 400 message for a session id it
// has already (created under another Idempotency-Key, or under none).
const sessionExistsPrefix = "session already exists: "

// IsSessionExists reports whether err is the agent's answer to creating
// session sessionID when a session of that id exists already and the
// request's Idempotency-Key is not the one it was created with: 400
// "session already exists: <id>". It is how a caller learns that a session
// exists: the agent's session list does not take a management token, and
// the sessions count of GET /workspaces counts terminal sessions.
func IsSessionExists(err error, sessionID string) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusBadRequest && e.Code == "" &&
		e.Message == sessionExistsPrefix+sessionID
}
