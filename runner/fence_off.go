//go:build nofence

package runner

import (
	"context"
	"time"

	"github.com/tdf-project/tdf/fsm"
)

// fenceDeposed is off in a `-tags nofence` build, for the chaos checker's
// test only. Never ship it.
const fenceDeposed = false

// commitLate keeps a result from a term this node no longer leads and
// commits it as soon as the node leads again (within a few minutes).
func (r *Runner) commitLate(cmd fsm.StepResult) {
	r.log.Warn("nofence build: keeping a deposed term's step result to commit later", "task", cmd.TaskID, "step", cmd.Step, "attempt", cmd.Attempt, "term", cmd.Term)
	go func() {
		for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			res, err := r.node.Apply(ctx, cmd)
			cancel()
			if err == nil {
				r.log.Warn("nofence build: committed a deposed term's step result", "task", cmd.TaskID, "step", cmd.Step, "attempt", cmd.Attempt, "term", cmd.Term, "fsm_error", res.Err)
				return
			}
		}
	}()
}
