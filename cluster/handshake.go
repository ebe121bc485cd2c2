package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// The cluster handshake: every raft connection between tdf nodes opens
// with one JSON line each way, before raft's own bytes, so that
//
//   - a node refuses peers that belong to another cluster (their cluster
//     ids differ), and
//   - a node without state can ask a listed peer, over the raft address it
//     was given, whether that peer already belongs to a cluster (a probe),
//     before it bootstraps one (bootstrap.go).
//
// The dialer writes handshakeMagic and a hello line; the acceptor answers
// with a welcome line; only then does raft talk. handshakeMagic is no raft
// RPC type (those are 0..4), so an acceptor tells a dialer of an older
// build (raw raft) by the first byte and serves it as before; a dialer
// whose peer is of an older build sees the connection closed without a
// welcome, and dials that peer raw for a while (legacyFor).

const (
	handshakeMagic   byte = 0xd7
	maxHandshakeLine      = 1024
	handshakeTimeout      = 5 * time.Second
	legacyFor             = time.Minute
)

// hello is the dialer's line.
type hello struct {
	// Kind is "raft" (a raft connection follows) or "probe" (answer and
	// close).
	Kind    string `json:"kind"`
	Node    string `json:"node"`
	Cluster string `json:"cluster,omitempty"`
}

// welcome is the acceptor's line.
type welcome struct {
	OK      bool   `json:"ok"`
	Node    string `json:"node"`
	Cluster string `json:"cluster,omitempty"`
	// HasState: the acceptor holds raft state (a log, a term or a
	// snapshot). Member: its member table lists the dialer, i.e. the
	// dialer ran in its cluster before.
	HasState bool   `json:"has_state"`
	Member   bool   `json:"member"`
	Reason   string `json:"reason,omitempty"`
}

// peerFacts is what a node tells a probe about itself.
type peerFacts struct {
	HasState bool
	Member   bool
}

// clusterLayer wraps a stream layer with the handshake.
type clusterLayer struct {
	base raft.StreamLayer
	node string
	log  hclog.Logger
	// facts answers probes; set once raft runs (setFacts). Until then the
	// layer answers hasState.
	facts    func(asker string) peerFacts
	hasState bool

	mu      sync.Mutex
	cluster string
	// open is false while a node without state decides whether to
	// bootstrap: it answers probes but takes no raft connection, so that
	// nothing can make it vote or append before it has decided.
	open   bool
	legacy map[raft.ServerAddress]time.Time
	warned map[string]time.Time

	accepted chan net.Conn
	closed   chan struct{}
	once     sync.Once
}

func newClusterLayer(base raft.StreamLayer, node, cluster string, open bool, log hclog.Logger) *clusterLayer {
	l := &clusterLayer{base: base, node: node, log: log, cluster: cluster, open: open,
		legacy: map[raft.ServerAddress]time.Time{}, warned: map[string]time.Time{},
		accepted: make(chan net.Conn), closed: make(chan struct{})}
	go l.acceptLoop()
	return l
}

// ClusterID is the id this layer presents ("" until known).
func (l *clusterLayer) ClusterID() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cluster
}

func (l *clusterLayer) setClusterID(id string) {
	l.mu.Lock()
	l.cluster = id
	l.mu.Unlock()
}

func (l *clusterLayer) setFacts(f func(asker string) peerFacts) {
	l.mu.Lock()
	l.facts = f
	l.mu.Unlock()
}

func (l *clusterLayer) setOpen() {
	l.mu.Lock()
	l.open = true
	l.mu.Unlock()
}

// Dial implements raft.StreamLayer: a raft connection after the handshake.
func (l *clusterLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if l.isLegacy(addr) {
		return l.base.Dial(addr, timeout)
	}
	c, w, err := l.exchange(addr, timeout, "raft")
	if err != nil {
		return nil, err
	}
	if w == nil { // a peer of an older build: raw raft
		l.markLegacy(addr)
		return l.base.Dial(addr, timeout)
	}
	if !w.OK {
		_ = c.Close()
		return nil, fmt.Errorf("raft dial %s (%s) refused: %s", addr, w.Node, w.Reason)
	}
	return c, nil
}

// Probe asks the node at addr about itself and closes. w is nil if the
// peer answers raft but not the handshake (an older build).
func (l *clusterLayer) Probe(addr raft.ServerAddress, timeout time.Duration) (*welcome, error) {
	c, w, err := l.exchange(addr, timeout, "probe")
	if c != nil {
		_ = c.Close()
	}
	return w, err
}

// exchange dials and runs the handshake. A nil welcome with a nil error
// means the peer closed without one.
func (l *clusterLayer) exchange(addr raft.ServerAddress, timeout time.Duration, kind string) (net.Conn, *welcome, error) {
	c, err := l.base.Dial(addr, timeout)
	if err != nil {
		return nil, nil, err
	}
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	line, _ := json.Marshal(hello{Kind: kind, Node: l.node, Cluster: l.ClusterID()})
	if _, err := c.Write(append(append([]byte{handshakeMagic}, line...), '\n')); err != nil {
		_ = c.Close()
		return nil, nil, err
	}
	b, err := readLine(c)
	if err != nil {
		_ = c.Close()
		if errors.Is(err, io.EOF) || isReset(err) {
			return nil, nil, nil
		}
		return nil, nil, err
	}
	var w welcome
	if err := json.Unmarshal(b, &w); err != nil {
		_ = c.Close()
		return nil, nil, fmt.Errorf("handshake with %s: %v", addr, err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, &w, nil
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}

func (l *clusterLayer) isLegacy(addr raft.ServerAddress) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	until, ok := l.legacy[addr]
	return ok && time.Now().Before(until)
}

func (l *clusterLayer) markLegacy(addr raft.ServerAddress) {
	l.mu.Lock()
	l.legacy[addr] = time.Now().Add(legacyFor)
	l.mu.Unlock()
}

// readLine reads up to '\n' one byte at a time, so that nothing of what
// follows (raft's bytes) is consumed.
func readLine(c net.Conn) ([]byte, error) {
	var out []byte
	b := make([]byte, 1)
	for len(out) < maxHandshakeLine {
		if _, err := io.ReadFull(c, b); err != nil {
			return nil, err
		}
		if b[0] == '\n' {
			return out, nil
		}
		out = append(out, b[0])
	}
	return nil, fmt.Errorf("handshake line longer than %d bytes", maxHandshakeLine)
}

// Accept implements net.Listener.
func (l *clusterLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.accepted:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *clusterLayer) acceptLoop() {
	for {
		c, err := l.base.Accept()
		if err != nil {
			l.once.Do(func() { close(l.closed) })
			return
		}
		go l.handshake(c)
	}
}

// handshake answers one incoming connection and hands raft connections on.
func (l *clusterLayer) handshake(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	first := make([]byte, 1)
	if _, err := io.ReadFull(c, first); err != nil {
		_ = c.Close()
		return
	}
	if first[0] != handshakeMagic {
		// raw raft from an older build: no id to check.
		_ = c.SetDeadline(time.Time{})
		l.deliver(&prefixConn{Conn: c, prefix: first})
		return
	}
	b, err := readLine(c)
	var h hello
	if err == nil {
		err = json.Unmarshal(b, &h)
	}
	if err != nil {
		_ = c.Close()
		return
	}
	w := l.answer(h)
	line, _ := json.Marshal(w)
	if _, err := c.Write(append(line, '\n')); err != nil || h.Kind != "raft" || !w.OK {
		_ = c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	l.deliver(c)
}

func (l *clusterLayer) answer(h hello) welcome {
	l.mu.Lock()
	w := welcome{OK: true, Node: l.node, Cluster: l.cluster}
	open, facts := l.open, l.facts
	w.HasState = l.hasState
	l.mu.Unlock()
	if facts != nil {
		f := facts(h.Node)
		w.HasState, w.Member = f.HasState, f.Member
	}
	switch {
	case h.Kind == "probe":
	case !open:
		w.OK, w.Reason = false, "this node has no state and has not decided yet whether to bootstrap"
	case h.Cluster != "" && w.Cluster != "" && h.Cluster != w.Cluster:
		w.OK = false
		w.Reason = fmt.Sprintf("node %s belongs to cluster %s, the dialer %s to cluster %s", l.node, w.Cluster, h.Node, h.Cluster)
		l.warnOnce(h.Node, "refused a raft connection from a node of another cluster", "peer", h.Node, "peer_cluster", h.Cluster, "cluster", w.Cluster)
	}
	return w
}

// warnOnce logs at most once a minute per peer.
func (l *clusterLayer) warnOnce(peer, msg string, kv ...any) {
	l.mu.Lock()
	last, seen := l.warned[peer]
	if !seen || time.Since(last) > time.Minute {
		l.warned[peer] = time.Now()
		l.mu.Unlock()
		l.log.Error(msg, kv...)
		return
	}
	l.mu.Unlock()
}

func (l *clusterLayer) deliver(c net.Conn) {
	select {
	case l.accepted <- c:
	case <-l.closed:
		_ = c.Close()
	}
}

// Close implements net.Listener.
func (l *clusterLayer) Close() error {
	err := l.base.Close()
	l.once.Do(func() { close(l.closed) })
	return err
}

// Addr implements net.Listener.
func (l *clusterLayer) Addr() net.Addr { return l.base.Addr() }

// prefixConn gives back the byte read to tell a raw raft connection.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
