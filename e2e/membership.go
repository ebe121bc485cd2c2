package e2e

// Membership changes for the harness: a node added to a running cluster,
// a node that comes back with a wiped data dir, one-off runs of a node
// that is expected to refuse to start, and the client commands of the tdf
// binary.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// AddNode makes the slot of a new node, id, with fresh ports and data dir
// and the same flags as the first node, but neither --bootstrap nor
// --join: started, it waits until the leader adds it (tdf cluster join).
// Call UseJoin to have it ask to join by itself. The node is appended to
// c.Nodes (so cleanup kills it) but not started.
func (c *Cluster) AddNode(id string) *Node {
	c.tb.Helper()
	if c.Node(id) != nil {
		c.tb.Fatalf("AddNode(%s): a node with that id exists", id)
	}
	ports := c.newPorts(id)
	tmpl := c.Nodes[0]
	n := &Node{
		ID:       id,
		RaftAddr: fmt.Sprintf("127.0.0.1:%d", ports[0]),
		HTTPAddr: fmt.Sprintf("127.0.0.1:%d", ports[1]),
		DataDir:  filepath.Join(c.dir, id),
		LogPath:  filepath.Join(filepath.Dir(tmpl.LogPath), id+".log"),
		bin:      tmpl.bin,
		env:      tmpl.env,
	}
	n.URL = "http://" + n.HTTPAddr
	replace := map[string]string{"--node-id": n.ID, "--data-dir": n.DataDir, "--raft-addr": n.RaftAddr, "--http-addr": n.HTTPAddr}
	for i := 0; i < len(tmpl.args); i++ {
		a := tmpl.args[i]
		if a == "--bootstrap" || a == "--join" {
			i++ // drop the flag and its value
			continue
		}
		n.args = append(n.args, a)
		if v, ok := replace[a]; ok && i+1 < len(tmpl.args) {
			n.args = append(n.args, v)
			i++
		}
	}
	c.Nodes = append(c.Nodes, n)
	return n
}

// newPorts returns two free ports that no node of the cluster has used: a
// dead node's port is free again, and a new node on it would take the dead
// one's place in the raft configuration (a join on a known address
// replaces that server), which is not what a test of replacement wants.
func (c *Cluster) newPorts(id string) []int {
	c.tb.Helper()
	used := map[string]bool{}
	for _, n := range c.procs() {
		used[n.RaftAddr], used[n.HTTPAddr] = true, true
	}
	for range 100 {
		ports, err := FreePorts(2)
		if err != nil {
			c.tb.Fatalf("AddNode(%s): %v", id, err)
		}
		if !used[fmt.Sprintf("127.0.0.1:%d", ports[0])] && !used[fmt.Sprintf("127.0.0.1:%d", ports[1])] {
			return ports
		}
	}
	c.tb.Fatalf("AddNode(%s): no unused ports", id)
	return nil
}

// UseJoin makes the node's next start join the cluster through the member
// at url (--join) instead of bootstrapping: what a node with a wiped data
// dir must do.
func (n *Node) UseJoin(url string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var args []string
	for i := 0; i < len(n.args); i++ {
		if n.args[i] == "--bootstrap" || n.args[i] == "--join" {
			i++
			continue
		}
		args = append(args, n.args[i])
	}
	n.args = append(args, "--join", url)
}

// Wipe deletes the node's data dir. The node must be stopped.
func (c *Cluster) Wipe(n *Node) {
	c.tb.Helper()
	if n.Running() {
		c.tb.Fatalf("Wipe(%s): the node is running", n.ID)
	}
	if err := os.RemoveAll(n.DataDir); err != nil {
		c.tb.Fatalf("Wipe(%s): %v", n.ID, err)
	}
}

// RunOnce runs the node's command line to its end, outside the harness's
// process tracking, for a start that is expected to fail: it returns the
// exit code and everything the process printed (also appended to the
// node's log). A process still running after timeout is killed and
// reported as an error.
func (c *Cluster) RunOnce(n *Node, timeout time.Duration) (code int, output string, err error) {
	if n.Running() {
		return 0, "", fmt.Errorf("RunOnce(%s): the node is running", n.ID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	bin := c.bin
	if n.bin != "" {
		bin = n.bin
	}
	cmd := exec.CommandContext(ctx, bin, n.args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TDF_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, n.env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	if f, ferr := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); ferr == nil {
		fmt.Fprintf(f, "=== e2e: one-off run at %s\n%s", time.Now().Format(time.RFC3339Nano), out.Bytes())
		f.Close()
	}
	if ctx.Err() != nil {
		return -1, out.String(), fmt.Errorf("%s still running after %s: killed", n.ID, timeout)
	}
	var exit *exec.ExitError
	if errors.As(runErr, &exit) {
		return exit.ExitCode(), out.String(), nil
	}
	return 0, out.String(), runErr
}

// CLI runs a client command of the tdf binary (e.g. "cluster", "remove",
// "n2", "--addr", url) and returns its combined output; a non-zero exit is
// an error carrying the output.
func (c *Cluster) CLI(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TDF_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("tdf %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// LogSince returns the node's log from its last start marker on (what
// the current or last process wrote).
func LogSince(n *Node) (string, error) {
	data, err := os.ReadFile(n.LogPath)
	if err != nil {
		return "", err
	}
	if i := bytes.LastIndex(data, []byte("=== e2e: start #")); i >= 0 {
		data = data[i:]
	}
	return string(data), nil
}
