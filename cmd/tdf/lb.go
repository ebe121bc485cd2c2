package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/tdf-project/tdf/lb"
)

// runLB runs the built-in load balancer: the one stable URL in front of
// the cluster that agents are given as CONTROL_PLANE_URL (production uses
// a real one, docs/haproxy.cfg).
func runLB(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("lb", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8000", "address the load balancer listens on")
	backends := fs.String("backends", "", "the nodes' API URLs, comma-separated (http://127.0.0.1:8001,http://127.0.0.1:8002,…)")
	var o lb.Options
	fs.StringVar(&o.HealthPath, "health-path", "/readyz", "path polled on every backend; 200 means ready")
	fs.DurationVar(&o.CheckInterval, "check-interval", 500*time.Millisecond, "pause between two health-check rounds")
	fs.DurationVar(&o.DialTimeout, "dial-timeout", 2*time.Second, "how long to try connecting to a backend before the next")
	var logOpts logOptions
	logOpts.bind(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("lb takes no arguments (got %q); give the nodes with --backends", fs.Args())
	}
	if o.Backends = splitList(*backends); len(o.Backends) == 0 {
		return fmt.Errorf("--backends is required: the nodes' API URLs, comma-separated")
	}
	o.Logger = logOpts.logger("tdf")
	srv, err := lb.Listen(*listen, o)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return srv.Close()
	case err := <-srv.Done():
		_ = srv.Close()
		return fmt.Errorf("load balancer: %w", err)
	}
}
