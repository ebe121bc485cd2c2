package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/tdf-project/tdf/cluster"
	"github.com/tdf-project/tdf/fsm"
)

func (s *Server) clusterStatus(c *gin.Context) {
	c.JSON(http.StatusOK, s.cfg.Node.Status())
}

func (s *Server) joinCluster(c *gin.Context) {
	var req cluster.JoinRequest
	if !s.decode(c, &req) {
		return
	}
	if err := req.Validate(); err != nil {
		abortError(c, http.StatusBadRequest, CodeInvalidField, err.Error())
		return
	}
	if err := checkID("id", req.ID, true); err != nil {
		abortError(c, http.StatusBadRequest, CodeInvalidField, err.Error())
		return
	}
	if err := s.cfg.Node.Join(c.Request.Context(), req); err != nil {
		abortErr(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"joined": req.ID})
}

func (s *Server) removeMember(c *gin.Context) {
	id := c.Param("id")
	if !validID(id) {
		abortError(c, http.StatusBadRequest, CodeInvalidID, "invalid member id")
		return
	}
	if err := s.cfg.Node.Remove(c.Request.Context(), id); err != nil {
		abortErr(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"removed": id})
}

// StateHash is the answer of GET /v1/cluster/state-hash.
type StateHash struct {
	NodeID       string `json:"node_id"`
	AppliedIndex uint64 `json:"applied_index"`
	Hash         string `json:"hash"`
}

// stateHash reports the hash of this node's FSM state, so that tests and
// the chaos checker can prove replicas converged.
func (s *Server) stateHash(c *gin.Context) {
	idx, sum, err := s.cfg.Node.FSM().Hash()
	if err != nil {
		abortErr(c, err)
		return
	}
	c.JSON(http.StatusOK, StateHash{NodeID: s.cfg.Node.ID(), AppliedIndex: idx, Hash: sum})
}

// transferLeadership hands leadership to the member named in the body
// ({"to": "n2"}) or to any voter.
func (s *Server) transferLeadership(c *gin.Context) {
	var req struct {
		To string `json:"to,omitempty"`
	}
	if body := c.MustGet(ctxBody).([]byte); len(body) > 0 && !s.decode(c, &req) {
		return
	}
	if err := checkID("to", req.To, false); err != nil {
		abortError(c, http.StatusBadRequest, CodeInvalidField, err.Error())
		return
	}
	if req.To == s.cfg.Node.ID() {
		abortError(c, http.StatusConflict, CodeConflict, fmt.Sprintf("to: %s is already the leader", req.To))
		return
	}
	if err := s.cfg.Node.TransferLeadershipTo(req.To); err != nil {
		if errors.Is(err, fsm.ErrNotFound) || errors.Is(err, cluster.ErrNotLeader) {
			abortErr(c, err)
			return
		}
		// Raft refuses a transfer it cannot make (a single voter, a
		// transfer already running): a conflict with the cluster's state.
		abortError(c, http.StatusConflict, CodeConflict, "leadership transfer: "+err.Error())
		return
	}
	c.JSON(http.StatusOK, gin.H{"transferred_from": s.cfg.Node.ID(), "to": req.To})
}
