package cluster

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestFaultLayerIsolateAndHeal: isolation closes open connections, refuses
// dials and drops accepted connections; healing lets traffic through again.
func TestFaultLayerIsolateAndHeal(t *testing.T) {
	base, err := NewStreamLayer("127.0.0.1:0", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	fl := NewFaultLayer(base)
	defer fl.Close()
	addr := raft.ServerAddress(fl.Addr().String())

	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := fl.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()

	out, err := fl.Dial(addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	in := <-accepted
	if st := fl.State(); st.OpenConns != 2 || st.Isolated {
		t.Fatalf("state before isolation = %+v, want 2 open connections", st)
	}

	fl.Isolate()
	// Both ends the layer tracked are closed.
	if _, err := out.Write([]byte("x")); err == nil {
		t.Errorf("write on a connection open before isolation succeeded")
	}
	in.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := in.Read(make([]byte, 1)); err == nil {
		t.Errorf("read on an accepted connection after isolation succeeded")
	}
	if _, err := fl.Dial(addr, time.Second); !errors.Is(err, ErrIsolated) {
		t.Errorf("dial while isolated: err = %v, want ErrIsolated", err)
	}
	// A peer dialling in directly is accepted by the kernel and closed by
	// the layer: it reads EOF.
	raw, err := net.Dial("tcp", string(addr))
	if err != nil {
		t.Fatal(err)
	}
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := raw.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("inbound connection while isolated: read err = %v, want EOF", err)
	}
	raw.Close()
	st := fl.State()
	if !st.Isolated || st.Since == nil || st.OpenConns != 0 || st.RefusedDials != 1 || st.RefusedAccepts != 1 {
		t.Errorf("state while isolated = %+v", st)
	}

	fl.Heal()
	out2, err := fl.Dial(addr, time.Second)
	if err != nil {
		t.Fatalf("dial after heal: %v", err)
	}
	defer out2.Close()
	in2 := <-accepted
	defer in2.Close()
	if _, err := out2.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	in2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(in2, buf); err != nil || buf[0] != 'y' {
		t.Errorf("after heal: read %q, %v", buf, err)
	}
}
