package cloud

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Catalog is what the provider sells: server types, the locations they are
// offered in, whether they are in stock there, and what they cost. It is
// read from the provider's API (Hetzner: /server_types, /locations,
// /pricing), never hard-coded.
type Catalog struct {
	// Currency of every price (EUR at Hetzner).
	Currency string
	// Locations are the provider's locations by name.
	Locations []string
	// Types are the server types by name.
	Types map[string]ServerType
	// Fetched is when the catalog was read.
	Fetched time.Time
}

// ServerType is one server type of the catalog.
type ServerType struct {
	Name         string
	Cores        int
	MemoryGB     float64
	DiskGB       int
	Architecture string
	// Offers are the locations it is sold in, by name.
	Offers map[string]Offer
}

// Offer is a server type in one location.
type Offer struct {
	// Available is false while the type is out of stock there.
	Available bool
	// Hourly is the price per hour, net and with VAT.
	HourlyNet, HourlyGross float64
}

// Errors of Catalog.Check. Each is permanent for the request that asked.
var (
	ErrUnknownServerType = errors.New("unknown server type")
	ErrUnknownLocation   = errors.New("unknown location")
	ErrNotOffered        = errors.New("server type not offered in location")
	ErrUnavailable       = errors.New("server type currently unavailable in location")
)

// Check reports whether typ can be ordered in loc now, naming what is
// wrong and what would be possible instead.
func (c Catalog) Check(typ, loc string) error {
	t, ok := c.Types[typ]
	if !ok {
		return fmt.Errorf("%w %q (the provider sells %s)", ErrUnknownServerType, typ, strings.Join(sortedKeys(c.Types), ", "))
	}
	if !slices.Contains(c.Locations, loc) {
		return fmt.Errorf("%w %q (locations: %s)", ErrUnknownLocation, loc, strings.Join(c.Locations, ", "))
	}
	o, ok := t.Offers[loc]
	if !ok {
		return fmt.Errorf("%w: %s is not sold in %s (it is in %s)", ErrNotOffered, typ, loc, strings.Join(sortedKeys(t.Offers), ", "))
	}
	if !o.Available {
		return fmt.Errorf("%w: %s is out of stock in %s", ErrUnavailable, typ, loc)
	}
	return nil
}

// Hourly returns the net hourly price of typ in loc, if the catalog has it.
func (c Catalog) Hourly(typ, loc string) (float64, bool) {
	o, ok := c.Types[typ].Offers[loc]
	return o.HourlyNet, ok
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// CatalogSource is a provider that can read its catalog (cached by the
// provider; refreshed after its time to live).
type CatalogSource interface {
	Catalog(ctx context.Context) (Catalog, error)
}

// FirewallSweeper is a provider that owns firewalls: it deletes those it
// created that no server uses any more and that are not the current one,
// and returns how many it deleted.
type FirewallSweeper interface {
	SweepFirewalls(ctx context.Context) (int, error)
}
