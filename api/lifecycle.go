package api

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/vmagent"
)

// RerunRequest is the optional body of POST /v1/tasks/{id}/rerun.
type RerunRequest = CancelRequest

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
	id, actor, reason, ok := s.userAction(c, "re-run by user")
	if !ok {
		return
	}
	at := s.now()
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

// listOrderAndRange reads a task list's order (order=asc, the default and
// v1's order since its first release, so that clients paging with a cursor
// keep working: oldest first; desc: newest first, as the CLI and the
// dashboard ask), project_id and the created_after / created_before range
// (RFC 3339) into flt, answering 400 for bad values.
func listOrderAndRange(c *gin.Context, flt *fsm.TaskFilter) bool {
	switch o := c.DefaultQuery("order", "asc"); o {
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

// followUp sends a follow-up prompt to the agent of a task awaiting one,
// then restarts the task's idle timer so that the new run is not cut off
// by the old one's. An Idempotency-Key makes a retry a replay at the agent
// (the same delivery id), not a second prompt.
func (s *Server) followUp(c *gin.Context) {
	id, ok := s.taskID(c)
	if !ok {
		return
	}
	// Another user's task is not found, whatever the body.
	if !s.ownTask(c, id) {
		return
	}
	var req FollowUpRequest
	if !s.decode(c, &req) {
		return
	}
	if err := checkText("prompt", req.Prompt, true, maxPromptBytes); err != nil {
		abortError(c, http.StatusBadRequest, CodeInvalidField, err.Error())
		return
	}
	if err := checkID("user_id", req.UserID, false); err != nil {
		abortError(c, http.StatusBadRequest, CodeInvalidField, err.Error())
		return
	}
	if !actsAs(c, "user_id", req.UserID) {
		return
	}
	if req.UserID == "" {
		req.UserID = ownerFilter(c)
	}
	t, found := s.cfg.Node.FSM().Task(id)
	if !found {
		abortError(c, http.StatusNotFound, CodeNotFound, "task "+id+" not found")
		return
	}
	if t.Status != fsm.StatusInProgress || t.Step != fsm.StepAwaitingFollowup || t.Cleanup {
		abortError(c, http.StatusConflict, CodeInvalidTrans, fmt.Sprintf("task %s is %s at step %q: a follow-up prompt needs a task awaiting follow-up", id, t.Status, t.Step))
		return
	}
	if s.cfg.FollowUp == nil {
		abortError(c, http.StatusNotImplemented, CodeUnavailable, "this cluster runs no agents to send a follow-up prompt to")
		return
	}
	// ensureRequestID made sure of a key.
	key := c.GetHeader("Idempotency-Key")
	if err := s.cfg.FollowUp(c.Request.Context(), t, req.Prompt, followUpDelivery(id, key)); err != nil {
		var ae *vmagent.Error
		if errors.As(err, &ae) && ae.Status == http.StatusConflict {
			abortError(c, http.StatusConflict, CodeConflict, "the agent did not take the prompt (busy, or not ready): "+err.Error())
			return
		}
		abortError(c, http.StatusBadGateway, CodeUnavailable, "the agent did not take the prompt: "+err.Error())
		return
	}
	res, ok := s.commit(c, fsm.IdleReset{TaskID: id, Actor: fsm.Actor{Type: fsm.ActorUser, ID: req.UserID}, At: s.now()})
	if !ok {
		return
	}
	c.JSON(http.StatusAccepted, TaskResponse{Task: TaskView(res.Task)})
}

// followUpDelivery is the agent delivery id of a follow-up: the same for a
// retry with the same key.
func followUpDelivery(taskID, key string) string {
	sum := sha256.Sum256([]byte(taskID + "\x00" + key))
	return "f-" + hex.EncodeToString(sum[:20])
}
