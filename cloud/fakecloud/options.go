package fakecloud

import (
	"net/netip"
	"time"
)

// DefaultToken is the API token the fake accepts when Options.Token is
// empty.
const DefaultToken = "fakecloud-token"

// Options configures a fake. The zero value of a field means its default.
type Options struct {
	// Token is the bearer token every /v1 request must carry (default
	// DefaultToken). A request without it is answered 401 unauthorized.
	Token string

	// CreateDuration is how long a create_server action runs before the
	// server is running (default 1 s). StartDuration is the same for a
	// poweron (default 500 ms), DeleteDuration for delete_server, after
	// which the server is gone (default 200 ms).
	CreateDuration time.Duration
	StartDuration  time.Duration
	DeleteDuration time.Duration

	// Faults are injected from the start; SetFaults replaces them later.
	Faults []Fault
	// Seed seeds the random source of probabilistic faults; 0 picks one.
	Seed uint64

	// Addresses hands out the servers' public IPv4 addresses (default:
	// NewSequentialAllocator(127.0.1.1, 127.0.0.0/8)).
	Addresses AddressAllocator

	// RateLimit is the number of requests per hour (default 3600, as
	// Hetzner); the bucket refills evenly over the hour and an empty one
	// answers 429 rate_limit_exceeded. Negative disables the limit (the
	// headers are still sent).
	RateLimit int
	// Unavailable lists the server types out of stock per location
	// (location → types; an empty list: every type); see SetUnavailable.
	Unavailable map[string][]string
	// SSHKeys and Networks exist from the start (GET /ssh_keys,
	// /networks); a create may name them by id.
	SSHKeys  []SSHKey
	Networks []Network
	// MaxServers is the project's server quota; a create beyond it is
	// 403 resource_limit_exceeded. 0 means no limit.
	MaxServers int

	// OnServerRunning is called when a server becomes running (its create
	// or poweron action succeeded); OnServerDeleted when a server is gone
	// (its delete action finished). Hooks for one fake are called one at a
	// time, in the order of the events, from a goroutine of the fake and
	// never while it holds its lock, so they may call the fake's methods.
	// They should return promptly: later hooks wait for them.
	OnServerRunning func(VM)
	OnServerDeleted func(VM)
}

// DefaultOptions returns the defaults: fast actions (a server runs about a
// second after its create), Hetzner's rate limit, no faults.
func DefaultOptions() Options {
	return Options{
		Token:          DefaultToken,
		CreateDuration: time.Second,
		StartDuration:  500 * time.Millisecond,
		DeleteDuration: 200 * time.Millisecond,
		RateLimit:      3600,
	}
}

func (o *Options) fill() {
	d := DefaultOptions()
	if o.Token == "" {
		o.Token = d.Token
	}
	if o.CreateDuration <= 0 {
		o.CreateDuration = d.CreateDuration
	}
	if o.StartDuration <= 0 {
		o.StartDuration = d.StartDuration
	}
	if o.DeleteDuration <= 0 {
		o.DeleteDuration = d.DeleteDuration
	}
	if o.RateLimit == 0 {
		o.RateLimit = d.RateLimit
	}
	if o.Addresses == nil {
		o.Addresses = NewSequentialAllocator(netip.MustParseAddr("127.0.1.1"), netip.MustParsePrefix("127.0.0.0/8"))
	}
}

// VM is a server as the simulated world sees it, including the user data a
// real VM would read from its metadata service.
type VM struct {
	ID         int64             `json:"id"`
	Name       string            `json:"name"`
	Status     string            `json:"status"`
	IPv4       netip.Addr        `json:"ipv4"`
	Labels     map[string]string `json:"labels"`
	ServerType string            `json:"server_type"`
	Location   string            `json:"location"`
	Image      string            `json:"image"`
	Created    time.Time         `json:"created"`
	// UserData is the cloud-init data given at creation. It is left out of
	// GET /fake/servers, since it carries credentials.
	UserData string `json:"-"`
}
