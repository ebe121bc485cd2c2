package sim

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/tdf-project/tdf/vmagent"
)

// boot waits out system provisioning, then sends node ready, once.
func (a *Agent) boot(ctx context.Context) {
	if !sleep(ctx, a.cfg.BootDelay) {
		return
	}
	a.sendNodeReady(ctx)
}

// provision runs one provisioning of ws (generation gen): after
// WorkspaceReadyDelay the workspace runs and ready is sent, or it fails and
// provisioning-failed is sent, or (NeverReady) nothing happens.
func (a *Agent) provision(ctx context.Context, ws *workspace, gen int) {
	if !sleep(ctx, a.cfg.WorkspaceReadyDelay) {
		return
	}
	a.mu.Lock()
	if a.workspaces[ws.id] != ws || ws.gen != gen || ws.status != vmagent.StatusCreating {
		// Stopped, deleted or re-provisioned meanwhile.
		a.mu.Unlock()
		return
	}
	f := a.faults
	if f.NeverReady {
		a.mu.Unlock()
		return
	}
	ws.provisioning = false
	ws.updatedAt = time.Now()
	if f.FailWorkspaces {
		ws.status = vmagent.StatusError
		hook := a.emitLocked(Event{Kind: EventWorkspaceFailed, WorkspaceID: ws.id, TaskID: ws.taskID, Detail: f.failureMessage()})
		m := newMessage(KindProvisioningFailed, vmagent.ProvisioningFailedPath(ws.id), ws.callbackToken,
			vmagent.ProvisioningFailedRequest{ErrorMessage: f.failureMessage()})
		m.workspaceID, m.projectID, m.taskID = ws.id, ws.projectID, ws.taskID
		m.retryLimits = true
		a.mu.Unlock()
		hook()
		a.sendProvisioningFailed(ctx, m)
		return
	}
	status := readyStatus(f)
	ws.status = status
	hook := a.emitLocked(Event{Kind: EventWorkspaceReady, WorkspaceID: ws.id, TaskID: ws.taskID, Detail: status})
	m := a.readyMessageLocked(ws, status)
	a.mu.Unlock()
	hook()
	a.sendReady(ctx, ws, m, status, 1)
}

func readyStatus(f Faults) string {
	if f.ReadyAsRecovery {
		return vmagent.StatusRecovery
	}
	return vmagent.StatusRunning
}

// run is one agent run of a session: after AgentWorkDuration it sends the
// task status callback, once. tc is the task context of the start request.
// ctx ends early when the session or its workspace is stopped (the run is
// then logged as skipped) or the agent closes.
func (a *Agent) run(ctx context.Context, ws *workspace, s *session, tc taskContext) {
	if !sleep(ctx, a.cfg.AgentWorkDuration) && a.ctx.Err() != nil {
		return
	}
	a.mu.Lock()
	s.running = false
	if s.stopRun != nil {
		s.stopRun()
		s.stopRun = nil
	}
	alive := a.workspaces[ws.id] == ws && a.sessions[ws.id][s.ID] == s && s.Status == vmagent.SessionRunning
	f := a.faults
	token := ws.callbackToken
	var body vmagent.TaskStatusRequest
	switch {
	case !alive:
	case f.AgentRunFailure:
		body = vmagent.TaskStatusRequest{
			ToStatus:     "failed",
			Reason:       "Agent prompt failed",
			ErrorMessage: f.agentFailureMessage(),
		}
	default:
		a.prNumber++
		body = vmagent.TaskStatusRequest{
			ExecutionStep: vmagent.ExecutionStepAwaitingFollowup,
			GitPushResult: a.pushResultLocked(ws, s, a.prNumber),
		}
	}
	var chat *message
	if alive {
		chat = a.chatMessagesLocked(ws, s, tc)
	}
	hook := func() {}
	if alive {
		detail := "awaiting_followup"
		if f.AgentRunFailure {
			detail = "failed"
		}
		hook = a.emitLocked(Event{Kind: EventAgentRunDone, WorkspaceID: ws.id, SessionID: s.ID, TaskID: tc.taskID, Detail: detail})
	}
	a.mu.Unlock()
	hook()
	if chat != nil {
		// The real agent's outbox runs on its own; sending the run's
		// messages first keeps the simulation's order fixed.
		a.sendChatMessages(a.ctx, chat)
	}

	m := newMessage(KindTaskStatus, vmagent.TaskStatusPath(tc.projectID, tc.taskID), token, body)
	m.workspaceID, m.projectID, m.taskID = ws.id, tc.projectID, tc.taskID
	skip := func(why string) {
		r := m.rec(OutcomeSkipped)
		r.Error = why
		a.record(r)
	}
	switch {
	case !alive:
		skip("session or workspace stopped before the run finished")
	case tc.projectID == "" || tc.taskID == "":
		skip("no task context (projectId and taskId)")
	case token == "":
		skip("no callback token")
	case a.dropped(m, f):
		// Decided and logged by dropped.
	default:
		// ctx is the run's, ended above; the callback lives as long as the agent.
		a.deliverOnce(a.ctx, m)
	}
}

// taskContext is the task a run reports on.
type taskContext struct{ projectID, taskID string }

// pushResultLocked makes up what the run pushed: a commit on the workspace
// branch and a pull request.
func (a *Agent) pushResultLocked(ws *workspace, s *session, pr int) *vmagent.GitPushResult {
	sum := sha1.Sum([]byte(ws.id + "/" + s.ID + "/" + fmt.Sprint(pr)))
	repo := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(ws.repository, "https://"), "github.com/"), ".git")
	if repo == "" {
		repo = "example/repo"
	}
	return &vmagent.GitPushResult{
		Pushed:     true,
		CommitSHA:  hex.EncodeToString(sum[:]),
		BranchName: ws.branch,
		PRURL:      fmt.Sprintf("https://github.com/%s/pull/%d", repo, pr),
		PRNumber:   pr,
	}
}
