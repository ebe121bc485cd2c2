package bench

import (
	"context"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/runner"
)

// applyFunc commits a command on the leader (cluster.Node.Apply) or straight
// into an FSM (the raft-less driver).
type applyFunc func(ctx context.Context, cmd fsm.Command) (*fsm.Result, error)

// zeroDelayHandlers are fakes of the cloud and the VM agent that answer at
// once. The agent's two callbacks are delivered early, from the step that
// causes them, as a fast agent's would be: workspace_creation commits the
// workspace's ready callback before its own result, agent_session the
// "finished, awaiting follow-up" callback; the FSM keeps both and consumes
// them when the task reaches the waiting step. awaiting_followup then ends
// by its idle timer (set short in the policy), and cleanup stops the
// workspace. Per task: 15 commands (submit, decision, 4 claim/result pairs,
// 2 callbacks, the idle timeout, cleanup's claim and result).
func zeroDelayHandlers(apply func() applyFunc) map[fsm.Step]runner.Handler {
	now := func() time.Time { return time.Now().UTC().Round(0) }
	callback := func(ctx context.Context, cmd fsm.Command) runner.Result {
		res, err := apply()(ctx, cmd)
		switch {
		case err != nil:
			return runner.Failed(runner.Transient(err))
		case res.Err != nil:
			return runner.Failed(runner.Permanent(res.Err))
		}
		return runner.Done(fsm.StepData{})
	}
	return map[fsm.Step]runner.Handler{
		fsm.StepNodeProvisioning: runner.HandlerFunc(func(_ context.Context, t *fsm.Task, _ string) runner.Result {
			h := fnv.New32a()
			h.Write([]byte(t.NodeID))
			id := int64(h.Sum32())
			return runner.Done(fsm.StepData{ServerID: id, ActionID: id, IPv4: fmt.Sprintf("10.%d.%d.%d", id>>16&255, id>>8&255, id&255)})
		}),
		fsm.StepNodeAgentReady: runner.HandlerFunc(func(context.Context, *fsm.Task, string) runner.Result {
			return runner.Done(fsm.StepData{})
		}),
		fsm.StepWorkspaceCreate: runner.HandlerFunc(func(ctx context.Context, t *fsm.Task, _ string) runner.Result {
			return callback(ctx, fsm.WorkspaceReady{WorkspaceID: t.WorkspaceID, Status: fsm.WorkspaceRunning, At: now()})
		}),
		fsm.StepAgentSession: runner.HandlerFunc(func(ctx context.Context, t *fsm.Task, _ string) runner.Result {
			r := callback(ctx, fsm.TaskStatusCallback{TaskID: t.ID, WorkspaceID: t.WorkspaceID,
				ExecutionStep: fsm.StepAwaitingFollowup, Output: fsm.Output{Branch: "tdf/" + t.ID, Summary: "done"}, At: now()})
			if r.Err == nil {
				r.Data.SessionID = "sess-" + t.ID
			}
			return r
		}),
		fsm.StepCleanup: runner.HandlerFunc(func(context.Context, *fsm.Task, string) runner.Result {
			return runner.Done(fsm.StepData{WorkspaceStopped: true})
		}),
	}
}

// benchPolicy is the default policy with a 1 ms follow-up idle timer, so
// that a task completes as soon as its agent has finished.
func benchPolicy() fsm.Policy {
	p := fsm.DefaultPolicy()
	p.IdleTimeout = time.Millisecond
	return p
}

// benchSettings lift the per-user node cap, which would otherwise queue
// tasks of one user behind each other's nodes.
func benchSettings() fsm.Settings {
	s := fsm.DefaultSettings()
	s.MaxNodesPerUser = 1 << 20
	return s
}
