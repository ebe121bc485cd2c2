package api

import (
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/tdf-project/tdf/fsm"
)

// TaskArchive reads tasks that retention removed from the replicated
// state. Each node reads its own archive (package archive).
type TaskArchive interface {
	Task(id string) (*fsm.Task, bool, error)
}

// archivedTask answers GET /v1/tasks/{id} for a task no longer in the
// state, from this node's archive, marked archived. It reports whether it
// answered.
func (s *Server) archivedTask(c *gin.Context, id string) bool {
	if s.cfg.Archive == nil {
		return false
	}
	t, ok, err := s.cfg.Archive.Task(id)
	if err != nil {
		_ = c.Error(err)
		abortError(c, http.StatusInternalServerError, CodeInternal, "the task archive cannot be read; the node's log has the details")
		return true
	}
	if !ok || !mayAccessTask(c, t.Owner, t.ProjectID) {
		return false
	}
	c.JSON(http.StatusOK, TaskResponse{Task: TaskView(t), Archived: true})
	return true
}
