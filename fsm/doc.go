// Package fsm is tdf's replicated state machine: tasks, nodes, workspaces,
// the member table and the idempotency table, the commands that change them,
// and the rules (status transitions, monotone execution steps) those commands
// obey.
//
// Everything here is pure and deterministic. Apply never reads a clock, draws
// randomness or does I/O: the leader stamps time and ids into each command
// before it is proposed, so every replica that applies the same log reaches
// byte-identical state (see TestSameLogSameSnapshot). This is what lets the
// package be tested without a cluster and lets a new leader resume any task
// exactly where the old one stopped.
//
// Records are immutable once stored: Apply replaces a record with a modified
// copy instead of mutating it. Together with copy-on-write B-trees this makes
// Snapshot O(1) — it clones the trees' roots — so Persist can stream a
// consistent view while Apply goes on.
//
// The package imports nothing of tdf's own; cluster wires it to hashicorp/raft.
package fsm
