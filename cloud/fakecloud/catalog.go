package fakecloud

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/hetznercloud/hcloud-go/v2/hcloud/schema"
)

// The catalog of server types, their prices and the locations the fake
// accepts, served at /server_types, /locations and /pricing. Creating a
// server with anything else is invalid_input, so a typo in configuration
// fails in tests as it would against Hetzner. Prices are net euros per hour
// (the monthly price is capped at 730 hours, as Hetzner bills); gross adds
// the fake's VAT rate.

type serverType struct {
	id     int64
	cores  int
	memory float32
	disk   int
	cpu    string  // shared | dedicated
	arch   string  // x86 | arm
	hourly float64 // net EUR per hour
	// only lists the locations the type is offered in; empty means all.
	only []string
}

const vatRate = 0.19

var serverTypes = map[string]serverType{
	"cx22": {101, 2, 4, 40, "shared", "x86", 0.0066, nil}, "cx32": {102, 4, 8, 80, "shared", "x86", 0.0111, nil},
	"cx42": {103, 8, 16, 160, "shared", "x86", 0.0266, nil}, "cx52": {104, 16, 32, 320, "shared", "x86", 0.0536, nil},
	"cx23":  {111, 2, 4, 40, "shared", "x86", 0.0056, []string{"fsn1", "nbg1", "hel1"}},
	"cx33":  {112, 4, 8, 80, "shared", "x86", 0.0088, []string{"fsn1", "nbg1", "hel1"}},
	"cx43":  {113, 8, 16, 160, "shared", "x86", 0.0152, []string{"fsn1", "nbg1", "hel1"}},
	"cx53":  {114, 16, 32, 320, "shared", "x86", 0.0288, []string{"fsn1", "nbg1", "hel1"}},
	"cpx11": {121, 2, 2, 40, "shared", "x86", 0.0072, nil}, "cpx21": {122, 3, 4, 80, "shared", "x86", 0.0128, nil},
	"cpx31": {123, 4, 8, 160, "shared", "x86", 0.0232, nil}, "cpx41": {124, 8, 16, 240, "shared", "x86", 0.0432, nil},
	"cpx51": {125, 16, 32, 360, "shared", "x86", 0.0872, nil}, "cpx22": {126, 2, 4, 80, "shared", "x86", 0.0096, nil},
	"cpx32": {127, 4, 8, 160, "shared", "x86", 0.0168, nil}, "cpx42": {128, 8, 16, 320, "shared", "x86", 0.0304, nil},
	"cpx52": {129, 12, 24, 480, "shared", "x86", 0.0440, nil}, "cpx62": {130, 16, 32, 640, "shared", "x86", 0.0616, nil},
	"cax11": {141, 2, 4, 40, "shared", "arm", 0.0064, []string{"fsn1", "nbg1", "hel1"}},
	"cax21": {142, 4, 8, 80, "shared", "arm", 0.0112, []string{"fsn1", "nbg1", "hel1"}},
	"cax31": {143, 8, 16, 160, "shared", "arm", 0.0224, []string{"fsn1", "nbg1", "hel1"}},
	"cax41": {144, 16, 32, 320, "shared", "arm", 0.0440, []string{"fsn1", "nbg1", "hel1"}},
	"ccx13": {151, 2, 8, 80, "dedicated", "x86", 0.0224, nil}, "ccx23": {152, 4, 16, 160, "dedicated", "x86", 0.0440, nil},
	"ccx33": {153, 8, 32, 240, "dedicated", "x86", 0.0872, nil}, "ccx43": {154, 16, 64, 360, "dedicated", "x86", 0.1744, nil},
	"ccx53": {155, 32, 128, 600, "dedicated", "x86", 0.3480, nil}, "ccx63": {156, 48, 192, 960, "dedicated", "x86", 0.5216, nil},
}

// offered reports whether the type is sold in the location.
func (t serverType) offered(loc string) bool { return len(t.only) == 0 || slices.Contains(t.only, loc) }

// lookupServerType resolves a server type given by name or id.
func lookupServerType(v schema.IDOrName) (string, serverType, bool) {
	if v.Name != "" {
		t, ok := serverTypes[v.Name]
		return v.Name, t, ok
	}
	for name, t := range serverTypes {
		if t.id == v.ID {
			return name, t, true
		}
	}
	return "", serverType{}, false
}

var locations = map[string]schema.Location{
	"fsn1": {ID: 1, Name: "fsn1", Description: "Falkenstein DC Park 1", Country: "DE", City: "Falkenstein", Latitude: 50.47612, Longitude: 12.370071, NetworkZone: "eu-central"},
	"nbg1": {ID: 2, Name: "nbg1", Description: "Nuremberg DC Park 1", Country: "DE", City: "Nuremberg", Latitude: 49.452102, Longitude: 11.076665, NetworkZone: "eu-central"},
	"hel1": {ID: 3, Name: "hel1", Description: "Helsinki DC Park 1", Country: "FI", City: "Helsinki", Latitude: 60.169855, Longitude: 24.938379, NetworkZone: "eu-central"},
	"ash":  {ID: 4, Name: "ash", Description: "Ashburn, VA", Country: "US", City: "Ashburn, VA", Latitude: 39.045821, Longitude: -77.487073, NetworkZone: "us-east"},
	"hil":  {ID: 5, Name: "hil", Description: "Hillsboro, OR", Country: "US", City: "Hillsboro, OR", Latitude: 45.54222, Longitude: -122.951924, NetworkZone: "us-west"},
	"sin":  {ID: 6, Name: "sin", Description: "Singapore", Country: "SG", City: "Singapore", Latitude: 1.283333, Longitude: 103.833333, NetworkZone: "ap-southeast"},
}

// locationNames are the locations by id.
func locationNames() []string {
	names := make([]string, 0, len(locations))
	for n := range locations {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int { return int(locations[a].ID - locations[b].ID) })
	return names
}

// lookupLocation resolves a location given by name or id ("" is fsn1).
func lookupLocation(v string) (schema.Location, bool) {
	if v == "" {
		v = "fsn1"
	}
	if l, ok := locations[v]; ok {
		return l, true
	}
	for _, l := range locations {
		if v == strconv.FormatInt(l.ID, 10) {
			return l, true
		}
	}
	return schema.Location{}, false
}

func price(net float64) schema.Price {
	return schema.Price{Net: fmt.Sprintf("%.4f", net), Gross: fmt.Sprintf("%.4f", net*(1+vatRate))}
}

// prices are the type's prices in every location it is offered in.
func (t serverType) prices() []schema.PricingServerTypePrice {
	out := []schema.PricingServerTypePrice{}
	for _, loc := range locationNames() {
		if !t.offered(loc) {
			continue
		}
		out = append(out, schema.PricingServerTypePrice{
			Location: loc, PriceHourly: price(t.hourly), PriceMonthly: price(t.hourly * 730),
			IncludedTraffic: 20 << 40, PricePerTBTraffic: price(1),
		})
	}
	return out
}

// serverTypeJSON is a server type as the API description has it: with its
// locations (availability per location) and prices.
type serverTypeJSON struct {
	schema.ServerType
	Locations []serverTypeLocationJSON `json:"locations"`
}

type serverTypeLocationJSON struct {
	ID          int64  `json:"id"`
	Name        string `json:"name"`
	Available   bool   `json:"available"`
	Recommended bool   `json:"recommended"`
	Deprecation any    `json:"deprecation"` // always null
}

// schema renders the type; unavailable lists the locations where it is
// offered but out of stock.
func (t serverType) schema(name string, unavailable func(loc, typ string) bool) serverTypeJSON {
	out := serverTypeJSON{ServerType: schema.ServerType{
		ID: t.id, Name: name, Description: name, Category: "regular_purpose", Cores: t.cores, Memory: t.memory,
		Disk: t.disk, StorageType: "local", CPUType: t.cpu, Architecture: t.arch, Prices: t.prices(),
	}, Locations: []serverTypeLocationJSON{}}
	for _, loc := range locationNames() {
		if !t.offered(loc) {
			continue
		}
		out.Locations = append(out.Locations, serverTypeLocationJSON{ID: locations[loc].ID, Name: loc,
			Available: !unavailable(loc, name), Recommended: loc == "fsn1"})
	}
	return out
}

// serverTypeNames are the catalog's types by id.
func serverTypeNames() []string {
	names := make([]string, 0, len(serverTypes))
	for n := range serverTypes {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int { return int(serverTypes[a].id - serverTypes[b].id) })
	return names
}

type serverTypeListResponse struct {
	ServerTypes []serverTypeJSON `json:"server_types"`
	schema.MetaResponse
}

type locationListResponse struct {
	schema.LocationListResponse
	schema.MetaResponse
}

func (s *Server) listServerTypes(r *http.Request, _ int64, _ decision) (int, any) {
	q := r.URL.Query()
	page, perPage, err := pageParams(q)
	if err != nil {
		return errorResp(http.StatusBadRequest, "invalid_input", err.Error())
	}
	var names []string
	for _, n := range serverTypeNames() {
		if q.Get("name") == "" || q.Get("name") == n {
			names = append(names, n)
		}
	}
	items, meta := paginate(names, page, perPage)
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := serverTypeListResponse{ServerTypes: []serverTypeJSON{}, MetaResponse: schema.MetaResponse{Meta: schema.Meta{Pagination: &meta}}}
	for _, n := range items {
		resp.ServerTypes = append(resp.ServerTypes, serverTypes[n].schema(n, s.unavailableLocked))
	}
	return http.StatusOK, resp
}

func (s *Server) listLocations(r *http.Request, _ int64, _ decision) (int, any) {
	q := r.URL.Query()
	page, perPage, err := pageParams(q)
	if err != nil {
		return errorResp(http.StatusBadRequest, "invalid_input", err.Error())
	}
	var names []string
	for _, n := range locationNames() {
		if q.Get("name") == "" || q.Get("name") == n {
			names = append(names, n)
		}
	}
	items, meta := paginate(names, page, perPage)
	resp := locationListResponse{MetaResponse: schema.MetaResponse{Meta: schema.Meta{Pagination: &meta}}}
	resp.Locations = []schema.Location{}
	for _, n := range items {
		resp.Locations = append(resp.Locations, locations[n])
	}
	return http.StatusOK, resp
}

func (s *Server) getPricing(*http.Request, int64, decision) (int, any) {
	p := schema.Pricing{
		Currency: "EUR", VATRate: fmt.Sprintf("%.2f", vatRate*100),
		Image:             schema.PricingImage{PricePerGBMonth: price(0.011)},
		FloatingIP:        schema.PricingFloatingIP{PriceMonthly: price(3)},
		FloatingIPs:       []schema.PricingFloatingIPType{},
		PrimaryIPs:        []schema.PricingPrimaryIP{},
		ServerBackup:      schema.PricingServerBackup{Percentage: "20.00"},
		Volume:            schema.PricingVolume{PricePerGBPerMonth: price(0.044)},
		ServerTypes:       []schema.PricingServerType{},
		LoadBalancerTypes: []schema.PricingLoadBalancerType{},
	}
	for _, n := range serverTypeNames() {
		t := serverTypes[n]
		p.ServerTypes = append(p.ServerTypes, schema.PricingServerType{ID: t.id, Name: n, Prices: t.prices()})
	}
	return http.StatusOK, schema.PricingGetResponse{Pricing: p}
}
