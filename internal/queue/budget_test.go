package queue_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/natsembed/natstest"
	"github.com/fleetscan/fleetscan/internal/queue"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// TestUnreachableRetriesOnATimeBudget: a registry that refuses connections
// is retried until the nominal delays fill the class's time budget (here
// 100 ms + 200 ms = 300 ms), not for the whole delivery budget (10), and
// every retry is reported with when it may give up, for progress
// estimates.
func TestUnreachableRetriesOnATimeBudget(t *testing.T) {
	env := natstest.Start(t, fastAck(5*time.Second, 10))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	j := job(9, "c")
	if _, err := queue.NewPublisher(env.JS).Publish(ctx, []contract.ScanJob{j}); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(nil)
	var calls atomic.Int32
	var mu sync.Mutex
	var retries []queue.Decision
	start := time.Now()
	runCtx, stop := context.WithCancel(ctx)
	wait := runConsumer(t, runCtx, env, queue.HandlerFunc(func(ctx context.Context, d queue.Delivery) error {
		calls.Add(1)
		return contract.Retryable(contract.FailureUnreachable, errors.New("dial tcp 10.0.0.1:443: connect: connection refused"))
	}), rec, queue.ConsumerConfig{Concurrency: 1, RetryBase: 100 * time.Millisecond, RetryMax: time.Second,
		FetchWait: 200 * time.Millisecond, UnreachableBudget: 300 * time.Millisecond,
		OnDecision: func(d queue.Decision) {
			if d.Action == queue.ActionRetry {
				mu.Lock()
				retries = append(retries, d)
				mu.Unlock()
			}
		}})
	waitFor(t, "failure recorded", 30*time.Second, func() bool { _, _, ok := rec.get(j.Digest); return ok })
	stop()
	wait()
	class, attempts, _ := rec.get(j.Digest)
	if calls.Load() != 3 || attempts != 3 || class != contract.FailureUnreachable {
		t.Fatalf("calls=%d attempts=%d class=%s, want 3 attempts (budget 300ms) then unreachable", calls.Load(), attempts, class)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(retries) != 2 {
		t.Fatalf("%d retries reported, want 2", len(retries))
	}
	for i, r := range retries {
		if r.Class != contract.FailureUnreachable || r.Delivery.Attempt != i+1 || r.GiveUpBy.IsZero() || r.Delay <= 0 {
			t.Errorf("retry %d: %+v", i, r)
		}
		// Never beyond the budget (plus the time the attempts took).
		if limit := start.Add(300*time.Millisecond + 10*time.Second); r.GiveUpBy.After(limit) {
			t.Errorf("retry %d gives up by %s, after the budget", i, r.GiveUpBy.Sub(start))
		}
	}
}

// TestRetryReportsGiveUpTime: other classes report when their delivery
// budget ends.
func TestRetryReportsGiveUpTime(t *testing.T) {
	env := natstest.Start(t, fastAck(5*time.Second, 3))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	j := job(10, "c")
	if _, err := queue.NewPublisher(env.JS).Publish(ctx, []contract.ScanJob{j}); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(nil)
	got := make(chan queue.Decision, 8)
	runCtx, stop := context.WithCancel(ctx)
	wait := runConsumer(t, runCtx, env, queue.HandlerFunc(func(ctx context.Context, d queue.Delivery) error {
		return contract.Retryable(contract.FailureInternal, errors.New("500"))
	}), rec, queue.ConsumerConfig{Concurrency: 1, RetryBase: 100 * time.Millisecond, RetryMax: time.Second, FetchWait: 200 * time.Millisecond,
		OnDecision: func(d queue.Decision) {
			if d.Action == queue.ActionRetry {
				got <- d
			}
		}})
	decided := time.Now()
	first := <-got
	waitFor(t, "failure recorded", 30*time.Second, func() bool { _, _, ok := rec.get(j.Digest); return ok })
	stop()
	wait()
	// Attempt 1 of 3: delays of 100 ms and 200 ms are still ahead (+20%).
	if left := first.GiveUpBy.Sub(decided); left < 250*time.Millisecond || left > 2*time.Second {
		t.Errorf("first retry gives up %s after it was decided, want about the 300 ms of delays still ahead", left)
	}
}
