package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/tdf-project/tdf/fsm"
)

// Bootstrap only a new cluster.
//
// A node whose data directory holds no raft state and that is started with
// --bootstrap could be the first start of a new cluster, or a member whose
// data was lost. Bootstrapping in the second case forms a second cluster
// from the wiped members (with two of three, a majority of its own) whose
// log then loses to the intact member's, taking acknowledged writes with
// it. So such a node first asks every listed peer over the raft address
// (the handshake's probe, handshake.go) and bootstraps only when all of
// them answer and none holds state. A peer that is down may be the one
// that holds the cluster, so the node waits for it (as Consul waits for
// bootstrap_expect servers). If a peer holds state and lists this node in
// its member table, this node ran in that cluster and lost its data: it
// refuses to start, and says how to rejoin. If a peer holds state that
// does not list it, the cluster was bootstrapped by the other members
// while this one was not yet up: it does not bootstrap, and the leader
// brings it up to date (it is in the bootstrap configuration).
//
// The cluster id is made by the first leader, replicated through the FSM
// (fsm.SetClusterID), and kept by every node in its stable store, from
// which the handshake presents it before the log is replayed. A node whose
// stable store has none learns it from the FSM.

// keyClusterID is the stable-store key of the cluster id; keyMembers that
// of the ids in the member table, so that a restarted node can answer a
// probe before its FSM has caught up (which takes a leader, which may take
// the very nodes that ask).
var (
	keyClusterID = []byte("tdf_cluster_id")
	keyMembers   = []byte("tdf_member_ids")
)

// ErrWipedMember is why a node without state refuses to bootstrap: a peer
// holds the cluster and lists it as a member.
var ErrWipedMember = errors.New("refusing to bootstrap: this node belongs to a running cluster but has no state")

// probeEvery is how often a waiting node asks its peers again; waitLogEvery
// how often it says what it waits for.
const (
	probeEvery   = 250 * time.Millisecond
	waitLogEvery = 10 * time.Second
)

// readClusterID returns the id kept in the stable store ("" if none).
func readClusterID(s raft.StableStore) string {
	b, err := s.Get(keyClusterID)
	if err != nil {
		return ""
	}
	return string(b)
}

func newClusterID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ClusterID is the id of the cluster this node belongs to ("" until the
// first leader has made one and this node has learned it).
func (n *Node) ClusterID() string {
	n.clusterMu.Lock()
	defer n.clusterMu.Unlock()
	return n.clusterID
}

// BootstrapWait says why this node, without state, has not bootstrapped
// yet ("" when it is not waiting).
func (n *Node) BootstrapWait() string {
	s, _ := n.bootstrapWait.Load().(string)
	return s
}

// Fatal delivers the error that stopped this node from joining any
// cluster (a refused bootstrap); the process should exit with it.
func (n *Node) Fatal() <-chan error { return n.fatal }

// bootstrapDecision is what the peers' answers allow.
type bootstrapDecision int

const (
	decideWait bootstrapDecision = iota
	decideBootstrap
	decideFollow
	decideRefuse
)

// guardedBootstrap runs while a node without state waits to bootstrap.
func (n *Node) guardedBootstrap() {
	var lastLog time.Time
	for {
		d, why := n.askPeers()
		if d != decideWait {
			n.bootstrapWait.Store("")
		}
		switch d {
		case decideBootstrap:
			err := n.raft.BootstrapCluster(raft.Configuration{Servers: n.cfg.Bootstrap}).Error()
			if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
				n.failStart(fmt.Errorf("bootstrap: %w", err))
				return
			}
			n.layer.setOpen()
			n.log.Info("bootstrapped cluster: every listed peer answered and none holds state", "servers", len(n.cfg.Bootstrap))
			return
		case decideFollow:
			n.layer.setOpen()
			n.log.Info("not bootstrapping: " + why)
			return
		case decideRefuse:
			n.failStart(fmt.Errorf("%w: %s", ErrWipedMember, why))
			return
		}
		n.bootstrapWait.Store(why)
		if time.Since(lastLog) >= waitLogEvery {
			lastLog = time.Now()
			n.log.Warn("not bootstrapping yet: " + why)
		}
		select {
		case <-n.shutdownCh:
			return
		case <-time.After(probeEvery):
		}
	}
}

// askPeers probes every other server of the bootstrap set once.
func (n *Node) askPeers() (bootstrapDecision, string) {
	var down, fresh []string
	var follow string
	for _, s := range n.cfg.Bootstrap {
		if string(s.ID) == n.cfg.NodeID {
			continue
		}
		name := fmt.Sprintf("%s (%s)", s.ID, s.Address)
		w, err := n.layer.Probe(s.Address, 2*time.Second)
		switch {
		case err != nil:
			down = append(down, name)
		case w == nil:
			return decideRefuse, fmt.Sprintf("%s runs an older tdf that cannot say whether it belongs to a cluster. %s", name, n.rejoinAdvice())
		case w.HasState && w.Member:
			return decideRefuse, fmt.Sprintf("%s holds the cluster%s and lists %s as a member. %s", name, idSuffix(w.Cluster), n.cfg.NodeID, n.rejoinAdvice())
		case w.HasState:
			follow = fmt.Sprintf("%s already runs the cluster%s this node is listed in; it will be brought up to date by its leader", name, idSuffix(w.Cluster))
		default:
			fresh = append(fresh, name)
		}
	}
	switch {
	case follow != "":
		return decideFollow, follow
	case len(down) > 0:
		return decideWait, fmt.Sprintf("this node has no state, and a node without state bootstraps only once every listed peer answers and none holds state (a peer that is down may hold the cluster); no answer from %s. "+
			"If this node lost its data and its cluster runs on, start it with --join instead (docs/operations.md, \"A node with a wiped or lost data dir\")", strings.Join(down, ", "))
	}
	return decideBootstrap, ""
}

func idSuffix(id string) string {
	if id == "" {
		return ""
	}
	return " " + id
}

func (n *Node) rejoinAdvice() string {
	return fmt.Sprintf("This node's data directory %s has no state: it lost its data, and it will not bootstrap a second cluster. "+
		"To bring it back, start it with --join <API URL of a running member> instead of --bootstrap: "+
		"while a quorum of the other members runs, remove it first (tdf cluster remove %s); "+
		"if most members lost their data, join them under their old ids without removing them; "+
		"docs/operations.md, \"A node with a wiped or lost data dir\"", n.cfg.DataDir, n.cfg.NodeID)
}

func (n *Node) failStart(err error) {
	n.log.Error("node stops", "error", err)
	select {
	case n.fatal <- err:
	default:
	}
}

// peerFacts answers a probe: whether this node holds raft state, and
// whether its member table lists the asking node.
func (n *Node) peerFacts(asker string) peerFacts {
	var f peerFacts
	f.HasState = n.raft.LastIndex() > 0 || n.raft.CurrentTerm() > 0
	_, f.Member = n.fsm.Member(asker)
	n.clusterMu.Lock()
	f.Member = f.Member || n.knownMembers[asker]
	n.clusterMu.Unlock()
	return f
}

func readMembers(s raft.StableStore) map[string]bool {
	out := map[string]bool{}
	if b, err := s.Get(keyMembers); err == nil {
		for _, id := range strings.Split(string(b), ",") {
			if id != "" {
				out[id] = true
			}
		}
	}
	return out
}

// keepMembers adds the member table's ids to the stable store's list (ids
// are never dropped from it: a removed member that comes back wiped is
// still one that ran here).
func (n *Node) keepMembers() {
	n.clusterMu.Lock()
	defer n.clusterMu.Unlock()
	added := false
	for _, m := range n.fsm.Members() {
		if !n.knownMembers[m.ID] {
			n.knownMembers[m.ID], added = true, true
		}
	}
	if !added {
		return
	}
	ids := make([]string, 0, len(n.knownMembers))
	for id := range n.knownMembers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	if err := n.stable.Set(keyMembers, []byte(strings.Join(ids, ","))); err != nil {
		n.log.Warn("cannot keep the member ids in the stable store", "error", err)
	}
}

// learnClusterID keeps the node's cluster id (from the FSM into the stable
// store and the handshake, when the node has none yet) and the member ids.
func (n *Node) learnClusterID() {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	seen := ""
	for {
		n.keepMembers()
		if n.ClusterID() == "" {
			// Learnt once it has held for a tick: a restore briefly puts
			// the backup's id in the state, until the leader puts its own
			// back (Restore).
			id := n.fsm.ClusterID()
			if id != "" && id == seen {
				n.keepClusterID(id)
			}
			seen = id
		}
		select {
		case <-n.shutdownCh:
			return
		case <-t.C:
		}
	}
}

// keepClusterID makes id this node's cluster id, in the stable store and
// the handshake, if it has none yet.
func (n *Node) keepClusterID(id string) {
	n.clusterMu.Lock()
	known := n.clusterID != ""
	n.clusterMu.Unlock()
	if known {
		return
	}
	if err := n.stable.Set(keyClusterID, []byte(id)); err != nil {
		n.log.Warn("cannot keep the cluster id in the stable store", "error", err)
		return
	}
	n.setClusterID(id)
	n.log.Info("cluster id learned", "cluster_id", id)
}

func (n *Node) setClusterID(id string) {
	n.clusterMu.Lock()
	n.clusterID = id
	n.clusterMu.Unlock()
	if n.layer != nil {
		n.layer.setClusterID(id)
	}
}

// settleClusterID makes sure this leader has its cluster id before a
// restore: the state's, or a new one it commits.
func (n *Node) settleClusterID(ctx context.Context) error {
	if n.ClusterID() != "" {
		return nil
	}
	id := n.fsm.ClusterID()
	if id == "" {
		id = newClusterID()
		if _, err := n.ApplyIdempotent(ctx, fsm.SetClusterID{ID: id}); err != nil {
			return err
		}
		id = n.fsm.ClusterID()
	}
	n.keepClusterID(id)
	return nil
}

// ensureClusterID is a leader hook: the first leader makes the cluster id;
// a leader whose FSM holds another id than its own (a restore brought in
// the id of the cluster the backup came from) puts its own back.
func (n *Node) ensureClusterID(ctx context.Context, _ uint64) {
	for {
		own, inFSM := n.ClusterID(), n.fsm.ClusterID()
		switch {
		case own == "" && inFSM == "":
			// The leader keeps the id it made at once, not a tick later
			// through learnClusterID: a restore committed meanwhile brings
			// the backup's id into the FSM, and a leader that learned that
			// one while its followers kept this one could reach none of
			// them again.
			id := newClusterID()
			if _, err := n.ApplyIdempotent(ctx, fsm.SetClusterID{ID: id}); err != nil {
				n.log.Debug("cluster id not committed yet", "error", err)
			} else if n.fsm.ClusterID() == id {
				n.keepClusterID(id)
			}
		case own != "" && inFSM != own:
			if _, err := n.ApplyIdempotent(ctx, fsm.SetClusterID{ID: own, Replace: true}); err != nil {
				n.log.Debug("cluster id not committed yet", "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}
