package sim

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/tdf-project/tdf/vmagent"
)

// Seeding puts an agent into the state another control plane (the old
// system tdf imports from) left it in, without going through the API: a
// workspace still provisioning or running, an agent session mid-run. What
// it seeds then lives on as if it had been created through the API: a
// creating workspace finishes provisioning and sends its ready callback;
// a running session finishes its run and sends the task status callback.
// Seeded effects are events like any other, with Detail "seeded", so a
// ledger shows what the old system did apart from what tdf does.

// SeedWorkspace describes one workspace to seed.
type SeedWorkspace struct {
	ID, Repository, Branch string
	// Status is creating, running, recovery, stopped or error.
	Status        string
	CallbackToken string
	ProjectID     string
	TaskID        string
	// Session, if set, is an agent session of the workspace; Running
	// starts its agent run now (it reports on TaskID when done).
	Session *SeedSession
	// ReadyAfter delays the end of a creating workspace's provisioning
	// (and its ready callback) beyond the configured delay.
	ReadyAfter time.Duration
}

// SeedSession describes one agent session to seed.
type SeedSession struct {
	ID      string
	Prompt  string
	Running bool
	// RunAfter delays the end of the run (and its task status callback)
	// beyond the configured work duration.
	RunAfter time.Duration
}

// Seed creates a workspace (and its session) as if an earlier control
// plane had. Seeding an id that exists is an error.
func (a *Agent) Seed(ws SeedWorkspace) error {
	switch ws.Status {
	case vmagent.StatusCreating, vmagent.StatusRunning, vmagent.StatusRecovery, vmagent.StatusStopped, vmagent.StatusError:
	default:
		return fmt.Errorf("sim: seed workspace %s: unknown status %q", ws.ID, ws.Status)
	}
	if ws.Session != nil && ws.Status != vmagent.StatusRunning && ws.Status != vmagent.StatusRecovery {
		return fmt.Errorf("sim: seed workspace %s: a session needs a running workspace, not %s", ws.ID, ws.Status)
	}
	branch := strings.TrimSpace(ws.Branch)
	if branch == "" {
		branch = vmagent.DefaultBranch
	}
	now := time.Now()
	a.mu.Lock()
	if _, ok := a.workspaces[ws.ID]; ok || a.closed {
		a.mu.Unlock()
		return fmt.Errorf("sim: seed workspace %s: exists, or the agent is closed", ws.ID)
	}
	w := &workspace{id: ws.ID, repository: ws.Repository, branch: branch, status: ws.Status,
		provisioning: ws.Status == vmagent.StatusCreating, callbackToken: ws.CallbackToken,
		projectID: ws.ProjectID, taskID: ws.TaskID, createdAt: now, updatedAt: now}
	a.workspaces[w.id] = w
	hooks := []func(){a.emitLocked(Event{Kind: EventWorkspaceCreate, WorkspaceID: w.id, TaskID: w.taskID, Detail: "seeded"})}
	var s *session
	var runCtx context.Context
	if ss := ws.Session; ss != nil {
		s = &session{Session: vmagent.Session{ID: ss.ID, WorkspaceID: w.id, Status: vmagent.SessionRunning,
			LastPrompt: ss.Prompt, CreatedAt: now.UTC(), UpdatedAt: now.UTC()}, projectID: ws.ProjectID, deliveries: map[string]string{}}
		a.sessions[w.id] = map[string]*session{s.ID: s}
		hooks = append(hooks, a.emitLocked(Event{Kind: EventSessionCreate, WorkspaceID: w.id, SessionID: s.ID, TaskID: ws.TaskID, Detail: "seeded"}))
		if ss.Running {
			s.running = true
			runCtx, s.stopRun = context.WithCancel(a.ctx)
			hooks = append(hooks, a.emitLocked(Event{Kind: EventSessionStart, WorkspaceID: w.id, SessionID: s.ID, TaskID: ws.TaskID, Detail: "seeded"}))
		}
	}
	gen := w.gen
	a.mu.Unlock()
	for _, h := range hooks {
		h()
	}
	if w.provisioning {
		a.goFunc(func(ctx context.Context) {
			if sleep(ctx, ws.ReadyAfter) {
				a.provision(ctx, w, gen)
			}
		})
	}
	if runCtx != nil {
		tc := taskContext{projectID: ws.ProjectID, taskID: ws.TaskID}
		a.goFunc(func(ctx context.Context) {
			if sleep(ctx, ws.Session.RunAfter) {
				a.run(runCtx, w, s, tc)
			}
		})
	}
	return nil
}
