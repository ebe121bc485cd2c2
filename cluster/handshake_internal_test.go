package cluster

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

func testLayer(t *testing.T, node, cluster string, open bool) *clusterLayer {
	t.Helper()
	base, err := NewStreamLayer("127.0.0.1:0", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := newClusterLayer(base, node, cluster, open, hclog.NewNullLogger())
	t.Cleanup(func() { _ = l.Close() })
	go func() { // raft's side: echo whatever arrives after the handshake
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); _ = c.Close() }()
		}
	}()
	return l
}

func echoes(t *testing.T, c net.Conn) bool {
	t.Helper()
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte{0, 1, 2}); err != nil {
		return false
	}
	b := make([]byte, 3)
	_, err := io.ReadFull(c, b)
	return err == nil && b[0] == 0 && b[2] == 2
}

// Peers of one cluster (or one that has no id yet) connect; peers of
// another are refused; a node deciding whether to bootstrap answers probes
// and refuses raft connections; a raw raft dialer (an older build) is
// served as before.
func TestHandshake(t *testing.T) {
	a := testLayer(t, "a", "aaaaaaaa", true)
	addr := raft.ServerAddress(a.Addr().String())
	for _, tc := range []struct {
		cluster string
		ok      bool
	}{{"aaaaaaaa", true}, {"", true}, {"bbbbbbbb", false}} {
		d := testLayer(t, "d", tc.cluster, true)
		c, err := d.Dial(addr, time.Second)
		if (err == nil) != tc.ok {
			t.Fatalf("dial from cluster %q: %v; want ok=%v", tc.cluster, err, tc.ok)
		}
		if err == nil && !echoes(t, c) {
			t.Fatalf("raft bytes after the handshake from cluster %q did not get through", tc.cluster)
		}
	}
	shut := testLayer(t, "s", "", false)
	shut.hasState = false
	if _, err := a.Dial(raft.ServerAddress(shut.Addr().String()), time.Second); err == nil {
		t.Fatalf("a deciding node took a raft connection")
	}
	w, err := a.Probe(raft.ServerAddress(shut.Addr().String()), time.Second)
	if err != nil || w == nil || w.HasState || w.Cluster != "" {
		t.Fatalf("probe of a deciding node = %+v, %v", w, err)
	}
	raw, err := net.Dial("tcp", string(addr))
	if err != nil {
		t.Fatal(err)
	}
	if !echoes(t, raw) {
		t.Fatalf("a raw raft connection was not served")
	}
	// A dialer whose peer closes on the handshake (an older build) dials
	// it raw.
	old, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	go func() {
		for i := 0; ; i++ {
			c, err := old.Accept()
			if err != nil {
				return
			}
			if i == 0 {
				_ = c.Close() // "unknown rpc type"
				continue
			}
			go func() { _, _ = io.Copy(c, c); _ = c.Close() }()
		}
	}()
	c, err := a.Dial(raft.ServerAddress(old.Addr().String()), time.Second)
	if err != nil || !echoes(t, c) {
		t.Fatalf("dial of an older peer: %v", err)
	}
}
