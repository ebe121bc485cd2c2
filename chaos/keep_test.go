package chaos_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A failed run's report and logs are copied where they outlive the test.
func TestKeepEvidence(t *testing.T) {
	keep, src := t.TempDir(), t.TempDir()
	t.Setenv("TDF_E2E_LOG_DIR", keep)
	report := filepath.Join(src, "report")
	if err := os.MkdirAll(report, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{filepath.Join(src, "n1.log"): "raft says hi", filepath.Join(report, "summary.txt"): "chaos run: FAIL"}
	for f, body := range files {
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	keepEvidence(t, report, []string{filepath.Join(src, "n1.log")})
	dirs, _ := filepath.Glob(filepath.Join(keep, "tdf-chaos-failed-*"))
	if len(dirs) != 1 {
		t.Fatalf("kept directories: %v", dirs)
	}
	for f, body := range files {
		got, err := os.ReadFile(filepath.Join(dirs[0], filepath.Base(f)))
		if err != nil || !strings.Contains(string(got), body) {
			t.Errorf("%s kept as %q, %v", filepath.Base(f), got, err)
		}
	}
}
