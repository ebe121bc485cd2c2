package api

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/tdf-project/tdf/fsm"
)

// PlacementCheck tells whether a task of that VM size can be placed in that
// location now (the provider's catalog: sizes configured, types sold
// there and in stock). Its error is shown to the submitter as is.
type PlacementCheck func(ctx context.Context, size, location string) error

// checkPlacement refuses a submission whose size or location cannot be
// served, rather than accepting it and failing the task later. It answers
// 400 invalid_field and reports false.
func (s *Server) checkPlacement(c *gin.Context, r *SubmitRequest) bool {
	if s.cfg.Placement == nil {
		return true
	}
	size, loc := r.VMSize, r.VMLocation
	if size == "" {
		size = fsm.DefaultVMSize
	}
	if loc == "" {
		loc = fsm.DefaultVMLocation
	}
	if err := s.cfg.Placement(c.Request.Context(), size, loc); err != nil {
		abortError(c, http.StatusBadRequest, CodeInvalidField, "vm_size/vm_location: "+err.Error())
		return false
	}
	return true
}
