// Package store keeps fleetscan's shared state on JetStream: the latest scan
// result per image key (large ones in the object store, claim-check style),
// the latest inventory per cluster (chunked and streamed, see
// WriteInventory), run manifests, and the workers' scanner
// identity with which stored results are found reusable. It is the only
// code that knows how these are laid out on the wire.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// ClaimHeader names the object holding a result too large for one message.
const ClaimHeader = "Fleetscan-Claim"

// DefaultInlineLimit is the largest result stored inline in a message;
// larger ones go to the object store. It stays well under NATS' default
// 1 MiB max payload.
const DefaultInlineLimit = 256 << 10

// ErrNotFound is returned when no result, inventory or manifest exists.
var ErrNotFound = errors.New("not found")

// Store reads and writes shared state.
type Store struct {
	js  jetstream.JetStream
	res *topology.Resources
	// InlineLimit is the claim-check threshold in bytes.
	InlineLimit int
	// InventoryChunk is how many entries an inventory chunk holds
	// (contract.DefaultInventoryChunk when 0).
	InventoryChunk int
	// Worker is stamped on failure results recorded through RecordFailure.
	Worker string
	// Now is the clock (tests).
	Now func() time.Time
}

// New returns a store over ensured resources.
func New(js jetstream.JetStream, res *topology.Resources) *Store {
	return &Store{js: js, res: res, InlineLimit: DefaultInlineLimit, Now: time.Now}
}

// PutResult stores r as the latest result for its key.
func (s *Store) PutResult(ctx context.Context, r contract.ScanResult) error {
	data, err := r.Encode()
	if err != nil {
		return fmt.Errorf("encode result %s: %w", r.ImageKey, err)
	}
	subj := topology.ResultSubject(r.ImageKey)
	msg := &nats.Msg{Subject: subj, Header: nats.Header{}}
	if fp := r.Fingerprint(); fp != "" {
		msg.Header.Set(FingerprintHeader, fp)
	}
	if len(data) > s.InlineLimit {
		name := r.ImageKey.Token()
		if _, err := s.res.ResultBlobs.PutBytes(ctx, name, data); err != nil {
			return fmt.Errorf("store large result %s (%d bytes) in %s: %w", r.ImageKey, len(data), topology.ResultBlobsBucket, err)
		}
		msg.Header.Set(ClaimHeader, name)
	} else {
		msg.Data = data
	}
	if _, err := s.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(topology.ResultsStream)); err != nil {
		return fmt.Errorf("publish result %s: %w", r.ImageKey, err)
	}
	return nil
}

// ResultDecoder decodes and validates a stored result document.
type ResultDecoder func(data []byte) (contract.ScanResult, error)

// ReadOption changes how results are read.
type ReadOption func(*readOptions)

type readOptions struct {
	decode ResultDecoder
}

// DecodeWith decodes results with dec instead of contract.DecodeScanResult:
// one that reports the same errors but leaves out fields its caller never
// reads (report.DecodeResult) saves their allocation.
func DecodeWith(dec ResultDecoder) ReadOption {
	return func(o *readOptions) { o.decode = dec }
}

func readWith(opts []ReadOption) readOptions {
	o := readOptions{decode: contract.DecodeScanResult}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Result returns the latest result for key, or ErrNotFound.
func (s *Store) Result(ctx context.Context, key contract.ImageKey, opts ...ReadOption) (contract.ScanResult, error) {
	raw, err := s.res.Results.GetLastMsgForSubject(ctx, topology.ResultSubject(key))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return contract.ScanResult{}, fmt.Errorf("result %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return contract.ScanResult{}, fmt.Errorf("get result %s: %w", key, err)
	}
	return s.decodeResult(ctx, raw.Header, raw.Data, readWith(opts).decode)
}

// decodeResult decodes a stored result with dec, fetching it from the
// object store when it is claim-checked.
func (s *Store) decodeResult(ctx context.Context, h nats.Header, data []byte, dec ResultDecoder) (contract.ScanResult, error) {
	if name := h.Get(ClaimHeader); name != "" {
		blob, err := s.res.ResultBlobs.GetBytes(ctx, name)
		if err != nil {
			return contract.ScanResult{}, fmt.Errorf("get large result %s from %s: %w", name, topology.ResultBlobsBucket, err)
		}
		data = blob
	}
	return dec(data)
}

// EachResult calls fn with the latest result of every key, in stream order.
// Undecodable results are reported through fn's error path: EachResult stops
// at the first error.
func (s *Store) EachResult(ctx context.Context, fn func(contract.ScanResult) error, opts ...ReadOption) error {
	dec := readWith(opts).decode
	return s.eachLatest(ctx, false, func(m jetstream.Msg) error {
		r, err := s.decodeResult(ctx, m.Headers(), m.Data(), dec)
		if err != nil {
			return fmt.Errorf("result on %s: %w", m.Subject(), err)
		}
		return fn(r)
	})
}

// eachLatest calls fn with the latest message of every result key, in
// stream order (only its headers when headersOnly), until fn fails.
func (s *Store) eachLatest(ctx context.Context, headersOnly bool, fn func(jetstream.Msg) error) error {
	info, err := s.res.Results.Info(ctx)
	if err != nil {
		return fmt.Errorf("results stream info: %w", err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	cons, err := s.res.Results.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
		FilterSubjects: []string{topology.ResultsSubjectPrefix + ".>"},
		HeadersOnly:    headersOnly,
	})
	if err != nil {
		return fmt.Errorf("results consumer: %w", err)
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("results consumer info: %w", err)
	}
	batchSize := 512
	if headersOnly {
		batchSize = 4096
	}
	remaining := ci.NumPending
	for remaining > 0 {
		batch, err := cons.Fetch(int(min(remaining, uint64(batchSize))), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return fmt.Errorf("read results: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if err := fn(m); err != nil {
				return err
			}
			if meta, err := m.Metadata(); err == nil {
				remaining = meta.NumPending
			} else {
				remaining--
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("read results: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("read results: no progress with %d pending", remaining)
		}
	}
	return nil
}

// RecordFailure stores the failure result of a job. It implements
// queue.FailureRecorder.
func (s *Store) RecordFailure(ctx context.Context, job contract.ScanJob, class contract.FailureClass, reason string, attempts int) error {
	r := contract.NewFailedResult(job, class, reason, attempts, s.Now())
	r.Worker = s.Worker
	return s.PutResult(ctx, r)
}

// Clusters lists the clusters with a stored inventory and when it was stored.
func (s *Store) Clusters(ctx context.Context) (map[string]time.Time, error) {
	return listNames(ctx, s.res.Inventories)
}

// PutManifest stores a run manifest under its run id.
func (s *Store) PutManifest(ctx context.Context, m contract.RunManifest) error {
	data, err := m.Encode()
	if err != nil {
		return fmt.Errorf("encode manifest %s: %w", m.RunID, err)
	}
	if _, err := s.res.Runs.PutBytes(ctx, m.RunID, data); err != nil {
		return fmt.Errorf("store manifest %s: %w", m.RunID, err)
	}
	return nil
}

// Manifest returns the manifest of runID.
func (s *Store) Manifest(ctx context.Context, runID string) (contract.RunManifest, error) {
	data, err := s.res.Runs.GetBytes(ctx, runID)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return contract.RunManifest{}, fmt.Errorf("run %s: %w", runID, ErrNotFound)
	}
	if err != nil {
		return contract.RunManifest{}, fmt.Errorf("get run %s: %w", runID, err)
	}
	m, err := contract.DecodeRunManifest(data)
	if err != nil {
		return contract.RunManifest{}, fmt.Errorf("run %s: %w", runID, err)
	}
	return m, nil
}

// Runs lists stored run ids and when each manifest was stored.
func (s *Store) Runs(ctx context.Context) (map[string]time.Time, error) {
	return listNames(ctx, s.res.Runs)
}

func listNames(ctx context.Context, obs jetstream.ObjectStore) (map[string]time.Time, error) {
	infos, err := obs.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return map[string]time.Time{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list objects: %w", err)
	}
	out := make(map[string]time.Time, len(infos))
	for _, i := range infos {
		if i.Deleted {
			continue
		}
		out[i.Name] = i.ModTime
	}
	return out, nil
}
