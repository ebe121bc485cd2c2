package api

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/tdf-project/tdf/cluster"
	"github.com/tdf-project/tdf/fsm"
)

// VMSizes maps the user-facing sizes onto Hetzner server types.
var VMSizes = map[string]string{"small": "cx23", "medium": "cx33", "large": "cx43"}

const (
	maxPromptBytes     = 64 << 10
	maxRepositoryBytes = 512
	maxIdemKeyLen      = 255
	defaultListLimit   = 50
	maxListLimit       = 500
)

var (
	branchPattern   = regexp.MustCompile(`^[A-Za-z0-9._/-]{1,255}$`)
	locationPattern = regexp.MustCompile(`^[a-z][a-z0-9-]{1,31}$`)
)

// TaskResponse wraps one task.
type TaskResponse struct {
	Task *Task `json:"task"`
	// Archived: the task left the replicated state after its retention;
	// this is the copy in the answering node's archive.
	Archived bool `json:"archived,omitempty"`
	// Index is the raft index a write was applied at (also X-Tdf-Index):
	// a read with ?index= on any node then sees it.
	Index uint64 `json:"index,omitempty"`
}

// TaskListResponse is one page of tasks.
type TaskListResponse struct {
	Tasks      []*Task `json:"tasks"`
	NextCursor string  `json:"next_cursor,omitempty"`
}

// validateSubmit checks every field of a submission.
func validateSubmit(r *SubmitRequest) error {
	checks := []error{
		checkID("project_id", r.ProjectID, true),
		checkID("user_id", r.UserID, true),
		checkText("prompt", r.Prompt, true, maxPromptBytes),
		checkText("repository", r.Repository, true, maxRepositoryBytes),
		checkID("preferred_node_id", r.PreferredNodeID, false),
	}
	for _, err := range checks {
		if err != nil {
			return err
		}
	}
	if r.Branch != "" && !branchPattern.MatchString(r.Branch) {
		return &fieldError{"branch", "must be a git branch name (letters, digits and ._/-, at most 255)"}
	}
	if _, ok := VMSizes[r.VMSize]; r.VMSize != "" && !ok {
		return &fieldError{"vm_size", fmt.Sprintf("%q is not one of small, medium, large", r.VMSize)}
	}
	if r.VMLocation != "" && !locationPattern.MatchString(r.VMLocation) {
		return &fieldError{"vm_location", fmt.Sprintf("%q is not a location name such as fsn1", r.VMLocation)}
	}
	return nil
}

// fingerprint identifies a submission's content, so that a key reused for
// a different request is told apart from a retry.
func fingerprint(spec fsm.TaskSpec) string {
	b, _ := json.Marshal(spec)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// newTaskID makes a time-ordered id: listing by id is listing by
// submission time.
func newTaskID(now time.Time) string {
	var r [6]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("t-%012x%s", now.UnixMilli(), hex.EncodeToString(r[:]))
}

func randomKey() string {
	var r [12]byte
	_, _ = rand.Read(r[:])
	return "auto-" + hex.EncodeToString(r[:])
}

// ensureRequestID gives a submission without an Idempotency-Key one of its
// own before it is forwarded or applied, so that every internal re-send
// after an unknown outcome carries the same request id.
func (s *Server) ensureRequestID(c *gin.Context) {
	key := c.GetHeader("Idempotency-Key")
	switch {
	case key == "":
		c.Request.Header.Set("Idempotency-Key", randomKey())
	case len(key) > maxIdemKeyLen || !validHeaderText(key):
		abortError(c, http.StatusBadRequest, CodeInvalidField, fmt.Sprintf("Idempotency-Key must be 1–%d printable ASCII characters", maxIdemKeyLen))
		return
	}
	c.Next()
}

func validHeaderText(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func (s *Server) submitTask(c *gin.Context) {
	var req SubmitRequest
	if !s.decode(c, &req) {
		return
	}
	if err := validateSubmit(&req); err != nil {
		abortError(c, http.StatusBadRequest, CodeInvalidField, err.Error())
		return
	}
	if !s.checkPlacement(c, &req) {
		return
	}
	now := s.now()
	owner := ""
	requestID := c.GetHeader("Idempotency-Key")
	if p, ok := caller(c); ok {
		// Idempotency keys are per caller: another token reusing a key
		// must neither replay nor collide with this caller's task.
		owner, requestID = p.Subject, p.Subject+"/"+requestID
	}
	unlock, ok := s.checkTenant(c, req.UserID, req.ProjectID, requestID)
	if !ok {
		return
	}
	defer unlock()
	cmd := fsm.SubmitTask{
		RequestID:   requestID,
		Fingerprint: fingerprint(req.spec()),
		TaskID:      newTaskID(now),
		Spec:        req.spec(),
		Policy:      s.cfg.Policy,
		At:          now,
		Owner:       owner,
	}
	res, ok := s.commit(c, cmd)
	if !ok {
		return
	}
	if res.Replayed {
		c.Header("Idempotent-Replayed", "true")
	}
	c.JSON(http.StatusAccepted, TaskResponse{Task: TaskView(res.Task), Index: res.Index})
}

// CancelRequest is the optional body of POST /v1/tasks/{id}/cancel.
type CancelRequest struct {
	Reason string `json:"reason,omitempty"`
	UserID string `json:"user_id,omitempty"`
}

// userAction reads a user's action on a task (cancel, re-run): its
// optional body {reason, user_id}, checked; the caller must own the task
// and act as itself. The reason defaults to dflt.
func (s *Server) userAction(c *gin.Context, dflt string) (id string, actor fsm.Actor, reason string, ok bool) {
	if id, ok = s.taskID(c); !ok {
		return
	}
	var req CancelRequest
	if body := c.MustGet(ctxBody).([]byte); len(body) > 0 && !s.decode(c, &req) {
		return id, actor, reason, false
	}
	if err := checkText("reason", req.Reason, false, 1024); err != nil {
		abortError(c, http.StatusBadRequest, CodeInvalidField, err.Error())
		return id, actor, reason, false
	}
	if err := checkID("user_id", req.UserID, false); err != nil {
		abortError(c, http.StatusBadRequest, CodeInvalidField, err.Error())
		return id, actor, reason, false
	}
	if !s.ownTask(c, id) || !actsAs(c, "user_id", req.UserID) {
		return id, actor, reason, false
	}
	if req.UserID == "" {
		req.UserID = ownerFilter(c)
	}
	if reason = req.Reason; reason == "" {
		reason = dflt
	}
	return id, fsm.Actor{Type: fsm.ActorUser, ID: req.UserID}, reason, true
}

func (s *Server) cancelTask(c *gin.Context) {
	id, actor, reason, ok := s.userAction(c, "cancelled by user")
	if !ok {
		return
	}
	res, ok := s.commit(c, fsm.CancelTask{TaskID: id, Actor: actor, Reason: reason, At: s.now()})
	if !ok {
		return
	}
	c.JSON(http.StatusOK, TaskResponse{Task: TaskView(res.Task)})
}

func (s *Server) getTask(c *gin.Context) {
	id, ok := s.taskID(c)
	if !ok {
		return
	}
	t, found := s.cfg.Node.FSM().Task(id)
	if !found && s.archivedTask(c, id) {
		return
	}
	if !found || !mayAccessTask(c, t.Owner, t.ProjectID) {
		abortError(c, http.StatusNotFound, CodeNotFound, "task "+id+" not found")
		return
	}
	c.JSON(http.StatusOK, TaskResponse{Task: TaskView(t)})
}

func (s *Server) listTasks(c *gin.Context) {
	var flt fsm.TaskFilter
	if v := c.Query("status"); v != "" {
		st, err := fsm.ParseStatus(v)
		if err != nil {
			abortError(c, http.StatusBadRequest, CodeInvalidField, "status: "+err.Error())
			return
		}
		flt.Status = st
	}
	if err := checkID("user_id", c.Query("user_id"), false); err != nil {
		abortError(c, http.StatusBadRequest, CodeInvalidField, err.Error())
		return
	}
	if err := checkID("cursor", c.Query("cursor"), false); err != nil {
		abortError(c, http.StatusBadRequest, CodeInvalidField, err.Error())
		return
	}
	flt.UserID, flt.After, flt.Limit = c.Query("user_id"), c.Query("cursor"), defaultListLimit
	flt.Owner, flt.Projects = ownerFilter(c), projectFilter(c)
	if !listOrderAndRange(c, &flt) {
		return
	}
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxListLimit {
			abortError(c, http.StatusBadRequest, CodeInvalidField, fmt.Sprintf("limit: %q must be an integer from 1 to %d", v, maxListLimit))
			return
		}
		flt.Limit = n
	}
	page, next := s.cfg.Node.FSM().ListTasks(flt)
	out := TaskListResponse{Tasks: make([]*Task, 0, len(page)), NextCursor: next}
	for _, t := range page {
		out.Tasks = append(out.Tasks, TaskView(t))
	}
	c.JSON(http.StatusOK, out)
}

func (s *Server) taskID(c *gin.Context) (string, bool) {
	id := c.Param("id")
	if !validID(id) {
		abortError(c, http.StatusBadRequest, CodeInvalidID, fmt.Sprintf("%q is not a valid task id", id))
		return "", false
	}
	return id, true
}

// ownTask answers 404 unless the task exists and the caller may see it;
// another user's task is "not found" so that its existence does not leak.
// The owner never changes, so checking before the command is applied is
// as good as checking inside it.
func (s *Server) ownTask(c *gin.Context, id string) bool {
	if ownerFilter(c) == "" {
		return true
	}
	t, found := s.cfg.Node.FSM().Task(id)
	if !found || !mayAccessTask(c, t.Owner, t.ProjectID) {
		abortError(c, http.StatusNotFound, CodeNotFound, "task "+id+" not found")
		return false
	}
	return true
}

// decode parses the buffered body strictly into v, answering 400 if it
// cannot.
func (s *Server) decode(c *gin.Context, v any) bool {
	body, _ := c.Get(ctxBody)
	b, _ := body.([]byte)
	if err := decodeStrict(b, v); err != nil {
		abortError(c, http.StatusBadRequest, CodeInvalidJSON, err.Error())
		return false
	}
	return true
}

// commit applies a command on this node, the leader, and answers any
// domain error itself; see commitResult.
func (s *Server) commit(c *gin.Context, cmd fsm.Command) (*fsm.Result, bool) {
	res, ok := s.commitResult(c, cmd)
	if ok && res.Err != nil {
		abortErr(c, res.Err)
		return nil, false
	}
	return res, ok
}

// commitResult applies a command on this node, the leader. If leadership
// moves away meanwhile (not leader, or an unknown outcome), the request is
// sent to the new leader with the same request id; it answers the client
// and ok is false. The result's domain error is left to the caller.
func (s *Server) commitResult(c *gin.Context, cmd fsm.Command) (*fsm.Result, bool) {
	for {
		res, err := s.cfg.Node.ApplyIdempotent(c.Request.Context(), cmd)
		if err == nil {
			noteIndex(c, res.Index)
			return res, true
		}
		if !errors.Is(err, cluster.ErrNotLeader) && !errors.Is(err, cluster.ErrUnknownOutcome) {
			abortErr(c, err)
			return nil, false
		}
		s.log.Debug("leadership moved during commit; re-sending", "error", err)
		if s.proxyToLeader(c) {
			return nil, false
		}
	}
}
