//go:build !nofence

package runner

import "github.com/tdf-project/tdf/fsm"

// fenceDeposed: a result whose claim's term has ended (this node lost
// leadership while the handler ran) is dropped; the next leader re-runs
// the claim. A `-tags nofence` build (fence_off.go) keeps such results and
// commits them once this node leads again, as a runner without fencing
// would: the stale results the chaos checker's own test must catch.
const fenceDeposed = true

// commitLate is a no-op with fencing on.
func (r *Runner) commitLate(fsm.StepResult) {}
