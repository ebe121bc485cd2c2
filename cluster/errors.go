package cluster

import "errors"

// Apply outcomes, matched with errors.Is.
var (
	// ErrNotLeader: this node does not lead; nothing was applied. Forward
	// the request to the leader.
	ErrNotLeader = errors.New("not the leader")
	// ErrNoLeader: no leader is known right now; hold and retry.
	ErrNoLeader = errors.New("no leader")
	// ErrUnknownOutcome: leadership was lost while the entry was in flight;
	// it may or may not commit. Retry with the same request id.
	ErrUnknownOutcome = errors.New("outcome unknown: leadership lost during apply")
	// ErrShutdown: the node is shutting down.
	ErrShutdown = errors.New("node is shutting down")
)
