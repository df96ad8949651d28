package tickets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/report"
	"github.com/fleetscan/fleetscan/internal/sla"
)

// Mapping states of a ticket's issue.
const (
	// StateOpen: fleetscan opened (or reopened) the issue.
	StateOpen = "open"
	// StateClosed: fleetscan closed it when the ticket was gone from a
	// complete report; it reopens when the ticket comes back.
	StateClosed = "closed"
	// StateDismissed: someone closed or deleted it by hand; it stays so
	// unless a finding of the ticket reopens.
	StateDismissed = "dismissed"
)

// Record is the KV value of one ticket's issue.
type Record struct {
	Ref   string `json:"ref"`
	State string `json:"state"`
	// Hash fingerprints the title and body as last written.
	Hash string `json:"hash"`
}

// Result counts what a sync did.
type Result struct {
	Created, Updated, Reopened, Closed, Dismissed, Unchanged int
	// Deferred counts open issues whose ticket is gone from an incomplete
	// report: they are closed by the next complete one.
	Deferred int
	// Failed counts tickets whose tracker requests failed (retried on the
	// next run: the mapping only records what succeeded).
	Failed int
}

func (r Result) String() string {
	return fmt.Sprintf("%d created, %d updated, %d reopened, %d closed, %d closed by hand, %d unchanged, %d left open (incomplete report), %d failed",
		r.Created, r.Updated, r.Reopened, r.Closed, r.Dismissed, r.Unchanged, r.Deferred, r.Failed)
}

// Syncer brings one tracker in line with a report.
type Syncer struct {
	KV      jetstream.KeyValue
	Tracker Tracker
	Log     *zap.Logger
}

func (s *Syncer) key(id string) string { return s.Tracker.Name() + "." + id }

// Sync creates, updates, reopens and (on a complete report) closes issues.
// A failed request is counted and logged and the sync goes on; the error
// joins them (nil when every ticket is in sync).
func (s *Syncer) Sync(ctx context.Context, r *report.Report) (Result, error) {
	var res Result
	recs, err := s.load(ctx)
	if err != nil {
		return res, err
	}
	reopened := reopenedTickets(r)
	var errs []error
	inReport := map[string]bool{}
	for t := range r.Tickets.All() {
		inReport[t.ID] = true
		rec, known := recs[t.ID]
		if err := s.ticket(ctx, *t, rec, known, reopened[t.ID], &res); err != nil {
			res.Failed++
			errs = append(errs, err)
			s.Log.Warn("ticket sync failed", zap.String("ticket", t.ID), zap.Error(err))
			if !IsRetryable(err) {
				return res, errors.Join(errs...)
			}
		}
	}
	errs = append(errs, s.closeGone(ctx, r, recs, inReport, &res)...)
	return res, errors.Join(errs...)
}

// load reads this tracker's records.
func (s *Syncer) load(ctx context.Context) (map[string]Record, error) {
	recs := map[string]Record{}
	keys, err := s.KV.Keys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return recs, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tickets KV: %w", err)
	}
	prefix := s.Tracker.Name() + "."
	for _, k := range keys {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		e, err := s.KV.Get(ctx, k)
		if err != nil {
			return nil, fmt.Errorf("tickets KV %s: %w", k, err)
		}
		var rec Record
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			return nil, fmt.Errorf("tickets KV %s: %w", k, err)
		}
		recs[strings.TrimPrefix(k, prefix)] = rec
	}
	return recs, nil
}

func (s *Syncer) put(ctx context.Context, id string, rec Record) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := s.KV.Put(ctx, s.key(id), data); err != nil {
		return &RetryableError{Err: fmt.Errorf("tickets KV %s: %w", s.key(id), err)}
	}
	return nil
}

// reopenedTickets are the tickets with a finding that came back after
// being resolved.
func reopenedTickets(r *report.Report) map[string]bool {
	out := map[string]bool{}
	for f := range r.Findings.All() {
		// Rows off the gate (accepted, VEX not_affected/fixed) have no ticket.
		if f.Change == sla.ChangeReopened && (f.Status == sla.StatusOpen || f.Status == sla.StatusAcceptanceExpired) {
			out[report.TicketID(report.TicketRepository(f), f.PkgName)] = true
		}
	}
	return out
}
