package sim

import (
	"cmp"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/tdf-project/tdf/vmagent"
	"github.com/tdf-project/tdf/vmagent/fakeacp"
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
		hook, m := a.failWorkspaceLocked(ws, f)
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
	// The real agent completes the receipts when the prompt ends, before
	// its task-status callback (which waits for the git push).
	done := time.Now().UnixMilli()
	for _, rc := range s.receipts {
		if rc.State == vmagent.ReceiptInFlight {
			rc.State, rc.CompletedAt = vmagent.ReceiptCompleted, &done
		}
	}
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
		body = vmagent.TaskStatusRequest{
			ExecutionStep: vmagent.ExecutionStepAwaitingFollowup,
			GitPushResult: a.pushResultLocked(ws, s),
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

// pushResultLocked makes up what the real agent reports after a run
// whose coding agent did the prompt's work: on the branch the prompt names
// (tdf's prompts name the task's output branch), else on the workspace's
// checkout branch, left uncommitted. The agent commits it and pushes the
// branch, but never the checkout branch (the project's default): its
// guard keeps that commit local and says why. It opens a pull request
// only for a GitHub repository (through gh).
func (a *Agent) pushResultLocked(ws *workspace, s *session) *vmagent.GitPushResult {
	a.commits++
	sum := sha1.Sum([]byte(ws.id + "/" + s.ID + "/" + fmt.Sprint(a.commits)))
	res := &vmagent.GitPushResult{
		CommitSHA:             hex.EncodeToString(sum[:]),
		BranchName:            cmp.Or(fakeacp.PromptBranch(s.LastPrompt), ws.branch),
		HasUncommittedChanges: true,
	}
	if res.BranchName == ws.branch {
		res.Error = fmt.Sprintf("auto-commit push blocked: HEAD is still on the project default branch %q; "+
			"the agent should have checked out the task output branch before completing. "+
			"Changes are committed locally (sha %s) but were not pushed to protect the default branch", ws.branch, res.CommitSHA)
		return res
	}
	res.Pushed = true
	if repo, ok := githubRepo(ws.repository); ok {
		a.prNumber++
		res.PRURL, res.PRNumber = fmt.Sprintf("https://github.com/%s/pull/%d", repo, a.prNumber), a.prNumber
	}
	return res
}

// githubRepo is the owner/name of a GitHub repository, which the real
// agent reads a repository without a scheme as ("acme/app",
// "github.com/acme/app").
func githubRepo(repository string) (string, bool) {
	r := strings.TrimSpace(repository)
	if r == "" {
		return "", false
	}
	if strings.HasPrefix(r, "http://") || strings.HasPrefix(r, "https://") {
		u, err := url.Parse(r)
		if err != nil || !strings.EqualFold(u.Host, "github.com") {
			return "", false
		}
		r = u.Path
	}
	r = strings.TrimPrefix(strings.TrimPrefix(r, "/"), "github.com/")
	return strings.TrimSuffix(r, ".git"), true
}
