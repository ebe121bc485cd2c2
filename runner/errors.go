package runner

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/tdf-project/tdf/fsm"
)

// classified is an error with a known class.
type classified struct {
	class fsm.ErrorClass
	err   error
}

func (c *classified) Error() string { return c.err.Error() }
func (c *classified) Unwrap() error { return c.err }

// Permanent marks err as not worth retrying (not found, limit exceeded,
// invalid input, forbidden, unauthorized).
func Permanent(err error) error { return &classified{fsm.ClassPermanent, err} }

// Transient marks err as worth retrying (network errors, timeouts, 429, 5xx).
func Transient(err error) error { return &classified{fsm.ClassTransient, err} }

// Permanentf is Permanent(fmt.Errorf(...)).
func Permanentf(format string, args ...any) error { return Permanent(fmt.Errorf(format, args...)) }

// Classify returns an error's class. Unknown errors are transient
// (REFERENCE.md): retrying a step is safe, since its effects are idempotent.
func Classify(err error) fsm.ErrorClass {
	var c *classified
	if errors.As(err, &c) {
		return c.class
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, context.DeadlineExceeded) {
		return fsm.ClassTransient
	}
	return fsm.ClassTransient
}
