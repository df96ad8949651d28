// Package backoff computes bounded exponential delays with jitter, used for
// NATS reconnects and for re-queuing retryable scan failures.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Exponential returns base*2^(attempt-1) capped at max, with ±20% jitter.
// attempt counts from 1; values below 1 are treated as 1.
func Exponential(base, max time.Duration, attempt int) time.Duration {
	jitter := 0.8 + 0.4*rand.Float64()
	return time.Duration(float64(Nominal(base, max, attempt)) * jitter)
}

// Nominal is Exponential without the jitter: base*2^(attempt-1) capped at
// max (budgets add these up).
func Nominal(base, max time.Duration, attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	d := base
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d
}
