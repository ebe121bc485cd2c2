//go:build !linux

package main

import (
	"fmt"
	"net/netip"
)

// addLocalRoute needs Linux's AnyIP routes.
func addLocalRoute(p netip.Prefix) error {
	return fmt.Errorf("--agent-subnet %s: needs Linux (AnyIP local routes)", p)
}
