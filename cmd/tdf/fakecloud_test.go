package main

import (
	"net/netip"
	"strings"
	"testing"
)

func TestAgentAddresses(t *testing.T) {
	for _, tc := range []struct {
		subnet, firstIP string
		first, within   string
		err             string
	}{
		{"", "127.0.1.1", "127.0.1.1", "127.0.0.0/8", ""},
		{"10.213.7.128/25", "127.0.1.1", "10.213.7.129", "10.213.7.128/25", ""},
		{"10.213.7.130/25", "127.0.1.1", "10.213.7.129", "10.213.7.128/25", ""},
		{"10.213.7.128/25", "10.213.7.200", "10.213.7.200", "10.213.7.128/25", ""},
		{"10.213.7.128", "127.0.1.1", "", "", "not an IPv4 CIDR"},
		{"fd00::/64", "127.0.1.1", "", "", "not an IPv4 CIDR"},
		{"10.0.0.4/31", "127.0.1.1", "", "", "room for hosts"},
		{"", "::1", "", "", "--first-ip"},
	} {
		first, within, err := agentAddresses(tc.subnet, tc.firstIP)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("agentAddresses(%q, %q) error %v, want one with %q", tc.subnet, tc.firstIP, err, tc.err)
			}
			continue
		}
		if err != nil || first != netip.MustParseAddr(tc.first) || within != netip.MustParsePrefix(tc.within) {
			t.Errorf("agentAddresses(%q, %q) = %v, %v, %v; want %s, %s", tc.subnet, tc.firstIP, first, within, err, tc.first, tc.within)
		}
	}
}
