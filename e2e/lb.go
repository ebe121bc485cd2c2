package e2e

import (
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"

	"github.com/tdf-project/tdf/lb"
)

// startLB runs the Go load balancer in the test process, in front of the
// nodes, on a free port: the agents' one control-plane URL. Unlike the
// nodes it is never killed, so it stands for a production load balancer.
// It stops at the test's end, after the nodes (cleanups run last first).
func (c *Cluster) startLB(logDir string) {
	c.tb.Helper()
	var backends []string
	for _, n := range c.Nodes {
		backends = append(backends, n.URL)
	}
	c.lbLog = filepath.Join(logDir, "lb.log")
	logf, err := os.OpenFile(c.lbLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.tb.Fatalf("lb log: %v", err)
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "e2e", Output: logf, Level: hclog.Info})
	srv, err := lb.Listen("127.0.0.1:0", lb.Options{Backends: backends, Logger: logger})
	if err != nil {
		logf.Close()
		c.tb.Fatalf("lb: %v", err)
	}
	c.LB, c.ControlPlaneURL = srv, srv.URL
	c.tb.Cleanup(func() {
		_ = srv.Close()
		logf.Close()
	})
}
