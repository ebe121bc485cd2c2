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
// Errors from the API are returned as *cloud.Error wrapping hcloud-go's
// error, so cloud.Classify can sort them and errors.As still finds
// hcloud.Error.
package hetzner
