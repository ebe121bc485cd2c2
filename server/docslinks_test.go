package server_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocsLinksResolve: every relative link in the README and docs/ (and
// BENCHMARKS.md, RELIABILITY.md) names a file of the repository, and none
// reaches outside it — the docs stand alone in a clone.
func TestDocsLinksResolve(t *testing.T) {
	root := filepath.Join("..")
	files := []string{"README.md", "BENCHMARKS.md", "RELIABILITY.md"}
	docs, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	for _, d := range docs {
		rel, _ := filepath.Rel(root, d)
		files = append(files, rel)
	}
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	named := regexp.MustCompile(`\b[A-Za-z][A-Za-z0-9_-]*\.md\b`)
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		// A document named in the text is one of the repository's too.
		for _, name := range named.FindAllString(string(b), -1) {
			if name == "bench-results.md" { // what make bench writes
				continue
			}
			_, errRoot := os.Stat(filepath.Join(root, name))
			_, errDocs := os.Stat(filepath.Join(root, "docs", name))
			if errRoot != nil && errDocs != nil {
				t.Errorf("%s names %s, which is not in the repository", f, name)
			}
		}
		for _, m := range link.FindAllStringSubmatch(string(b), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "#") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			target, _, _ = strings.Cut(target, "#")
			path := filepath.Join(filepath.Dir(filepath.Join(root, f)), target)
			if rel, err := filepath.Rel(root, path); err != nil || strings.HasPrefix(rel, "..") {
				t.Errorf("%s links to %s, outside the repository", f, m[1])
				continue
			}
			if _, err := os.Stat(path); err != nil {
				t.Errorf("%s links to %s, which is not in the repository", f, m[1])
			}
		}
	}
}
