package main

import (
	"errors"
	"fmt"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/fsm"
)

// The exit codes, documented in every command's help and in the README.
const (
	exitOK          = 0
	exitFailed      = 1 // the task failed or was cancelled; or any error not below
	exitUsage       = 2 // bad flags or arguments, missing required flags
	exitUnreachable = 3 // no answer from the API
	exitRefused     = 4 // the API answered with an error (not found, forbidden, conflict…)
)

const exitCodesHelp = `
Exit codes: 0 success; 1 the task failed or was cancelled (or another error);
2 usage (bad or missing flags or arguments); 3 the API could not be reached;
4 the API refused the request (its answer says why).
`

// usageError is a mistake in the command line (exit 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// errUnreachable marks a request that got no answer (exit 3).
var errUnreachable = errors.New("unreachable")

// apiError is an error answer of the API (exit 4).
type apiError struct {
	Status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

// taskEndedError says that a followed task ended without completing
// (exit 1).
type taskEndedError struct{ id, status, message string }

func (e *taskEndedError) Error() string {
	if e.message != "" {
		return fmt.Sprintf("task %s %s: %s", e.id, e.status, e.message)
	}
	return fmt.Sprintf("task %s %s", e.id, e.status)
}

// exitCode maps a command's error to the process's exit code.
func exitCode(err error) int {
	var ue *usageError
	var ae *apiError
	switch {
	case err == nil, errors.Is(err, errHelp):
		return exitOK
	case errors.Is(err, errUsage), errors.As(err, &ue):
		return exitUsage
	case errors.Is(err, errUnreachable):
		return exitUnreachable
	case errors.As(err, &ae):
		return exitRefused
	}
	return exitFailed
}

// taskEnded is nil for a completed task and a taskEndedError for one that
// failed or was cancelled: what tdf task watch and submit --wait exit with.
func taskEnded(t *api.Task) error {
	if t == nil || t.Status == fsm.StatusCompleted {
		return nil
	}
	return &taskEndedError{id: t.ID, status: string(t.Status), message: t.ErrorMessage}
}
