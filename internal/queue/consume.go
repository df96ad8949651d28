package queue

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/logging"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// Delivery is one delivery of a job to a handler.
type Delivery struct {
	Job contract.ScanJob
	// Attempt counts deliveries of this job, from 1.
	Attempt int
	// MaxDeliver is the job's delivery budget.
	MaxDeliver int
	// StreamSeq is the job's sequence in the jobs stream.
	StreamSeq uint64
}

// LastAttempt reports whether a retryable failure now would exhaust the budget.
func (d Delivery) LastAttempt() bool { return d.MaxDeliver > 0 && d.Attempt >= d.MaxDeliver }

// Handler processes one job. It returns nil on success, or an error
// classified with Permanent/Retryable. A handler must honour ctx: it is
// cancelled when the shutdown grace period ends.
type Handler interface {
	Handle(ctx context.Context, d Delivery) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, d Delivery) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, d Delivery) error { return f(ctx, d) }

// Action is how the consumer answered one delivery.
type Action string

const (
	// ActionAck: the handler succeeded; the job is acknowledged.
	ActionAck Action = "ack"
	// ActionRetry: a retryable failure with delivery budget left; the job
	// is negatively acknowledged with a backoff delay.
	ActionRetry Action = "retry"
	// ActionHandBack: shutdown cut the handler short; the job is negatively
	// acknowledged without delay so another worker takes it at once. It is
	// not a failure.
	ActionHandBack Action = "hand_back"
	// ActionTerm: a permanent failure, or a retryable one with the budget
	// spent; the failure is recorded, then the job terminated.
	ActionTerm Action = "term"
)

// Decision is the consumer's reply to one handled delivery, reported to
// ConsumerConfig.OnDecision after it was sent, so a handler's owner counts
// and logs outcomes without re-deriving them.
type Decision struct {
	Delivery Delivery
	Action   Action
	// Class and Retryable classify the handler's error (contract.Classify);
	// empty for ActionAck.
	Class     contract.FailureClass
	Retryable bool
	// Delay is the redelivery delay of ActionRetry.
	Delay time.Duration
	// GiveUpBy is, for ActionRetry, the latest time the job can still be
	// retrying: when its delivery budget (or, for an unreachable registry,
	// its time budget) runs out. Progress estimates count it.
	GiveUpBy time.Time
	// Err is the handler's error (nil for ActionAck).
	Err error
	// RecordErr is set when the failure of an ActionTerm could not be
	// stored: the job was handed back for redelivery instead of terminated.
	RecordErr error
	// Duration is how long the handler ran.
	Duration time.Duration
}

// FailureRecorder writes the failure result of a job that will not be
// retried (permanent error, exhausted budget, dead workers). The job is only
// terminated after it returns nil, so a failure is never silent.
type FailureRecorder interface {
	RecordFailure(ctx context.Context, job contract.ScanJob, class contract.FailureClass, reason string, attempts int) error
}

// ConsumerConfig tunes a Consumer.
type ConsumerConfig struct {
	// Concurrency is the number of jobs handled at once.
	Concurrency int
	// Heartbeat is the InProgress interval; default AckWait/3.
	Heartbeat time.Duration
	// Grace is how long in-flight jobs may run after shutdown starts.
	Grace time.Duration
	// RetryBase and RetryMax bound the NakWithDelay backoff.
	RetryBase time.Duration
	RetryMax  time.Duration
	// FetchWait is how long one pull waits for jobs.
	FetchWait time.Duration
	// UnreachableBudget bounds the retries of a job whose registry cannot
	// be reached (class unreachable) in time; 0 means
	// DefaultUnreachableBudget, negative retries it like any class.
	UnreachableBudget time.Duration
	// OnDecision, when set, is told how every handled delivery was
	// answered, after the reply (on the delivery's goroutine).
	OnDecision func(Decision)
}

func (c *ConsumerConfig) defaults(ackWait time.Duration) {
	if c.Concurrency < 1 {
		c.Concurrency = 1
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = ackWait / 3
		if c.Heartbeat <= 0 {
			c.Heartbeat = 10 * time.Second
		}
	}
	if c.Grace <= 0 {
		c.Grace = 30 * time.Second
	}
	if c.RetryBase <= 0 {
		c.RetryBase = 5 * time.Second
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 5 * time.Minute
	}
	if c.FetchWait <= 0 {
		c.FetchWait = 2 * time.Second
	}
	if c.UnreachableBudget == 0 {
		c.UnreachableBudget = DefaultUnreachableBudget
	}
}

// Consumer pulls jobs from the workers' durable consumer and dispatches them
// to a Handler with bounded concurrency.
type Consumer struct {
	cons     jetstream.Consumer
	handler  Handler
	recorder FailureRecorder
	cfg      ConsumerConfig
	log      *zap.Logger

	maxDeliver int
}

// NewConsumer builds a consumer. The consumer's AckWait and MaxDeliver are
// read from the server so heartbeats and budgets match the topology.
func NewConsumer(ctx context.Context, cons jetstream.Consumer, h Handler, rec FailureRecorder, cfg ConsumerConfig, log *zap.Logger) (*Consumer, error) {
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("consumer info: %w", err)
	}
	cfg.defaults(info.Config.AckWait)
	if log == nil {
		log = zap.NewNop()
	}
	return &Consumer{cons: cons, handler: h, recorder: rec, cfg: cfg, log: log, maxDeliver: info.Config.MaxDeliver}, nil
}

// Run pulls and handles jobs until ctx is cancelled, then stops pulling,
// lets in-flight jobs finish within the grace period and Naks those that
// cannot, so another worker picks them up at once. It returns nil on a clean
// shutdown.
func (c *Consumer) Run(ctx context.Context) error {
	// Handlers run on a context that outlives ctx by the grace period.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopGrace := context.AfterFunc(ctx, func() {
		t := time.NewTimer(c.cfg.Grace)
		defer t.Stop()
		select {
		case <-t.C:
			c.log.Warn("shutdown grace period over: cancelling in-flight scans", zap.Duration("grace", c.cfg.Grace))
			cancelWork()
		case <-workCtx.Done():
		}
	})
	defer stopGrace()

	slots := make(chan struct{}, c.cfg.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()

	for {
		// Wait for a free slot before pulling, so we never hold a job we
		// cannot start (its AckWait would tick while it waits).
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return c.drain(&wg)
		}
		free := 1
	fill:
		for free < c.cfg.Concurrency {
			select {
			case slots <- struct{}{}:
				free++
			default:
				break fill
			}
		}
		fetchCtx, cancelFetch := context.WithTimeout(ctx, c.cfg.FetchWait)
		batch, err := c.cons.Fetch(free, jetstream.FetchContext(fetchCtx))
		if err != nil {
			cancelFetch()
			for range free {
				<-slots
			}
			if ctx.Err() != nil {
				return c.drain(&wg)
			}
			c.log.Warn("fetch jobs failed; retrying", zap.Error(err))
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				return c.drain(&wg)
			}
			continue
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			wg.Add(1)
			go func(msg jetstream.Msg) {
				defer wg.Done()
				defer func() { <-slots }()
				c.process(ctx, workCtx, msg)
			}(msg)
		}
		cancelFetch()
		for range free - got {
			<-slots
		}
		if err := batch.Error(); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, jetstream.ErrNoMessages) {
			c.log.Debug("fetch ended", zap.Error(err))
		}
	}
}

func (c *Consumer) drain(wg *sync.WaitGroup) error {
	c.log.Info("stopped taking jobs; waiting for in-flight scans")
	wg.Wait()
	return nil
}

// process handles one message and replies to the server exactly once,
// then reports the decision to Config.OnDecision.
func (c *Consumer) process(runCtx, workCtx context.Context, msg jetstream.Msg) {
	d, ok := c.delivery(msg)
	if !ok {
		return
	}
	job := d.Job
	log := c.log.With(logging.Digest(job.Digest), logging.Platform(job.Platform),
		logging.RunID(job.RunID), logging.Attempt(d.Attempt), zap.Uint64("stream_seq", d.StreamSeq))

	hbCtx, stopHB := context.WithCancel(workCtx)
	go c.heartbeat(hbCtx, msg, log)
	start := time.Now()
	herr := c.safeHandle(workCtx, d)
	took := time.Since(start)
	stopHB()

	dec := c.decide(d, herr, runCtx.Err() != nil && workCtx.Err() != nil)
	dec.Duration = took
	c.reply(workCtx, msg, &dec, log)
	if c.cfg.OnDecision != nil {
		c.cfg.OnDecision(dec)
	}
}

// delivery decodes a message into a Delivery. A message that is not a scan
// job is terminated (it is never redelivered) and logged once.
func (c *Consumer) delivery(msg jetstream.Msg) (Delivery, bool) {
	meta, err := msg.Metadata()
	if err != nil {
		c.log.Error("job without JetStream metadata; terminating", zap.Error(err))
		_ = msg.Term()
		return Delivery{}, false
	}
	job, err := contract.DecodeScanJob(msg.Data())
	if err != nil {
		// Poison message: nothing to scan and no key to record a result
		// under. Terminate so it is never redelivered, and log it once.
		c.log.Error("invalid job terminated (poison message)",
			zap.String("subject", msg.Subject()), zap.Uint64("stream_seq", meta.Sequence.Stream),
			zap.Int("bytes", len(msg.Data())), zap.Error(err))
		_ = msg.TermWithReason("invalid job: " + err.Error())
		return Delivery{}, false
	}
	return Delivery{Job: job, Attempt: int(meta.NumDelivered), MaxDeliver: c.maxDeliver, StreamSeq: meta.Sequence.Stream}, true
}

// decide turns the handler's result into the reply: ack a success, hand
// back a job shutdown interrupted, retry a retryable failure while the
// budget lasts, and record and terminate the rest.
func (c *Consumer) decide(d Delivery, herr error, interrupted bool) Decision {
	if herr == nil {
		return Decision{Delivery: d, Action: ActionAck}
	}
	dec := Decision{Delivery: d, Err: herr}
	dec.Class, dec.Retryable = contract.Classify(herr)
	switch {
	case interrupted:
		dec.Action = ActionHandBack
	case dec.Retryable && !d.LastAttempt():
		retry, delay, left := c.retryPlan(dec.Class, d.Attempt)
		if !retry {
			// The class's time budget is spent (an unreachable registry).
			dec.Action = ActionTerm
			dec.Err = fmt.Errorf("retried for %s, the time budget of its class: %w", c.cfg.UnreachableBudget, herr)
			break
		}
		dec.Action = ActionRetry
		dec.Delay = delay
		dec.GiveUpBy = time.Now().Add(max(delay, left))
	default:
		dec.Action = ActionTerm
	}
	return dec
}

// reply sends the decision to the server. A failure that cannot be
// recorded is not terminated: the job is handed back and dec.RecordErr set.
func (c *Consumer) reply(ctx context.Context, msg jetstream.Msg, dec *Decision, log *zap.Logger) {
	switch dec.Action {
	case ActionAck:
		if err := msg.DoubleAck(ctx); err != nil {
			log.Warn("ack failed; the job may be redelivered", zap.Error(err))
		}
	case ActionHandBack:
		// Shutdown cut the scan short: hand it back at once, not a failure.
		log.Info("scan interrupted by shutdown; returning job to the queue", zap.Error(dec.Err))
		_ = msg.Nak()
	case ActionRetry:
		log.Warn("scan failed; will retry", logging.FailureClass(dec.Class), zap.Duration("delay", dec.Delay), zap.Error(dec.Err))
		if err := msg.NakWithDelay(dec.Delay); err != nil {
			log.Warn("nak failed", zap.Error(err))
		}
	case ActionTerm:
		log.Error("scan failed; recording failure", logging.FailureClass(dec.Class), zap.Bool("retryable", dec.Retryable), zap.Error(dec.Err))
		if err := c.recordAndTerm(ctx, msg, dec.Delivery.Job, dec.Class, dec.Err.Error(), dec.Delivery.Attempt); err != nil {
			dec.RecordErr = err
			log.Error("could not record failure; job left for redelivery", zap.Error(err))
		}
	}
}

func (c *Consumer) recordAndTerm(ctx context.Context, msg jetstream.Msg, job contract.ScanJob, class contract.FailureClass, reason string, attempts int) error {
	if c.recorder != nil {
		if err := c.recorder.RecordFailure(ctx, job, class, reason, attempts); err != nil {
			_ = msg.Nak()
			return err
		}
	}
	return msg.Term()
}

// safeHandle turns a handler panic into an internal, permanent failure so
// one bad image cannot take the worker down.
func (c *Consumer) safeHandle(ctx context.Context, d Delivery) (err error) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("scan panicked", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			err = contract.Permanent(contract.FailureInternal, fmt.Errorf("scan panicked: %v", r))
		}
	}()
	return c.handler.Handle(ctx, d)
}

func (c *Consumer) heartbeat(ctx context.Context, msg jetstream.Msg, log *zap.Logger) {
	t := time.NewTicker(c.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := msg.InProgress(); err != nil {
				log.Warn("InProgress heartbeat failed", zap.Error(err))
			}
		}
	}
}
