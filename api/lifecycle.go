package api

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/tdf-project/tdf/fsm"
)

// RerunRequest is the optional body of POST /v1/tasks/{id}/rerun.
type RerunRequest struct {
	UserID string `json:"user_id,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// FollowUpRequest is the body of POST /v1/tasks/{id}/prompt: a follow-up
// prompt for a task awaiting one.
type FollowUpRequest struct {
	Prompt string `json:"prompt"`
	UserID string `json:"user_id,omitempty"`
}

// rerunTask queues a failed or cancelled task again from the first step:
// re-opened to ready, then queued (the lifecycle's ready → queued path),
// both in one raft entry so that no one sees it parked at ready.
func (s *Server) rerunTask(c *gin.Context) {
	id, ok := s.taskID(c)
	if !ok {
		return
	}
	var req RerunRequest
	if body := c.MustGet(ctxBody).([]byte); len(body) > 0 && !s.decode(c, &req) {
		return
	}
	if err := checkText("reason", req.Reason, false, 1024); err != nil {
		abortError(c, http.StatusBadRequest, CodeInvalidField, err.Error())
		return
	}
	if err := checkID("user_id", req.UserID, false); err != nil {
		abortError(c, http.StatusBadRequest, CodeInvalidField, err.Error())
		return
	}
	if !s.ownTask(c, id) || !actsAs(c, "user_id", req.UserID) {
		return
	}
	if req.UserID == "" {
		req.UserID = ownerFilter(c)
	}
	reason := req.Reason
	if reason == "" {
		reason = "re-run by user"
	}
	actor, at := fsm.Actor{Type: fsm.ActorUser, ID: req.UserID}, s.now()
	res, ok := s.commitResult(c, fsm.Batch{Commands: []fsm.Command{
		fsm.SetStatus{TaskID: id, To: fsm.StatusReady, Actor: actor, Reason: reason, At: at},
		fsm.SetStatus{TaskID: id, To: fsm.StatusQueued, Actor: actor, Reason: reason, At: at},
	}})
	if !ok {
		return
	}
	last := res
	for _, r := range res.Batch {
		if r.Err != nil {
			abortErr(c, r.Err)
			return
		}
		last = r
	}
	c.JSON(http.StatusOK, TaskResponse{Task: TaskView(last.Task)})
}

// listOrderAndRange reads a task list's order (order=desc, the default:
// newest first; asc: oldest first), project_id and the created_after /
// created_before range (RFC 3339) into flt, answering 400 for bad values.
func listOrderAndRange(c *gin.Context, flt *fsm.TaskFilter) bool {
	switch o := c.DefaultQuery("order", "desc"); o {
	case "desc", "asc":
		flt.Desc = o == "desc"
	default:
		abortError(c, http.StatusBadRequest, CodeInvalidField, fmt.Sprintf("order: %q is not asc or desc", o))
		return false
	}
	if p := c.Query("project_id"); p != "" {
		if err := checkID("project_id", p, false); err != nil {
			abortError(c, http.StatusBadRequest, CodeInvalidField, err.Error())
			return false
		}
		if len(flt.Projects) > 0 && !slices.Contains(flt.Projects, p) {
			// A caller limited to some projects asks for another: none.
			flt.Projects = []string{"\x00"}
		} else {
			flt.Projects = []string{p}
		}
	}
	for name, dst := range map[string]*time.Time{"created_after": &flt.CreatedFrom, "created_before": &flt.CreatedBefore} {
		v := c.Query(name)
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			abortError(c, http.StatusBadRequest, CodeInvalidField, fmt.Sprintf("%s: %q is not an RFC 3339 time", name, v))
			return false
		}
		*dst = t
	}
	return true
}
