package queue

import (
	"context"
	"errors"
	"fmt"

	"github.com/fleetscan/fleetscan/pkg/contract"
)

// Error is a classified job failure. Handlers return it (usually through
// Permanent or Retryable) so the consumer knows whether to retry the job
// (NakWithDelay) or record it as failed at once (Term).
type Error struct {
	Class contract.FailureClass
	// Permanent overrides the class's default retryability when set by
	// Permanent().
	permanent bool
	Err       error
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %v", e.Class, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// Retryable reports whether the job should be retried.
func (e *Error) Retryable() bool { return !e.permanent && e.Class.Retryable() }

// Permanent marks err as a failure that retrying cannot fix.
func Permanent(class contract.FailureClass, err error) error {
	return &Error{Class: class, permanent: true, Err: err}
}

// Retryable marks err as transient when class is retryable; a permanent class
// (not_found, unauthorized, ...) stays permanent.
func Retryable(class contract.FailureClass, err error) error {
	return &Error{Class: class, Err: err}
}

// Classify returns the failure class of err and whether it may be retried.
// Unclassified errors are internal and retryable; context deadline errors
// are timeouts.
func Classify(err error) (contract.FailureClass, bool) {
	var qe *Error
	if errors.As(err, &qe) {
		return qe.Class, qe.Retryable()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return contract.FailureTimeout, true
	}
	return contract.FailureInternal, true
}
