// Package cluster wires the replicated state machine (package fsm) to
// hashicorp/raft: the TCP transport, raft-boltdb log and stable stores and
// file snapshots under the data directory; bootstrap, join and removal; the
// leadership loop; and Apply with typed errors.
//
// Leadership follows the Nomad/Consul pattern: one goroutine watches
// LeaderCh and, per term, runs a leader loop that first waits on Barrier()
// (so every earlier entry is applied), then runs the registered leader hooks
// with a context that is cancelled the moment leadership is lost. A new loop
// never starts before the previous one has fully returned, so there are
// never two runners on one node.
//
// Apply maps raft's errors onto three outcomes callers can act on:
// ErrNotLeader (nothing happened: forward), ErrNoLeader (hold and retry) and
// ErrUnknownOutcome (the entry may or may not commit: retry with the same
// request id, which the FSM's idempotency table makes safe).
//
// Each node records its own raft and API addresses in the FSM's member
// table (the leader directly, followers through the leader's join
// endpoint), which is how any node finds the leader's API to forward to.
//
// Operations under duress: a node without state bootstraps only a new
// cluster, after asking every listed peer over the raft address; each
// cluster has an id, kept in every node's stable store and checked by a
// one-line handshake on every raft connection (bootstrap.go, handshake.go).
// A node that cannot write its log is not ready, does not lead and does not
// stand for election until a write probe passes (disk.go).
package cluster
