// Package cloud is tdf's view of a cloud provider: the Provider interface
// the step handlers call to create, look up, wait for and delete the VMs
// (servers) that host workspaces, and the classification of its errors.
//
// It imports nothing of ours and nothing of any provider's SDK, so the
// runner and its tests depend on this small surface only. Two packages live
// beneath it:
//
//   - cloud/hetzner implements Provider over hcloud-go (the production path);
//   - cloud/fakecloud is a Hetzner-API-compatible HTTP server that the same
//     hcloud-go client talks to in tests, `tdf dev` and chaos runs.
//
// # Exactly one server per node
//
// hcloud-go retries requests by itself — POST included — after network
// timeouts and some error codes, so a create whose answer was lost is re-sent
// and meets the server it already created (uniqueness_error). Provider therefore
// identifies a server by its deterministic name plus ownership labels, never
// by the call that made it: CreateServer looks the name up first, creates,
// and on uniqueness_error looks it up again; a server of that name whose
// labels include the spec's labels is adopted, any other one is ErrNameTaken.
// A caller commits the returned server id before it waits on the action.
//
// # Errors
//
// Classify sorts every error a Provider returns into Transient (retry later),
// Permanent (give up) or Unknown (the request may or may not have taken
// effect: look up before acting again). Provider implementations report API
// answers as *Error so the class follows the provider's error code.
package cloud
