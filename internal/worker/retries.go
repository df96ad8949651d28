package worker

import (
	"sync"
	"time"

	"github.com/fleetscan/fleetscan/internal/queue"
)

// retries tracks the jobs waiting for a retry, so progress estimates count
// the time they can still take.
type retries struct {
	mu      sync.Mutex
	waiting map[string]time.Time // job ID → latest give-up time
}

// decided notes a job waiting for its retry, or no longer waiting.
func (r *retries) decided(d queue.Decision) {
	if d.Action != queue.ActionRetry {
		r.done(d.Delivery.Job.ID())
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.waiting == nil {
		r.waiting = map[string]time.Time{}
	}
	r.waiting[d.Delivery.Job.ID()] = d.GiveUpBy
}

// done forgets a job: it is being handled again, or was recorded.
func (r *retries) done(jobID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.waiting, jobID)
}

// Retrying is how many jobs wait for a retry, and the latest time one of
// them may still be retrying (zero when none).
func (w *Worker) Retrying() (n int, until time.Time) {
	w.retries.mu.Lock()
	defer w.retries.mu.Unlock()
	for _, t := range w.retries.waiting {
		if t.After(until) {
			until = t
		}
	}
	return len(w.retries.waiting), until
}
