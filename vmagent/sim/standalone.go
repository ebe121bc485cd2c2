package sim

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/tdf-project/tdf/vmagent"
)

// The standalone role (Config.Standalone; the real agent's
// NODE_ROLE=standalone, which tdf's tests run real agents in) makes a
// workspace within the create call, cloning the repository into the
// agent's one working directory. So POST /workspaces answers 200
// {workspaceId, status: running} once the ready callback went out (one
// attempt; a failed one is kept pending for the heartbeats), or 500
// {error} after the provisioning-failed callback. Every call but a
// conflicting one makes the workspace again: a replay re-sends ready, a
// stopped or failed workspace runs again. There is no 202 and no
// workspace_not_creatable, and a conflict's answer carries no status.
// Of the provisioning faults only FailWorkspaces applies;
// WorkspaceReadyDelay is spent within the call (the clone).

func (a *Agent) createStandalone(w http.ResponseWriter, r *http.Request, body vmagent.CreateWorkspaceRequest, repository, branch string) {
	a.mu.Lock()
	ws, exists := a.workspaces[body.WorkspaceID]
	if exists {
		conflict := ""
		switch {
		case ws.repository != "" && repository != "" && ws.repository != repository:
			conflict = "workspace already exists with a different repository"
		case ws.branch != "" && ws.branch != branch:
			conflict = "workspace already exists with a different branch"
		}
		if conflict != "" {
			a.mu.Unlock()
			writeCodedError(w, http.StatusConflict, vmagent.CodeWorkspaceConflict, conflict,
				map[string]any{"workspaceId": body.WorkspaceID})
			return
		}
	}
	if a.closed {
		a.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "agent is shutting down")
		return
	}
	now := time.Now()
	if !exists {
		ws = &workspace{id: body.WorkspaceID, createdAt: now}
		a.workspaces[ws.id] = ws
	}
	// Like the real agent's upsert: what the call names replaces what was.
	if repository != "" {
		ws.repository = repository
	}
	ws.branch = branch
	replaceIfSet(&ws.callbackToken, body.CallbackToken)
	replaceIfSet(&ws.projectID, body.ProjectID)
	replaceIfSet(&ws.taskID, body.TaskID)
	remade := !exists || ws.status == vmagent.StatusStopped || ws.status == vmagent.StatusError
	ws.status, ws.provisioning, ws.readyPending, ws.updatedAt = vmagent.StatusCreating, false, "", now
	ws.gen++
	gen := ws.gen
	hook := func() {}
	if remade {
		hook = a.emitLocked(Event{Kind: EventWorkspaceCreate, WorkspaceID: ws.id, TaskID: ws.taskID, Detail: repository + "@" + branch})
	}
	a.mu.Unlock()
	hook()

	if !sleep(r.Context(), a.cfg.WorkspaceReadyDelay) {
		return
	}
	a.mu.Lock()
	if a.workspaces[ws.id] != ws || ws.gen != gen {
		// Deleted, stopped or made again meanwhile: the real agent
		// answers as if it had run (its state moves only from creating).
		a.mu.Unlock()
		writeJSON(w, http.StatusOK, vmagent.WorkspaceStatusResponse{WorkspaceID: ws.id, Status: vmagent.StatusRunning})
		return
	}
	f := a.faults
	ws.updatedAt = time.Now()
	if f.FailWorkspaces {
		hook, m := a.failWorkspaceLocked(ws, f)
		a.mu.Unlock()
		hook()
		// Within the call, bounded as the real agent bounds it.
		ctx, cancel := context.WithTimeout(a.ctx, a.cfg.CallbackTimeout)
		a.sendProvisioningFailed(ctx, m)
		cancel()
		writeError(w, http.StatusInternalServerError, f.failureMessage())
		return
	}
	ws.status = vmagent.StatusRunning
	hook = func() {}
	if remade {
		hook = a.emitLocked(Event{Kind: EventWorkspaceReady, WorkspaceID: ws.id, TaskID: ws.taskID, Detail: ws.status})
	}
	m := a.readyMessageLocked(ws, ws.status)
	a.mu.Unlock()
	hook()
	a.sendStandaloneReady(ws, m)
	writeJSON(w, http.StatusOK, vmagent.WorkspaceStatusResponse{WorkspaceID: ws.id, Status: vmagent.StatusRunning})
}

// sendStandaloneReady makes the one attempt of a standalone workspace's
// ready callback; any answer but a 2xx keeps it pending for the
// heartbeats.
func (a *Agent) sendStandaloneReady(ws *workspace, m *message) {
	if m.token == "" {
		r := m.rec(OutcomeSkipped)
		r.Error = "no callback token"
		a.record(r)
		return
	}
	if a.noControlPlane(m) {
		return
	}
	ctx, cancel := context.WithTimeout(a.ctx, a.cfg.CallbackTimeout)
	defer cancel()
	if code, _ := a.post(ctx, m, 1, false, false); delivered(code) {
		if a.Faults().DuplicateCallbacks {
			a.post(ctx, m, 1, true, false)
		}
		return
	}
	a.mu.Lock()
	current := a.workspaces[ws.id] == ws
	if current {
		ws.readyPending = vmagent.StatusRunning
	}
	a.mu.Unlock()
	if current {
		a.record(m.rec(OutcomePending))
	}
}

func replaceIfSet(dst *string, v string) {
	if v = strings.TrimSpace(v); v != "" {
		*dst = v
	}
}
