package api

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/tdf-project/tdf/fsm"
)

// Operators' node actions: POST /v1/nodes/{id}/cordon|uncordon|drain|destroy.
// They are admin-only (routeAccess's default); isCallbackRoute leaves them
// out of the node callbacks that share the /v1/nodes/{id}/ prefix.

var nodeActions = []fsm.NodeAction{fsm.NodeCordon, fsm.NodeUncordon, fsm.NodeDrain, fsm.NodeDestroy}

// isNodeAdminRoute reports an operator's node action route.
func isNodeAdminRoute(route string) bool {
	rest, ok := strings.CutPrefix(route, "/v1/nodes/:id/")
	return ok && fsm.ValidNodeAction(fsm.NodeAction(rest))
}

func (s *Server) nodeAdminRoutes(v1 *gin.RouterGroup) {
	for _, a := range nodeActions {
		v1.POST("/nodes/:id/"+string(a), s.validID("id"), s.onLeader, s.nodeAction(a))
	}
}

// nodeAction commits an operator's action on a node and answers the node
// as it is after it.
func (s *Server) nodeAction(a fsm.NodeAction) gin.HandlerFunc {
	return func(c *gin.Context) {
		actor := fsm.Actor{Type: fsm.ActorUser}
		if p, ok := caller(c); ok {
			actor.ID = p.Subject
		}
		res, ok := s.commit(c, fsm.NodeAdmin{NodeID: c.Param("id"), Action: a, Actor: actor, At: s.now()})
		if !ok {
			return
		}
		f := s.cfg.Node.FSM()
		c.JSON(http.StatusOK, NodeView{Node: res.Node, Health: res.Node.HealthAt(s.now(), f.Settings())})
	}
}
