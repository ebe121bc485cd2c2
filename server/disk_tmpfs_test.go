package server_test

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tdf-project/tdf/cluster"
	"github.com/tdf-project/tdf/server"
)

// smallDisk mounts a tmpfs of size MiB, unmounted when the test ends (after
// the nodes, whose cleanup is registered later, have closed).
func smallDisk(t *testing.T, size int) string {
	mnt := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm", size), "tmpfs", mnt).CombinedOutput()
	if err != nil {
		// Containers without CAP_SYS_ADMIN cannot mount; the same path is
		// covered through the fault seam (TestLeaderWithFailedDiskStepsDownAndStaysDown).
		t.Skipf("cannot mount a tmpfs (needs root and CAP_SYS_ADMIN): %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
	return mnt
}

// fill writes filler into dir until the filesystem has at most leave bytes
// free (leave 0: until it is full).
func fill(t *testing.T, dir, name string, leave uint64) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err != nil {
			t.Fatal(err)
		}
		free := st.Bavail * uint64(st.Bsize)
		if leave > 0 && free <= leave {
			return
		}
		n := uint64(len(chunk))
		if leave > 0 && free-leave < n {
			n = free - leave
		}
		if _, err := f.Write(chunk[:n]); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
	}
}

// A leader whose data dir sits on a small filesystem: it warns while free
// space runs low, and when the disk is full it is not ready, hands over,
// does not lead again while writes go on through the others, and is back
// and caught up once space is freed.
func TestFullDiskOnTmpfs(t *testing.T) {
	mnt := smallDisk(t, 24)
	const warnBelow = 8 << 20
	c := server.NewTestCluster(t, server.TestOptions{Cluster: func(cc *cluster.Config) {
		cc.DiskProbeInterval = 50 * time.Millisecond
		cc.DiskWarnFreeBytes = warnBelow
		if cc.NodeID == "n1" {
			cc.DataDir = filepath.Join(mnt, "n1")
		}
	}})
	sick := c.Node("n1")
	if l := c.Leader(); l != sick {
		if err := l.Node.TransferLeadershipTo("n1"); err != nil {
			t.Fatalf("transfer to n1: %v", err)
		}
	}
	waitUntil(t, "n1 to lead", func() bool { ok, _ := sick.Node.LeaderReady(); return ok })

	fill(t, mnt, "filler-1", warnBelow/2)
	waitUntil(t, "the low-space warning", func() bool { return sick.Node.DiskStatus().Warning != "" })
	if r := c.Do(sick, "GET", "/healthz", nil, nil); r.Status != http.StatusOK || !strings.Contains(string(r.Body), "warning") {
		t.Fatalf("/healthz with low space = %d %s; want 200 with the warning", r.Status, r.Body)
	}
	if !sick.Node.DiskStatus().OK {
		t.Fatalf("the disk is reported failed while it still has room")
	}

	fill(t, mnt, "filler-2", 0)
	full := time.Now()
	// Writes keep coming; the first that n1 must store fails, or the probe
	// notices first.
	for i := 0; !(!sick.Node.DiskStatus().OK && !sick.Node.IsLeader()); i++ {
		if time.Since(full) > server.TestWait {
			t.Fatalf("n1 still reports a writable disk or leads with a full disk: %+v", sick.Node.DiskStatus())
		}
		r := c.Do(c.Node("n2"), "POST", "/v1/tasks", submitBody("u1", fmt.Sprint("filling ", i)), map[string]string{"Idempotency-Key": fmt.Sprint("k-full-", i)})
		noPath(t, r, mnt)
	}
	t.Logf("full disk reported and leadership handed over %s after the disk filled", time.Since(full).Round(time.Millisecond))
	if r := c.Do(sick, "GET", "/readyz", nil, nil); r.Status != http.StatusServiceUnavailable {
		t.Fatalf("/readyz on the full node = %d %s", r.Status, r.Body)
	}
	var last string
	for i := range 20 {
		r := c.Do(c.Nodes[i%3], "POST", "/v1/tasks", submitBody("u1", fmt.Sprint("while full ", i)), map[string]string{"Idempotency-Key": fmt.Sprint("k-while-", i)})
		if r.Status != http.StatusAccepted {
			t.Fatalf("write %d via %s while n1's disk is full = %d %s", i, c.Nodes[i%3].ID, r.Status, r.Body)
		}
		noPath(t, r, mnt)
		last = decodeTask(t, r).ID
		if sick.Node.IsLeader() {
			t.Fatalf("n1 leads again with a full disk")
		}
	}

	for _, f := range []string{"filler-1", "filler-2"} {
		if err := os.Remove(filepath.Join(mnt, f)); err != nil {
			t.Fatal(err)
		}
	}
	freed := time.Now()
	waitUntil(t, "n1 to be ready again", func() bool { return c.Do(sick, "GET", "/readyz", nil, nil).Status == http.StatusOK })
	waitUntil(t, "n1 to catch up", func() bool { _, ok := sick.FSM.Task(last); return ok })
	t.Logf("ready and caught up %s after space was freed", time.Since(freed).Round(time.Millisecond))
	c.WaitConverged()
}
