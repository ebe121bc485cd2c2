package api

import (
	"fmt"
	"hash/fnv"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/gin-gonic/gin"

	"github.com/tdf-project/tdf/fsm"
)

// Tenants kept apart: what a user token may do beyond its routes
// (auth.go). It acts only as its own user: a body that names another
// user_id is refused with 403 naming the field (an admin may act for
// anyone). A token restricted to projects submits to and reads only those.
// The handlers answer another user's task, or one outside the token's
// projects, as not found.

// CodeQuotaExceeded: the user or project runs as many tasks as it may.
const CodeQuotaExceeded = "quota_exceeded"

// projectFilter is the projects a caller's reads are restricted to (nil:
// any).
func projectFilter(c *gin.Context) []string {
	if p, ok := caller(c); ok && !p.IsAdmin() {
		return p.Projects
	}
	return nil
}

// mayReadProject reports whether the caller may see a task of project.
func mayReadProject(c *gin.Context, project string) bool {
	ps := projectFilter(c)
	return len(ps) == 0 || slices.Contains(ps, project)
}

// actsAs refuses (403, naming the field) a user token's request that
// names another user; it reports whether the request may go on.
func actsAs(c *gin.Context, field, userID string) bool {
	p, ok := caller(c)
	if !ok || p.IsAdmin() || userID == "" || userID == p.Subject {
		return true
	}
	abortError(c, http.StatusForbidden, CodeForbidden, fmt.Sprintf("%s: a user token of %s acts only as %s, not as %s", field, p.Subject, p.Subject, userID))
	return false
}

// checkTenant checks a submission against the caller: its user, its
// projects, and the concurrent-task quotas. unlock, if not nil, must be
// called once the task is committed (quotas serialise the submissions of
// one user and of one project on the leader, so that two cannot both take
// the last slot). A retry of a submission already applied (its request id
// known) is not counted again: it gets its first answer.
func (s *Server) checkTenant(c *gin.Context, userID, projectID, requestID string) (unlock func(), ok bool) {
	if !actsAs(c, "user_id", userID) {
		return nil, false
	}
	if p, ok := caller(c); ok && !p.MayUseProject(projectID) {
		abortError(c, http.StatusForbidden, CodeForbidden, fmt.Sprintf("project_id: this token may use projects %s only, not %s", strings.Join(p.Projects, ", "), projectID))
		return nil, false
	}
	perUser, perProject := s.cfg.MaxActiveTasksPerUser, s.cfg.MaxActiveTasksPerProject
	if (perUser <= 0 && perProject <= 0) || s.cfg.Node.FSM().KnownRequest(requestID) {
		return func() {}, true
	}
	unlock = lockQuota(userID, projectID)
	users, projects := s.activeTasks(userID, projectID)
	switch {
	case perUser > 0 && users >= perUser:
		unlock()
		c.Header("Retry-After", "30")
		abortError(c, http.StatusTooManyRequests, CodeQuotaExceeded, fmt.Sprintf("user %s runs %d tasks, the most it may run at once (--max-active-tasks-per-user %d); submit again when one has finished", userID, users, perUser))
		return nil, false
	case perProject > 0 && projects >= perProject:
		unlock()
		c.Header("Retry-After", "30")
		abortError(c, http.StatusTooManyRequests, CodeQuotaExceeded, fmt.Sprintf("project %s runs %d tasks, the most it may run at once (--max-active-tasks-per-project %d); submit again when one has finished", projectID, projects, perProject))
		return nil, false
	}
	return unlock, true
}

// activeTasks counts the tasks of a user and of a project that are not
// finished (a finished task still cleaning up counts: it holds its
// workspace).
func (s *Server) activeTasks(userID, projectID string) (users, projects int) {
	s.cfg.Node.FSM().ForEachTask(func(t *fsm.Task) bool {
		if (t.Status.Terminal() && !t.Cleanup) || t.Status == fsm.StatusDraft || t.Status == fsm.StatusReady {
			return true
		}
		if t.UserID == userID {
			users++
		}
		if t.ProjectID == projectID {
			projects++
		}
		return true
	})
	return users, projects
}

// quotaStripes serialise quota-checked submissions per user and per
// project (hashed onto a few locks; a collision only serialises more).
var quotaStripes [64]sync.Mutex

func stripe(kind, id string) int {
	h := fnv.New32a()
	h.Write([]byte(kind + "\x00" + id))
	return int(h.Sum32() % uint32(len(quotaStripes)))
}

func lockQuota(userID, projectID string) func() {
	a, b := stripe("user", userID), stripe("project", projectID)
	if a > b {
		a, b = b, a
	}
	quotaStripes[a].Lock()
	if b != a {
		quotaStripes[b].Lock()
	}
	return func() {
		if b != a {
			quotaStripes[b].Unlock()
		}
		quotaStripes[a].Unlock()
	}
}

// nodeOwnerFilter is the user whose nodes a caller may see ("" for any).
func nodeOwnerFilter(c *gin.Context) string { return ownerFilter(c) }

// eventVisible is the caller's filter on the event stream: a user follows
// its own tasks (in its projects) and its own nodes only.
func eventVisible(c *gin.Context) func(e *Event) bool {
	owner, projects := ownerFilter(c), projectFilter(c)
	if owner == "" {
		return func(*Event) bool { return true }
	}
	return func(e *Event) bool {
		switch {
		case e.Task != nil:
			return e.Task.Owner == owner && (len(projects) == 0 || slices.Contains(projects, e.Task.ProjectID))
		case e.Node != nil:
			return e.Node.UserID == owner
		}
		return false
	}
}
