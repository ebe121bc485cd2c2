package cluster_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tdf-project/tdf/cluster"
	"github.com/tdf-project/tdf/server"
)

// tcpNodes are nodes over the real TCP transport (the bootstrap guard and
// the cluster handshake live there), on fixed 127.0.0.1 ports so that a
// node can be restarted on its address.
type tcpNodes struct {
	t         *testing.T
	dir       string
	ids       []string
	raftAddrs map[string]string
	bootstrap string
}

func newTCPNodes(t *testing.T, ids ...string) *tcpNodes {
	c := &tcpNodes{t: t, dir: t.TempDir(), ids: ids, raftAddrs: map[string]string{}}
	var parts []string
	for _, id := range ids {
		c.raftAddrs[id] = freeAddr(t)
		parts = append(parts, id+"="+c.raftAddrs[id])
	}
	c.bootstrap = strings.Join(parts, ",")
	return c
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start starts id with --bootstrap (joinURL empty) or --join.
func (c *tcpNodes) start(id, joinURL string) *server.Server {
	c.t.Helper()
	cc := server.TestClusterConfig()
	cc.NodeID, cc.DataDir, cc.RaftAddr = id, filepath.Join(c.dir, id), c.raftAddrs[id]
	cc.Logger = server.TestLogger(c.t).Named(id)
	if joinURL != "" {
		cc.JoinURL = joinURL
	} else {
		var err error
		if cc.Bootstrap, err = cluster.ParseBootstrap(c.bootstrap); err != nil {
			c.t.Fatal(err)
		}
	}
	s, err := server.Start(server.Config{Cluster: cc, HTTPAddr: "127.0.0.1:0", Logger: cc.Logger, InsecureNoAuth: true})
	if err != nil {
		c.t.Fatalf("start %s: %v", id, err)
	}
	return s
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(server.TestWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func leaderOf(nodes ...*server.Server) *server.Server {
	for _, n := range nodes {
		if ok, _ := n.Node.LeaderReady(); ok {
			return n
		}
	}
	return nil
}

// Two members whose data was lost, restarted with their --bootstrap flags
// while the third is down, do not form a cluster of their own: they wait
// for the third, and when it is back they refuse to start, saying how to
// rejoin. Started with --join instead, they come back with every task the
// intact member holds.
func TestWipedMembersDoNotBootstrapAgain(t *testing.T) {
	c := newTCPNodes(t, "n1", "n2", "n3")
	ctx := ctxT(t)
	nodes := map[string]*server.Server{}
	for _, id := range c.ids {
		nodes[id] = c.start(id, "")
	}
	all := func() []*server.Server { return []*server.Server{nodes["n1"], nodes["n2"], nodes["n3"]} }
	waitFor(t, "a leader, the cluster id on every node and every member registered", func() bool {
		l := leaderOf(all()...)
		if l == nil || l.FSM.ClusterID() == "" || len(l.FSM.Members()) != 3 {
			return false
		}
		for _, n := range all() {
			if n.Node.ClusterID() != l.FSM.ClusterID() {
				return false
			}
		}
		return true
	})
	clusterID := nodes["n1"].Node.ClusterID()
	for i := range 10 {
		if _, err := applyWhenLeader(ctx, leaderOf(all()...).Node, submitCmd(fmt.Sprint("r", i), fmt.Sprint("t-", i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "n3 to hold the 10 tasks", func() bool { return nodes["n3"].FSM.TaskCount() == 10 })

	for _, id := range c.ids {
		if err := nodes[id].Close(); err != nil {
			t.Logf("close %s: %v", id, err)
		}
	}
	for _, id := range []string{"n1", "n2"} {
		if err := os.RemoveAll(filepath.Join(c.dir, id)); err != nil {
			t.Fatal(err)
		}
		nodes[id] = c.start(id, "")
	}
	// Both have asked each other (each answers the other's probe) and wait
	// for n3; neither holds state.
	waitFor(t, "n1 and n2 to wait for n3", func() bool {
		return strings.Contains(nodes["n1"].Node.BootstrapWait(), "n3") && strings.Contains(nodes["n2"].Node.BootstrapWait(), "n3")
	})
	for _, id := range []string{"n1", "n2"} {
		if st := nodes[id].Node.Status(); st.LastIndex != 0 || st.LeaderID != "" || st.ClusterID != "" {
			t.Fatalf("%s formed a cluster without n3: %+v", id, st)
		}
	}

	back := time.Now()
	nodes["n3"] = c.start("n3", "")
	for _, id := range []string{"n1", "n2"} {
		select {
		case err := <-nodes[id].Done():
			if !errors.Is(err, cluster.ErrWipedMember) || !strings.Contains(err.Error(), "--join") {
				t.Fatalf("%s stopped with %v; want %v naming --join", id, err, cluster.ErrWipedMember)
			}
			t.Logf("%s refused %s after n3 was back: %v", id, time.Since(back).Round(time.Millisecond), err)
		case <-ctx.Done():
			t.Fatalf("%s did not refuse to bootstrap once n3 was back", id)
		}
		_ = nodes[id].Close()
		if st := nodes[id].Node.Status(); st.LastIndex != 0 {
			t.Fatalf("%s took entries before refusing: %+v", id, st)
		}
	}

	// The rejoin: the same ids, empty data, --join the intact member.
	for _, id := range []string{"n1", "n2"} {
		if err := os.RemoveAll(filepath.Join(c.dir, id)); err != nil {
			t.Fatal(err)
		}
		nodes[id] = c.start(id, nodes["n3"].URL)
	}
	rejoin := time.Now()
	waitFor(t, "n1 and n2 to hold n3's 10 tasks and its cluster id", func() bool {
		for _, n := range all() {
			if n.FSM.TaskCount() != 10 || n.Node.ClusterID() != clusterID {
				return false
			}
		}
		return leaderOf(all()...) != nil
	})
	t.Logf("n1 and n2 rejoined with --join and hold n3's 10 tasks %s after they started", time.Since(rejoin).Round(time.Millisecond))
	for _, n := range all() {
		_ = n.Close()
	}
}
