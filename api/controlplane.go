package api

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/tdf-project/tdf/fsm"
)

// ControlPlane is the body of GET and PUT /v1/cluster/control-plane: the
// cluster's one URL for VM agents (CONTROL_PLANE_URL) and the issuer of
// every token it signs. It is replicated: every node signs and verifies
// with it, whichever leads.
type ControlPlane struct {
	URL string `json:"url"`
}

func (s *Server) getControlPlane(c *gin.Context) {
	c.JSON(http.StatusOK, ControlPlane{URL: s.cfg.Node.FSM().ControlPlaneURL()})
}

// putControlPlane sets the control-plane URL (admin only, as every route
// not listed as open or user). VMs booted before keep the URL they were
// given and expect it as their tokens' issuer; docs/operations.md says
// when to change it.
func (s *Server) putControlPlane(c *gin.Context) {
	var req ControlPlane
	if !s.decode(c, &req) {
		return
	}
	req.URL = strings.TrimRight(strings.TrimSpace(req.URL), "/")
	if err := fsm.ValidateControlPlaneURL(req.URL); err != nil {
		abortError(c, http.StatusBadRequest, CodeInvalidField, "url: "+err.Error())
		return
	}
	if _, ok := s.commit(c, fsm.SetControlPlane{URL: req.URL}); ok {
		c.JSON(http.StatusOK, ControlPlane{URL: req.URL})
	}
}
