package contract

import (
	"context"
	"errors"
	"fmt"
)

// FailureError is an error carrying the FailureClass of a failed scan job.
// Scanners return it (usually through Permanent or Retryable) so the queue
// knows whether to retry the job with backoff or record it as failed at once;
// callers check for it with errors.As, or read both answers with Classify.
type FailureError struct {
	Class FailureClass
	// permanent overrides the class's default retryability when set by
	// Permanent.
	permanent bool
	Err       error
}

func (e *FailureError) Error() string { return fmt.Sprintf("%s: %v", e.Class, e.Err) }
func (e *FailureError) Unwrap() error { return e.Err }

// Retryable reports whether the job should be retried.
func (e *FailureError) Retryable() bool { return !e.permanent && e.Class.Retryable() }

// Permanent marks err as a failure of class that retrying cannot fix.
func Permanent(class FailureClass, err error) error {
	return &FailureError{Class: class, permanent: true, Err: err}
}

// Retryable marks err as transient when class is retryable; a permanent class
// (not_found, unauthorized, ...) stays permanent.
func Retryable(class FailureClass, err error) error {
	return &FailureError{Class: class, Err: err}
}

// Classify returns the failure class of err and whether it may be retried.
// Unclassified errors are internal and retryable; context deadline errors
// are timeouts.
func Classify(err error) (FailureClass, bool) {
	var fe *FailureError
	if errors.As(err, &fe) {
		return fe.Class, fe.Retryable()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return FailureTimeout, true
	}
	return FailureInternal, true
}
