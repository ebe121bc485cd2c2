package fakecloud

import (
	"errors"
	"net/netip"
	"sync"
)

// AddressAllocator hands out server IPv4 addresses. Implementations must be
// safe for concurrent use.
type AddressAllocator interface {
	// Allocate returns an address no live server has.
	Allocate() (netip.Addr, error)
	// Release returns the address of a deleted server.
	Release(netip.Addr)
}

// ErrNoAddress is returned by an allocator that has run out of addresses.
var ErrNoAddress = errors.New("fakecloud: no address left")

// NewSequentialAllocator returns an allocator that hands out first, then
// each following address within prefix, skipping those ending in .0 and
// .255. It never reuses a released address: a simulated agent of a deleted
// server that is still shutting down must not answer for a new one.
func NewSequentialAllocator(first netip.Addr, within netip.Prefix) AddressAllocator {
	return &sequential{next: first, within: within}
}

type sequential struct {
	mu     sync.Mutex
	next   netip.Addr
	within netip.Prefix
}

func (s *sequential) Allocate() (netip.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.next.IsValid() && s.within.Contains(s.next) {
		a := s.next
		s.next = a.Next()
		if a.Is4() {
			if b := a.As4(); b[3] == 0 || b[3] == 255 {
				continue
			}
		}
		return a, nil
	}
	return netip.Addr{}, ErrNoAddress
}

func (s *sequential) Release(netip.Addr) {}
