package e2e

import (
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// GitServer is a git remote over smart HTTP (git's own http-backend) on a
// loopback port: the repository real agents clone and push to, so that a
// task's whole git round trip happens for real, offline.
type GitServer struct {
	// URL is the server's base URL; a repository is at URL + "/" + name.
	URL  string
	root string
	tb   testing.TB
}

// StartGitServer serves the bare repositories under a temporary directory
// (pushes allowed, anonymously) until the test ends.
func StartGitServer(tb testing.TB) *GitServer {
	tb.Helper()
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		tb.Fatalf("git server: git --exec-path: %v", err)
	}
	backend := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		tb.Fatalf("git server: %v", err)
	}
	g := &GitServer{root: tb.TempDir(), tb: tb}
	h := &cgi.Handler{Path: backend, Env: []string{
		"GIT_PROJECT_ROOT=" + g.root,
		"GIT_HTTP_EXPORT_ALL=1",
		// http-backend refuses anonymous pushes unless the repository
		// allows them (http.receivepack, set in NewRepo).
		"REMOTE_USER=tdf-test",
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("git server: %v", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	tb.Cleanup(func() { _ = srv.Close() })
	g.URL = "http://" + ln.Addr().String()
	return g
}

// NewRepo makes a bare repository with one commit on main and returns its
// clone URL.
func (g *GitServer) NewRepo(name string) string {
	g.tb.Helper()
	bare := filepath.Join(g.root, name)
	seed := filepath.Join(g.tb.TempDir(), "seed")
	run := func(dir string, args ...string) {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=tdf", "GIT_AUTHOR_EMAIL=tdf@example.invalid",
			"GIT_COMMITTER_NAME=tdf", "GIT_COMMITTER_EMAIL=tdf@example.invalid", "GIT_CONFIG_NOSYSTEM=1", "HOME="+g.root)
		if out, err := cmd.CombinedOutput(); err != nil {
			g.tb.Fatalf("git %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run(g.root, "init", "--bare", "--initial-branch=main", bare)
	run(bare, "config", "http.receivepack", "true")
	// The agent clones with --filter=blob:none.
	run(bare, "config", "uploadpack.allowFilter", "true")
	if err := os.MkdirAll(seed, 0o755); err != nil {
		g.tb.Fatal(err)
	}
	run(seed, "init", "--initial-branch=main")
	if err := os.WriteFile(filepath.Join(seed, "README.md"), []byte("# "+name+"\n"), 0o644); err != nil {
		g.tb.Fatal(err)
	}
	run(seed, "add", "README.md")
	run(seed, "commit", "-m", "initial commit")
	run(seed, "push", bare, "main")
	return g.URL + "/" + name
}

// Branches lists the repository's branches and their commits.
func (g *GitServer) Branches(name string) (map[string]string, error) {
	out, err := exec.Command("git", "-C", filepath.Join(g.root, name), "for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads").Output()
	if err != nil {
		return nil, fmt.Errorf("git for-each-ref: %w", err)
	}
	refs := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if b, sha, ok := strings.Cut(line, " "); ok {
			refs[b] = sha
		}
	}
	return refs, nil
}
