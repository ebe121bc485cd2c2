package fakecloud

import (
	"crypto/md5"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
)

// SSH keys and private networks exist in the fake only as seeded
// (Options.SSHKeys, Options.Networks): tdf never creates them, it names
// them in its configuration and attaches them to new servers by id.

// SSHKey is a seeded SSH key.
type SSHKey struct {
	Name      string
	PublicKey string
}

// Network is a seeded private network; servers attached to it get the
// next address of IPRange (a /16 or smaller, e.g. 10.0.0.0/16).
type Network struct {
	Name    string
	IPRange string
}

type sshKey struct {
	id int64
	SSHKey
	created time.Time
}

type network struct {
	id      int64
	name    string
	ipRange netip.Prefix
	next    netip.Addr
	created time.Time
}

// seedExtras creates the seeded keys and networks; it panics on an
// invalid network range (a test's mistake).
func (s *Server) seedExtras() {
	now := time.Now().UTC()
	for i, k := range s.opts.SSHKeys {
		s.sshKeys = append(s.sshKeys, &sshKey{id: int64(700001 + i), SSHKey: k, created: now})
	}
	for i, n := range s.opts.Networks {
		p := netip.MustParsePrefix(n.IPRange).Masked()
		// .1 is the network's gateway: servers start at .2.
		s.networks = append(s.networks, &network{id: int64(800001 + i), name: n.Name, ipRange: p, next: p.Addr().Next().Next(), created: now})
	}
}

func (k *sshKey) schema() schema.SSHKey {
	sum := md5.Sum([]byte(k.PublicKey))
	var fp []string
	for _, b := range sum {
		fp = append(fp, fmt.Sprintf("%02x", b))
	}
	return schema.SSHKey{ID: k.id, Name: k.Name, PublicKey: k.PublicKey, Fingerprint: strings.Join(fp, ":"),
		Labels: map[string]string{}, Created: k.created}
}

func (s *Server) networkSchemaLocked(n *network) schema.Network {
	out := schema.Network{ID: n.id, Name: n.name, Created: n.created, IPRange: n.ipRange.String(),
		Subnets: []schema.NetworkSubnet{{Type: "cloud", IPRange: n.ipRange.String(), NetworkZone: "eu-central", Gateway: n.ipRange.Addr().Next().String()}},
		Routes:  []schema.NetworkRoute{}, Servers: []int64{}, LoadBalancers: []int64{}, Labels: map[string]string{}}
	for _, sv := range s.servers {
		if _, ok := sv.privateNets[n.id]; ok {
			out.Servers = append(out.Servers, sv.id)
		}
	}
	slices.Sort(out.Servers)
	return out
}

type sshKeyListResponse struct {
	schema.SSHKeyListResponse
	schema.MetaResponse
}

type networkListResponse struct {
	schema.NetworkListResponse
	schema.MetaResponse
}

func (s *Server) listSSHKeys(r *http.Request, _ int64, _ decision) (int, any) {
	keys, meta, errStatus, errBody := listByName(s, r, func() []*sshKey { return s.sshKeys },
		func(k *sshKey) string { return k.Name }, (*sshKey).schema)
	if errBody != nil {
		return errStatus, errBody
	}
	resp := sshKeyListResponse{MetaResponse: schema.MetaResponse{Meta: meta}}
	resp.SSHKeys = keys
	return http.StatusOK, resp
}

func (s *Server) listNetworks(r *http.Request, _ int64, _ decision) (int, any) {
	nets, meta, errStatus, errBody := listByName(s, r, func() []*network { return s.networks },
		func(n *network) string { return n.name }, s.networkSchemaLocked)
	if errBody != nil {
		return errStatus, errBody
	}
	resp := networkListResponse{MetaResponse: schema.MetaResponse{Meta: meta}}
	resp.Networks = nets
	return http.StatusOK, resp
}

// listByName answers a list of seeded items: those the query's name
// selects (all without one), paged, each as view shows it (view runs with
// the server locked). A bad page answers errBody.
func listByName[T, V any](s *Server, r *http.Request, items func() []*T, name func(*T) string, view func(*T) V) (page []V, meta schema.Meta, errStatus int, errBody any) {
	q := r.URL.Query()
	n, perPage, err := pageParams(q)
	if err != nil {
		errStatus, errBody = errorResp(http.StatusBadRequest, "invalid_input", err.Error())
		return nil, meta, errStatus, errBody
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []*T
	for _, it := range items() {
		if q.Get("name") == "" || q.Get("name") == name(it) {
			all = append(all, it)
		}
	}
	selected, pagination := paginate(all, n, perPage)
	page = make([]V, 0, len(selected))
	for _, it := range selected {
		page = append(page, view(it))
	}
	return page, schema.Meta{Pagination: &pagination}, 0, nil
}

// attachLocked checks a create's SSH keys and networks and gives the
// server an address in each network.
func (s *Server) attachLocked(sv *server, keys, networks []int64) error {
	for _, id := range keys {
		if !slices.ContainsFunc(s.sshKeys, func(k *sshKey) bool { return k.id == id }) {
			return fmt.Errorf("invalid input in field 'ssh_keys': ssh key %d not found", id)
		}
	}
	for _, id := range networks {
		i := slices.IndexFunc(s.networks, func(n *network) bool { return n.id == id })
		if i < 0 {
			return fmt.Errorf("invalid input in field 'networks': network %d not found", id)
		}
		n := s.networks[i]
		if !n.ipRange.Contains(n.next) {
			return fmt.Errorf("network %s has no free address", n.name)
		}
		if sv.privateNets == nil {
			sv.privateNets = map[int64]netip.Addr{}
		}
		sv.privateNets[id] = n.next
		n.next = n.next.Next()
	}
	sv.sshKeys = slices.Clone(keys)
	return nil
}

// privateNetSchema is the server's private_net.
func (sv *server) privateNetSchema() []schema.ServerPrivateNet {
	out := []schema.ServerPrivateNet{}
	ids := make([]int64, 0, len(sv.privateNets))
	for id := range sv.privateNets {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		ip := sv.privateNets[id]
		out = append(out, schema.ServerPrivateNet{Network: id, IP: ip.String(), AliasIPs: []string{},
			MACAddress: fmt.Sprintf("86:00:00:%02x:%02x:%02x", byte(sv.id>>16), byte(sv.id>>8), byte(sv.id))})
	}
	return out
}
