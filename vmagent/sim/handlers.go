package sim

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tdf-project/tdf/vmagent"
)

// maxBodyBytes bounds a request body.
const maxBodyBytes = 1 << 20

// Handler returns the agent's HTTP API, routes at the root as on a VM.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", a.handleHealth)
	slow := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, a.slow(h)) }
	slow("GET /system-info", a.handleSystemInfo)
	slow("GET /workspaces", a.handleListWorkspaces)
	slow("POST /workspaces", a.handleCreateWorkspace)
	slow("POST /workspaces/{workspaceId}/stop", a.handleStopWorkspace)
	slow("POST /workspaces/{workspaceId}/restart", a.handleRestartWorkspace)
	slow("POST /workspaces/{workspaceId}/rebuild", a.handleRebuildWorkspace)
	slow("DELETE /workspaces/{workspaceId}", a.handleDeleteWorkspace)
	slow("GET /workspaces/{workspaceId}/agent-sessions", a.handleListSessions)
	slow("POST /workspaces/{workspaceId}/agent-sessions", a.handleCreateSession)
	slow("POST /workspaces/{workspaceId}/agent-sessions/{sessionId}/start", a.handleStartSession)
	slow("POST /workspaces/{workspaceId}/agent-sessions/{sessionId}/stop", a.handleStopSession)
	slow("POST /workspaces/{workspaceId}/agent-sessions/{sessionId}/prompt", a.handlePrompt)
	slow("GET /workspaces/{workspaceId}/agent-sessions/{sessionId}/prompt-receipts/{deliveryId}", a.handlePromptReceipt)
	return mux
}

// slow delays an answer by Faults.AnswerDelay, bounds the body, and then
// handles the request.
func (a *Agent) slow(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d := a.Faults().AnswerDelay; d > 0 && !sleep(r.Context(), d) {
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		h(w, r)
	})
}

func (a *Agent) handleHealth(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "healthy"})
}

func (a *Agent) handleSystemInfo(w http.ResponseWriter, r *http.Request) {
	if !a.authorize(w, r, "") {
		return
	}
	a.mu.Lock()
	active := a.activeLocked()
	started := a.started
	a.mu.Unlock()
	m := a.cfg.Metrics(active)
	uptime := 0.0
	if !started.IsZero() {
		uptime = time.Since(started).Seconds()
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"cpu":      map[string]any{"count": 2, "loadAvg1": m.CPULoadAvg1},
		"memory":   map[string]any{"usedPercent": m.MemoryPercent},
		"disk":     map[string]any{"usedPercent": m.DiskPercent},
		"network":  map[string]any{},
		"uptime":   uptime,
		"docker":   map[string]any{"version": "simulated"},
		"software": map[string]any{},
		"agent":    map[string]any{"version": a.cfg.AgentVersion, "nodeId": a.cfg.NodeID},
	})
}

func (a *Agent) handleListWorkspaces(w http.ResponseWriter, r *http.Request) {
	if !a.authorize(w, r, "") {
		return
	}
	writeJSON(w, http.StatusOK, vmagent.ListWorkspacesResponse{Workspaces: a.Workspaces()})
}

// decode reads a JSON body; on failure it answers 400 and returns false.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "invalid request body")
		return false
	}
	return true
}

func (a *Agent) handleCreateWorkspace(w http.ResponseWriter, r *http.Request) {
	var body vmagent.CreateWorkspaceRequest
	if !decode(w, r, &body) {
		return
	}
	body.WorkspaceID = strings.TrimSpace(body.WorkspaceID)
	if body.WorkspaceID == "" {
		writeError(w, http.StatusBadRequest, "workspaceId is required")
		return
	}
	if !a.authorize(w, r, body.WorkspaceID) {
		return
	}
	repository := strings.TrimSpace(body.Repository)
	branch := strings.TrimSpace(body.Branch)
	if branch == "" {
		branch = vmagent.DefaultBranch
	}
	if a.cfg.Standalone {
		a.createStandalone(w, r, body, repository, branch)
		return
	}

	a.mu.Lock()
	if ws, ok := a.workspaces[body.WorkspaceID]; ok {
		status := ws.status
		switch {
		case ws.repository != "" && repository != "" && ws.repository != repository:
			a.mu.Unlock()
			writeCodedError(w, http.StatusConflict, vmagent.CodeWorkspaceConflict,
				"workspace already exists with a different repository",
				map[string]any{"workspaceId": body.WorkspaceID, "status": status})
		case ws.branch != "" && ws.branch != branch:
			a.mu.Unlock()
			writeCodedError(w, http.StatusConflict, vmagent.CodeWorkspaceConflict,
				"workspace already exists with a different branch",
				map[string]any{"workspaceId": body.WorkspaceID, "status": status})
		case ws.provisioning || status == vmagent.StatusRunning || status == vmagent.StatusRecovery:
			code := http.StatusOK
			if ws.provisioning {
				code = http.StatusAccepted
			}
			a.mu.Unlock()
			writeJSON(w, code, vmagent.WorkspaceStatusResponse{WorkspaceID: body.WorkspaceID, Status: status})
		default:
			a.mu.Unlock()
			writeCodedError(w, http.StatusConflict, vmagent.CodeWorkspaceNotCreatable,
				"Workspace cannot be created from current state: "+status,
				map[string]any{"workspaceId": body.WorkspaceID, "status": status})
		}
		return
	}
	if a.closed {
		a.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "agent is shutting down")
		return
	}
	now := time.Now()
	ws := &workspace{
		id:            body.WorkspaceID,
		repository:    repository,
		branch:        branch,
		status:        vmagent.StatusCreating,
		provisioning:  true,
		callbackToken: strings.TrimSpace(body.CallbackToken),
		projectID:     strings.TrimSpace(body.ProjectID),
		taskID:        strings.TrimSpace(body.TaskID),
		createdAt:     now,
		updatedAt:     now,
	}
	a.workspaces[ws.id] = ws
	hook := a.emitLocked(Event{Kind: EventWorkspaceCreate, WorkspaceID: ws.id, TaskID: ws.taskID, Detail: repository + "@" + branch})
	f := a.faults
	var early *message
	status := ws.status
	if f.EarlyReady {
		// The ready callback overtakes the answer: the workspace runs
		// before the control plane hears that it was accepted.
		ws.provisioning = false
		ws.status = readyStatus(f)
		status = ws.status
		early = a.readyMessageLocked(ws, status)
		created := hook
		ready := a.emitLocked(Event{Kind: EventWorkspaceReady, WorkspaceID: ws.id, TaskID: ws.taskID, Detail: status})
		hook = func() { created(); ready() }
	}
	a.mu.Unlock()
	hook()

	if early != nil {
		a.sendEarlyReady(ws, early, status)
	} else {
		gen := ws.gen
		a.goFunc(func(ctx context.Context) { a.provision(ctx, ws, gen) })
	}
	writeJSON(w, http.StatusAccepted, vmagent.WorkspaceStatusResponse{WorkspaceID: ws.id, Status: vmagent.StatusCreating})
}

// sendEarlyReady makes the first attempt of an early ready callback inline,
// and leaves the retries, if any, to the background.
func (a *Agent) sendEarlyReady(ws *workspace, m *message, status string) {
	if m.token == "" || a.cfg.ControlPlaneURL == "" {
		// Nothing to send now; sendReady logs why.
		a.sendReady(a.ctx, ws, m, status, 1)
		return
	}
	code, _ := a.post(a.ctx, m, 1, false, false)
	switch {
	case delivered(code):
		if a.Faults().DuplicateCallbacks {
			a.post(a.ctx, m, 1, true, false)
		}
	case code != 0 && !m.retryable(code):
		// Rejected: settled.
	default:
		a.goFunc(func(ctx context.Context) {
			if sleep(ctx, a.cfg.Retry.Initial) {
				a.sendReady(ctx, ws, m, status, 2)
			}
		})
	}
}

func (a *Agent) handleStopWorkspace(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("workspaceId")
	if !a.authorize(w, r, id) {
		return
	}
	a.mu.Lock()
	ws, ok := a.workspaces[id]
	if !ok {
		a.mu.Unlock()
		writeError(w, http.StatusNotFound, "workspace not found")
		return
	}
	switch ws.status {
	case vmagent.StatusRunning, vmagent.StatusRecovery, vmagent.StatusCreating, vmagent.StatusError:
	default:
		status := ws.status
		a.mu.Unlock()
		writeCodedError(w, http.StatusConflict, vmagent.CodeInvalidTransition,
			"Workspace cannot be stopped from current state: "+status, nil)
		return
	}
	now := time.Now()
	ws.status = vmagent.StatusStopped
	ws.provisioning = false
	ws.gen++
	ws.updatedAt = now
	for _, s := range a.sessions[id] {
		stopSessionLocked(s, now)
	}
	hook := a.emitLocked(Event{Kind: EventWorkspaceStop, WorkspaceID: id, TaskID: ws.taskID})
	a.mu.Unlock()
	hook()
	writeJSON(w, http.StatusOK, map[string]string{"status": vmagent.StatusStopped})
}

func (a *Agent) handleRestartWorkspace(w http.ResponseWriter, r *http.Request) {
	a.reprovision(w, r, "restart", vmagent.StatusCreating,
		[]string{vmagent.StatusStopped, vmagent.StatusError},
		"Workspace cannot be restarted from current state: ")
}

func (a *Agent) handleRebuildWorkspace(w http.ResponseWriter, r *http.Request) {
	a.reprovision(w, r, "rebuild", "rebuilding",
		[]string{vmagent.StatusRunning, vmagent.StatusRecovery, vmagent.StatusError},
		"Workspace must be running, recovery, or in error state to rebuild, currently ")
}

// reprovision is restart and rebuild: from one of the states from, the
// workspace provisions again and sends ready (or provisioning-failed)
// again.
func (a *Agent) reprovision(w http.ResponseWriter, r *http.Request, what, answer string, from []string, refusal string) {
	id := r.PathValue("workspaceId")
	if !a.authorize(w, r, id) {
		return
	}
	a.mu.Lock()
	ws, ok := a.workspaces[id]
	if !ok {
		a.mu.Unlock()
		writeError(w, http.StatusNotFound, "workspace not found")
		return
	}
	allowed := false
	for _, s := range from {
		allowed = allowed || ws.status == s
	}
	if !allowed {
		status := ws.status
		a.mu.Unlock()
		writeCodedError(w, http.StatusConflict, vmagent.CodeInvalidTransition, refusal+status, nil)
		return
	}
	ws.status = vmagent.StatusCreating
	ws.provisioning = true
	ws.readyPending = ""
	ws.gen++
	ws.updatedAt = time.Now()
	gen := ws.gen
	hook := a.emitLocked(Event{Kind: EventWorkspaceRestart, WorkspaceID: id, TaskID: ws.taskID, Detail: what})
	a.mu.Unlock()
	hook()
	a.goFunc(func(ctx context.Context) { a.provision(ctx, ws, gen) })
	writeJSON(w, http.StatusAccepted, map[string]string{"status": answer})
}

func (a *Agent) handleDeleteWorkspace(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("workspaceId")
	if !a.authorize(w, r, id) {
		return
	}
	a.mu.Lock()
	hook := func() {}
	if ws, ok := a.workspaces[id]; ok {
		now := time.Now()
		for _, s := range a.sessions[id] {
			stopSessionLocked(s, now)
		}
		delete(a.workspaces, id)
		delete(a.sessions, id)
		for k := range a.idem {
			if k.workspaceID == id {
				delete(a.idem, k)
			}
		}
		hook = a.emitLocked(Event{Kind: EventWorkspaceDelete, WorkspaceID: id, TaskID: ws.taskID})
	}
	a.mu.Unlock()
	hook()
	writeJSON(w, http.StatusOK, map[string]bool{"success": true})
}

// handleListSessions refuses the control plane as the real agent does: the
// route checks a browser's workspace token first and answers 401 when that
// fails, before it would accept a management token. So a control plane
// cannot list agent sessions (it learns whether one exists by creating it:
// 400 "session already exists").
func (a *Agent) handleListSessions(w http.ResponseWriter, r *http.Request) {
	msg := "invalid token"
	if h := strings.TrimSpace(r.Header.Get("Authorization")); strings.TrimSpace(strings.TrimPrefix(h, "Bearer")) == "" {
		msg = "missing token"
	}
	writeError(w, http.StatusUnauthorized, msg)
}

func (a *Agent) handleCreateSession(w http.ResponseWriter, r *http.Request) {
	wsID := r.PathValue("workspaceId")
	if !a.authorize(w, r, wsID) {
		return
	}
	var body vmagent.CreateSessionRequest
	if !decode(w, r, &body) {
		return
	}
	sid := strings.TrimSpace(body.SessionID)
	if sid == "" {
		writeError(w, http.StatusBadRequest, "sessionId is required")
		return
	}
	key := strings.TrimSpace(r.Header.Get(vmagent.HeaderIdempotencyKey))

	a.mu.Lock()
	projectID := strings.TrimSpace(body.ProjectID)
	if ws, ok := a.workspaces[wsID]; ok && projectID != "" {
		ws.projectID = projectID
	}
	if key != "" {
		if existing, ok := a.idem[idemKey{wsID, key}]; ok {
			if s, ok := a.sessions[wsID][existing]; ok {
				// The real agent points the workspace's message
				// reporting at the chat session of every creation
				// request, a replay too.
				if chat := strings.TrimSpace(body.ChatSessionID); chat != "" && projectID != "" {
					s.chatSessionID = chat
				}
				out := s.Session
				a.mu.Unlock()
				writeJSON(w, http.StatusCreated, out)
				return
			}
		}
	}
	if _, exists := a.sessions[wsID][sid]; exists {
		a.mu.Unlock()
		writeError(w, http.StatusBadRequest, "session already exists: "+sid)
		return
	}
	// Like the real agent, a session may be created for a workspace it does
	// not know; starting it is what needs the workspace.
	now := time.Now().UTC()
	s := &session{
		Session: vmagent.Session{
			ID:          sid,
			WorkspaceID: wsID,
			Status:      vmagent.SessionRunning,
			Label:       strings.TrimSpace(body.Label),
			CreatedAt:   now,
			UpdatedAt:   now,
		},
		projectID:  projectID,
		deliveries: make(map[string]string),
	}
	if chat := strings.TrimSpace(body.ChatSessionID); chat != "" && projectID != "" {
		s.chatSessionID = chat
	}
	if a.sessions[wsID] == nil {
		a.sessions[wsID] = make(map[string]*session)
	}
	a.sessions[wsID][sid] = s
	if key != "" {
		a.idem[idemKey{wsID, key}] = sid
	}
	out := s.Session
	hook := a.emitLocked(Event{Kind: EventSessionCreate, WorkspaceID: wsID, SessionID: sid})
	a.mu.Unlock()
	hook()
	writeJSON(w, http.StatusCreated, out)
}

func (a *Agent) handleStartSession(w http.ResponseWriter, r *http.Request) {
	wsID, sid := r.PathValue("workspaceId"), r.PathValue("sessionId")
	if !a.authorize(w, r, wsID) {
		return
	}
	var body vmagent.StartSessionRequest
	if !decode(w, r, &body) {
		return
	}
	if strings.TrimSpace(body.AgentType) == "" {
		writeError(w, http.StatusBadRequest, "agentType is required")
		return
	}
	if strings.TrimSpace(body.InitialPrompt) == "" {
		writeError(w, http.StatusBadRequest, "initialPrompt is required")
		return
	}
	if !checkDelivery(w, body.DeliveryID, body.ProtocolVersion) {
		return
	}
	a.deliver(w, wsID, sid, body)
}

// deliver hands a prompt (a start's or a follow-up's) to a running
// session: a new run if the agent is idle, else to the run in flight; a
// DeliveryID seen before is answered as a duplicate (or a conflict).
func (a *Agent) deliver(w http.ResponseWriter, wsID, sid string, body vmagent.StartSessionRequest) {
	delivery := strings.TrimSpace(body.DeliveryID)
	a.mu.Lock()
	s, ok := a.sessions[wsID][sid]
	if !ok {
		a.mu.Unlock()
		writeError(w, http.StatusNotFound, "session not found")
		return
	}
	if s.Status != vmagent.SessionRunning {
		a.mu.Unlock()
		writeError(w, http.StatusConflict, "session is not running")
		return
	}
	ws, ok := a.workspaces[wsID]
	if !ok {
		a.mu.Unlock()
		writeError(w, http.StatusNotFound, "workspace not found")
		return
	}
	answerCode, answer := http.StatusAccepted, "starting"
	if delivery != "" {
		fp := fingerprint(body)
		if prev, seen := s.deliveries[delivery]; seen {
			a.mu.Unlock()
			if prev != fp {
				writeJSON(w, http.StatusConflict, vmagent.StartSessionResponse{Status: vmagent.CodeDeliveryConflict, SessionID: sid})
			} else {
				writeJSON(w, http.StatusOK, vmagent.StartSessionResponse{Status: "duplicate", SessionID: sid})
			}
			return
		}
		s.deliveries[delivery] = fp
		if s.receipts == nil {
			s.receipts = map[string]*vmagent.PromptReceipt{}
		}
		now := time.Now().UnixMilli()
		s.receipts[delivery] = &vmagent.PromptReceipt{DeliveryID: delivery, State: vmagent.ReceiptInFlight, AcceptedAt: &now}
		answer = "accepted"
	}
	tc := taskContext{projectID: strings.TrimSpace(body.ProjectID), taskID: strings.TrimSpace(body.TaskID)}
	tc.projectID = cmp.Or(tc.projectID, s.task.projectID, ws.projectID)
	tc.taskID = cmp.Or(tc.taskID, s.task.taskID, ws.taskID)
	s.task = tc
	if at := strings.TrimSpace(body.AgentType); at != "" {
		s.AgentType = at
	}
	s.LastPrompt = body.InitialPrompt
	s.UpdatedAt = time.Now().UTC()
	// One run at a time per session: a start while the agent works
	// delivers the prompt to the run in flight.
	startRun := !s.running && !a.closed
	hook := func() {}
	var runCtx context.Context
	if startRun {
		s.running = true
		runCtx, s.stopRun = context.WithCancel(a.ctx)
		hook = a.emitLocked(Event{Kind: EventSessionStart, WorkspaceID: wsID, SessionID: sid, TaskID: tc.taskID, Detail: s.AgentType})
	}
	a.mu.Unlock()
	hook()
	if startRun {
		a.goFunc(func(context.Context) { a.run(runCtx, ws, s, tc) })
	}
	writeJSON(w, answerCode, vmagent.StartSessionResponse{Status: answer, SessionID: sid})
}

func (a *Agent) handleStopSession(w http.ResponseWriter, r *http.Request) {
	wsID, sid := r.PathValue("workspaceId"), r.PathValue("sessionId")
	if !a.authorize(w, r, wsID) {
		return
	}
	a.mu.Lock()
	s, ok := a.sessions[wsID][sid]
	if !ok {
		a.mu.Unlock()
		writeError(w, http.StatusNotFound, "session not found: "+sid)
		return
	}
	hook := func() {}
	if s.Status != vmagent.SessionStopped {
		stopSessionLocked(s, time.Now().UTC())
		hook = a.emitLocked(Event{Kind: EventSessionStop, WorkspaceID: wsID, SessionID: sid})
	}
	out := s.Session
	a.mu.Unlock()
	hook()
	writeJSON(w, http.StatusOK, out)
}

func stopSessionLocked(s *session, now time.Time) {
	if s.stopRun != nil {
		s.stopRun()
		s.stopRun = nil
	}
	if s.Status == vmagent.SessionStopped {
		return
	}
	s.Status = vmagent.SessionStopped
	s.UpdatedAt = now
	s.StoppedAt = &now
}

// fingerprint identifies a prompt delivery, as the real agent's receipt
// does: protocol version, message id and prompt.
func fingerprint(b vmagent.StartSessionRequest) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%d\x00%s\x00%s", b.ProtocolVersion, b.MessageID, b.InitialPrompt)))
	return hex.EncodeToString(sum[:])
}

// handlePromptReceipt answers what became of a prompt delivery, as the real
// agent's durable receipts do: 200 with its state, or 404 with state
// not_found for a delivery it has no record of (an unknown workspace or
// session included).
func (a *Agent) handlePromptReceipt(w http.ResponseWriter, r *http.Request) {
	wsID, sid, delivery := r.PathValue("workspaceId"), r.PathValue("sessionId"), strings.TrimSpace(r.PathValue("deliveryId"))
	if !vmagent.ValidDeliveryID(delivery) {
		writeError(w, http.StatusBadRequest, "workspaceId, sessionId, and deliveryId are required")
		return
	}
	if !a.authorize(w, r, wsID) {
		return
	}
	a.mu.Lock()
	var rc vmagent.PromptReceipt
	if s, ok := a.sessions[wsID][sid]; ok && s.receipts[delivery] != nil {
		rc = *s.receipts[delivery]
	}
	a.mu.Unlock()
	if rc.State == "" {
		writeJSON(w, http.StatusNotFound, vmagent.PromptReceipt{DeliveryID: delivery, State: vmagent.ReceiptNotFound})
		return
	}
	writeJSON(w, http.StatusOK, rc)
}

// checkDelivery answers 400 for a deliveryId the real agent refuses: one
// of another protocol version, or of a bad format.
func checkDelivery(w http.ResponseWriter, deliveryID string, version int) bool {
	delivery := strings.TrimSpace(deliveryID)
	switch {
	case delivery == "":
	case version != vmagent.ExecutionProtocolVersion:
		writeJSON(w, http.StatusBadRequest, map[string]any{
			"error":             "unsupported_protocol_version",
			"supportedVersions": []int{vmagent.ExecutionProtocolVersion},
		})
		return false
	case !vmagent.ValidDeliveryID(delivery):
		writeError(w, http.StatusBadRequest, "deliveryId has an invalid format")
		return false
	}
	return true
}

// handlePrompt takes a follow-up prompt, as the real agent's
// POST …/agent-sessions/{sid}/prompt does: the same delivery rules as a
// start, and a run that ends with the task-status callback.
func (a *Agent) handlePrompt(w http.ResponseWriter, r *http.Request) {
	wsID, sid := r.PathValue("workspaceId"), r.PathValue("sessionId")
	if !a.authorize(w, r, wsID) {
		return
	}
	var body vmagent.SendPromptRequest
	if !decode(w, r, &body) {
		return
	}
	if strings.TrimSpace(body.Prompt) == "" {
		writeError(w, http.StatusBadRequest, "prompt is required")
		return
	}
	if !checkDelivery(w, body.DeliveryID, body.ProtocolVersion) {
		return
	}
	a.deliver(w, wsID, sid, vmagent.StartSessionRequest{
		InitialPrompt: body.Prompt, MessageID: body.MessageID, DeliveryID: body.DeliveryID, ProtocolVersion: body.ProtocolVersion,
	})
}
