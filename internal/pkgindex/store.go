// Package pkgindex is fleetscan's package index: which packages (as PURLs
// with versions) every analysed image holds, queryable across the fleet
// without a registry.
//
// Workers write one package record per scanned image key to the
// FLEETSCAN_PACKAGES stream (latest per key, replaced with the result,
// aged out with results; zstd-compressed JSON, claim-checked into the
// fleetscan-package-index object store when large). Readers do not decode
// those records one by one: the index is kept compacted in one snapshot
// object (a string table, each distinct package once, and per image its
// delta-coded package ids), and a reader loads the snapshot plus the
// records stored since it (the delta). The reporter writes a new snapshot
// after every report; a query writes one when the delta it had to read
// was large.
package pkgindex

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// Headers of a package record message.
const (
	// EncodingHeader names the record's compression ("zstd").
	EncodingHeader = "Fleetscan-Encoding"
	// ClaimHeader names the object holding a record too large for a
	// message.
	ClaimHeader = "Fleetscan-Claim"
)

// DefaultInlineLimit is the largest compressed record stored in a message.
const DefaultInlineLimit = 256 << 10

// DefaultCompactAfter is how many records a reader may find beyond the
// snapshot before it writes a new one.
const DefaultCompactAfter = 256

// Store reads and writes package records and the index snapshot.
type Store struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	objs   jetstream.ObjectStore
	log    *zap.Logger
	// InlineLimit is the claim-check threshold in compressed bytes.
	InlineLimit int
}

// NewStore returns the store over the ensured resources.
func NewStore(res *topology.Resources, log *zap.Logger) (*Store, error) {
	if res == nil || res.JS == nil || res.Packages == nil || res.PackageIndex == nil {
		return nil, errors.New("package index: the package JetStream resources are required (topology.Ensure)")
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Store{js: res.JS, stream: res.Packages, objs: res.PackageIndex, log: log, InlineLimit: DefaultInlineLimit}, nil
}

func recordObject(key contract.ImageKey) string { return "record." + key.Token() }

// PutPackages stores rec as the latest package record of its key.
func (s *Store) PutPackages(ctx context.Context, rec contract.ImagePackages) error {
	data, err := rec.Encode()
	if err != nil {
		return fmt.Errorf("encode package record %s: %w", rec.ImageKey, err)
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		return err
	}
	data = enc.EncodeAll(data, make([]byte, 0, len(data)/4))
	_ = enc.Close()
	msg := &nats.Msg{Subject: topology.PackagesSubject(rec.ImageKey), Header: nats.Header{}}
	msg.Header.Set(EncodingHeader, "zstd")
	if len(data) > s.InlineLimit {
		name := recordObject(rec.ImageKey)
		if _, err := s.objs.PutBytes(ctx, name, data); err != nil {
			return fmt.Errorf("store large package record %s (%d bytes) in %s: %w", rec.ImageKey, len(data), topology.PackageIndexBucket, err)
		}
		msg.Header.Set(ClaimHeader, name)
	} else {
		msg.Data = data
	}
	if _, err := s.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(topology.PackagesStream)); err != nil {
		return fmt.Errorf("publish package record %s: %w", rec.ImageKey, err)
	}
	return nil
}

// Packages returns the latest package record of key; ok is false when
// there is none.
func (s *Store) Packages(ctx context.Context, key contract.ImageKey) (contract.ImagePackages, bool, error) {
	raw, err := s.stream.GetLastMsgForSubject(ctx, topology.PackagesSubject(key))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return contract.ImagePackages{}, false, nil
	}
	if err != nil {
		return contract.ImagePackages{}, false, fmt.Errorf("get package record %s: %w", key, err)
	}
	rec, err := s.decode(ctx, raw.Header, raw.Data)
	if err != nil {
		return contract.ImagePackages{}, false, err
	}
	return rec, true, nil
}

func (s *Store) decode(ctx context.Context, h nats.Header, data []byte) (contract.ImagePackages, error) {
	if name := h.Get(ClaimHeader); name != "" {
		blob, err := s.objs.GetBytes(ctx, name)
		if err != nil {
			return contract.ImagePackages{}, fmt.Errorf("get large package record %s from %s: %w", name, topology.PackageIndexBucket, err)
		}
		data = blob
	}
	switch enc := h.Get(EncodingHeader); enc {
	case "":
	case "zstd":
		dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return contract.ImagePackages{}, err
		}
		data, err = dec.DecodeAll(data, nil)
		dec.Close()
		if err != nil {
			return contract.ImagePackages{}, fmt.Errorf("decompress package record: %w", err)
		}
	default:
		return contract.ImagePackages{}, fmt.Errorf("package record: unknown encoding %q", enc)
	}
	return contract.DecodeImagePackages(data)
}

// LoadStats says what a Load read.
type LoadStats struct {
	// SnapshotImages were in the snapshot; SnapshotBytes its size.
	SnapshotImages int
	SnapshotBytes  int
	// Delta counts records read beyond the snapshot, Unreadable those of
	// them that could not be decoded (skipped, logged).
	Delta      int
	Unreadable int
	// Pruned counts snapshot entries whose record expired.
	Pruned int
	// Took is the load's duration.
	Took time.Duration
}

// Load returns the current index: the snapshot, less the images whose
// record expired, plus every record stored after it.
func (s *Store) Load(ctx context.Context) (*Index, LoadStats, error) {
	start := time.Now()
	var st LoadStats
	info, err := s.stream.Info(ctx)
	if err != nil {
		return nil, st, fmt.Errorf("package records stream info: %w", err)
	}
	ix := NewIndex()
	data, err := s.objs.GetBytes(ctx, topology.PackageIndexSnapshot)
	switch {
	case errors.Is(err, jetstream.ErrObjectNotFound):
	case err != nil:
		return nil, st, fmt.Errorf("get package index snapshot: %w", err)
	default:
		st.SnapshotBytes = len(data)
		snap, derr := DecodeSnapshot(data)
		switch {
		case derr != nil:
			s.log.Warn("package index snapshot unreadable; rebuilding the index from the records", zap.Error(derr))
		case snap.LastSeq > info.State.LastSeq:
			s.log.Warn("package index snapshot is ahead of the records stream (was the stream recreated?); rebuilding it",
				zap.Uint64("snapshot_seq", snap.LastSeq), zap.Uint64("stream_seq", info.State.LastSeq))
		default:
			ix = snap
			st.SnapshotImages = ix.Len()
		}
	}
	if info.State.Msgs == 0 {
		st.Pruned = ix.Len()
		ix = NewIndex()
		ix.LastSeq = info.State.LastSeq
	} else {
		st.Pruned = ix.prune(info.State.FirstSeq)
	}
	if info.State.Msgs > 0 && info.State.LastSeq > ix.LastSeq {
		if err := s.readDelta(ctx, ix, &st); err != nil {
			return nil, st, err
		}
	}
	st.Took = time.Since(start)
	return ix, st, nil
}

// readDelta applies every record stored after ix.LastSeq.
func (s *Store) readDelta(ctx context.Context, ix *Index, st *LoadStats) error {
	cons, err := s.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    ix.LastSeq + 1,
		FilterSubjects: []string{topology.PackagesSubjectPrefix + ".>"},
	})
	if err != nil {
		return fmt.Errorf("package records consumer: %w", err)
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("package records consumer info: %w", err)
	}
	remaining := ci.NumPending
	for remaining > 0 {
		batch, err := cons.Fetch(int(min(remaining, 1024)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return fmt.Errorf("read package records: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			meta, merr := m.Metadata()
			if merr != nil {
				return fmt.Errorf("package record metadata: %w", merr)
			}
			remaining = meta.NumPending
			rec, derr := s.decode(ctx, m.Headers(), m.Data())
			if derr != nil {
				st.Unreadable++
				s.log.Warn("package record unreadable; its image is left out of the index", zap.String("subject", m.Subject()), zap.Error(derr))
				ix.LastSeq = max(ix.LastSeq, meta.Sequence.Stream)
				continue
			}
			if want := topology.PackagesSubject(rec.ImageKey); want != m.Subject() {
				st.Unreadable++
				s.log.Warn("package record on the wrong subject; ignored", zap.String("subject", m.Subject()), zap.String("want", want))
				continue
			}
			ix.Apply(rec, meta.Sequence.Stream)
			st.Delta++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("read package records: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("read package records: no progress with %d pending", remaining)
		}
	}
	return nil
}

// Save writes ix as the snapshot.
func (s *Store) Save(ctx context.Context, ix *Index) error {
	data, err := ix.Encode()
	if err != nil {
		return fmt.Errorf("encode package index: %w", err)
	}
	if _, err := s.objs.PutBytes(ctx, topology.PackageIndexSnapshot, data); err != nil {
		return fmt.Errorf("store package index snapshot (%d bytes) in %s: %w", len(data), topology.PackageIndexBucket, err)
	}
	return nil
}

// Refresh loads the index and, when it had to read more than compactAfter
// records beyond the snapshot (or had to drop expired ones), writes a new
// snapshot so the next reader does not. A failed write (a read-only
// identity, say) is logged, not returned: the index loaded is current.
func (s *Store) Refresh(ctx context.Context, compactAfter int) (*Index, LoadStats, error) {
	ix, st, err := s.Load(ctx)
	if err != nil {
		return nil, st, err
	}
	if st.Delta > compactAfter || st.Pruned > 0 || st.Unreadable > 0 {
		if err := s.Save(ctx, ix); err != nil {
			s.log.Warn("could not write the package index snapshot; the next reader reads the records again", zap.Error(err))
		}
	}
	return ix, st, nil
}
