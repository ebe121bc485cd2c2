package hetzner

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/hetznercloud/hcloud-go/v2/hcloud"

	"github.com/tdf-project/tdf/cloud"
)

var _ cloud.CatalogSource = (*Provider)(nil)

// Catalog implements cloud.CatalogSource: the server types (with their
// availability per location) from /server_types, the locations from
// /locations and the currency from /pricing, cached for CatalogTTL. A
// failed refresh serves the previous catalog if there is one.
func (p *Provider) Catalog(ctx context.Context) (cloud.Catalog, error) {
	p.catMu.Lock()
	defer p.catMu.Unlock()
	if !p.cat.Fetched.IsZero() && time.Since(p.cat.Fetched) < p.opts.CatalogTTL {
		return p.cat, nil
	}
	c, err := p.fetchCatalog(ctx)
	if err != nil {
		if !p.cat.Fetched.IsZero() {
			return p.cat, nil
		}
		return cloud.Catalog{}, err
	}
	p.cat = c
	return c, nil
}

func (p *Provider) fetchCatalog(ctx context.Context) (cloud.Catalog, error) {
	types, err := p.client.ServerType.All(ctx)
	if err != nil {
		return cloud.Catalog{}, wrap("list server types", err, nil)
	}
	locs, err := p.client.Location.All(ctx)
	if err != nil {
		return cloud.Catalog{}, wrap("list locations", err, nil)
	}
	pricing, resp, err := p.client.Pricing.Get(ctx)
	if err != nil {
		return cloud.Catalog{}, wrap("get pricing", err, resp)
	}
	c := cloud.Catalog{Currency: pricing.Currency, Types: map[string]cloud.ServerType{}, Fetched: time.Now()}
	for _, l := range locs {
		c.Locations = append(c.Locations, l.Name)
	}
	slices.Sort(c.Locations)
	// Prices per type and location: /pricing has them all; /server_types
	// repeats them per type.
	prices := map[string]map[string]hcloud.ServerTypeLocationPricing{}
	for _, st := range pricing.ServerTypes {
		if st.ServerType == nil {
			continue
		}
		m := map[string]hcloud.ServerTypeLocationPricing{}
		for _, pr := range st.Pricings {
			if pr.Location != nil {
				m[pr.Location.Name] = pr
			}
		}
		prices[st.ServerType.Name] = m
	}
	for _, t := range types {
		ct := cloud.ServerType{Name: t.Name, Cores: t.Cores, MemoryGB: float64(t.Memory), DiskGB: t.Disk,
			Architecture: string(t.Architecture), Offers: map[string]cloud.Offer{}}
		for _, l := range t.Locations {
			if l.Location == nil || l.IsDeprecated() && l.UnavailableAfter().Before(time.Now()) {
				continue
			}
			pr, ok := prices[t.Name][l.Location.Name]
			if !ok {
				for _, tp := range t.Pricings {
					if tp.Location != nil && tp.Location.Name == l.Location.Name {
						pr = tp
					}
				}
			}
			ct.Offers[l.Location.Name] = cloud.Offer{Available: l.Available, HourlyNet: amount(pr.Hourly.Net), HourlyGross: amount(pr.Hourly.Gross)}
		}
		c.Types[t.Name] = ct
	}
	return c, nil
}

func amount(s string) float64 {
	v, _ := strconv.ParseFloat(s, 64)
	return v
}
