package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// ResultWatch delivers the results stored after it was opened, as they are
// stored: a reporter waiting for a run's scans reacts to each one at once
// instead of polling every key.
type ResultWatch struct {
	s      *Store
	cons   jetstream.Consumer
	decode ResultDecoder
}

// WatchResults opens a watch on results stored from now on. Open it before
// reading what is already stored (EachResult), so nothing falls between
// the two; a result seen twice is harmless.
func (s *Store) WatchResults(ctx context.Context, opts ...ReadOption) (*ResultWatch, error) {
	info, err := s.res.Results.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("results stream info: %w", err)
	}
	cons, err := s.res.Results.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    info.State.LastSeq + 1,
		FilterSubjects: []string{topology.ResultsSubjectPrefix + ".>"},
	})
	if err != nil {
		return nil, fmt.Errorf("results watch: %w", err)
	}
	return &ResultWatch{s: s, cons: cons, decode: readWith(opts).decode}, nil
}

// Next waits up to maxWait for new results and calls fn with each: the
// key's subject token (contract.ImageKey.Token), and the result or why it
// could not be decoded. It returns early when fn returns false.
func (w *ResultWatch) Next(ctx context.Context, maxWait time.Duration, fn func(token string, r contract.ScanResult, err error) bool) error {
	if maxWait < 100*time.Millisecond {
		maxWait = 100 * time.Millisecond // the server's floor for a pull request's expiry
	}
	batch, err := w.cons.Fetch(1024, jetstream.FetchMaxWait(maxWait))
	if err != nil {
		return fmt.Errorf("watch results: %w", err)
	}
	prefix := topology.ResultsSubjectPrefix + "."
	for m := range batch.Messages() {
		r, err := w.s.decodeResult(ctx, m.Headers(), m.Data(), w.decode)
		if err != nil {
			err = fmt.Errorf("result on %s: %w", m.Subject(), err)
		}
		if !fn(strings.TrimPrefix(m.Subject(), prefix), r, err) {
			return nil
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, jetstream.ErrNoMessages) {
		return fmt.Errorf("watch results: %w", err)
	}
	return ctx.Err()
}
