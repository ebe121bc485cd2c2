package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestDevClusterSecureByDefault runs `tdf dev` as `make run` does, and
// checks the first-start story of a new user: without a token every /v1
// route answers 401 (probes and the JWKS stay open), the bootstrap admin
// token is in a 0600 file, the dashboard link signs in, and the CLI works
// with no extra step (tdf dev saved the token for its URLs).
func TestDevClusterSecureByDefault(t *testing.T) {
	bin := Binary(t)
	httpPort, raftPort := consecutivePorts(t, 3), consecutivePorts(t, 3)
	others, err := FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	dir, cfgDir := t.TempDir(), t.TempDir()
	lbAddr, cloudAddr := fmt.Sprintf("127.0.0.1:%d", others[0]), fmt.Sprintf("127.0.0.1:%d", others[1])
	cmd := exec.Command(bin, "dev", "--data-dir", dir, "--http-port", strconv.Itoa(httpPort), "--raft-port", strconv.Itoa(raftPort),
		"--lb-addr", lbAddr, "--fakecloud-addr", cloudAddr, "--restart=false")
	env := append(os.Environ(), "TDF_CONFIG_DIR="+cfgDir)
	cmd.Env = env
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	var mu sync.Mutex
	var lines []string
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			mu.Lock()
			lines = append(lines, sc.Text())
			mu.Unlock()
		}
	}()
	var dashboard string
	WaitFor(t, 2*DefaultElectionWait, "tdf dev to print the dashboard's sign-in link", func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, l := range lines {
			if _, link, ok := strings.Cut(l, "tdf dev: dashboard: "); ok {
				dashboard = link
				return nil
			}
		}
		return fmt.Errorf("not yet; output so far:\n%s", strings.Join(lines, "\n"))
	})
	n1 := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	if !strings.HasPrefix(dashboard, n1+"/ui/#token=tdf_") {
		t.Fatalf("dashboard link %q, want %s/ui/#token=…", dashboard, n1)
	}
	var tokenFile string
	for _, id := range []string{"n1", "n2", "n3"} {
		p := filepath.Join(dir, id, "admin-token")
		if fi, err := os.Stat(p); err == nil {
			tokenFile = p
			if fi.Mode().Perm() != 0o600 {
				t.Fatalf("%s has mode %v, want 0600", p, fi.Mode().Perm())
			}
		}
	}
	if tokenFile == "" {
		t.Fatal("no node's data directory holds admin-token")
	}
	for _, p := range []string{"/v1/tasks", "/v1/tasks/t-1", "/v1/cluster", "/v1/cluster/snapshot", "/v1/nodes", "/v1/errors", "/v1/events", "/v1/tokens", "/v1/credentials", "/v1/whoami", "/metrics"} {
		if s := getStatus(t, n1+p); s != http.StatusUnauthorized {
			t.Errorf("GET %s without a token = %d, want 401", p, s)
		}
	}
	for _, p := range []string{"/healthz", "/readyz", "/.well-known/jwks.json"} {
		if s := getStatus(t, n1+p); s != http.StatusOK {
			t.Errorf("GET %s without a token = %d, want 200", p, s)
		}
	}
	tdf := func(args ...string) string {
		t.Helper()
		c := exec.Command(bin, args...)
		c.Env = append(env, "TDF_TOKEN=", "TDF_ADDR="+n1)
		b, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("tdf %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		return string(b)
	}
	if got := tdf("task", "submit", "--project", "p1", "--user", "u1", "--repo", "github.com/acme/app", "--prompt", "secure by default"); !strings.Contains(got, "t-") {
		t.Fatalf("tdf task submit printed %q", got)
	}
	tdf("task", "list")
	tdf("cluster", "status")
	if got := tdf("token", "list"); !strings.Contains(got, "bootstrap") && !strings.Contains(got, "admin") {
		t.Fatalf("tdf token list printed %q", got)
	}
}

// consecutivePorts finds n free consecutive loopback ports (tdf dev takes
// its nodes' ports from a first one).
func consecutivePorts(t *testing.T, n int) int {
	t.Helper()
	for try := 0; try < 200; try++ {
		ps, err := FreePorts(1)
		if err != nil {
			t.Fatal(err)
		}
		var lns []net.Listener
		ok := true
		for i := 0; i < n && ok; i++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", ps[0]+i))
			if err != nil {
				ok = false
				break
			}
			lns = append(lns, ln)
		}
		for _, ln := range lns {
			ln.Close()
		}
		if ok {
			return ps[0]
		}
	}
	t.Fatalf("no %d consecutive free ports", n)
	return 0
}

func getStatus(t *testing.T, url string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
