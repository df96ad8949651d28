package sla

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// DefaultRetention is how long a first-seen record is kept after its
// finding was resolved, or after every cluster it was seen in was last
// observed (--first-seen-retention): 400 days, past a yearly audit.
const DefaultRetention = 400 * 24 * time.Hour

// clustersKey is the first-seen bucket's key of the clusters' last
// observations (identity keys are 64 hex digits: no clash).
const clustersKey = "clusters"

// clusterSeen is the value under clustersKey: when each cluster a report
// covered, or a record named, was last observed. A cluster first named by a
// record (its reports predate this value) counts as observed then, so its
// records are kept one retention from then on.
type clusterSeen struct {
	LastObserved map[string]time.Time `json:"lastObserved"`
	rev          uint64
	changed      bool
}

// note records that cluster was observed at t (kept when later).
func (s *clusterSeen) note(cluster string, t time.Time) {
	if prev, ok := s.LastObserved[cluster]; !ok || t.After(prev) {
		s.LastObserved[cluster] = t
		s.changed = true
	}
}

// gone reports whether cluster is known and was last observed before cutoff.
func (s *clusterSeen) gone(cluster string, cutoff time.Time) bool {
	t, ok := s.LastObserved[cluster]
	return ok && t.Before(cutoff)
}

// loadClusters reads the clusters' last observations (empty when none are
// stored or the value does not decode: it is rewritten).
func (c *Clock) loadClusters(ctx context.Context) (*clusterSeen, error) {
	s := &clusterSeen{LastObserved: map[string]time.Time{}}
	e, err := c.kv.Get(ctx, clustersKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("read first-seen clusters: %w", err)
	}
	s.rev = e.Revision()
	if err := json.Unmarshal(e.Value(), s); err != nil || s.LastObserved == nil {
		s.LastObserved = map[string]time.Time{}
		s.changed = true
	}
	return s, nil
}

// saveClusters stores s when it changed, merging with a concurrent
// reporter's value (the later observation of each cluster wins).
func (c *Clock) saveClusters(ctx context.Context, s *clusterSeen) error {
	for attempt := 0; s.changed; attempt++ {
		data, err := json.Marshal(s)
		if err != nil {
			return err
		}
		if s.rev == 0 {
			_, err = c.kv.Create(ctx, clustersKey, data)
		} else {
			_, err = c.kv.Update(ctx, clustersKey, data, s.rev)
		}
		conflict := errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
		if !conflict || attempt >= 4 {
			if err != nil {
				return fmt.Errorf("record first-seen clusters: %w", err)
			}
			return nil
		}
		other, err := c.loadClusters(ctx)
		if err != nil {
			return err
		}
		for name, t := range s.LastObserved {
			other.note(name, t)
		}
		other.changed = true
		s = other
	}
	return nil
}

// pruning is one record to delete: its key and the revision it was read at.
type pruning struct {
	key string
	rev uint64
}

// retainWith makes the pass check retention against seen, noting the
// observed clusters first (an observed cluster is not gone).
func (p *pass) retainWith(seen *clusterSeen) {
	p.seen = seen
	for _, name := range p.obs.Observed {
		seen.note(name, p.asOf)
	}
}

// retainRecord lists rec for pruning when it is past retention: resolved
// before asOf − retention, or open with every cluster it was seen in
// unobserved since before then. A cluster first named here is noted as
// observed now.
func (p *pass) retainRecord(key string, rec *Record, rev uint64) {
	if rec.State == StateOpen {
		for _, name := range rec.Clusters {
			if _, ok := p.seen.LastObserved[name]; !ok {
				p.seen.note(name, p.asOf)
			}
		}
	}
	if expired(rec, p.asOf.Add(-p.obs.Retention), p.seen) {
		p.prunes = append(p.prunes, pruning{key, rev})
	}
}

// retain stores the clusters' last observations and prunes the records
// past retention (with record false it only counts them).
func (c *Clock) retain(ctx context.Context, p *pass, record bool) error {
	if !record {
		p.led.Pruned = len(p.prunes)
		return nil
	}
	if err := c.saveClusters(ctx, p.seen); err != nil {
		return err
	}
	var err error
	p.led.Pruned, err = c.prune(ctx, p.prunes)
	if p.led.Pruned > 0 {
		c.log.Info("first-seen records pruned", zap.Int("pruned", p.led.Pruned), zap.Duration("retention", p.obs.Retention),
			zap.Duration("marker_ttl", c.markerTTL()))
	}
	if err != nil {
		return fmt.Errorf("prune first-seen records: %w", err)
	}
	return nil
}

// expired reports whether record r is past the retention cutoff.
func expired(r *Record, cutoff time.Time, seen *clusterSeen) bool {
	switch r.State {
	case StateResolved:
		return r.ResolvedAt.Before(cutoff)
	case StateOpen:
		if len(r.Clusters) == 0 {
			return false
		}
		for _, name := range r.Clusters {
			if !seen.gone(name, cutoff) {
				return false
			}
		}
		return true
	}
	return false
}

// prune purges the records, c.Concurrency at a time, each only if it is
// unchanged since it was read (another reporter may have reopened it): a
// purge marker replaces every revision of the key, and the server removes
// the marker after c.MarkerTTL, so the bucket's stream does not grow with
// every identity ever pruned and nothing is read again. It returns how
// many it purged.
func (c *Clock) prune(ctx context.Context, list []pruning) (int, error) {
	var (
		mu      sync.Mutex
		errs    []error
		deleted int
		ttl     = c.markerTTL()
	)
	forEachBounded(c.Concurrency, list, func(p pruning) {
		err := c.kv.Purge(ctx, p.key, jetstream.LastRevision(p.rev), jetstream.PurgeTTL(ttl))
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			deleted++
		case revisionMismatch(err):
			// Changed since it was read: kept.
		default:
			errs = append(errs, fmt.Errorf("prune first-seen record %s: %w", p.key, err))
		}
	})
	if len(errs) > 0 {
		return deleted, errors.Join(errs[:min(len(errs), 5)]...)
	}
	return deleted, nil
}

// revisionMismatch reports whether err is a write refused because the key
// changed since the revision it expected.
func revisionMismatch(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return true
	}
	return errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}
