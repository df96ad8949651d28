// Package queue moves scan jobs through JetStream with the right reply for
// each outcome: Ack on success, NakWithDelay (bounded exponential backoff)
// on retryable errors, Term on permanent ones — after the failure has been
// recorded, so nothing vanishes — and InProgress heartbeats while a long
// scan runs. It also computes the consumer lag exactly as KEDA's
// nats-jetstream scaler does and turns exhausted delivery budgets (dead
// workers) into failure records.
package queue

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// PublishStats counts what a publish stored.
type PublishStats struct {
	// Stored jobs are new in the stream.
	Stored int
	// Duplicates were already stored for this cycle (by this or another
	// dispatcher) and were dropped by the stream's duplicate window.
	Duplicates int
}

// Publisher publishes scan jobs.
type Publisher struct {
	js jetstream.JetStream
	// MaxPending bounds async publishes in flight.
	MaxPending int
}

// NewPublisher returns a publisher on js.
func NewPublisher(js jetstream.JetStream) *Publisher {
	return &Publisher{js: js, MaxPending: 4096}
}

// Publish stores jobs, each with the Nats-Msg-Id derived from its key and
// cycle, and waits for every acknowledgement.
func (p *Publisher) Publish(ctx context.Context, jobs []contract.ScanJob) (PublishStats, error) {
	var st PublishStats
	window := p.MaxPending
	if window <= 0 {
		window = 4096
	}
	for start := 0; start < len(jobs); start += window {
		end := min(start+window, len(jobs))
		futures := make([]jetstream.PubAckFuture, 0, end-start)
		for _, j := range jobs[start:end] {
			data, err := j.Encode()
			if err != nil {
				return st, fmt.Errorf("encode job %s: %w", j.ImageKey, err)
			}
			f, err := p.js.PublishAsync(topology.JobSubject(j.ImageKey), data,
				jetstream.WithMsgID(j.ID()), jetstream.WithExpectStream(topology.JobsStream))
			if err != nil {
				return st, fmt.Errorf("publish job %s: %w", j.ImageKey, err)
			}
			futures = append(futures, f)
		}
		for i, f := range futures {
			select {
			case ack := <-f.Ok():
				if ack.Duplicate {
					st.Duplicates++
				} else {
					st.Stored++
				}
			case err := <-f.Err():
				return st, fmt.Errorf("publish job %s: %w", jobs[start+i].ImageKey, err)
			case <-ctx.Done():
				return st, fmt.Errorf("publish jobs: %w", ctx.Err())
			}
		}
	}
	return st, nil
}

// Lag is the consumer's backlog as KEDA's nats-jetstream scaler computes it:
// num_pending + num_ack_pending.
func Lag(ctx context.Context, cons jetstream.Consumer) (uint64, error) {
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("consumer info: %w", err)
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}
