package realagent

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDownloadChecksTheSum(t *testing.T) {
	body := []byte("#!/bin/sh\necho agent\n")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/vm-agent" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	sum := sha256.Sum256(body)
	good := hex.EncodeToString(sum[:])
	dir := t.TempDir()

	path, err := download(srv.URL+"/vm-agent", strings.ToUpper(good), filepath.Join(dir, "a"))
	if err != nil {
		t.Fatalf("download: %v", err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("downloaded file: %v, %v; want mode 0755", st, err)
	}
	bad := strings.Repeat("0", 64)
	if _, err := download(srv.URL+"/vm-agent", bad, filepath.Join(dir, "b")); err == nil || !strings.Contains(err.Error(), "SHA-256") {
		t.Fatalf("mismatching sum: err = %v, want a SHA-256 error", err)
	}
	if st, err := os.Stat(filepath.Join(dir, "b")); err == nil && st.Mode().Perm()&0o111 != 0 {
		t.Fatal("a mismatching download was made executable")
	}
	if _, err := download(srv.URL+"/missing", good, filepath.Join(dir, "c")); err == nil {
		t.Fatal("a 404 download succeeded")
	}
}

func TestCheckNamesWhatIsMissing(t *testing.T) {
	err := Options{Root: "/var/lib"}.Check()
	if err == nil {
		t.Fatal("empty options passed the check")
	}
	for _, want := range []string{"agent binary", "sandbox script", "stubs", "tdf binary", "under /tmp"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Check() = %q, want it to name %q", err, want)
		}
	}
}
