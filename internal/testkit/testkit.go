// Package testkit holds what tests of several packages share: waiting for
// an outcome by polling with a deadline, and choosing free ports.
package testkit

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Poll calls cond every interval until it returns nil, and returns nil;
// or cond's last error once timeout has passed.
func Poll(timeout, interval time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(interval)
	}
}

// WaitFor is Poll that fails the test, with what and cond's last error
// (cond's error says what it saw, so a timeout explains itself).
func WaitFor(tb testing.TB, timeout, interval time.Duration, what string, cond func() error) {
	tb.Helper()
	if err := Poll(timeout, interval, cond); err != nil {
		tb.Fatalf("%s: not reached within %s: %v", what, timeout, err)
	}
}

// FreePorts returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago. All n are held open together while choosing, so they are
// distinct.
//
// Unlike the usual listen-on-:0 trick, the ports are chosen below the
// kernel's ephemeral range when there is room: a node's ports are bound
// again on every restart, and a port from the ephemeral range may meanwhile
// have become the local port of some outgoing connection (raft's and the
// API's own clients dial constantly), which would fail the restart with
// "address already in use". Without a readable range it falls back to :0.
func FreePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	seen := map[int]bool{}
	lo, hi := 10000, ephemeralLow()
	for tries := 0; len(lns) < n && hi-lo > 1000 && tries < 50*n; tries++ {
		p := lo + rand.IntN(hi-lo)
		if seen[p] {
			continue
		}
		seen[p] = true
		if ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p)); err == nil {
			lns = append(lns, ln)
		}
	}
	for len(lns) < n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
	}
	ports := make([]int, n)
	for i, ln := range lns {
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// ephemeralLow is the first port of the kernel's ephemeral range, or 0.
func ephemeralLow() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) != 2 {
		return 0
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil {
		return 0
	}
	return lo
}
