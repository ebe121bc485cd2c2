package runner

import (
	"context"
	"time"

	"github.com/tdf-project/tdf/fsm"
)

// Handler performs one attempt of a step with external effects. key is the
// step's idempotency key, derived from (task, step): the same on every
// attempt, so that a re-dispatched attempt asks for the same effect and the
// provider performs it once. The task is the claimed state (read only).
// Run must return when ctx is cancelled.
type Handler interface {
	Run(ctx context.Context, t *fsm.Task, key string) Result
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, t *fsm.Task, key string) Result

// Run implements Handler.
func (f HandlerFunc) Run(ctx context.Context, t *fsm.Task, key string) Result { return f(ctx, t, key) }

// Result is what one attempt found.
type Result struct {
	// Data is what the step learned (ids of what it created).
	Data fsm.StepData
	// PollAfter > 0 means "not done yet, look again after this long".
	PollAfter time.Duration
	// Err is the attempt's failure, classified with Permanent/Transient.
	Err error
}

// Done is a successful result.
func Done(d fsm.StepData) Result { return Result{Data: d} }

// PollIn is a not-yet-done result.
func PollIn(d time.Duration) Result { return Result{PollAfter: d} }

// Failed is a failed result.
func Failed(err error) Result { return Result{Err: err} }

// IdempotencyKey is the key of a step's external effects: derived from the
// task and the step, never from the attempt.
func IdempotencyKey(taskID string, step fsm.Step) string {
	return taskID + "/" + string(step)
}
