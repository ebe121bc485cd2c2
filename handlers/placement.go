package handlers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/tdf-project/tdf/cloud"
	"github.com/tdf-project/tdf/runner"
)

// serverType maps a task's VM size onto the provider's server type
// through configuration (Config.ServerTypes, default ServerTypes).
func (c Config) serverType(size string) (string, bool) {
	m := c.ServerTypes
	if m == nil {
		m = ServerTypes
	}
	typ, ok := m[size]
	return typ, ok
}

// CheckPlacement tells whether a task of that size can be placed in that
// location now, from the provider's catalog: an unknown size, an unknown
// location, a type not sold there or out of stock everywhere the task may
// go (the location and the fallbacks) is refused with what is possible.
// Without a catalog (a provider that has none, or one that cannot be read
// now) only the size is checked: an outage of the provider's API must not
// stop submissions, and provisioning reports the real answer.
func (c Config) CheckPlacement(ctx context.Context, size, location string) error {
	typ, ok := c.serverType(size)
	if !ok {
		return fmt.Errorf("vm_size %q is not configured (sizes: %v)", size, sortedSizes(c))
	}
	src, ok := c.Cloud.(cloud.CatalogSource)
	if !ok {
		return nil
	}
	cat, err := src.Catalog(ctx)
	if err != nil {
		return nil
	}
	first := cat.Check(typ, location)
	if first == nil || errors.Is(first, cloud.ErrUnknownLocation) || errors.Is(first, cloud.ErrUnknownServerType) {
		return first
	}
	// Not sold or out of stock there: a fallback location may do.
	for _, fb := range c.FallbackLocations {
		if cat.Check(typ, fb) == nil {
			return nil
		}
	}
	return first
}

func sortedSizes(c Config) []string {
	m := c.ServerTypes
	if m == nil {
		m = ServerTypes
	}
	return slices.Sorted(maps.Keys(m))
}

// cloudFailed is the result of a failed provider call: a rate-limited call
// waits for the limit's reset without spending a retry (Hetzner's
// 3,600 requests an hour are a pace, not a fault of the task); any other
// error is classified by cloudErr.
func cloudFailed(op string, err error) runner.Result {
	var ce *cloud.Error
	if errors.As(err, &ce) && ce.Code == "rate_limit_exceeded" {
		wait := time.Until(ce.RateLimitReset)
		return runner.PollIn(min(max(wait, time.Second), time.Minute))
	}
	return runner.Failed(cloudErr(op, err))
}

// HourlyPrice is the net hourly price of a node of that size in that
// location, from the provider's catalog (any location's, if the node's own
// does not sell its type: a fallback placed it elsewhere).
func (c Config) HourlyPrice(ctx context.Context, size, location string) (float64, string, bool) {
	typ, ok := c.serverType(size)
	src, isSrc := c.Cloud.(cloud.CatalogSource)
	if !ok || !isSrc {
		return 0, "", false
	}
	cat, err := src.Catalog(ctx)
	if err != nil {
		return 0, "", false
	}
	if p, ok := cat.Hourly(typ, location); ok {
		return p, cat.Currency, true
	}
	for _, o := range cat.Types[typ].Offers {
		return o.HourlyNet, cat.Currency, true
	}
	return 0, "", false
}
