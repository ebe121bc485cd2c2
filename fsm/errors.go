package fsm

import "errors"

// Domain errors returned (wrapped) in Result.Err. They are outcomes of a
// committed command, not failures of the log: the command was applied and
// changed nothing.
var (
	// ErrNotFound: the command names a task, node or member that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrInvalidTransition: the status change is not in the transition table.
	ErrInvalidTransition = errors.New("invalid status transition")
	// ErrIdempotencyMismatch: a request id was reused for a different request.
	ErrIdempotencyMismatch = errors.New("idempotency key reused with a different request")
	// ErrInvalid: the command's fields are invalid (the API validates first,
	// so this guards against a buggy or hostile proposer).
	ErrInvalid = errors.New("invalid command")
	// ErrExists: a record with the command's id already exists.
	ErrExists = errors.New("already exists")
)

// ErrFenced: a step claim or result no longer matches the task's current
// step, attempt and term (a deposed leader, an older attempt, a cancelled
// task). It was rejected and counted; nothing changed but the counter and
// the error database.
var ErrFenced = errors.New("fenced: stale step claim or result")
