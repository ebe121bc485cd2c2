package main

import (
	"flag"
	"fmt"
	"maps"
	"strings"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/cloud/hetzner"
	"github.com/tdf-project/tdf/handlers"
)

// placementFlags are where and on what tdf places VMs, and how they are
// locked down: size → server type, fallback locations, the firewall's
// source ranges, and the pace of Hetzner API calls.
type placementFlags struct {
	sizes, fallbacks, agentSources, sshSources string
}

func (p *placementFlags) bind(fs *flag.FlagSet, c *cloudFlags) {
	fs.StringVar(&p.sizes, "vm-sizes", "small=cx23,medium=cx33,large=cx43", "task VM sizes and the server types they map to (size=type,…)")
	fs.StringVar(&p.fallbacks, "fallback-locations", "", "locations tried in order when a task's location has no room for its server type (e.g. nbg1,hel1)")
	fs.StringVar(&p.agentSources, "agent-source-ranges", "", "CIDRs the control plane reaches VM agents from; every new server gets a firewall admitting the agent port from these only (required with the real Hetzner API)")
	fs.StringVar(&p.sshSources, "ssh-source-ranges", "", "CIDRs allowed to reach SSH on new servers (default: none)")
	fs.Func("ssh-keys", "names of the project's SSH keys to put on new servers (default none)", func(v string) error {
		c.opts.SSHKeys = splitList(v)
		return nil
	})
	fs.StringVar(&c.opts.Network, "private-network", "", "name of the project's private network to attach new servers to")
	fs.BoolVar(&c.opts.AgentOverNetwork, "agent-over-private-network", false, "reach VM agents at their address in --private-network (the control plane must be in that network)")
	fs.IntVar(&c.opts.MaxConcurrent, "hetzner-max-concurrent", c.opts.MaxConcurrent, "Hetzner API requests in flight at once")
	fs.IntVar(&c.opts.RequestsPerHour, "hetzner-requests-per-hour", c.opts.RequestsPerHour, "Hetzner API request budget tdf paces itself to (the project's limit is 3600; negative: no pacing)")
	fs.DurationVar(&c.opts.CatalogTTL, "hetzner-catalog-ttl", c.opts.CatalogTTL, "how long server types, locations and prices read from Hetzner are cached")
}

// apply puts the flags into the pipeline, the provider options and the
// API's submit check. Without agent source ranges against the real
// Hetzner API it refuses to start: the agent port would be open to all.
func (p *placementFlags) apply(pc *handlers.Config, c *cloudFlags) error {
	sizes := map[string]string{}
	for _, kv := range splitList(p.sizes) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || v == "" {
			return fmt.Errorf("--vm-sizes: %q is not size=server-type", kv)
		}
		sizes[k] = v
	}
	if len(sizes) == 0 {
		return fmt.Errorf("--vm-sizes: at least one size is needed")
	}
	pc.ServerTypes, pc.FallbackLocations = sizes, splitList(p.fallbacks)
	// The submit check's first gate knows the configured sizes.
	api.VMSizes = maps.Clone(sizes)
	agents := splitList(p.agentSources)
	if len(agents) == 0 {
		public := !c.opts.AgentOverNetwork
		if public && strings.TrimRight(c.opts.Endpoint, "/") == hcloud.Endpoint && c.opts.Token != "" {
			return fmt.Errorf("--agent-source-ranges is required with the Hetzner API: without it the agent port of every VM would be open to the internet (give the control plane's addresses, e.g. 203.0.113.7/32)")
		}
		return nil
	}
	c.opts.Firewall = &hetzner.FirewallOptions{
		Labels:       map[string]string{handlers.LabelManagedBy: handlers.ManagedBy, handlers.LabelCluster: pc.Cluster},
		AgentPort:    pc.AgentPort,
		AgentSources: agents,
		SSHSources:   splitList(p.sshSources),
	}
	return c.opts.Firewall.Validate()
}
