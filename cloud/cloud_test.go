package cloud

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"testing"
)

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClassify(t *testing.T) {
	api := func(code string, status int) error {
		return fmt.Errorf("step: %w", &Error{Op: "create server", Code: code, StatusCode: status})
	}
	tests := []struct {
		name string
		err  error
		want Class
	}{
		{"nil", nil, 0},
		{"name taken", fmt.Errorf("x: %w", ErrNameTaken), Permanent},
		{"invalid spec", ErrInvalidSpec, Permanent},
		{"busy", fmt.Errorf("x: %w", ErrServerBusy), Transient},
		{"conflict", api("conflict", 409), Transient},
		{"timeout code", api("timeout", 504), Transient},
		{"bad_gateway", api("bad_gateway", 502), Transient},
		{"robot_unavailable", api("robot_unavailable", 503), Transient},
		{"rate limit", api("rate_limit_exceeded", 429), Transient},
		{"locked", api("locked", 423), Transient},
		{"maintenance", api("maintenance", 503), Transient},
		{"resource_unavailable", api("resource_unavailable", 412), Transient},
		{"placement_error", api("placement_error", 412), Transient},
		{"uniqueness escaping adoption", api("uniqueness_error", 409), Transient},
		{"service_error", api("service_error", 422), Unknown},
		{"server_error", api("server_error", 500), Unknown},
		{"unavailable", api("unavailable", 503), Unknown},
		{"unknown_error", api("unknown_error", 500), Unknown},
		{"invalid_input", api("invalid_input", 422), Permanent},
		{"json_error", api("json_error", 400), Permanent},
		{"unauthorized", api("unauthorized", 401), Permanent},
		{"forbidden", api("forbidden", 403), Permanent},
		{"not_found", api("not_found", 404), Permanent},
		{"protected", api("protected", 423), Permanent},
		{"invalid_server_type", api("invalid_server_type", 422), Permanent},
		{"unsupported_error", api("unsupported_error", 400), Permanent},
		{"deprecated_api_endpoint", api("deprecated_api_endpoint", 410), Permanent},
		{"server limit", api("resource_limit_exceeded", 403), Permanent},
		{"unknown code, 4xx", api("server_not_stopped", 400), Permanent},
		{"unknown code, 5xx", api("something_new", 500), Unknown},
		{"no code, 502", api("", 502), Transient},
		{"no code, 504", api("", 504), Transient},
		{"no code, 503", api("", 503), Unknown},
		{"no code, 429", api("", 429), Transient},
		{"no code, 400", api("", 400), Permanent},
		{"context deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), Unknown},
		{"context canceled", context.Canceled, Unknown},
		{"client timeout", &url.Error{Op: "Post", URL: "u", Err: timeoutErr{}}, Unknown},
		{"read timeout", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, Unknown},
		{"connection refused", &url.Error{Op: "Get", URL: "u", Err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}}, Transient},
		{"dial timeout", &url.Error{Op: "Get", URL: "u", Err: &net.OpError{Op: "dial", Net: "tcp", Err: timeoutErr{}}}, Transient},
		{"dns", &net.DNSError{Err: "no such host", Name: "api"}, Transient},
		{"connection reset mid-answer", &url.Error{Op: "Post", URL: "u", Err: io.ErrUnexpectedEOF}, Unknown},
		{"anything else", errors.New("boom"), Unknown},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("%s: Classify(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestClassifyCode(t *testing.T) {
	for code, want := range map[string]Class{"conflict": Transient, "not_found": Permanent, "server_error": Unknown, "action_failed": Unknown} {
		if got := ClassifyCode(code); got != want {
			t.Errorf("ClassifyCode(%q) = %v, want %v", code, got, want)
		}
	}
}

func TestErrorMessage(t *testing.T) {
	inner := errors.New("sdk")
	e := &Error{Op: "create server", Code: "uniqueness_error", Message: "server name is already used", StatusCode: 409, Err: inner}
	if got, want := e.Error(), "cloud: create server: server name is already used (uniqueness_error)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(e, inner) {
		t.Error("Error does not unwrap to the SDK's error")
	}
	if got, want := (&Error{Op: "get", StatusCode: 502}).Error(), "cloud: get: Bad Gateway (HTTP 502)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestOwns(t *testing.T) {
	have := map[string]string{"managed-by": "tdf", "node": "n1", "extra": "x"}
	tests := []struct {
		want map[string]string
		ok   bool
	}{
		{map[string]string{"managed-by": "tdf", "node": "n1"}, true},
		{have, true},
		{map[string]string{"managed-by": "tdf", "node": "n2"}, false},
		{map[string]string{"managed-by": "tdf", "cluster": "c"}, false},
		{nil, false},
		{map[string]string{}, false},
	}
	for _, tt := range tests {
		if got := Owns(tt.want, have); got != tt.ok {
			t.Errorf("Owns(%v, %v) = %v, want %v", tt.want, have, got, tt.ok)
		}
	}
}

func TestActionDone(t *testing.T) {
	for a, want := range map[Action]bool{
		{}:                             true,
		{ID: 1, Status: ActionRunning}: false,
		{ID: 1, Status: ActionSuccess}: true,
		{ID: 1, Status: ActionError}:   true,
	} {
		if a.Done() != want {
			t.Errorf("%+v.Done() = %v, want %v", a, a.Done(), want)
		}
	}
}
