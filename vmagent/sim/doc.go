// Package sim is a simulated VM agent: it serves the real agent's HTTP
// contract (VMAGENT.md, quirks included) and sends the real callbacks, with
// delays and faults that can be set small and switched at run time. tdf
// fakecloud runs one per "booted" server; tests and chaos runs drive it
// through the same vmagent.Client production uses.
//
// # What it models
//
// Calls: GET /health (200 at once, no auth), GET /system-info,
// GET /workspaces (its sessions count is the real agent's count of
// terminal sessions: always 0 here), POST /workspaces (202 while provisioning, 200 once
// running, 409 workspace_conflict on another repository or branch, 409
// workspace_not_creatable once stopped or failed), agent sessions (400
// "session already exists: <id>" on a repeated sessionId without the
// Idempotency-Key, 201 with the existing session for the same key; listing
// them answers 401 to a management token, as the real agent does), session
// start (202; with a deliveryId 202 accepted, 200 duplicate, 409 conflict),
// session stop, workspace stop (200, then 409 invalid_transition), restart,
// rebuild, and DELETE (always 200). Management tokens are checked by a
// Verifier (401 missing, invalid, or for another node or workspace); the
// X-SAM-Node-Id and X-SAM-Workspace-Id headers are checked as the real agent
// does (403 when they name another node or workspace). That is the agent's
// default VM mode; Config.Standalone switches to its standalone role, which
// makes a workspace within the create call (standalone.go).
//
// Callbacks, under each control-plane URL: node ready once, BootDelay after
// Start, without retry; a heartbeat every HeartbeatInterval (the first one
// interval after Start), without retry, storing a refreshedToken from its
// answer; workspace ready and provisioning-failed WorkspaceReadyDelay after
// creation, retried per RetryPolicy (workspace ready is then kept pending
// and re-sent after every successful heartbeat until a 2xx or 4xx); and,
// AgentWorkDuration after a session starts, the task status callback, once,
// without retry, with the push the real agent would report (the work on the
// branch the prompt names is pushed; work left on the workspace's checkout
// branch is committed, its push blocked). A session created with both a chatSessionId and a
// projectId (the real agent's condition for reporting chat messages) first
// reports its run's messages (the prompt and an answer, tagged with that
// chat session id) to /api/workspaces/{id}/messages, retried like the real
// agent's outbox: every answer but 400, 401 and 403.
//
// # Task context
//
// The status callback path needs a project id and a task id. Like the real
// agent, the simulator takes them from the session start request (projectId,
// taskId), with the project id falling back on the one given at session
// creation. Unlike the real agent, which learns its task from cloud-init, it
// also falls back on the projectId and taskId of POST /workspaces (fields the
// real agent ignores). Without both ids no status callback is sent, as on a
// real VM; the log records it as skipped. tdf sends both in the start
// request and in POST /workspaces.
//
// # One control-plane URL
//
// Like the real agent, the simulator knows one URL, Config.ControlPlaneURL
// (CONTROL_PLANE_URL): in a cluster, a load balancer in front of every node
// (`tdf lb`, haproxy), which is what lets callbacks survive a node's death.
// A transport error (refused connection, reset, per-attempt timeout) ends
// the attempt with no answer, and the callback's own retry policy decides
// whether another attempt follows.
//
// # Observing it
//
// Every callback attempt and its outcome is appended to an in-memory log
// (Callbacks, or the OnCallback hook), and every effect (workspace created,
// session started, …) to an event list (Events, or OnEvent), for tests,
// checkers and the fakecloud ledger. A callback a fault drops is logged
// with the outcome "dropped"; the random faults (DropNodeReadyRate,
// DropTaskStatusRate) draw from streams seeded by Config.Seed and the node
// id, one per kind of callback, so an agent's decisions are reproducible.
package sim
