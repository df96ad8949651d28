package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// MaxDeliveriesSubject is the advisory JetStream publishes when a job's
// delivery budget is exhausted without an ack (every worker that took it
// died or hung past AckWait).
var MaxDeliveriesSubject = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + topology.JobsStream + "." + topology.WorkersConsumer

// exhaustedQueueGroup makes one watcher in the fleet handle each advisory.
const exhaustedQueueGroup = "fleetscan-exhausted"

type maxDeliveriesAdvisory struct {
	Type       string `json:"type"`
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries int    `json:"deliveries"`
}

// ExhaustedWatcher records a failure for every job whose delivery budget ran
// out without any worker replying, then deletes the job from the stream (a
// work-queue stream keeps it otherwise). Without it such jobs would vanish
// silently from the report.
type ExhaustedWatcher struct {
	sub *nats.Subscription
}

// Subscriber subscribes to core NATS subjects in a queue group. *nats.Conn
// implements it.
type Subscriber interface {
	QueueSubscribe(subject, queue string, cb nats.MsgHandler) (*nats.Subscription, error)
}

// WatchExhausted subscribes to the max-deliveries advisory (in a queue group:
// one handler per advisory across all workers).
func WatchExhausted(nc Subscriber, jobs jetstream.Stream, rec FailureRecorder, log *zap.Logger) (*ExhaustedWatcher, error) {
	if log == nil {
		log = zap.NewNop()
	}
	sub, err := nc.QueueSubscribe(MaxDeliveriesSubject, exhaustedQueueGroup, func(m *nats.Msg) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := handleExhausted(ctx, m.Data, jobs, rec); err != nil {
			log.Error("could not record exhausted job", zap.Error(err))
			return
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", MaxDeliveriesSubject, err)
	}
	return &ExhaustedWatcher{sub: sub}, nil
}

// Stop unsubscribes, letting queued advisories finish.
func (w *ExhaustedWatcher) Stop() error { return w.sub.Drain() }

func handleExhausted(ctx context.Context, data []byte, jobs jetstream.Stream, rec FailureRecorder) error {
	var adv maxDeliveriesAdvisory
	if err := json.Unmarshal(data, &adv); err != nil {
		return fmt.Errorf("decode max-deliveries advisory: %w", err)
	}
	raw, err := jobs.GetMsg(ctx, adv.StreamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil // already handled by another watcher, or acked late
	}
	if err != nil {
		return fmt.Errorf("get job seq %d: %w", adv.StreamSeq, err)
	}
	job, err := contract.DecodeScanJob(raw.Data)
	if err != nil {
		// A poison message is terminated by the consumer before its budget
		// runs out; if one still lands here, just remove it.
		_ = jobs.DeleteMsg(ctx, adv.StreamSeq)
		return fmt.Errorf("job seq %d undecodable, deleted: %w", adv.StreamSeq, err)
	}
	reason := fmt.Sprintf("no worker completed the scan in %d deliveries (worker crashed, or the scan outlived AckWait without heartbeats)", adv.Deliveries)
	if err := rec.RecordFailure(ctx, job, contract.FailureTimeout, reason, adv.Deliveries); err != nil {
		return fmt.Errorf("record failure for %s: %w", job.ImageKey, err)
	}
	if err := jobs.DeleteMsg(ctx, adv.StreamSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("delete exhausted job seq %d: %w", adv.StreamSeq, err)
	}
	return nil
}
