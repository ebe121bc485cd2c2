// Package vmagent is tdf's side of the VM agent contract (VMAGENT.md): the
// client the leader's step handlers use to drive the agent running on each
// VM, and the wire types of both directions — the calls tdf makes and the
// callbacks the agent sends back.
//
// The agents in the field predate tdf, so the contract is theirs, quirks
// included, and this package models it rather than improving it:
//
//   - POST /workspaces answers 202 while the workspace provisions and 200
//     once it runs; both are success and CreateWorkspaceResult says which.
//     409 workspace_conflict and workspace_not_creatable are permanent.
//   - An agent session is created with an Idempotency-Key (always sent), so a
//     replay answers 201 with the existing session instead of 400.
//   - A second POST /workspaces/{id}/stop answers 409 invalid_transition;
//     StopWorkspace reports it as done.
//   - Errors come back as {"error": "<code or message>", "message": "..."};
//     they surface as *Error, and IsTransient classifies them for the step
//     runner's retry policy.
//
// The client holds no state beyond its HTTP client and token source: the
// agent's base URL and node id are arguments, because the node a step talks
// to comes from replicated state, not from configuration.
//
// Package sim (vmagent/sim) is a simulated agent serving the same contract
// for tdf dev, tests and chaos runs. This package imports nothing of tdf's.
package vmagent
