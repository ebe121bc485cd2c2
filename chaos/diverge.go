package chaos

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"

	"github.com/tdf-project/tdf/fsm"
)

// Diagnosing a failed convergence check, for the report, while the
// cluster still runs: where the replicas differ and why.
//
//   - Where: each odd node's own state (GET /v1/cluster/state-hash?snapshot=true)
//     is compared record by record with a node of the majority
//     (fsm.SnapshotDifference): the tasks, nodes or settings that differ,
//     field by field.
//   - Why: the odd node is restarted, which rebuilds its state from its own
//     raft log (and its latest snapshot, if it took one). If it then
//     agrees, its live state had drifted from its log: Apply is not
//     deterministic, or something changed the state outside Apply. If it
//     still differs, its log holds other entries than the majority's (or
//     the snapshot it restored already carried the drift).

// divergenceWait bounds the wait for a restarted node to catch up.
const divergenceWait = 2 * time.Minute

// oddNodes splits the hashes into the majority's (the most common hash,
// ties to the first node's) and the nodes that differ from it.
func oddNodes(hs []NodeHash) (majority NodeHash, odd []NodeHash) {
	count := map[string]int{}
	for _, h := range hs {
		count[h.Hash]++
	}
	majority = hs[0]
	for _, h := range hs {
		if count[h.Hash] > count[majority.Hash] {
			majority = h
		}
	}
	for _, h := range hs {
		if h.Hash != majority.Hash {
			odd = append(odd, h)
		}
	}
	sort.Slice(odd, func(i, j int) bool { return odd[i].NodeID < odd[j].NodeID })
	return majority, odd
}

// diagnoseDivergence returns what it found, one finding per line.
func diagnoseDivergence(target Target, probe *Probe, nodes []string, hs []NodeHash, logf func(string, ...any)) []string {
	if len(hs) < 2 {
		return nil
	}
	majority, odd := oddNodes(hs)
	var out []string
	note := func(format string, args ...any) {
		s := fmt.Sprintf(format, args...)
		logf("divergence: %s", s)
		out = append(out, s)
	}
	for _, h := range odd {
		d, err := stateDifference(target, majority.NodeID, h.NodeID)
		if err != nil {
			note("%s (index %d) vs %s (index %d): cannot compare their states: %v", h.NodeID, h.AppliedIndex, majority.NodeID, majority.AppliedIndex, err)
		} else {
			note("%s (index %d, hash %.16s) vs %s (index %d, hash %.16s), first = %s, second = %s:\n%s",
				majority.NodeID, majority.AppliedIndex, majority.Hash, h.NodeID, h.AppliedIndex, h.Hash, majority.NodeID, h.NodeID, d)
		}
	}
	for _, h := range odd {
		note("%s", replayVerdict(target, probe, nodes, h.NodeID))
	}
	return out
}

// stateDifference fetches two nodes' states and compares them.
func stateDifference(target Target, a, b string) (string, error) {
	sa, err := localState(target, a)
	if err != nil {
		return "", err
	}
	sb, err := localState(target, b)
	if err != nil {
		return "", err
	}
	d, err := fsm.SnapshotDifference(bytes.NewReader(sa), bytes.NewReader(sb))
	if err == nil && d == "" {
		d = "(no record differs now: the states moved on between the reads)"
	}
	return d, err
}

// localState is a node's own state in snapshot format.
func localState(target Target, node string) ([]byte, error) {
	ctx, cancel := readCtx()
	defer cancel()
	u := target.APIURL(node) + "/v1/cluster/state-hash?snapshot=true"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := longClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<30))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s = %d: %.200s", u, resp.StatusCode, data)
	}
	return data, nil
}

// replayVerdict restarts an odd node and says whether its rebuilt state
// agrees with the others once every node is at one index.
func replayVerdict(target Target, probe *Probe, nodes []string, node string) string {
	if err := target.Kill(node); err != nil {
		return fmt.Sprintf("%s: cannot restart it to replay its log: kill: %v", node, err)
	}
	if err := target.Restart(node); err != nil {
		return fmt.Sprintf("%s: cannot restart it to replay its log: restart: %v", node, err)
	}
	var hs []NodeHash
	var err error
	deadline := time.Now().Add(divergenceWait)
	for {
		hs, err = hashes(probe, nodes)
		if err == nil && sameIndex(hs) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Sprintf("%s: restarted, but the nodes did not reach one index within %s (%v): no verdict", node, divergenceWait, describeHashes(hs, err))
		}
		time.Sleep(500 * time.Millisecond)
	}
	majority, odd := oddNodes(hs)
	for _, h := range odd {
		if h.NodeID == node {
			return fmt.Sprintf("%s: still differs after a restart rebuilt its state from its own log (%s): "+
				"its raft log holds other entries than %s's, or a snapshot it restored already carried the drift", node, describeHashes(hs, nil), majority.NodeID)
		}
	}
	return fmt.Sprintf("%s: agrees after a restart rebuilt its state from its own log (%s): its live state had drifted from "+
		"the log it applied: Apply is not deterministic, or something changed the state outside Apply", node, describeHashes(hs, nil))
}

func sameIndex(hs []NodeHash) bool {
	for _, h := range hs {
		if h.AppliedIndex != hs[0].AppliedIndex {
			return false
		}
	}
	return len(hs) > 0
}

func describeHashes(hs []NodeHash, err error) string {
	var b bytes.Buffer
	for i, h := range hs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s@%d:%.16s", h.NodeID, h.AppliedIndex, h.Hash)
	}
	if err != nil {
		fmt.Fprintf(&b, "; %v", err)
	}
	return b.String()
}
