package server

import (
	"context"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tdf-project/tdf/fsm"
)

// controlPlaneDuty returns the leader hook that makes sure the cluster has
// a control-plane URL: the one URL agents call back to and the issuer of
// every token. It is replicated state, so every node signs and verifies
// alike and tokens survive a leader change. While none is set (a new
// cluster, or after restoring a backup from before the setting) the leader
// commits its bootstrap URL: --control-plane-url, else its own API URL.
// The commit is conditional (IfUnset), so a later leader's default never
// replaces the first one or an operator's choice (PUT
// /v1/cluster/control-plane).
func controlPlaneDuty(f *fsm.FSM, apply func(context.Context, fsm.Command) (*fsm.Result, error), configured, ownURL string, log hclog.Logger) func(context.Context, uint64) {
	return func(ctx context.Context, _ uint64) {
		warned := false
		for {
			wait := 30 * time.Second
			switch cur := f.ControlPlaneURL(); {
			case cur == "":
				if err := setDefaultControlPlane(ctx, apply, configured, ownURL, log); err != nil {
					if ctx.Err() == nil {
						log.Warn("cannot set the control-plane URL; retrying", "error", err)
					}
					wait = time.Second
				}
			case configured != "" && configured != cur && !warned:
				// The flag only seeds a new cluster; the replicated URL rules.
				warned = true
				log.Warn("--control-plane-url differs from the cluster's control-plane URL, which is the one in force; change it with PUT /v1/cluster/control-plane",
					"flag", configured, "cluster", cur)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}
}

func setDefaultControlPlane(ctx context.Context, apply func(context.Context, fsm.Command) (*fsm.Result, error), configured, ownURL string, log hclog.Logger) error {
	url := configured
	if url == "" {
		url = ownURL
	}
	res, err := apply(ctx, fsm.SetControlPlane{URL: url, IfUnset: true})
	if err != nil {
		return err
	}
	if res.Err != nil {
		return res.Err
	}
	switch {
	case res.Duplicate:
	case configured == "":
		log.Warn("CONTROL-PLANE URL DEFAULTED to this node's API URL: VM agents call back here and check it as the tokens' issuer, so they lose the cluster when this node is down. Production needs a stable load-balancer URL in front of every node: set it with --control-plane-url on a new cluster or PUT /v1/cluster/control-plane",
			"url", url)
	default:
		log.Info("control-plane URL set", "url", url)
	}
	return nil
}
