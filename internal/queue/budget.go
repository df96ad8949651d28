package queue

import (
	"time"

	"github.com/fleetscan/fleetscan/internal/backoff"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// DefaultUnreachableBudget bounds how long a job whose registry cannot be
// reached is retried: a refused connection or an unknown host rarely heals
// within minutes, and the run should not wait out the whole delivery
// budget's backoff (~150 s at the defaults) for it.
const DefaultUnreachableBudget = 30 * time.Second

// retryPlan decides whether a retryable failure at attempt is retried and
// after which delay. Unreachable registries retry on a time budget: the
// nominal backoff delays of the attempts so far must stay within it, and the
// last delay is cut to what remains. It also returns how much retrying can
// still follow this decision at most (for progress estimates).
func (c *Consumer) retryPlan(class contract.FailureClass, attempt int) (retry bool, delay, left time.Duration) {
	nominal := func(k int) time.Duration { return backoff.Nominal(c.cfg.RetryBase, c.cfg.RetryMax, k) }
	if class != contract.FailureUnreachable || c.cfg.UnreachableBudget <= 0 {
		// The delays still ahead within the delivery budget, plus the
		// jitter's 20%.
		left = nominal(attempt)
		for k := attempt + 1; k < c.maxDeliver; k++ {
			left += nominal(k)
		}
		return true, backoff.Exponential(c.cfg.RetryBase, c.cfg.RetryMax, attempt), left * 6 / 5
	}
	budget := c.cfg.UnreachableBudget
	var spent time.Duration
	for k := 1; k < attempt; k++ {
		spent += min(nominal(k), budget-spent)
	}
	if spent >= budget {
		return false, 0, 0
	}
	delay = min(backoff.Exponential(c.cfg.RetryBase, c.cfg.RetryMax, attempt), budget-spent)
	return true, delay, budget - spent
}
