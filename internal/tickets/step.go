package tickets

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/report"
)

// ticket brings one ticket's issue in line.
func (s *Syncer) ticket(ctx context.Context, t report.Ticket, rec Record, known, reopened bool, res *Result) error {
	is := issueFor(t)
	if !known {
		return s.create(ctx, is, res)
	}
	switch rec.State {
	case StateOpen:
		remote, err := s.Tracker.State(ctx, rec.Ref)
		if err != nil {
			return err
		}
		if remote != RemoteOpen {
			if reopened {
				return s.revive(ctx, is, rec, remote, res)
			}
			res.Dismissed++
			s.Log.Info("issue closed or deleted by hand: left alone unless a finding reopens", zap.String("ticket", t.ID), zap.String("issue", rec.Ref))
			return s.put(ctx, t.ID, Record{Ref: rec.Ref, State: StateDismissed, Hash: rec.Hash})
		}
		if rec.Hash == is.hash() {
			res.Unchanged++
			return nil
		}
		if err := s.Tracker.Update(ctx, rec.Ref, is); err != nil {
			return err
		}
		res.Updated++
		return s.put(ctx, t.ID, Record{Ref: rec.Ref, State: StateOpen, Hash: is.hash()})
	case StateDismissed:
		if !reopened {
			res.Unchanged++
			return nil
		}
	}
	remote, err := s.Tracker.State(ctx, rec.Ref)
	if err != nil {
		return err
	}
	return s.revive(ctx, is, rec, remote, res)
}

// create opens a new issue and records it.
func (s *Syncer) create(ctx context.Context, is Issue, res *Result) error {
	ref, err := s.Tracker.Create(ctx, is)
	if err != nil {
		return err
	}
	res.Created++
	return s.put(ctx, is.TicketID, Record{Ref: ref, State: StateOpen, Hash: is.hash()})
}

// revive brings back a closed issue (reopened and updated), or opens a new
// one when it was deleted.
func (s *Syncer) revive(ctx context.Context, is Issue, rec Record, remote Remote, res *Result) error {
	if remote == RemoteGone {
		return s.create(ctx, is, res)
	}
	if remote == RemoteClosed {
		if err := s.Tracker.Reopen(ctx, rec.Ref, fmt.Sprintf("fleetscan: %s is back in the report (a finding reopened).", is.TicketID)); err != nil {
			return err
		}
	}
	if err := s.Tracker.Update(ctx, rec.Ref, is); err != nil {
		return err
	}
	res.Reopened++
	return s.put(ctx, is.TicketID, Record{Ref: rec.Ref, State: StateOpen, Hash: is.hash()})
}

// closeGone closes the open issues whose ticket is gone — only when the
// report is complete: on an incomplete one a missing ticket may only be
// unscanned.
func (s *Syncer) closeGone(ctx context.Context, r *report.Report, recs map[string]Record, inReport map[string]bool, res *Result) []error {
	var errs []error
	for id, rec := range recs {
		if inReport[id] || rec.State != StateOpen {
			continue
		}
		if !r.Complete {
			res.Deferred++
			continue
		}
		comment := fmt.Sprintf("fleetscan: %s has no open findings in the complete report of %s (fixed or accepted); closing.", id, r.AsOf.UTC().Format("2006-01-02 15:04 MST"))
		err := s.Tracker.Close(ctx, rec.Ref, comment)
		if err == nil {
			err = s.put(ctx, id, Record{Ref: rec.Ref, State: StateClosed, Hash: rec.Hash})
		}
		if err != nil {
			res.Failed++
			errs = append(errs, err)
			s.Log.Warn("ticket close failed", zap.String("ticket", id), zap.Error(err))
			continue
		}
		res.Closed++
	}
	return errs
}
