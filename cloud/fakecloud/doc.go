// Package fakecloud is a fake of the Hetzner Cloud API: an HTTP handler that
// serves, under /v1, the subset hcloud-go uses to create, look up, list,
// power on and delete servers and to poll their actions — with the real
// JSON shapes (built from hcloud-go's exported hcloud/schema types, so they
// cannot drift), name uniqueness, label selectors, pagination, bearer-token
// authentication, rate-limit headers and actions that take time.
//
// Its answers are held to Hetzner's published API description
// (cloud/apicheck): server objects carry every field the description
// requires (datacenter, the server type's locations and prices, image
// dates), which hcloud-go alone would not notice missing.
//
// It exists so that the production code path — hcloud-go pointed at another
// endpoint — runs unchanged in tests, `tdf dev` and chaos runs, and so that
// the failures hcloud-go's own retries turn into hazards can be provoked:
// faults (429, 409 conflict, 412, 5xx, slow answers, failing create actions)
// are set at start (Options.Faults) or at run time (SetFaults, or POST
// /fake/faults). The "slow answer" fault creates the server and then answers
// so late that the client times out and hcloud-go re-sends the POST: the
// server exists once and the re-sent POST gets 409 uniqueness_error, exactly
// as Hetzner behaves.
//
// Every effect is recorded in a ledger (GET /fake/ledger, Ledger), in
// DESIGN.md's format, for checkers; the simulated VM world appends its own
// effects with Record and learns of servers coming and going through the
// OnServerRunning and OnServerDeleted hooks. Each server gets a distinct
// IPv4 address, by default from 127.0.0.0/8 starting at 127.0.1.1, so a
// simulated agent can listen on it at the real agent port.
//
// # Endpoints
//
//	POST   /v1/servers                         create (201 {server, action, next_actions, root_password})
//	GET    /v1/servers?name=&label_selector=&status=&page=&per_page=
//	GET    /v1/servers/{id}
//	DELETE /v1/servers/{id}                    200 {action}
//	POST   /v1/servers/{id}/actions/poweron    201 {action}
//	GET    /v1/servers/{id}/actions?status=    the server's actions (used to adopt a server still being created)
//	GET    /v1/actions?id=1&id=2
//	GET    /v1/actions/{id}
//	POST   /v1/firewalls                       create (201 {firewall, actions}); GET /v1/firewalls?name=&label_selector=
//	GET    /v1/firewalls/{id}; DELETE (204, 422 resource_in_use while applied)
//	POST   /v1/firewalls/{id}/actions/apply_to_resources
//	GET    /v1/server_types, /v1/locations, /v1/pricing   the catalog (catalog.go), with stock per location
//	GET    /v1/ssh_keys, /v1/networks          seeded (Options.SSHKeys, Options.Networks)
//	GET    /fake/ledger, /fake/servers, /fake/firewalls, /fake/faults; POST and DELETE /fake/faults
//
// The /fake endpoints need no token. Every answer is JSON with
// Content-Type application/json; errors are {"error": {"code", "message"}}.
//
// # Concurrency
//
// A Server is safe for concurrent use. It runs no goroutine per server: an
// action's completion is a time.AfterFunc timer, and hooks are delivered in
// order by one goroutine that exists only while hooks are pending.
package fakecloud
