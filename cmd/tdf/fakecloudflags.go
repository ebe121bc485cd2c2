package main

import (
	"flag"
	"fmt"
	"net/netip"
	"strings"

	"github.com/tdf-project/tdf/cloud/fakecloud"
)

// fakeCatalogFlags are the fake's stock and the project's SSH keys and
// private networks.
type fakeCatalogFlags struct{ unavailable, networks, sshKeys string }

func (f *fakeCatalogFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&f.unavailable, "unavailable", "", "out of stock: locations (every type) or location:type, comma-separated (e.g. fsn1 or fsn1:cx23,nbg1:cx33); creates there answer 412 resource_unavailable")
	fs.StringVar(&f.networks, "networks", "", "private networks of the project, name=ip-range, comma-separated (e.g. tdf-agents=10.0.0.0/16)")
	fs.StringVar(&f.sshKeys, "ssh-keys", "", "names of the project's SSH keys, comma-separated")
}

func (f *fakeCatalogFlags) apply(co *fakecloud.Options) error {
	for _, item := range splitList(f.unavailable) {
		loc, typ, _ := strings.Cut(item, ":")
		if co.Unavailable == nil {
			co.Unavailable = map[string][]string{}
		}
		if typ == "" {
			co.Unavailable[loc] = nil
		} else if _, all := co.Unavailable[loc]; !all || co.Unavailable[loc] != nil {
			co.Unavailable[loc] = append(co.Unavailable[loc], typ)
		}
	}
	for _, item := range splitList(f.networks) {
		name, cidr, ok := strings.Cut(item, "=")
		if _, err := netip.ParsePrefix(cidr); !ok || name == "" || err != nil {
			return fmt.Errorf("--networks: %q is not name=ip-range (e.g. tdf-agents=10.0.0.0/16)", item)
		}
		co.Networks = append(co.Networks, fakecloud.Network{Name: name, IPRange: cidr})
	}
	for _, name := range splitList(f.sshKeys) {
		co.SSHKeys = append(co.SSHKeys, fakecloud.SSHKey{Name: name, PublicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + name + " " + name})
	}
	return nil
}
