package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/tdf-project/tdf/fsm"
)

// JoinRequest is the body of POST /v1/cluster/join.
type JoinRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr"`
	// RegisterOnly updates the member record of a server that is already
	// a voter and never adds one: how a registered node repairs its record
	// without re-adding itself after an operator removed it.
	RegisterOnly bool `json:"register_only,omitempty"`
}

// Validate checks a join request's fields.
func (j JoinRequest) Validate() error {
	switch {
	case j.ID == "":
		return errors.New("id is required")
	case j.RaftAddr == "":
		return errors.New("raft_addr is required")
	case !strings.HasPrefix(j.APIAddr, "http://") && !strings.HasPrefix(j.APIAddr, "https://"):
		return fmt.Errorf("api_addr %q must be an http(s) URL", j.APIAddr)
	}
	return nil
}

// Join adds a server as a voter (if it is not one already at that address)
// and records its addresses in the member table. Leader only. Joining again
// with the same id and address is a no-op, so it doubles as the way a node
// registers its API address.
func (n *Node) Join(ctx context.Context, j JoinRequest) error {
	if err := j.Validate(); err != nil {
		return err
	}
	if !n.IsLeader() {
		return ErrNotLeader
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	present := false
	for _, s := range cf.Configuration().Servers {
		sameID, sameAddr := string(s.ID) == j.ID, string(s.Address) == j.RaftAddr
		switch {
		case sameID && sameAddr:
			present = true
		case j.RegisterOnly:
		case sameID || sameAddr:
			// A server re-joining with a new address, or a new server on a
			// dead one's address: drop the stale entry first.
			if err := n.raft.RemoveServer(s.ID, 0, 0).Error(); err != nil {
				return fmt.Errorf("remove stale server %s: %w", s.ID, mapRaftErr(err))
			}
		}
	}
	if !present && j.RegisterOnly {
		return fmt.Errorf("%w: %s at %s is not a voter; join it without register_only", fsm.ErrNotFound, j.ID, j.RaftAddr)
	}
	if !present {
		if err := n.raft.AddVoter(raft.ServerID(j.ID), raft.ServerAddress(j.RaftAddr), 0, 0).Error(); err != nil {
			return fmt.Errorf("add voter %s: %w", j.ID, mapRaftErr(err))
		}
		n.log.Info("server joined", "id", j.ID, "raft_addr", j.RaftAddr)
	}
	if m, ok := n.fsm.Member(j.ID); ok && m.RaftAddr == j.RaftAddr && m.APIAddr == j.APIAddr {
		return nil
	}
	_, err := n.ApplyIdempotent(ctx, fsm.RegisterMember{Member: fsm.Member{ID: j.ID, RaftAddr: j.RaftAddr, APIAddr: j.APIAddr}})
	return err
}

// Remove takes a server out of the raft configuration and the member table.
// Leader only.
func (n *Node) Remove(ctx context.Context, id string) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	found := false
	for _, s := range cf.Configuration().Servers {
		if string(s.ID) == id {
			found = true
		}
	}
	_, inTable := n.fsm.Member(id)
	if !found && !inTable {
		return fmt.Errorf("%w: member %s", fsm.ErrNotFound, id)
	}
	if found {
		if err := n.raft.RemoveServer(raft.ServerID(id), 0, 0).Error(); err != nil {
			return fmt.Errorf("remove server %s: %w", id, mapRaftErr(err))
		}
	}
	_, err := n.ApplyIdempotent(ctx, fsm.RemoveMember{ID: id})
	return err
}

func mapRaftErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return ErrNotLeader
	case errors.Is(err, raft.ErrLeadershipLost):
		return ErrUnknownOutcome
	}
	return err
}

func (n *Node) selfJoinRequest() JoinRequest {
	addr := n.cfg.RaftAdvertise
	if addr == "" {
		addr = n.cfg.RaftAddr
	}
	if addr == "" {
		addr = string(n.transport.LocalAddr())
	}
	return JoinRequest{ID: n.cfg.NodeID, RaftAddr: addr, APIAddr: n.cfg.APIURL}
}

// registerSelf makes sure the member table carries this node's current
// addresses: the leader applies its own record, a follower asks the leader
// (through its join endpoint), and a fresh node given --join asks that
// member, which forwards to the leader. It retries until the record is
// right, and keeps checking it until the node shuts down: a restored
// backup replaces the member table, and may drop or change the record.
func (n *Node) registerSelf() {
	req := n.selfJoinRequest()
	delay := 100 * time.Millisecond
	for {
		wait := delay
		if m, ok := n.fsm.Member(req.ID); ok && m.RaftAddr == req.RaftAddr && m.APIAddr == req.APIAddr {
			// Registered: from now on only repair the record, never
			// re-add this node as a voter (an operator may remove it).
			req.RegisterOnly = true
			delay, wait = 100*time.Millisecond, recheckMember
		} else if err := n.tryRegister(req); err != nil {
			n.log.Debug("registration pending", "error", err)
			delay = min(2*delay, 2*time.Second)
		}
		select {
		case <-n.shutdownCh:
			return
		case <-time.After(wait):
		}
	}
}

// recheckMember is how often a registered node checks its member record.
const recheckMember = time.Second

func (n *Node) tryRegister(req JoinRequest) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() {
		select {
		case <-n.shutdownCh:
			cancel()
		case <-ctx.Done():
		}
	}()
	if ready, _ := n.LeaderReady(); ready {
		return n.Join(ctx, req)
	}
	target := n.cfg.JoinURL
	if _, url, ok := n.LeaderAPI(); ok {
		target = url
	}
	if target == "" {
		return ErrNoLeader
	}
	client := n.cfg.HTTPClient
	if client == nil {
		client = http.DefaultClient
	}
	return PostJoin(ctx, client, target, req)
}

// PostJoin asks the member at baseURL to add the server described by req.
func PostJoin(ctx context.Context, c *http.Client, baseURL string, req JoinRequest) error {
	body, _ := json.Marshal(req)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(baseURL, "/")+"/v1/cluster/join", bytes.NewReader(body))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(hreq)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("join via %s: %s: %s", baseURL, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}
