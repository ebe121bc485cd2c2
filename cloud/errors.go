package cloud

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Sentinel errors of a Provider. Match them with errors.Is.
var (
	// ErrNameTaken means a server with the spec's name exists and is not
	// ours (its labels do not include the spec's labels). Permanent: no
	// retry can free the name; an operator has to.
	ErrNameTaken = errors.New("cloud: server name taken by a server that is not ours")
	// ErrServerBusy means a server of ours with the spec's name exists but
	// is being deleted or stopped, so it can be neither adopted nor
	// replaced yet. Transient: retry later.
	ErrServerBusy = errors.New("cloud: server of that name is changing state")
	// ErrInvalidSpec means the request was rejected before it was sent
	// (missing name, type or labels). Permanent.
	ErrInvalidSpec = errors.New("cloud: invalid server spec")
)

// Class is what a caller should do about an error.
type Class int

const (
	// Transient: nothing happened, or retrying is safe; retry later
	// (rate limits: after Error.RateLimitReset).
	Transient Class = iota + 1
	// Permanent: retrying cannot help.
	Permanent
	// Unknown: the request may or may not have taken effect (a timeout, a
	// 500). Look the resource up before acting again.
	Unknown
)

// String returns the class's lowercase name, as error records show it.
func (c Class) String() string {
	switch c {
	case Transient:
		return "transient"
	case Permanent:
		return "permanent"
	case Unknown:
		return "unknown"
	}
	return fmt.Sprintf("Class(%d)", int(c))
}

// Error is an error answer of the provider's API.
type Error struct {
	// Op names the operation, e.g. "create server".
	Op string
	// Code is the API's error code (uniqueness_error, rate_limit_exceeded,
	// …), empty if the answer carried none.
	Code    string
	Message string
	// StatusCode is the HTTP status of the answer.
	StatusCode int
	// RateLimitReset is when the rate limit is replenished, if the answer
	// said so.
	RateLimitReset time.Time
	// Err is the provider SDK's own error, for errors.As.
	Err error
}

// Error implements error: "cloud: <op>: <message> (<code>)".
func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	code := e.Code
	if code == "" {
		code = fmt.Sprintf("HTTP %d", e.StatusCode)
	}
	return fmt.Sprintf("cloud: %s: %s (%s)", e.Op, msg, code)
}

// Unwrap returns the SDK's error.
func (e *Error) Unwrap() error { return e.Err }

// Class classifies the answer by its code, or by its HTTP status when the
// code is empty or not one ClassifyCode knows.
func (e *Error) Class() Class {
	if c, ok := codeClass[e.Code]; ok {
		return c
	}
	switch s := e.StatusCode; {
	case s == http.StatusTooManyRequests, s == http.StatusBadGateway, s == http.StatusGatewayTimeout,
		s == http.StatusConflict, s == http.StatusLocked, s == http.StatusPreconditionFailed:
		return Transient
	case s >= 400 && s < 500:
		return Permanent
	}
	return Unknown
}

// codeClass is HETZNER.md's table of error codes.
var codeClass = map[string]Class{
	// Transient: retry later.
	"conflict":             Transient,
	"timeout":              Transient,
	"bad_gateway":          Transient,
	"robot_unavailable":    Transient,
	"rate_limit_exceeded":  Transient,
	"locked":               Transient,
	"maintenance":          Transient,
	"resource_unavailable": Transient,
	"placement_error":      Transient,
	// A uniqueness_error that escapes CreateServer's adoption means the
	// server of that name vanished between the create and the look-up:
	// trying again will create or adopt it.
	"uniqueness_error": Transient,
	// Unknown: look up before acting again.
	"service_error": Unknown,
	"server_error":  Unknown,
	"unavailable":   Unknown,
	"unknown_error": Unknown,
	// Permanent.
	"invalid_input":           Permanent,
	"json_error":              Permanent,
	"unauthorized":            Permanent,
	"forbidden":               Permanent,
	"not_found":               Permanent,
	"protected":               Permanent,
	"invalid_server_type":     Permanent,
	"unsupported_error":       Permanent,
	"deprecated_api_endpoint": Permanent,
	"resource_limit_exceeded": Permanent,
	"resource_locked":         Permanent,
}

// ClassifyCode classifies an API error code, including the code of a failed
// action. A code it does not know is Unknown.
func ClassifyCode(code string) Class {
	if c, ok := codeClass[code]; ok {
		return c
	}
	return Unknown
}

// Classify tells what to do about an error returned by a Provider:
//
//   - ErrNameTaken and ErrInvalidSpec are Permanent, ErrServerBusy Transient;
//   - an *Error follows its code (HETZNER.md's table), else its HTTP status;
//   - a failure to connect (dial, DNS, even by timing out) is Transient:
//     nothing was sent;
//   - a network timeout, a context deadline or cancellation, a connection
//     broken mid-request and anything unrecognised are Unknown.
//
// Classify(nil) is 0, which is none of the classes.
func Classify(err error) Class {
	if err == nil {
		return 0
	}
	switch {
	case errors.Is(err, ErrNameTaken), errors.Is(err, ErrInvalidSpec):
		return Permanent
	case errors.Is(err, ErrServerBusy):
		return Transient
	}
	var apiErr *Error
	if errors.As(err, &apiErr) {
		return apiErr.Class()
	}
	// A failed dial sent nothing, even when it failed by timing out.
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return Transient
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return Transient
	}
	// Everything else — a context deadline or cancellation, a network
	// timeout, a connection broken mid-request, an unreadable answer — may
	// have happened after the provider acted.
	return Unknown
}
