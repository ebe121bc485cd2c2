package cluster

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Members' health and the node's own catch-up, observed at the transport.
//
// hashicorp/raft keeps each follower's last contact and match index inside
// the leader's replication state and does not export them. The transport
// sees the same exchanges: the leader heartbeats every follower every
// HeartbeatTimeout/10 with a plain AppendEntries, whose answer carries the
// follower's last log index. So the leader's view of a member is the time of
// its last answer and how many entries its log is behind ours. A frozen
// (SIGSTOP) or cut-off member stops answering at once; the transport's own
// timeout (10 s) is far too slow to tell.
//
// On the receiving side, the first AppendEntries carrying a commit index
// after this process started tells how far the cluster was when the node
// came back: /readyz waits until the node has applied that far.

// peerContacts is the leader-side record of followers' answers.
type peerContacts struct {
	mu    sync.Mutex
	peers map[raft.ServerID]peerContact

	// joinCommit is the commit index the first leader's AppendEntries
	// carried after start; joinKnown says one arrived.
	joinMu     sync.Mutex
	joinCommit uint64
	joinKnown  bool
	// leaderCommit is the highest commit index a leader's AppendEntries
	// carried: unlike raft's own commit index, not capped by this node's
	// log, so it tells how far behind a lagging node is.
	leaderCommit atomic.Uint64
}

type peerContact struct {
	at      time.Time
	lastLog uint64
}

func newPeerContacts() *peerContacts {
	return &peerContacts{peers: map[raft.ServerID]peerContact{}}
}

// answered records a successful AppendEntries exchange with a peer.
func (p *peerContacts) answered(id raft.ServerID, req *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) {
	if p == nil || resp == nil {
		return
	}
	last := resp.LastLog
	if resp.Success && req != nil && len(req.Entries) > 0 {
		last = max(last, req.Entries[len(req.Entries)-1].Index)
	}
	p.mu.Lock()
	p.peers[id] = peerContact{at: time.Now(), lastLog: last}
	p.mu.Unlock()
}

// get returns the last answer of a peer.
func (p *peerContacts) get(id raft.ServerID) (peerContact, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.peers[id]
	return c, ok
}

// received notes an RPC this node got: the first AppendEntries from a
// leader sets the commit index to catch up to.
func (p *peerContacts) received(rpc raft.RPC) {
	req, ok := rpc.Command.(*raft.AppendEntriesRequest)
	if !ok || p == nil {
		return
	}
	for {
		cur := p.leaderCommit.Load()
		if req.LeaderCommitIndex <= cur || p.leaderCommit.CompareAndSwap(cur, req.LeaderCommitIndex) {
			break
		}
	}
	p.joinMu.Lock()
	if !p.joinKnown {
		p.joinCommit, p.joinKnown = req.LeaderCommitIndex, true
	}
	p.joinMu.Unlock()
}

// join returns the commit index reported by the first leader contact.
func (p *peerContacts) join() (uint64, bool) {
	p.joinMu.Lock()
	defer p.joinMu.Unlock()
	return p.joinCommit, p.joinKnown
}

// relayRPCs passes a transport's RPCs on to raft, noting each one. It
// returns the channel raft consumes.
func (p *peerContacts) relayRPCs(in <-chan raft.RPC, done <-chan struct{}) <-chan raft.RPC {
	out := make(chan raft.RPC)
	go func() {
		for {
			select {
			case rpc := <-in:
				p.received(rpc)
				select {
				case out <- rpc:
				case <-done:
					return
				}
			case <-done:
				return
			}
		}
	}()
	return out
}

// seenTransport is what the gated transports delegate AppendEntries and
// Consumer to.
type seenTransport struct {
	contacts *peerContacts
	done     <-chan struct{}
	inner    raft.Transport
	once     sync.Once
	ch       <-chan raft.RPC
}

// over returns a copy bound to one inner transport.
func (s *seenTransport) over(t raft.Transport) *seenTransport {
	return &seenTransport{contacts: s.contacts, done: s.done, inner: t}
}

func (s *seenTransport) appendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	err := s.inner.AppendEntries(id, target, args, resp)
	if err == nil {
		s.contacts.answered(id, args, resp)
	}
	return err
}

// consumer is called once by raft; later calls get the same channel.
func (s *seenTransport) consumer() <-chan raft.RPC {
	s.once.Do(func() { s.ch = s.contacts.relayRPCs(s.inner.Consumer(), s.done) })
	return s.ch
}
