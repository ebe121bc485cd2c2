package server

import (
	"context"

	"github.com/hashicorp/go-hclog"

	"github.com/tdf-project/tdf/fsm"
)

// controlPlane is the leader's duty (run by clusterDuties, before the
// signing key, so that a cluster that can sign has an issuer) to make sure
// the cluster has a control-plane URL: the one URL agents call back to and
// the issuer of every token. It is replicated state, so every node signs
// and verifies alike and tokens survive a leader change. While none is set
// (a new cluster, or after restoring a backup from before the setting) the
// leader commits its bootstrap URL: --control-plane-url, else its own API
// URL. The commit is conditional (IfUnset), so a later leader's default
// never replaces the first one or an operator's choice (PUT
// /v1/cluster/control-plane).
type controlPlane struct {
	configured, own string
	log             hclog.Logger
	warned          bool
}

func (cp *controlPlane) ensure(ctx context.Context, f *fsm.FSM, apply func(context.Context, fsm.Command) (*fsm.Result, error)) error {
	cur := f.ControlPlaneURL()
	if cur != "" {
		if cp.configured != "" && cp.configured != cur && !cp.warned {
			// The flag only seeds a new cluster; the replicated URL rules.
			cp.warned = true
			cp.log.Warn("--control-plane-url differs from the cluster's control-plane URL, which is the one in force; change it with PUT /v1/cluster/control-plane",
				"flag", cp.configured, "cluster", cur)
		}
		return nil
	}
	url := cp.configured
	if url == "" {
		url = cp.own
	}
	res, err := apply(ctx, fsm.SetControlPlane{URL: url, IfUnset: true})
	if err != nil {
		return err
	}
	if res.Err != nil {
		return res.Err
	}
	switch {
	case res.Unchanged:
	case cp.configured == "":
		cp.log.Warn("CONTROL-PLANE URL DEFAULTED to this node's API URL: VM agents call back here and check it as the tokens' issuer, so they lose the cluster when this node is down. Production needs a stable load-balancer URL in front of every node: set it with --control-plane-url on a new cluster or PUT /v1/cluster/control-plane",
			"url", url)
	default:
		cp.log.Info("control-plane URL set", "url", url)
	}
	return nil
}
