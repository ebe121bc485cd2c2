package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/tdf-project/tdf/fsm"
)

// Apply commits a command through raft and returns the FSM's result. Only
// the leader can apply; see the package doc for the error outcomes.
// Transient refusals (a leadership transfer in progress, a full queue) are
// retried until ctx ends, since raft guarantees those entries were not
// appended.
func (n *Node) Apply(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) {
	data, err := fsm.Encode(cmd)
	if err != nil {
		return nil, err
	}
	return n.ApplyBytes(ctx, data)
}

// ApplyBytes is Apply for an already encoded command.
func (n *Node) ApplyBytes(ctx context.Context, data []byte) (*fsm.Result, error) {
	backoff := 5 * time.Millisecond
	for {
		if n.raft.State() != raft.Leader {
			return nil, ErrNotLeader
		}
		start := time.Now()
		f := n.raft.Apply(data, n.cfg.ApplyTimeout)
		err := n.futureError(f)
		switch {
		case err == nil:
			if n.cfg.OnApply != nil {
				n.cfg.OnApply(time.Since(start))
			}
			res, ok := f.Response().(*fsm.Result)
			if !ok {
				return nil, fmt.Errorf("apply: unexpected FSM response %T", f.Response())
			}
			return res, nil
		case errors.Is(err, raft.ErrNotLeader):
			return nil, ErrNotLeader
		case errors.Is(err, raft.ErrLeadershipLost):
			return nil, fmt.Errorf("%w: %v", ErrUnknownOutcome, err)
		case errors.Is(err, raft.ErrRaftShutdown):
			return nil, ErrShutdown
		case errors.Is(err, ErrDiskFailed):
			// The leader's own log write failed before the entry went
			// anywhere: nothing was appended (it steps down; retry there).
			return nil, ErrDiskFailed
		case errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrEnqueueTimeout):
			// Not appended: safe to retry as is.
		default:
			return nil, fmt.Errorf("apply: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

// ApplyIdempotent is Apply for commands that are safe to apply twice (they
// carry a request id, or are no-ops the second time). On an unknown outcome
// it waits for the cluster to settle and, if this node leads again,
// re-applies the same bytes; the FSM turns a second copy into a duplicate.
// If another node leads, it returns ErrUnknownOutcome for the caller to
// forward the same request there.
func (n *Node) ApplyIdempotent(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) {
	data, err := fsm.Encode(cmd)
	if err != nil {
		return nil, err
	}
	for {
		res, err := n.ApplyBytes(ctx, data)
		if !errors.Is(err, ErrUnknownOutcome) {
			return res, err
		}
		// Wait for the election to settle, but not for the caller's whole
		// deadline: a partitioned node never learns a leader, and the
		// caller has its own bounded way to find one.
		wctx, cancel := context.WithTimeout(ctx, 2*n.cfg.ElectionTimeout)
		_, werr := n.WaitLeader(wctx)
		cancel()
		if werr != nil {
			return nil, err
		}
		if !n.IsLeader() {
			return nil, err
		}
	}
}

// ConsistentRead waits until this node's FSM reflects every entry committed
// before the call, after confirming with a quorum that it still leads. Only
// then may a read served from the local FSM be called linearizable.
func (n *Node) ConsistentRead(ctx context.Context) error {
	if !n.waitLeaderReady(ctx) {
		if n.IsLeader() {
			return ErrNoLeader
		}
		return ErrNotLeader
	}
	commit := n.raft.CommitIndex()
	if err := n.raft.VerifyLeader().Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return ErrNotLeader
		}
		return err
	}
	if n.fsm.AppliedIndex() >= commit {
		return nil
	}
	// The FSM's index moves only with commands: raft's no-op of a new
	// term, configuration changes and a user restore's jump are committed
	// without reaching it, so it may never reach commit by itself in a
	// quiet cluster. A barrier returns once the FSM has processed every
	// entry before it.
	timeout := n.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	if timeout <= 0 {
		return context.DeadlineExceeded
	}
	if err := n.raft.Barrier(timeout).Error(); err != nil {
		return mapRaftErr(err)
	}
	return nil
}

// futureError waits for f's outcome, or for this node to shut down: raft
// does not answer an entry it took in just as it stopped, and a commit
// waiting on it would hold up Close for ever (seen in CI: a test cluster's
// Close waited on its batch lane).
func (n *Node) futureError(f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-n.shutdownCh:
		return raft.ErrRaftShutdown
	}
}
