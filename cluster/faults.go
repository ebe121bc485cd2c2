package cluster

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Fault injection for chaos testing: a raft.StreamLayer wrapper that can
// cut this node off from its peers (a network partition without network
// namespaces or root). It sits between the base stream layer (TCP, or
// another wrapper such as TLS) and raft.NewNetworkTransport, so it
// composes with any of them:
//
//	base stream layer → FaultLayer → raft.NewNetworkTransport
//
// It is only ever installed when the server runs with --fault-injection
// (off by default; the server logs loudly when it is on).

// ErrIsolated is what a dial of an isolated node returns.
var ErrIsolated = errors.New("fault injection: node isolated from its peers")

// FaultLayer wraps a stream layer. While isolated, every raft connection
// in or out of the node is refused: dials fail, accepted connections are
// closed at once, and the connections open when isolation began (raft
// keeps pooled ones) are closed.
type FaultLayer struct {
	base raft.StreamLayer

	mu       sync.Mutex
	isolated bool
	since    time.Time
	conns    map[*faultConn]struct{}
	// counts of what isolation refused, for the debug endpoint.
	refusedDials, refusedAccepts uint64
}

// NewFaultLayer wraps base; the node starts connected.
func NewFaultLayer(base raft.StreamLayer) *FaultLayer {
	return &FaultLayer{base: base, conns: map[*faultConn]struct{}{}}
}

// Isolate cuts the node off: open raft connections are closed and new
// ones refused until Heal.
func (f *FaultLayer) Isolate() {
	f.mu.Lock()
	if !f.isolated {
		f.isolated, f.since = true, time.Now()
	}
	conns := make([]*faultConn, 0, len(f.conns))
	for c := range f.conns {
		conns = append(conns, c)
	}
	f.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// Heal reconnects the node: new connections are allowed again (raft dials
// its peers on its own).
func (f *FaultLayer) Heal() {
	f.mu.Lock()
	f.isolated = false
	f.mu.Unlock()
}

// FaultState is what GET /debug/faults reports.
type FaultState struct {
	Isolated       bool       `json:"isolated"`
	Since          *time.Time `json:"since,omitempty"`
	OpenConns      int        `json:"open_conns"`
	RefusedDials   uint64     `json:"refused_dials"`
	RefusedAccepts uint64     `json:"refused_accepts"`
}

// State reports the layer's state.
func (f *FaultLayer) State() FaultState {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := FaultState{Isolated: f.isolated, OpenConns: len(f.conns), RefusedDials: f.refusedDials, RefusedAccepts: f.refusedAccepts}
	if f.isolated {
		t := f.since
		s.Since = &t
	}
	return s
}

// Dial implements raft.StreamLayer.
func (f *FaultLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if f.refuse(&f.refusedDials) {
		return nil, fmt.Errorf("dial %s: %w", addr, ErrIsolated)
	}
	c, err := f.base.Dial(addr, timeout)
	if err != nil {
		return nil, err
	}
	return f.track(c)
}

// Accept implements net.Listener: connections arriving while isolated are
// closed at once and never reach raft.
func (f *FaultLayer) Accept() (net.Conn, error) {
	for {
		c, err := f.base.Accept()
		if err != nil {
			return nil, err
		}
		if f.refuse(&f.refusedAccepts) {
			_ = c.Close()
			continue
		}
		if fc, err := f.track(c); err == nil {
			return fc, nil
		}
	}
}

// Close implements net.Listener.
func (f *FaultLayer) Close() error { return f.base.Close() }

// Addr implements net.Listener.
func (f *FaultLayer) Addr() net.Addr { return f.base.Addr() }

func (f *FaultLayer) refuse(counter *uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.isolated {
		*counter++
	}
	return f.isolated
}

// track registers a connection so that Isolate can cut it; a connection
// that got through while isolation began is closed here.
func (f *FaultLayer) track(c net.Conn) (net.Conn, error) {
	fc := &faultConn{Conn: c, layer: f}
	f.mu.Lock()
	if f.isolated {
		f.mu.Unlock()
		_ = c.Close()
		return nil, ErrIsolated
	}
	f.conns[fc] = struct{}{}
	f.mu.Unlock()
	return fc, nil
}

// faultConn forgets itself when closed.
type faultConn struct {
	net.Conn
	layer *FaultLayer
	once  sync.Once
}

func (c *faultConn) Close() error {
	c.once.Do(func() {
		c.layer.mu.Lock()
		delete(c.layer.conns, c)
		c.layer.mu.Unlock()
	})
	return c.Conn.Close()
}

// Faults is the node's fault layer, or nil when fault injection is off.
func (n *Node) Faults() *FaultLayer { return n.faults }
