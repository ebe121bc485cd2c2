package cluster

import (
	"context"
	"sync"
	"time"
)

// monitorLeadership runs one leader loop per term this node leads. LeaderCh
// may drop intermediate transitions, so a true after a true means
// leadership was lost and regained: revoke, then establish again.
func (n *Node) monitorLeadership() {
	var current *leaderTerm
	revoke := func() {
		if current == nil {
			return
		}
		current.stop()
		current = nil
		n.log.Info("leadership revoked")
	}
	defer revoke()
	suspended := false
	for {
		select {
		case isLeader := <-n.raft.LeaderCh():
			revoke()
			if isLeader && !suspended {
				current = n.startLeaderTerm()
			}
		case req := <-n.leaderCtl:
			// A user restore replaces the whole state under the leader's
			// duties: stop them first, start them again on the new state.
			suspended = req.suspend
			if suspended {
				revoke()
			} else if current == nil && n.IsLeader() {
				current = n.startLeaderTerm()
			}
			close(req.done)
		case <-n.shutdownCh:
			return
		}
	}
}

// leaderCtlReq suspends or resumes the leader loop.
type leaderCtlReq struct {
	suspend bool
	done    chan struct{}
}

// suspendLeaderDuties stops this term's leader loop and its hooks and keeps
// new ones from starting until resumeLeaderDuties. It returns false if the
// node is shutting down.
func (n *Node) suspendLeaderDuties() bool { return n.sendLeaderCtl(true) }

// resumeLeaderDuties starts the leader loop again if this node leads.
func (n *Node) resumeLeaderDuties() { n.sendLeaderCtl(false) }

func (n *Node) sendLeaderCtl(suspend bool) bool {
	req := leaderCtlReq{suspend: suspend, done: make(chan struct{})}
	select {
	case n.leaderCtl <- req:
	case <-n.shutdownCh:
		return false
	}
	select {
	case <-req.done:
		return true
	case <-n.shutdownCh:
		return false
	}
}

// leaderTerm is one running leader loop.
type leaderTerm struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// stop cancels the loop and waits until it and its hooks have returned.
func (t *leaderTerm) stop() {
	t.cancel()
	<-t.done
}

func (n *Node) startLeaderTerm() *leaderTerm {
	n.leaderSince.Store(time.Now().UnixNano())
	ctx, cancel := context.WithCancel(context.Background())
	t := &leaderTerm{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		n.leaderLoop(ctx)
	}()
	return t
}

// leaderLoop establishes leadership for one term and runs the hooks until
// ctx is cancelled.
func (n *Node) leaderLoop(ctx context.Context) {
	term := n.raft.CurrentTerm()
	n.log.Info("leadership acquired", "term", term)
	start := time.Now()
	// Barrier: every entry of earlier terms is applied to our FSM before we
	// act on its state.
	for {
		err := n.raft.Barrier(n.cfg.ApplyTimeout).Error()
		if err == nil {
			break
		}
		n.log.Warn("barrier failed", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	n.setLeaderReady(true, term)
	defer n.setLeaderReady(false, 0)
	n.log.Info("leadership established", "term", term, "barrier", time.Since(start))

	n.hooksMu.Lock()
	hooks := append([]LeaderHook(nil), n.hooks...)
	n.hooksMu.Unlock()
	var wg sync.WaitGroup
	for _, h := range hooks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h(ctx, term)
		}()
	}
	<-ctx.Done()
	wg.Wait()
}

func (n *Node) setLeaderReady(ready bool, term uint64) {
	n.leaderMu.Lock()
	n.leaderReady, n.leaderTerm = ready, term
	n.leaderMu.Unlock()
}

// LeaderReady reports whether this node leads and has applied every entry
// of earlier terms, and the term it leads in.
func (n *Node) LeaderReady() (bool, uint64) {
	n.leaderMu.RLock()
	defer n.leaderMu.RUnlock()
	return n.leaderReady && n.IsLeader(), n.leaderTerm
}

// waitLeaderReady waits while this node leads but has not finished its
// barrier. It returns whether the node is a ready leader.
func (n *Node) waitLeaderReady(ctx context.Context) bool {
	for {
		if ok, _ := n.LeaderReady(); ok {
			return true
		}
		if !n.IsLeader() {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// WaitLeaderReady waits, at most max, while this node leads but has not
// yet applied every entry of earlier terms. It reports whether the node is
// then a ready leader.
func (n *Node) WaitLeaderReady(ctx context.Context, max time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, max)
	defer cancel()
	return n.waitLeaderReady(ctx)
}
