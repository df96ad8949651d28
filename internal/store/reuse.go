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

// FingerprintHeader carries a scanned result's scanner-and-DB fingerprint
// (contract.Fingerprint), so whether a stored result can be reused is read
// from its headers without fetching or decoding its findings. Failures
// carry none: they are never reused.
const FingerprintHeader = "Fleetscan-Fingerprint"

// PutScannerIdentity records what the workers scan with (latest writer
// wins: every worker of a deployment publishes the same identity).
func (s *Store) PutScannerIdentity(ctx context.Context, id contract.ScannerIdentity) error {
	data, err := id.Encode()
	if err != nil {
		return fmt.Errorf("encode scanner identity: %w", err)
	}
	if _, err := s.res.Scanner.Put(ctx, topology.ScannerIdentityKey, data); err != nil {
		return fmt.Errorf("store scanner identity in %s: %w", topology.ScannerBucket, err)
	}
	return nil
}

// ScannerIdentity returns the workers' latest published identity, or
// ErrNotFound when no worker has published one yet.
func (s *Store) ScannerIdentity(ctx context.Context) (contract.ScannerIdentity, error) {
	e, err := s.res.Scanner.Get(ctx, topology.ScannerIdentityKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return contract.ScannerIdentity{}, fmt.Errorf("scanner identity: %w", ErrNotFound)
	}
	if err != nil {
		return contract.ScannerIdentity{}, fmt.Errorf("get scanner identity from %s: %w", topology.ScannerBucket, err)
	}
	id, err := contract.DecodeScannerIdentity(e.Value())
	if err != nil {
		return contract.ScannerIdentity{}, fmt.Errorf("%s/%s: %w", topology.ScannerBucket, topology.ScannerIdentityKey, err)
	}
	return id, nil
}

// ReusableResult returns the stored result of key when its fingerprint is
// fingerprint. A result with another fingerprint (or none stored) gives
// false without decoding the result.
func (s *Store) ReusableResult(ctx context.Context, key contract.ImageKey, fingerprint string) (contract.ScanResult, bool, error) {
	raw, err := s.res.Results.GetLastMsgForSubject(ctx, topology.ResultSubject(key))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return contract.ScanResult{}, false, nil
	}
	if err != nil {
		return contract.ScanResult{}, false, fmt.Errorf("get result %s: %w", key, err)
	}
	if fingerprint == "" || raw.Header.Get(FingerprintHeader) != fingerprint {
		return contract.ScanResult{}, false, nil
	}
	r, err := s.decodeResult(ctx, raw.Header, raw.Data, contract.DecodeScanResult)
	if err != nil {
		return contract.ScanResult{}, false, err
	}
	// The header is a hint written with the result; the result decides.
	return r, r.Fingerprint() == fingerprint, nil
}

// ResultFingerprints returns the fingerprint of the latest result of every
// key that has one, by subject token (contract.ImageKey.Token). It reads
// headers only: a fleet's worth of results costs a few bytes each.
func (s *Store) ResultFingerprints(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	prefix := topology.ResultsSubjectPrefix + "."
	err := s.eachLatest(ctx, true, func(m jetstream.Msg) error {
		if fp := m.Headers().Get(FingerprintHeader); fp != "" {
			out[strings.TrimPrefix(m.Subject(), prefix)] = fp
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("result fingerprints: %w", err)
	}
	return out, nil
}

// Reuse is the dispatcher's answer to which keys need no scan.
type Reuse struct {
	// Keys have a stored result with the workers' fingerprint.
	Keys []contract.ImageKey
	// Identity is the workers' identity they were compared with.
	Identity contract.ScannerIdentity
	// Skipped explains why nothing was compared (empty when compared).
	Skipped string
}

// Reusable finds which of keys already have the result a worker would
// produce now: scanned (not failed) with the scanner, options and DB of the
// workers' published identity. It reuses nothing when no worker has
// published an identity, or when the identity's DB is due for an update at
// now (past its NextUpdate: the updater may have replaced it since, and
// workers scaled to zero would not have said so) — then every key is
// scanned, and workers still reuse what their own DB allows.
func (s *Store) Reusable(ctx context.Context, keys []contract.ImageKey, now time.Time) (Reuse, error) {
	id, err := s.ScannerIdentity(ctx)
	if errors.Is(err, ErrNotFound) {
		return Reuse{Skipped: "no worker has published its scanner identity yet"}, nil
	}
	if err != nil {
		return Reuse{}, err
	}
	r := Reuse{Identity: id}
	if id.DB.NextUpdate.IsZero() || !now.Before(id.DB.NextUpdate) {
		r.Skipped = fmt.Sprintf("the workers' DB (built %s) was due for an update at %s",
			id.DB.UpdatedAt.UTC().Format(time.RFC3339), id.DB.NextUpdate.UTC().Format(time.RFC3339))
		return r, nil
	}
	fps, err := s.ResultFingerprints(ctx)
	if err != nil {
		return Reuse{}, err
	}
	want := id.Fingerprint()
	for _, k := range keys {
		if fps[k.Token()] == want {
			r.Keys = append(r.Keys, k)
		}
	}
	return r, nil
}
