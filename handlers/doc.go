// Package handlers holds the step handlers of the provisioning pipeline
// (REFERENCE.md's eight steps and cleanup) and the node destroyer, on top
// of the cloud provider (Hetzner through hcloud-go) and the VM agent
// client. The runner (package runner) calls them; they only read the FSM
// and return results, which the runner commits.
//
// Every external call is keyed by (task, step), so a re-dispatched attempt
// finds the effect of the one before it rather than repeating it: the
// server is looked up by its deterministic name before it is created, the
// workspace and session ids are derived from the task, and the agent
// answers replays with the existing resource.
package handlers
