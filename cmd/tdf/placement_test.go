package main

import (
	"flag"
	"strings"
	"testing"

	"github.com/tdf-project/tdf/handlers"
)

func TestPlacementFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string // "" for success
	}{
		{[]string{"--cloud-token", "x"}, "--agent-source-ranges is required"},
		{[]string{"--cloud-token", "x", "--agent-source-ranges", "0.0.0.0/0"}, "admits the whole internet"},
		{[]string{"--cloud-token", "x", "--agent-source-ranges", "::/0"}, "admits the whole internet"},
		{[]string{"--cloud-token", "x", "--agent-source-ranges", "10.1.2.3"}, "not a CIDR"},
		{[]string{"--cloud-token", "x", "--agent-source-ranges", "203.0.113.7/32", "--vm-sizes", "small"}, "not size=server-type"},
		{[]string{"--cloud-token", "x", "--agent-source-ranges", "203.0.113.7/32,198.51.100.0/24", "--ssh-source-ranges", "192.0.2.1/32"}, ""},
		{[]string{"--cloud-token", "x", "--private-network", "agents", "--agent-over-private-network"}, ""},
		{[]string{"--cloud-endpoint", "http://127.0.0.1:9000/v1", "--cloud-token", "x"}, ""},
	} {
		var cf cloudFlags
		var pf placementFlags
		fs := flag.NewFlagSet("server", flag.ContinueOnError)
		cf.bind(fs)
		pf.bind(fs, &cf)
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		pc := handlers.DefaultConfig()
		err := pf.apply(&pc, &cf)
		if (err == nil) != (c.want == "") || err != nil && !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
		if err == nil && len(pf.agentSources) > 0 && (cf.opts.Firewall == nil || cf.opts.Firewall.AgentPort != pc.AgentPort) {
			t.Errorf("%v: firewall %+v, want one for agent port %d", c.args, cf.opts.Firewall, pc.AgentPort)
		}
	}
}
