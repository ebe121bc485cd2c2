package cluster

import (
	"context"
	"fmt"

	"github.com/tdf-project/tdf/fsm"
)

// Group commit. The leader's runner has many workers, each committing one
// small command and waiting for it; raft already batches the entries of
// concurrent Applies into one disk write and one AppendEntries, but every
// entry still costs raft its own log record, future and FSM call on three
// nodes. The batcher packs the commands that are waiting at the same moment
// into one fsm.Batch entry, so one raft entry carries up to
// maxBatchMembers commands. Nothing waits for a batch to fill: a command
// that finds a free lane goes alone, as before.

// batchLanes is how many batches may be in flight at once: while some wait
// for their commit, the next ones fill up.
const batchLanes = 4

// maxBatchMembers bounds one batch.
const maxBatchMembers = 64

type batchReq struct {
	ctx  context.Context
	data []byte
	done chan batchOut
}

type batchOut struct {
	res *fsm.Result
	err error
}

// Batched is the Apply of the node's group commit: the same contract as
// Node.Apply (the same errors, one Result per command).
type Batched struct{ n *Node }

// Batched returns the node's group-committing Apply (see batch.go).
func (n *Node) Batched() *Batched {
	n.batchOnce.Do(func() {
		n.batchCh = make(chan batchReq)
		for i := 0; i < batchLanes; i++ {
			n.goFunc(n.batchLane)
		}
	})
	return &Batched{n: n}
}

// ID is the node's raft id.
func (b *Batched) ID() string { return b.n.ID() }

// Apply commits cmd, possibly together with other commands waiting now.
func (b *Batched) Apply(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) {
	data, err := fsm.Encode(cmd)
	if err != nil {
		return nil, err
	}
	req := batchReq{ctx: ctx, data: data, done: make(chan batchOut, 1)}
	select {
	case b.n.batchCh <- req:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-b.n.shutdownCh:
		return nil, ErrShutdown
	}
	out := <-req.done
	return out.res, out.err
}

// batchLane takes one waiting command, adds every other command already
// waiting (up to the bound) and commits them as one entry.
func (n *Node) batchLane() {
	for {
		var first batchReq
		select {
		case first = <-n.batchCh:
		case <-n.shutdownCh:
			return
		}
		reqs := []batchReq{first}
	fill:
		for len(reqs) < maxBatchMembers {
			select {
			case r := <-n.batchCh:
				reqs = append(reqs, r)
			default:
				break fill
			}
		}
		n.commitBatch(reqs)
	}
}

func (n *Node) commitBatch(reqs []batchReq) {
	if len(reqs) == 1 {
		res, err := n.ApplyBytes(reqs[0].ctx, reqs[0].data)
		reqs[0].done <- batchOut{res, err}
		return
	}
	members := make([][]byte, len(reqs))
	for i, r := range reqs {
		members[i] = r.data
	}
	// The batch is committed under the first request's context: it bounds
	// only the retries of refused (never appended) entries, and every
	// request of one lane comes from the same leader term's runner.
	res, err := n.ApplyBytes(reqs[0].ctx, fsm.EncodeBatch(members))
	if err == nil && len(res.Batch) != len(reqs) {
		err = fmt.Errorf("apply: batch of %d commands returned %d results", len(reqs), len(res.Batch))
	}
	for i, r := range reqs {
		if err != nil {
			r.done <- batchOut{nil, err}
			continue
		}
		r.done <- batchOut{res.Batch[i], nil}
	}
}
