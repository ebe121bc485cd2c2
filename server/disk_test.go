package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/cluster"
	"github.com/tdf-project/tdf/server"
)

// diskCluster is a three-node test cluster whose nodes' disks can be made
// to fail (cluster.DiskFaults: every log write and write probe fails with
// ENOSPC, naming the data dir, as a full disk does).
func diskCluster(t *testing.T) (*server.TestCluster, map[string]*cluster.DiskFaults) {
	faults := map[string]*cluster.DiskFaults{}
	c := server.NewTestCluster(t, server.TestOptions{Cluster: func(cc *cluster.Config) {
		faults[cc.NodeID] = &cluster.DiskFaults{}
		cc.DiskFaults = faults[cc.NodeID]
		cc.DiskProbeInterval = 50 * time.Millisecond
	}})
	return c, faults
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(server.TestWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// noPath fails the test if an answer names a server path.
func noPath(t *testing.T, r server.TestResponse, dirs ...string) {
	t.Helper()
	for _, d := range append(dirs, "raft.db", "no space left") {
		if strings.Contains(string(r.Body), d) {
			t.Fatalf("answer %d leaks %q: %s", r.Status, d, r.Body)
		}
	}
}

func errorCode(r server.TestResponse) string {
	var b api.ErrorBody
	_ = json.Unmarshal(r.Body, &b)
	return b.Error.Code
}

// A leader whose disk fails: it is not ready and unhealthy at once, hands
// leadership over, and does not lead again while the disk fails (clients
// that reach it are forwarded, or get a generic 503); reads through it are
// forwarded instead of served from its frozen state. Once a write probe
// succeeds it is ready again and catches up.
func TestLeaderWithFailedDiskStepsDownAndStaysDown(t *testing.T) {
	c, faults := diskCluster(t)
	sick := c.Leader()
	terms := sick.Node.Raft().CurrentTerm()
	faults[sick.ID].Fail(true)

	// A write that reaches it while it still leads gets a generic 503 (or,
	// if the probe was first, is forwarded to the new leader).
	r := c.Do(sick, "POST", "/v1/tasks", submitBody("u1", "written as the disk fails"), map[string]string{"Idempotency-Key": "k-disk-0"})
	if r.Status != http.StatusAccepted && !(r.Status == http.StatusServiceUnavailable && errorCode(r) == api.CodeDiskFailed) {
		t.Fatalf("write to the failing leader = %d %s; want 202 (forwarded) or 503 %s", r.Status, r.Body, api.CodeDiskFailed)
	}
	noPath(t, r, sick.DataDir)

	waitUntil(t, "the sick node to report its disk", func() bool { return !sick.Node.DiskStatus().OK })
	for _, path := range []string{"/readyz", "/healthz"} {
		r := c.Do(sick, "GET", path, nil, nil)
		if r.Status != http.StatusServiceUnavailable || errorCode(r) != api.CodeDiskFailed {
			t.Fatalf("GET %s on the sick node = %d %s; want 503 %s", path, r.Status, r.Body, api.CodeDiskFailed)
		}
		noPath(t, r, sick.DataDir)
	}
	leader := c.WaitLeaderNot(sick)
	t.Logf("leadership moved from %s to %s", sick.ID, leader.ID)

	// Under writes through every node for a while, the sick node never
	// leads again, and every write is acknowledged.
	var ids []string
	for i := range 30 {
		via := c.Nodes[i%len(c.Nodes)]
		r := c.Do(via, "POST", "/v1/tasks", submitBody("u1", fmt.Sprint("task ", i)), map[string]string{"Idempotency-Key": fmt.Sprint("k-disk-", i+1)})
		if r.Status != http.StatusAccepted {
			t.Fatalf("write %d via %s = %d %s", i, via.ID, r.Status, r.Body)
		}
		noPath(t, r, sick.DataDir)
		ids = append(ids, decodeTask(t, r).ID)
		if sick.Node.IsLeader() {
			t.Fatalf("the node with the failed disk leads again (write %d)", i)
		}
	}
	// Its state is frozen; reads through it are answered by the leader.
	last := ids[len(ids)-1]
	if r := c.Do(sick, "GET", "/v1/tasks/"+last, nil, nil); r.Status != http.StatusOK {
		t.Fatalf("read through the sick node = %d %s; want 200 from the leader", r.Status, r.Body)
	}
	if _, ok := sick.FSM.Task(last); ok {
		t.Fatalf("the sick node stored a task while its disk failed")
	}
	if st := sick.Node.Status(); st.State == "leader" || st.Disk.OK {
		t.Fatalf("cluster status on the sick node = %+v", st)
	}
	t.Logf("terms while the disk failed: %d → %d", terms, sick.Node.Raft().CurrentTerm())

	faults[sick.ID].Fail(false)
	waitUntil(t, "the node to be ready again", func() bool {
		return c.Do(sick, "GET", "/readyz", nil, nil).Status == http.StatusOK
	})
	waitUntil(t, "the node to catch up", func() bool { _, ok := sick.FSM.Task(last); return ok })
	c.WaitConverged()
}
