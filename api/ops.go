package api

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/tokens"
)

func (s *Server) idleReset(c *gin.Context) {
	id, ok := s.taskID(c)
	if !ok {
		return
	}
	var req struct {
		UserID string `json:"user_id,omitempty"`
	}
	if body := c.MustGet(ctxBody).([]byte); len(body) > 0 && !s.decode(c, &req) {
		return
	}
	if !s.ownTask(c, id) || !actsAs(c, "user_id", req.UserID) {
		return
	}
	if req.UserID == "" {
		req.UserID = ownerFilter(c)
	}
	res, ok := s.commit(c, fsm.IdleReset{TaskID: id, Actor: fsm.Actor{Type: fsm.ActorUser, ID: req.UserID}, At: s.now()})
	if ok {
		c.JSON(http.StatusOK, TaskResponse{Task: TaskView(res.Task)})
	}
}

// NodeView is a node with its health judged now.
type NodeView struct {
	*fsm.Node
	Health fsm.Health `json:"health"`
	// Cost is the node's hourly price and accrued cost (cost.go).
	Cost *NodeCost `json:"cost,omitempty"`
}

func (s *Server) listNodes(c *gin.Context) {
	status := fsm.NodeStatus(c.Query("status"))
	switch status {
	case "", fsm.NodeActive, fsm.NodeWarm, fsm.NodeDestroying, fsm.NodeDeleted:
	default:
		abortError(c, http.StatusBadRequest, CodeInvalidField, fmt.Sprintf("status: %q is not one of active, warm, destroying, deleted", status))
		return
	}
	if err := checkID("user_id", c.Query("user_id"), false); err != nil {
		abortError(c, http.StatusBadRequest, CodeInvalidField, err.Error())
		return
	}
	user := c.Query("user_id")
	if owner := nodeOwnerFilter(c); owner != "" {
		if !actsAs(c, "user_id", user) {
			return
		}
		user = owner
	}
	f := s.cfg.Node.FSM()
	settings, now := f.Settings(), s.now()
	out := []NodeView{}
	for _, n := range f.Nodes(status, user) {
		out = append(out, NodeView{Node: n, Health: n.HealthAt(now, settings), Cost: s.nodeCost(c.Request.Context(), n, now)})
	}
	c.JSON(http.StatusOK, gin.H{"nodes": out})
}

func (s *Server) listErrors(c *gin.Context) {
	flt := fsm.ErrorFilter{TaskID: c.Query("task_id"), NodeID: c.Query("node_id"), Kind: fsm.ErrorKind(c.Query("kind")), Limit: defaultListLimit}
	if flt.Kind != "" && !slices.Contains(fsm.ErrorKinds, flt.Kind) {
		abortError(c, http.StatusBadRequest, CodeInvalidField, fmt.Sprintf("kind: %q is not one of %v", flt.Kind, fsm.ErrorKinds))
		return
	}
	for _, p := range []string{"task_id", "node_id"} {
		if err := checkID(p, c.Query(p), false); err != nil {
			abortError(c, http.StatusBadRequest, CodeInvalidField, err.Error())
			return
		}
	}
	if v := c.Query("step"); v != "" {
		if _, err := fsm.ParseStep(v); err != nil && v != string(fsm.StepCleanup) {
			abortError(c, http.StatusBadRequest, CodeInvalidField, "step: "+err.Error())
			return
		}
		flt.Step = fsm.Step(v)
	}
	if v := c.Query("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			abortError(c, http.StatusBadRequest, CodeInvalidField, fmt.Sprintf("since: %q is not an RFC 3339 time", v))
			return
		}
		flt.Since = t
	}
	if v := c.Query("cursor"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			abortError(c, http.StatusBadRequest, CodeInvalidField, fmt.Sprintf("cursor: %q is not a cursor from a previous page", v))
			return
		}
		flt.After = n
	}
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxListLimit {
			abortError(c, http.StatusBadRequest, CodeInvalidField, fmt.Sprintf("limit: %q must be an integer from 1 to %d", v, maxListLimit))
			return
		}
		flt.Limit = n
	}
	page, next := s.cfg.Node.FSM().Errors(flt)
	out := gin.H{"errors": page}
	if page == nil {
		out["errors"] = []*fsm.ErrorRecord{}
	}
	if next != 0 {
		out["next_cursor"] = strconv.FormatUint(next, 10)
	}
	c.JSON(http.StatusOK, out)
}

func (s *Server) jwks(c *gin.Context) {
	if s.cfg.Tokens == nil {
		c.JSON(http.StatusOK, tokens.JWKS{Keys: []tokens.JWK{}})
		return
	}
	set := s.cfg.Tokens.JWKS()
	if len(set.Keys) == 0 {
		// A node that has just started serves its JWKS from a state that
		// may not have caught up yet. An empty set would make an agent
		// that boots now reject every token for as long as it caches the
		// set; an error makes it ask again (or ask another node).
		abortError(c, http.StatusServiceUnavailable, CodeUnavailable, "no signing key yet: this node is catching up with the cluster; retry")
		return
	}
	c.Header("Cache-Control", "max-age=300")
	c.JSON(http.StatusOK, set)
}
