package fakecloud

import (
	"fmt"
	"maps"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
)

// SeedServer describes a server that exists before the test's control
// plane does (one the old system created), for Seed.
type SeedServer struct {
	// ID is the server's id (0: the next one); an export names servers
	// by id, so a test seeds the ids its sample export names.
	ID         int64
	Name       string
	ServerType string // default cx23
	Location   string // default fsn1
	Image      string // default ubuntu-24.04
	UserData   string
	Labels     map[string]string
	// Off leaves the server stopped instead of running.
	Off bool
}

// Seed creates a server directly, already running (or off), as another
// control plane left it: no create action to poll. A running one fires
// OnServerRunning like any server that comes up. The ledger records it as
// server_create with Detail "seeded".
func (s *Server) Seed(spec SeedServer) (VM, error) {
	if spec.ServerType == "" {
		spec.ServerType = "cx23"
	}
	if spec.Location == "" {
		spec.Location = "fsn1"
	}
	if spec.Image == "" {
		spec.Image = "ubuntu-24.04"
	}
	if err := validName(spec.Name); err != nil {
		return VM{}, fmt.Errorf("fakecloud: seed %q: %w", spec.Name, err)
	}
	typeName, _, ok := lookupServerType(schema.IDOrName{Name: spec.ServerType})
	if !ok {
		return VM{}, fmt.Errorf("fakecloud: seed %q: unknown server type %q", spec.Name, spec.ServerType)
	}
	loc, ok := lookupLocation(spec.Location)
	if !ok {
		return VM{}, fmt.Errorf("fakecloud: seed %q: unknown location %q", spec.Name, spec.Location)
	}
	if err := validLabels(spec.Labels); err != nil {
		return VM{}, fmt.Errorf("fakecloud: seed %q: %w", spec.Name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, taken := s.byName[spec.Name]; taken {
		return VM{}, fmt.Errorf("fakecloud: seed %q: server name is already used", spec.Name)
	}
	id := spec.ID
	if id == 0 {
		s.nextServerID++
		id = s.nextServerID
	}
	if _, taken := s.servers[id]; taken || id < 0 {
		return VM{}, fmt.Errorf("fakecloud: seed %q: server id %d is taken", spec.Name, id)
	}
	ip, err := s.opts.Addresses.Allocate()
	if err != nil {
		return VM{}, fmt.Errorf("fakecloud: seed %q: %w", spec.Name, err)
	}
	now := time.Now().UTC()
	sv := &server{id: id, name: spec.Name, status: "off", created: now, labels: maps.Clone(spec.Labels), ipv4: ip,
		serverType: typeName, location: loc.Name, image: spec.Image, userData: spec.UserData}
	s.servers[sv.id] = sv
	s.byName[sv.name] = sv
	s.recordLocked(Event{Kind: EventServerCreate, ServerID: sv.id, Name: sv.name, Detail: "seeded", Time: now})
	if !spec.Off {
		s.runningLocked(sv, now)
	}
	return sv.vm(), nil
}
