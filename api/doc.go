// Package api is tdf's HTTP API (gin), served by every node.
//
// Reads are answered from the local FSM replica; ?consistent=true reads are
// answered by the leader after it confirms its leadership with a quorum.
// Writes are committed as FSM commands on the leader: a follower forwards
// them (the leader's API address comes from the replicated member table),
// and while no leader is known a write is held for a bounded time and then
// refused with 503 and Retry-After. A write whose outcome is unknown
// because leadership was lost mid-commit is re-sent, with the same request
// id, to whichever node leads next; the FSM's idempotency table turns a
// second copy into a replay of the first result.
//
// The package never runs step handlers: it only commits commands.
// Every error is {"error": {"code": "...", "message": "..."}}.
package api
