// Package hetzner implements cloud.Provider over hcloud-go, against the
// Hetzner Cloud API or any endpoint that speaks it (cloud/fakecloud).
//
// Facts of hcloud-go v2.52.0 that shape it (HETZNER.md):
//
//   - hcloud-go retries by itself (MaxRetries, exponential backoff with
//     jitter) after network timeouts and the codes conflict,
//     rate_limit_exceeded, bad_gateway and timeout — POST included. A create
//     whose answer was lost is therefore re-sent and meets its own server as
//     uniqueness_error; CreateServer adopts it by name and labels.
//   - Actions are polled one GET at a time (GetAction, WaitAction), never
//     with Action.WaitFor, so that the caller decides the pace: the rate
//     limit is 3,600 requests an hour per project.
//   - The debug writer is never enabled: it logs request bodies, user data
//     (callback tokens) and root passwords included.
//
// Beyond servers it keeps the VMs locked down and the budget kept: a
// firewall (FirewallOptions) created once by name and named in every
// create, SSH keys and a private network resolved to ids once, fallback
// locations tried within one create when a location has no room
// (resource_unavailable, placement_error, a type not sold there), the
// catalog (Catalog: /server_types, /locations, /pricing, cached) and a
// request limiter (ratelimit.go) that bounds concurrency and paces to the
// project's 3,600 requests an hour.
//
// Errors from the API are returned as *cloud.Error wrapping hcloud-go's
// error, so cloud.Classify can sort them and errors.As still finds
// hcloud.Error.
package hetzner
