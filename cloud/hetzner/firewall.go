package hetzner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/tdf-project/tdf/cloud"
)

// FirewallOptions is the Hetzner firewall every server of tdf gets at its
// creation, before it boots: inbound traffic is dropped but for the agent
// port from the control plane's source ranges and, if any are given, SSH
// from its own ranges. Outbound traffic is not restricted.
type FirewallOptions struct {
	// Labels mark the firewall as this cluster's (the servers' ownership
	// labels); the leak sweep deletes unused firewalls carrying them.
	Labels map[string]string
	// AgentPort is the VM agent's port (8080 for the real agent).
	AgentPort int
	// AgentSources are the CIDRs the control plane reaches agents from.
	// Required; an address open to all (0.0.0.0/0, ::/0) is refused.
	AgentSources []string
	// SSHSources, if any, may reach port 22. Empty: no SSH at all.
	SSHSources []string
}

// Validate refuses a firewall that would admit the agent port from
// anywhere, or ranges that are not CIDRs.
func (f FirewallOptions) Validate() error {
	if f.AgentPort <= 0 || f.AgentPort > 65535 {
		return fmt.Errorf("hetzner: firewall agent port %d is not a port", f.AgentPort)
	}
	if len(f.AgentSources) == 0 {
		return errors.New("hetzner: the firewall needs the control plane's source ranges for the agent port")
	}
	if len(f.Labels) == 0 {
		return errors.New("hetzner: the firewall needs ownership labels")
	}
	for _, set := range [][]string{f.AgentSources, f.SSHSources} {
		for _, s := range set {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return fmt.Errorf("hetzner: firewall source %q is not a CIDR such as 203.0.113.7/32", s)
			}
			if p.Bits() == 0 {
				return fmt.Errorf("hetzner: firewall source %s admits the whole internet; name the control plane's ranges", s)
			}
		}
	}
	return nil
}

// name is derived from the rules, so a change of ranges makes a new
// firewall (new servers get it; the old one is swept once no server uses
// it) instead of editing one that running servers rely on.
func (f FirewallOptions) name() string {
	h := sha256.New()
	fmt.Fprintf(h, "%d|%s|%s", f.AgentPort, strings.Join(f.AgentSources, ","), strings.Join(f.SSHSources, ","))
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(f.Labels)) {
		parts = append(parts, k+"="+f.Labels[k])
	}
	fmt.Fprint(h, strings.Join(parts, ","))
	return "tdf-agents-" + hex.EncodeToString(h.Sum(nil))[:12]
}

func (f FirewallOptions) rules() []hcloud.FirewallRule {
	cidrs := func(ss []string) []net.IPNet {
		out := make([]net.IPNet, 0, len(ss))
		for _, s := range ss {
			_, n, _ := net.ParseCIDR(s)
			out = append(out, *n)
		}
		return out
	}
	port, ssh := strconv.Itoa(f.AgentPort), "22"
	desc := "VM agent, from the control plane"
	rules := []hcloud.FirewallRule{{Direction: hcloud.FirewallRuleDirectionIn, Protocol: hcloud.FirewallRuleProtocolTCP,
		Port: &port, SourceIPs: cidrs(f.AgentSources), Description: &desc}}
	if len(f.SSHSources) > 0 {
		d := "SSH, from the operators' ranges"
		rules = append(rules, hcloud.FirewallRule{Direction: hcloud.FirewallRuleDirectionIn, Protocol: hcloud.FirewallRuleProtocolTCP,
			Port: &ssh, SourceIPs: cidrs(f.SSHSources), Description: &d})
	}
	return rules
}

// firewallLabel marks tdf's firewalls apart from its servers.
const firewallLabel = "tdf-role"

// ensureFirewall returns the id of the cluster's firewall, creating it once:
// looked up by name first, created, and on uniqueness_error (another leader
// or hcloud-go's own re-sent POST won) looked up again.
func (p *Provider) ensureFirewall(ctx context.Context) (int64, error) {
	p.fwMu.Lock()
	defer p.fwMu.Unlock()
	if p.fwID != 0 {
		return p.fwID, nil
	}
	f := *p.opts.Firewall
	name := f.name()
	fw, resp, err := p.client.Firewall.GetByName(ctx, name)
	if err != nil {
		return 0, wrap("get firewall", err, resp)
	}
	if fw == nil {
		labels := maps.Clone(f.Labels)
		labels[firewallLabel] = "agents"
		res, resp, cerr := p.client.Firewall.Create(ctx, hcloud.FirewallCreateOpts{Name: name, Labels: labels, Rules: f.rules()})
		switch {
		case cerr == nil:
			fw = res.Firewall
		case hcloud.IsError(cerr, hcloud.ErrorCodeUniquenessError):
			if fw, resp, err = p.client.Firewall.GetByName(ctx, name); err != nil || fw == nil {
				return 0, wrap("get firewall", errors.Join(cerr, err), resp)
			}
		default:
			return 0, wrap("create firewall", cerr, resp)
		}
	}
	p.fwID = fw.ID
	return fw.ID, nil
}

// attachFirewall applies the firewall to an adopted server that lacks it
// (one created before firewalls were configured).
func (p *Provider) attachFirewall(ctx context.Context, hs *hcloud.Server) error {
	id, err := p.ensureFirewall(ctx)
	if err != nil {
		return err
	}
	for _, f := range hs.PublicNet.Firewalls {
		if f.Firewall.ID == id {
			return nil
		}
	}
	_, resp, err := p.client.Firewall.ApplyResources(ctx, &hcloud.Firewall{ID: id}, []hcloud.FirewallResource{
		{Type: hcloud.FirewallResourceTypeServer, Server: &hcloud.FirewallResourceServer{ID: hs.ID}},
	})
	if err != nil && !hcloud.IsError(err, hcloud.ErrorCodeFirewallAlreadyApplied) {
		return wrap("apply firewall", err, resp)
	}
	return nil
}

var _ cloud.FirewallSweeper = (*Provider)(nil)

// SweepFirewalls implements cloud.FirewallSweeper: it deletes the firewalls
// carrying this cluster's labels that are applied to nothing and are not
// the current one (left behind by a change of source ranges).
func (p *Provider) SweepFirewalls(ctx context.Context) (int, error) {
	if p.opts.Firewall == nil {
		return 0, nil
	}
	f := *p.opts.Firewall
	sel := []string{firewallLabel + "=agents"}
	for _, k := range slices.Sorted(maps.Keys(f.Labels)) {
		sel = append(sel, k+"="+f.Labels[k])
	}
	all, err := p.client.Firewall.AllWithOpts(ctx, hcloud.FirewallListOpts{ListOpts: hcloud.ListOpts{LabelSelector: strings.Join(sel, ",")}})
	if err != nil {
		return 0, wrap("list firewalls", err, nil)
	}
	deleted := 0
	for _, fw := range all {
		if fw.Name == f.name() || len(fw.AppliedTo) > 0 {
			continue
		}
		resp, err := p.client.Firewall.Delete(ctx, fw)
		if err != nil && !hcloud.IsError(err, hcloud.ErrorCodeNotFound, hcloud.ErrorCodeResourceInUse) {
			return deleted, wrap("delete firewall", err, resp)
		}
		if err == nil {
			deleted++
		}
	}
	return deleted, nil
}

// references resolves the configured SSH key and network names to ids,
// once: the API takes them by id only.
func (p *Provider) references(ctx context.Context) (keys []int64, network int64, err error) {
	p.refsMu.Lock()
	defer p.refsMu.Unlock()
	if p.resolved {
		return p.keyIDs, p.netID, nil
	}
	for _, name := range p.opts.SSHKeys {
		k, resp, err := p.client.SSHKey.GetByName(ctx, name)
		if err != nil {
			return nil, 0, wrap("get ssh key", err, resp)
		}
		if k == nil {
			return nil, 0, fmt.Errorf("%w: SSH key %q does not exist in the project", cloud.ErrInvalidSpec, name)
		}
		p.keyIDs = append(p.keyIDs, k.ID)
	}
	if p.opts.Network != "" {
		n, resp, err := p.client.Network.GetByName(ctx, p.opts.Network)
		if err != nil {
			return nil, 0, wrap("get network", err, resp)
		}
		if n == nil {
			return nil, 0, fmt.Errorf("%w: network %q does not exist in the project", cloud.ErrInvalidSpec, p.opts.Network)
		}
		p.netID = n.ID
	}
	p.resolved = true
	return p.keyIDs, p.netID, nil
}
