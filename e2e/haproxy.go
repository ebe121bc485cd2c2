package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// HAProxy is a haproxy process running docs/haproxy.cfg in front of a
// cluster's three nodes. Its Node is the process slot (ID "haproxy", URL
// the control-plane URL the agents are given); it is stopped when the
// test ends.
type HAProxy struct {
	*Node
}

// RequireHAProxy returns the path of haproxy (Debian's haproxy package).
// Without it the test fails under CI=true (CI installs it: .ci/run) and is
// skipped elsewhere, naming it.
func RequireHAProxy(tb testing.TB) string {
	tb.Helper()
	path, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("haproxy is not on PATH, and CI must run this test (apt-get install -y haproxy)")
		}
		tb.Skip("haproxy is not on PATH (apt-get install -y haproxy); skipping the test behind haproxy")
	}
	return path
}

// StartClusterBehindHAProxy starts a three-node cluster with a fakecloud
// whose agents call back through haproxy running the production
// configuration, docs/haproxy.cfg, unchanged: haproxy's port is chosen
// first and given to the nodes as --control-plane-url, then haproxy starts
// with the nodes' addresses in its environment (TDF_N1…TDF_N3). It fails
// or skips as RequireHAProxy does. opts.FakeCloud defaults to the pipeline
// timers' fakecloud; opts.Nodes must be 0 or 3.
func StartClusterBehindHAProxy(tb testing.TB, opts Options) (*Cluster, *HAProxy) {
	tb.Helper()
	bin := RequireHAProxy(tb)
	if opts.Nodes != 0 && opts.Nodes != 3 {
		tb.Fatalf("StartClusterBehindHAProxy: docs/haproxy.cfg lists three nodes, not %d", opts.Nodes)
	}
	if opts.FakeCloud == nil {
		opts.FakeCloud = &FakeCloudOptions{Args: append([]string(nil), PipelineCloudArgs...)}
	}
	root, err := ModuleRoot()
	if err != nil {
		tb.Fatal(err)
	}
	ports, err := FreePorts(1)
	if err != nil {
		tb.Fatal(err)
	}
	hp := &HAProxy{Node: &Node{ID: "haproxy", HTTPAddr: fmt.Sprintf("127.0.0.1:%d", ports[0]), bin: bin}}
	hp.URL = "http://" + hp.HTTPAddr
	opts.ControlPlaneURL = hp.URL
	c := StartCluster(tb, opts)
	hp.LogPath = filepath.Join(filepath.Dir(c.Nodes[0].LogPath), "haproxy.log")
	// -db: stay in the foreground, so the harness owns the process.
	hp.args = []string{"-db", "-f", filepath.Join(root, "docs", "haproxy.cfg")}
	hp.env = []string{"TDF_LB_BIND=" + hp.HTTPAddr}
	for i, n := range c.Nodes {
		hp.env = append(hp.env, fmt.Sprintf("TDF_N%d=%s", i+1, n.HTTPAddr))
	}
	c.Start(hp.Node)
	tb.Cleanup(func() {
		if _, ok := c.signalAndWait(hp.Node, syscall.SIGTERM, DefaultStopWait); !ok {
			c.signalAndWait(hp.Node, syscall.SIGKILL, DefaultStopWait)
		}
		if tb.Failed() {
			tb.Logf("---- last %d lines of haproxy (%s) ----\n%s", logTailLines, hp.LogPath, Tail(hp.LogPath, logTailLines))
		}
	})
	c.WaitFor(DefaultElectionWait, "haproxy answers", func() error {
		if !hp.Running() {
			return fmt.Errorf("haproxy exited (see %s)", hp.LogPath)
		}
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(hp.URL + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s/healthz = %s", hp.URL, resp.Status)
		}
		return nil
	})
	return c, hp
}
