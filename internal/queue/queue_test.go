package queue_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/fleetscan/fleetscan/internal/natsembed/natstest"
	"github.com/fleetscan/fleetscan/internal/queue"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

var now = time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)

func digestN(i int) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("image-%d", i)))
	return "sha256:" + hex.EncodeToString(h[:])
}

func job(i int, cycle string) contract.ScanJob {
	key := contract.ImageKey{Digest: digestN(i), Platform: contract.DefaultPlatform}
	return contract.NewScanJob("run-"+cycle, cycle, key, "registry.example/app@"+key.Digest, nil, now)
}

func fastAck(d time.Duration, maxDeliver int) natstest.Option {
	return func(c *topology.Config) {
		c.AckWait = d
		c.MaxDeliver = maxDeliver
	}
}

// recorder collects failure records (and stores them, like the worker does).
type recorder struct {
	mu       sync.Mutex
	failures map[string]contract.FailureClass
	attempts map[string]int
	st       *store.Store
}

func newRecorder(st *store.Store) *recorder {
	return &recorder{failures: map[string]contract.FailureClass{}, attempts: map[string]int{}, st: st}
}

func (r *recorder) RecordFailure(ctx context.Context, j contract.ScanJob, class contract.FailureClass, reason string, attempts int) error {
	r.mu.Lock()
	r.failures[j.Digest] = class
	r.attempts[j.Digest] = attempts
	r.mu.Unlock()
	if r.st != nil {
		return r.st.RecordFailure(ctx, j, class, reason, attempts)
	}
	return nil
}

func (r *recorder) get(d string) (contract.FailureClass, int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.failures[d]
	return c, r.attempts[d], ok
}

func runConsumer(t *testing.T, ctx context.Context, env *natstest.Env, h queue.Handler, rec queue.FailureRecorder, cfg queue.ConsumerConfig) (wait func()) {
	t.Helper()
	c, err := queue.NewConsumer(ctx, env.Res.Workers, h, rec, cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	return func() {
		if err := <-done; err != nil {
			t.Errorf("consumer run: %v", err)
		}
	}
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPublishDeduplicatesAndDeliversOnce(t *testing.T) {
	env := natstest.Start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	// 10,000 jobs of which half repeat a digest (same cycle).
	jobs := make([]contract.ScanJob, 0, 10000)
	for i := range 5000 {
		jobs = append(jobs, job(i, "2026-11-27"))
	}
	for i := range 5000 {
		jobs = append(jobs, job(i, "2026-11-27"))
	}
	pub := queue.NewPublisher(env.JS)
	st, err := pub.Publish(ctx, jobs)
	if err != nil {
		t.Fatal(err)
	}
	if st.Stored != 5000 || st.Duplicates != 5000 {
		t.Fatalf("stats = %+v, want 5000 stored and 5000 duplicates", st)
	}
	info, err := env.Res.Jobs.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 5000 {
		t.Fatalf("stream holds %d jobs, want 5000", info.State.Msgs)
	}
	// A second dispatcher publishing the same cycle stores nothing new.
	st2, err := queue.NewPublisher(env.JS).Publish(ctx, jobs[:5000])
	if err != nil {
		t.Fatal(err)
	}
	if st2.Stored != 0 || st2.Duplicates != 5000 {
		t.Fatalf("second dispatcher stats = %+v, want all duplicates", st2)
	}

	var mu sync.Mutex
	seen := map[string]int{}
	var handled atomic.Int64
	runCtx, stop := context.WithCancel(ctx)
	wait := runConsumer(t, runCtx, env, queue.HandlerFunc(func(ctx context.Context, d queue.Delivery) error {
		mu.Lock()
		seen[d.Job.Digest]++
		mu.Unlock()
		handled.Add(1)
		return nil
	}), nil, queue.ConsumerConfig{Concurrency: 16, FetchWait: 500 * time.Millisecond})
	waitFor(t, "5000 deliveries", time.Minute, func() bool { return handled.Load() >= 5000 })
	// Let any stray redelivery surface before stopping.
	time.Sleep(300 * time.Millisecond)
	stop()
	wait()
	if len(seen) != 5000 || handled.Load() != 5000 {
		t.Fatalf("delivered %d (%d unique), want exactly 5000 unique", handled.Load(), len(seen))
	}
	for d, n := range seen {
		if n != 1 {
			t.Fatalf("%s delivered %d times", d, n)
		}
	}
	waitFor(t, "stream drained", 10*time.Second, func() bool {
		info, err := env.Res.Jobs.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
}

func TestUnackedJobIsRedeliveredAfterAckWait(t *testing.T) {
	env := natstest.Start(t, fastAck(time.Second, 5))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := queue.NewPublisher(env.JS).Publish(ctx, []contract.ScanJob{job(1, "c")}); err != nil {
		t.Fatal(err)
	}
	// A worker takes the job and dies (never replies).
	b, err := env.Res.Workers.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var first jetstream.Msg
	for m := range b.Messages() {
		first = m
	}
	if first == nil {
		t.Fatal("no job delivered")
	}
	// Nothing is redelivered before AckWait ...
	b, err = env.Res.Workers.Fetch(1, jetstream.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	for range b.Messages() {
		t.Fatal("job redelivered before AckWait")
	}
	// ... and it is redelivered after it, to the next worker.
	var redelivered int
	wait := runConsumer(t, ctx, env, queue.HandlerFunc(func(ctx context.Context, d queue.Delivery) error {
		redelivered = d.Attempt
		cancel()
		return nil
	}), nil, queue.ConsumerConfig{Concurrency: 1, FetchWait: 500 * time.Millisecond})
	wait()
	if redelivered != 2 {
		t.Fatalf("redelivery attempt = %d, want 2", redelivered)
	}
}

// TestHeartbeatsKeepLongScanFromRedelivery runs the heartbeat against a
// real server. AckWait is 3 s with a heartbeat every 250 ms, so a loaded
// machine may delay heartbeats by seconds without a redelivery; the exact
// AckWait/3 schedule is checked on a fake clock (TestHeartbeatEveryThird
// OfAckWait).
func TestHeartbeatsKeepLongScanFromRedelivery(t *testing.T) {
	env := natstest.Start(t, fastAck(3*time.Second, 5))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := queue.NewPublisher(env.JS).Publish(ctx, []contract.ScanJob{job(1, "c")}); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	runCtx, stop := context.WithCancel(ctx)
	wait := runConsumer(t, runCtx, env, queue.HandlerFunc(func(ctx context.Context, d queue.Delivery) error {
		calls.Add(1)
		time.Sleep(5 * time.Second) // beyond AckWait; InProgress keeps it ours
		return nil
	}), nil, queue.ConsumerConfig{Concurrency: 2, Heartbeat: 250 * time.Millisecond, FetchWait: 500 * time.Millisecond})
	// Run a second consumer that would steal a redelivered job.
	var stolen atomic.Int32
	wait2 := runConsumer(t, runCtx, env, queue.HandlerFunc(func(ctx context.Context, d queue.Delivery) error {
		stolen.Add(1)
		return nil
	}), nil, queue.ConsumerConfig{Concurrency: 1, FetchWait: 500 * time.Millisecond})
	waitFor(t, "scan to finish", 20*time.Second, func() bool {
		info, err := env.Res.Jobs.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
	stop()
	wait()
	wait2()
	if calls.Load()+stolen.Load() != 1 {
		t.Fatalf("job handled %d+%d times, want once", calls.Load(), stolen.Load())
	}
}

func TestPermanentErrorIsRecordedAndTerminated(t *testing.T) {
	env := natstest.Start(t, fastAck(time.Second, 5))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	j := job(7, "c")
	if _, err := queue.NewPublisher(env.JS).Publish(ctx, []contract.ScanJob{j}); err != nil {
		t.Fatal(err)
	}
	st := store.New(env.JS, env.Res)
	rec := newRecorder(st)
	var calls atomic.Int32
	runCtx, stop := context.WithCancel(ctx)
	wait := runConsumer(t, runCtx, env, queue.HandlerFunc(func(ctx context.Context, d queue.Delivery) error {
		calls.Add(1)
		return contract.Permanent(contract.FailureNotFound, errors.New("manifest unknown"))
	}), rec, queue.ConsumerConfig{Concurrency: 1, FetchWait: 300 * time.Millisecond})
	waitFor(t, "failure recorded", 10*time.Second, func() bool { _, _, ok := rec.get(j.Digest); return ok })
	time.Sleep(2500 * time.Millisecond) // > 2 AckWaits: a Term'd job must not come back
	stop()
	wait()
	if calls.Load() != 1 {
		t.Fatalf("handler called %d times, want 1 (Term must not redeliver)", calls.Load())
	}
	r, err := st.Result(ctx, j.ImageKey)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != contract.StatusFailed || r.Failure.Class != contract.FailureNotFound || r.Failure.Attempts != 1 {
		t.Fatalf("result = %+v %+v", r, r.Failure)
	}
}

func TestRetryableErrorRetriesThenRecordsFailure(t *testing.T) {
	env := natstest.Start(t, fastAck(5*time.Second, 3))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	j := job(8, "c")
	if _, err := queue.NewPublisher(env.JS).Publish(ctx, []contract.ScanJob{j}); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(nil)
	var calls atomic.Int32
	runCtx, stop := context.WithCancel(ctx)
	wait := runConsumer(t, runCtx, env, queue.HandlerFunc(func(ctx context.Context, d queue.Delivery) error {
		calls.Add(1)
		return contract.Retryable(contract.FailureRateLimited, errors.New("429 too many requests"))
	}), rec, queue.ConsumerConfig{Concurrency: 1, RetryBase: 50 * time.Millisecond, RetryMax: 100 * time.Millisecond, FetchWait: 300 * time.Millisecond})
	waitFor(t, "failure recorded", 20*time.Second, func() bool { _, _, ok := rec.get(j.Digest); return ok })
	stop()
	wait()
	class, attempts, _ := rec.get(j.Digest)
	if calls.Load() != 3 || attempts != 3 || class != contract.FailureRateLimited {
		t.Fatalf("calls=%d attempts=%d class=%s, want 3 attempts then rate_limited", calls.Load(), attempts, class)
	}
}

// TestOnDecisionReportsEveryReply checks that the consumer tells its owner
// how it answered each delivery, so the worker never re-derives it.
func TestOnDecisionReportsEveryReply(t *testing.T) {
	env := natstest.Start(t, fastAck(5*time.Second, 2))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	ok, gone, busy := job(21, "c"), job(22, "c"), job(23, "c")
	if _, err := queue.NewPublisher(env.JS).Publish(ctx, []contract.ScanJob{ok, gone, busy}); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(nil)
	var mu sync.Mutex
	got := map[string][]queue.Decision{}
	runCtx, stop := context.WithCancel(ctx)
	wait := runConsumer(t, runCtx, env, queue.HandlerFunc(func(ctx context.Context, d queue.Delivery) error {
		switch d.Job.Digest {
		case gone.Digest:
			return contract.Permanent(contract.FailureNotFound, errors.New("manifest unknown"))
		case busy.Digest:
			return contract.Retryable(contract.FailureRateLimited, errors.New("429 too many requests"))
		}
		return nil
	}), rec, queue.ConsumerConfig{Concurrency: 3, RetryBase: 50 * time.Millisecond, RetryMax: 100 * time.Millisecond,
		FetchWait: 300 * time.Millisecond, OnDecision: func(d queue.Decision) {
			mu.Lock()
			defer mu.Unlock()
			got[d.Delivery.Job.Digest] = append(got[d.Delivery.Job.Digest], d)
		}})
	waitFor(t, "three jobs decided", 20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got[ok.Digest]) == 1 && len(got[gone.Digest]) == 1 && len(got[busy.Digest]) == 2
	})
	stop()
	wait()
	type want struct {
		action    queue.Action
		class     contract.FailureClass
		retryable bool
		attempt   int
	}
	for digest, wants := range map[string][]want{
		ok.Digest:   {{queue.ActionAck, "", false, 1}},
		gone.Digest: {{queue.ActionTerm, contract.FailureNotFound, false, 1}},
		busy.Digest: {{queue.ActionRetry, contract.FailureRateLimited, true, 1}, {queue.ActionTerm, contract.FailureRateLimited, true, 2}},
	} {
		for i, w := range wants {
			d := got[digest][i]
			if d.Action != w.action || d.Class != w.class || d.Retryable != w.retryable || d.Delivery.Attempt != w.attempt {
				t.Errorf("%s decision %d = %s %s retryable=%v attempt %d, want %+v", digest, i, d.Action, d.Class, d.Retryable, d.Delivery.Attempt, w)
			}
			if (d.Err == nil) != (w.action == queue.ActionAck) || d.RecordErr != nil || d.Duration <= 0 {
				t.Errorf("%s decision %d: err %v, record err %v, duration %s", digest, i, d.Err, d.RecordErr, d.Duration)
			}
			if (d.Action == queue.ActionRetry) != (d.Delay > 0) {
				t.Errorf("%s decision %d: %s with delay %s", digest, i, d.Action, d.Delay)
			}
		}
	}
}

func TestPanicIsRecoveredAndRecorded(t *testing.T) {
	env := natstest.Start(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := queue.NewPublisher(env.JS).Publish(ctx, []contract.ScanJob{job(1, "c"), job(2, "c")}); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(nil)
	var ok atomic.Int32
	runCtx, stop := context.WithCancel(ctx)
	wait := runConsumer(t, runCtx, env, queue.HandlerFunc(func(ctx context.Context, d queue.Delivery) error {
		if d.Job.Digest == digestN(1) {
			panic("analyzer exploded")
		}
		ok.Add(1)
		return nil
	}), rec, queue.ConsumerConfig{Concurrency: 1, FetchWait: 300 * time.Millisecond})
	waitFor(t, "both jobs", 10*time.Second, func() bool { _, _, f := rec.get(digestN(1)); return f && ok.Load() == 1 })
	stop()
	wait()
	if c, _, _ := rec.get(digestN(1)); c != contract.FailureInternal {
		t.Fatalf("panic class = %s", c)
	}
}

func TestMaxDeliverExhaustedByDeadWorkersYieldsFailureResult(t *testing.T) {
	env := natstest.Start(t, fastAck(time.Second, 2))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	j := job(9, "c")
	if _, err := queue.NewPublisher(env.JS).Publish(ctx, []contract.ScanJob{j}); err != nil {
		t.Fatal(err)
	}
	st := store.New(env.JS, env.Res)
	w, err := queue.WatchExhausted(env.Conn, env.Res.Jobs, st, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	// Two workers take the job in turn and die without replying.
	for attempt := 1; attempt <= 2; attempt++ {
		b, err := env.Res.Workers.Fetch(1, jetstream.FetchMaxWait(3*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for range b.Messages() {
			n++
		}
		if n != 1 {
			t.Fatalf("attempt %d: got %d jobs", attempt, n)
		}
	}
	// A live worker keeps pulling; the server gives up on the job and
	// advises instead of delivering it a third time.
	pullCtx, stopPulling := context.WithCancel(ctx)
	pulling := make(chan struct{})
	defer func() { stopPulling(); <-pulling }()
	go func() {
		defer close(pulling)
		for pullCtx.Err() == nil {
			b, err := env.Res.Workers.Fetch(1, jetstream.FetchMaxWait(500*time.Millisecond))
			if err != nil {
				continue
			}
			for m := range b.Messages() {
				t.Errorf("job delivered beyond MaxDeliver: %s", m.Subject())
			}
		}
	}()
	var r contract.ScanResult
	waitFor(t, "failure result after exhausted budget", 15*time.Second, func() bool {
		r, err = st.Result(ctx, j.ImageKey)
		return err == nil
	})
	if r.Status != contract.StatusFailed || r.Failure.Class != contract.FailureTimeout || r.Failure.Attempts != 2 {
		t.Fatalf("result = %+v / %+v", r, r.Failure)
	}
	waitFor(t, "exhausted job removed", 5*time.Second, func() bool {
		info, err := env.Res.Jobs.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
}

func TestPoisonMessageIsTerminatedAndLoggedOnce(t *testing.T) {
	env := natstest.Start(t, fastAck(time.Second, 5))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := env.JS.Publish(ctx, topology.JobsSubjectPrefix+".garbage", []byte("\x00not a job")); err != nil {
		t.Fatal(err)
	}
	if _, err := queue.NewPublisher(env.JS).Publish(ctx, []contract.ScanJob{job(3, "c")}); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	c, err := queue.NewConsumer(ctx, env.Res.Workers, queue.HandlerFunc(func(ctx context.Context, d queue.Delivery) error { return nil }),
		nil, queue.ConsumerConfig{Concurrency: 2, FetchWait: 300 * time.Millisecond}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	waitFor(t, "both messages handled", 10*time.Second, func() bool {
		info, err := env.Res.Jobs.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
	time.Sleep(2500 * time.Millisecond) // would be redelivered by now if not terminated
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := logs.FilterMessageSnippet("poison").Len(); n != 1 {
		t.Fatalf("poison message logged %d times, want once", n)
	}
}

func TestGracefulShutdownNaksUnfinishedJobs(t *testing.T) {
	env := natstest.Start(t, fastAck(time.Minute, 5))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := queue.NewPublisher(env.JS).Publish(ctx, []contract.ScanJob{job(1, "c")}); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	var decided []queue.Action
	runCtx, stop := context.WithCancel(ctx)
	wait := runConsumer(t, runCtx, env, queue.HandlerFunc(func(ctx context.Context, d queue.Delivery) error {
		close(started)
		<-ctx.Done() // a scan that cannot finish within the grace period
		return ctx.Err()
	}), newRecorder(nil), queue.ConsumerConfig{Concurrency: 1, Grace: 200 * time.Millisecond, FetchWait: 300 * time.Millisecond,
		OnDecision: func(d queue.Decision) { decided = append(decided, d.Action) }})
	<-started
	stop()
	wait()
	if len(decided) != 1 || decided[0] != queue.ActionHandBack {
		t.Errorf("decisions at shutdown = %v, want [%s]", decided, queue.ActionHandBack)
	}
	// Nak'd: available again at once (AckWait is a minute), not recorded.
	var got int
	wait2 := runConsumer(t, ctx, env, queue.HandlerFunc(func(ctx context.Context, d queue.Delivery) error {
		got = d.Attempt
		cancel()
		return nil
	}), nil, queue.ConsumerConfig{Concurrency: 1, FetchWait: 300 * time.Millisecond})
	wait2()
	if got != 2 {
		t.Fatalf("after shutdown the job came back with attempt %d, want 2", got)
	}
}

func TestLagMatchesServerJsz(t *testing.T) {
	env := natstest.Start(t, fastAck(time.Minute, 5))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	jobs := make([]contract.ScanJob, 25)
	for i := range jobs {
		jobs[i] = job(i, "c")
	}
	if _, err := queue.NewPublisher(env.JS).Publish(ctx, jobs); err != nil {
		t.Fatal(err)
	}
	// Seven in flight (delivered, unacked), three acked.
	b, err := env.Res.Workers.Fetch(10, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	for m := range b.Messages() {
		if i < 3 {
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
		}
		i++
	}
	lag, err := queue.Lag(ctx, env.Res.Workers)
	if err != nil {
		t.Fatal(err)
	}
	jsz := jszLag(t, env.Server.MonitorURL(), topology.WorkersConsumer)
	if lag != jsz {
		t.Fatalf("Lag = %d, /jsz num_pending+num_ack_pending = %d", lag, jsz)
	}
	if lag != 22 {
		t.Fatalf("Lag = %d, want 22 (15 pending + 7 ack pending)", lag)
	}
}

// jszLag reads the consumer lag the way KEDA's nats-jetstream scaler does.
func jszLag(t *testing.T, base, consumer string) uint64 {
	t.Helper()
	resp, err := http.Get(base + "/jsz?acc=$G&config=true&consumers=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var jsz struct {
		AccountDetails []struct {
			StreamDetail []struct {
				Name           string `json:"name"`
				ConsumerDetail []struct {
					Name          string `json:"name"`
					NumPending    uint64 `json:"num_pending"`
					NumAckPending uint64 `json:"num_ack_pending"`
				} `json:"consumer_detail"`
			} `json:"stream_detail"`
		} `json:"account_details"`
	}
	if err := json.Unmarshal(body, &jsz); err != nil {
		t.Fatalf("decode /jsz: %v: %s", err, body)
	}
	for _, a := range jsz.AccountDetails {
		for _, s := range a.StreamDetail {
			for _, c := range s.ConsumerDetail {
				if c.Name == consumer {
					return c.NumPending + c.NumAckPending
				}
			}
		}
	}
	t.Fatalf("consumer %s not in /jsz: %s", consumer, body)
	return 0
}
