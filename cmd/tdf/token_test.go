package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A token saved for a URL (tdf token save, tdf dev) is what the client
// commands send to that URL, and only to it; the file is the user's alone.
func TestSavedTokensByURL(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TDF_CONFIG_DIR", dir)
	t.Setenv("TDF_TOKEN", "")
	t.Cleanup(func() { clientAuth.token, clientAuth.caFile = "", "" })
	path, err := saveClientToken("tdf_one", "http://127.0.0.1:8001/", "http://127.0.0.1:8000")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 || filepath.Dir(path) != dir {
		t.Fatalf("tokens file %s: %v %v", path, fi, err)
	}
	if _, err := saveClientToken("tdf_two", "http://127.0.0.1:8002"); err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]string{"http://127.0.0.1:8001": "tdf_one", "http://127.0.0.1:8000/": "tdf_one", "http://127.0.0.1:8002": "tdf_two", "http://127.0.0.1:8003": ""} {
		if got := savedClientToken(addr); got != want {
			t.Errorf("saved token for %s = %q, want %q", addr, got, want)
		}
	}
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":{"code":"unauthorized","message":"a valid API token is required"}}`))
	}))
	defer srv.Close()
	err = run(context.Background(), []string{"task", "list", "--addr", srv.URL})
	if err == nil || !strings.Contains(err.Error(), "tdf token save") || len(got) != 1 || got[0] != "" {
		t.Fatalf("task list with no token for its URL: %v (sent %q), want a 401 that says where a token comes from", err, got)
	}
	if _, err := saveClientToken("tdf_three", srv.URL); err != nil {
		t.Fatal(err)
	}
	err = run(context.Background(), []string{"task", "list", "--addr", srv.URL})
	if len(got) != 2 || got[1] != "Bearer tdf_three" || strings.Contains(err.Error(), "token save") {
		t.Fatalf("task list with a saved token sent %q (%v)", got, err)
	}
}
