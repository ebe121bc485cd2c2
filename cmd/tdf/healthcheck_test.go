package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHealthcheck(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.Error(w, "no leader", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	if err := runHealthcheck(ctx, []string{"--url", srv.URL + "/healthz"}); err != nil {
		t.Errorf("healthy URL: %v", err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--url", srv.URL + "/readyz"}, "503"},
		{[]string{"--url", "ftp://x"}, "not an http(s) URL"},
		{[]string{"--url", srv.URL, "extra"}, "no arguments"},
	} {
		if err := runHealthcheck(ctx, tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("healthcheck %q: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
	srv.Close()
	if err := runHealthcheck(ctx, []string{"--url", srv.URL + "/healthz"}); err == nil || !strings.Contains(err.Error(), "unhealthy") {
		t.Errorf("closed server: %v, want unhealthy", err)
	}
}
