package sla

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Identity is what the first-seen clock is keyed by. It leaves out the tag
// and digest so a rebuilt image that still carries the same vulnerable
// package keeps its clock.
type Identity struct {
	Repository      string `json:"repository"`
	VulnerabilityID string `json:"vulnerabilityId"`
	PkgName         string `json:"pkgName"`
	PkgPath         string `json:"pkgPath,omitempty"`
}

// Key is the KV key of the identity: the hex SHA-256 of its parts. Image
// repositories and package paths contain characters KV keys may not, so
// the readable parts travel in the value instead.
func (id Identity) Key() string {
	h := sha256.New()
	for _, p := range []string{id.Repository, id.VulnerabilityID, id.PkgName, id.PkgPath} {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (id Identity) String() string {
	s := id.Repository + " " + id.VulnerabilityID + " " + id.PkgName
	if id.PkgPath != "" {
		s += " (" + id.PkgPath + ")"
	}
	return s
}

// Repository strips the tag and digest from an image reference:
// "docker.io/library/nginx:1.25@sha256:..." → "docker.io/library/nginx".
// A registry port ("localhost:5000/app:1") is kept.
func Repository(ref string) string {
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndexByte(ref, ':'); i >= 0 && i > strings.LastIndexByte(ref, '/') {
		ref = ref[:i]
	}
	return ref
}

// State is a first-seen record's state.
type State string

const (
	StateOpen     State = "open"
	StateResolved State = "resolved"
)

// Record is the value stored per identity in the first-seen bucket.
type Record struct {
	Identity
	// Severity as last reported (for listing fixed findings).
	Severity string `json:"severity"`
	// FirstSeen starts the SLA clock. A reopened finding keeps it.
	FirstSeen time.Time `json:"firstSeen"`
	State     State     `json:"state"`
	// ResolvedAt is when the finding was last seen gone (state resolved).
	ResolvedAt time.Time `json:"resolvedAt,omitzero"`
	// Reopened counts how often the finding came back after being resolved;
	// ReopenedAt is the last time.
	Reopened   int       `json:"reopened,omitempty"`
	ReopenedAt time.Time `json:"reopenedAt,omitzero"`
	// Clusters the finding was last seen in. A finding is only resolved
	// when all of them were observed without it.
	Clusters []string `json:"clusters,omitempty"`
	// UpdatedAt is the as-of time of the observation that last changed the
	// record; an observation older than that never resolves it.
	UpdatedAt time.Time `json:"updatedAt"`
}

// Change classifies a sighted finding against the previous observation.
type Change string

const (
	ChangeNew       Change = "new"
	ChangeReopened  Change = "reopened"
	ChangeStillOpen Change = "still-open"
)

// Sighting is one identity present in the current report.
type Sighting struct {
	Identity
	Severity string
	Clusters []string
}

// Observation is what one report saw.
type Observation struct {
	// AsOf is the evaluation time (--now).
	AsOf time.Time
	// Sightings yields every finding present, before report filters
	// (an iterator: a fleet's list need not be held whole).
	Sightings iter.Seq[Sighting]
	// Observed lists the clusters whose current inventory the report covers.
	Observed []string
	// Uncertain lists repositories with an image that has no usable result
	// (failed or not scanned): their findings cannot be resolved.
	Uncertain []string
	// CoversFleet is true when every known cluster was observed; only then
	// may records that name no cluster be resolved.
	CoversFleet bool
	// Retention prunes the records not sighted that were resolved longer
	// ago than this, and the open ones whose clusters have all gone
	// unobserved for longer (0: every record is kept). A pruned finding
	// that comes back is new again.
	Retention time.Duration
}

// Ledger is the outcome of an observation: the clock of every sighted
// finding and what changed.
type Ledger struct {
	AsOf time.Time
	// ids are the sighted identities, which records are keyed by.
	ids     *identities
	records map[idKey]clockEntry
	// Fixed lists the findings resolved by this observation, each once.
	Fixed []Record
	// Writes counts KV writes performed (zero when not recording).
	Writes int
	// Pruned counts the records deleted under Observation.Retention (when
	// not recording: that would be deleted).
	Pruned int
}

// clockEntry is what a report needs of a record; the ledger keeps only this
// (16 bytes: the first-seen time as Unix nanoseconds, the change as an
// index into changes) so that hundreds of thousands of identities stay
// cheap.
type clockEntry struct {
	firstSeen int64
	change    uint8
}

// changes are the Change values by their clockEntry index.
var changes = [...]Change{ChangeNew, ChangeReopened, ChangeStillOpen}

func newClockEntry(firstSeen time.Time, c Change) clockEntry {
	return clockEntry{firstSeen: firstSeen.UnixNano(), change: uint8(slices.Index(changes[:], c))}
}

func (e clockEntry) time() time.Time { return time.Unix(0, e.firstSeen).UTC() }

// Lookup returns the first-seen time of a sighted identity and how it
// changed since the previous observation.
func (l *Ledger) Lookup(id Identity) (time.Time, Change, bool) {
	k, ok := l.ids.find(id)
	if !ok {
		return time.Time{}, "", false
	}
	e, ok := l.records[k]
	if !ok {
		return time.Time{}, "", false
	}
	return e.time(), changes[e.change], true
}

// Len is the number of sighted identities.
func (l *Ledger) Len() int { return len(l.records) }

// Count returns how many sighted identities have change c.
func (l *Ledger) Count(c Change) int {
	n := 0
	for _, e := range l.records {
		if changes[e.change] == c {
			n++
		}
	}
	return n
}

// KV is the part of a JetStream key-value bucket the clock uses.
type KV interface {
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
	Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error)
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
	// Bucket names the bucket (its records are read from its stream).
	Bucket() string
	// Purge prunes a record (with a TTL on its marker: the bucket needs
	// limit markers, topology.Config.FirstSeenConfig).
	Purge(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error
}

// DefaultMarkerTTL is how long the marker of a pruned record stays in the
// bucket's stream before the server removes it. Nothing reads markers (the
// records are streamed without them, a pruned identity that comes back is
// new either way); a minute is ample for a watcher to see the purge and
// bounds the stream to the live records and the last minute's prunings.
const DefaultMarkerTTL = time.Minute

// Stream is the bucket's stream (topology.Resources.FirstSeenStream): the
// clock reads the stored records from it with an ordered consumer, a batch
// at a time.
type Stream interface {
	OrderedConsumer(ctx context.Context, cfg jetstream.OrderedConsumerConfig) (jetstream.Consumer, error)
}

// Clock keeps first-seen records in a KV bucket (topology.FirstSeenBucket).
type Clock struct {
	kv     KV
	stream Stream
	log    *zap.Logger
	// Concurrency bounds parallel KV writes.
	Concurrency int
	// MarkerTTL is how long a pruned record's marker is kept (zero:
	// DefaultMarkerTTL; at least a second, the server's minimum).
	MarkerTTL time.Duration
}

func (c *Clock) markerTTL() time.Duration {
	if c.MarkerTTL <= 0 {
		return DefaultMarkerTTL
	}
	return max(c.MarkerTTL, time.Second)
}

// NewClock returns a clock over kv, whose records are read from stream.
func NewClock(kv KV, stream Stream, log *zap.Logger) *Clock {
	if log == nil {
		log = zap.NewNop()
	}
	return &Clock{kv: kv, stream: stream, log: log, Concurrency: 256}
}

type stored struct {
	rec *Record // nil when the value could not be decoded
	rev uint64
}

// readBatch bounds the records read ahead while the bucket is streamed.
const readBatch = 1000

// each streams every record in the bucket to fn, one at a time and read a
// batch at a time, so the bucket is never held in memory; rec is nil when
// the value does not decode (it is rewritten when sighted).
func (c *Clock) each(ctx context.Context, fn func(key string, rec *Record, rev uint64)) error {
	prefix := "$KV." + c.kv.Bucket() + "."
	cons, err := c.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{prefix + ">"}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy,
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return fmt.Errorf("read first-seen records: %w", err)
	}
	if info := cons.CachedInfo(); info != nil && info.NumPending == 0 {
		return nil
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(readBatch))
	if err != nil {
		return fmt.Errorf("read first-seen records: %w", err)
	}
	defer it.Stop()
	defer context.AfterFunc(ctx, it.Stop)()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return fmt.Errorf("read first-seen records: %w", err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("read first-seen records: %w", err)
		}
		c.take(strings.TrimPrefix(msg.Subject(), prefix), msg, meta.Sequence.Stream, fn)
		if meta.NumPending == 0 {
			return nil
		}
	}
}

// take passes one stored message to fn: a record, or nil when it does not
// decode. Delete and purge markers and the clusters' key are skipped.
func (c *Clock) take(key string, msg jetstream.Msg, rev uint64, fn func(key string, rec *Record, rev uint64)) {
	if key == clustersKey {
		return
	}
	switch msg.Headers().Get(kvOperation) {
	case "DEL", "PURGE":
		return
	}
	var r Record
	if err := json.Unmarshal(msg.Data(), &r); err != nil || r.Identity.Key() != key {
		c.log.Warn("ignoring undecodable first-seen record; it will be rewritten when seen",
			zap.String("key", key), zap.Error(err))
		fn(key, nil, rev)
		return
	}
	fn(key, &r, rev)
}

// kvOperation is the header a KV delete or purge marker carries.
const kvOperation = "KV-Operation"

// transition computes a record's next value from its previous one (nil when
// absent or undecodable); write is false when nothing changed.
type transition func(prev *Record) (next Record, change Change, write bool)

// writeBatch bounds the new records held before they are written.
const writeBatch = 20_000

// Observe applies an observation: records new findings, reopens resolved
// ones that came back, resolves open ones that disappeared from clusters
// the observation covered, and prunes records past obs.Retention. The
// stored records are streamed once; only those that change are held until
// written. With record false nothing is written and the ledger shows what
// would have happened.
func (c *Clock) Observe(ctx context.Context, obs Observation, record bool) (*Ledger, error) {
	if obs.AsOf.IsZero() {
		return nil, errors.New("observe: as-of time is required")
	}
	p := newPass(obs)
	if obs.Retention > 0 {
		seen, err := c.loadClusters(ctx)
		if err != nil {
			return nil, err
		}
		p.retainWith(seen)
	}
	if err := c.each(ctx, p.visit); err != nil {
		return nil, err
	}
	slices.SortFunc(p.led.Fixed, func(a, b Record) int { return compareIdentity(a.Identity, b.Identity) })
	flush := func(jobs []recordWrite) error {
		if !record || len(jobs) == 0 {
			return nil
		}
		return c.writeAll(ctx, jobs, p.led)
	}
	if err := flush(p.jobs); err != nil {
		return nil, err
	}
	if err := p.newSightings(flush); err != nil {
		return nil, err
	}
	if obs.Retention > 0 {
		if err := c.retain(ctx, p, record); err != nil {
			return nil, err
		}
	}
	return p.led, nil
}

// recordWrite is one first-seen record to write: the transition to apply
// to what is stored under key.
type recordWrite struct {
	key  string
	id   Identity
	prev stored
	had  bool
	tr   transition
	// clocked: the write is a sighted identity's, whose ledger entry
	// takes a concurrent writer's earlier first-seen.
	clocked bool
	k       idKey
}

// pass is one observation's walk over the stored records.
type pass struct {
	obs  Observation
	asOf time.Time
	// sighted are the sightings by identity (interned in led.ids).
	sighted             *sightings
	observed, uncertain map[string]bool
	led                 *Ledger
	// undecodable are the keys whose value did not decode.
	undecodable map[string]stored
	// jobs are the records to write: reopened, moved, resolved.
	jobs []recordWrite
	// seen are the clusters' last observations (nil without retention);
	// prunes the records past retention.
	seen   *clusterSeen
	prunes []pruning
}

func newPass(obs Observation) *pass {
	asOf := obs.AsOf.UTC()
	ids := newIdentities()
	sighted := mergeSightings(obs.Sightings, ids)
	return &pass{obs: obs, asOf: asOf, sighted: sighted, observed: setOf(obs.Observed), uncertain: setOf(obs.Uncertain),
		led: &Ledger{AsOf: asOf, ids: ids, records: make(map[idKey]clockEntry, len(sighted.by))}, undecodable: map[string]stored{}}
}

// visit takes one stored record: a sighted one gets its clock (and is
// rewritten when it came back or moved), an open one gone from the
// observed clusters is resolved, and the rest are checked for retention.
func (p *pass) visit(key string, rec *Record, rev uint64) {
	if rec == nil {
		p.undecodable[key] = stored{rev: rev}
		return
	}
	st := stored{rec: rec, rev: rev}
	if k, ok := p.led.ids.find(rec.Identity); ok {
		if s, ok := p.sighted.by[k]; ok {
			tr := sightingTransition(p.sighted.sighting(k, s), p.asOf)
			next, change, write := tr(rec)
			p.led.records[k] = newClockEntry(next.FirstSeen, change)
			if write {
				p.jobs = append(p.jobs, recordWrite{key: key, id: rec.Identity, prev: st, had: true, tr: tr, clocked: true, k: k})
			}
			return
		}
	}
	if rec.State == StateOpen && resolvable(*rec, p.asOf, p.observed, p.uncertain, p.obs.CoversFleet) {
		tr := resolveTransition(p.asOf)
		if next, _, write := tr(rec); write {
			p.led.Fixed = append(p.led.Fixed, next)
			p.jobs = append(p.jobs, recordWrite{key: key, id: rec.Identity, prev: st, had: true, tr: tr})
		}
		return
	}
	if p.seen != nil {
		p.retainRecord(key, rec, rev)
	}
}

// newSightings records the sighted identities no stored record had, in
// batches of writeBatch passed to flush.
func (p *pass) newSightings(flush func([]recordWrite) error) error {
	var jobs []recordWrite
	for k, s := range p.sighted.by {
		if _, ok := p.led.records[k]; ok {
			continue
		}
		sg := p.sighted.sighting(k, s)
		key := sg.Identity.Key()
		prev, had := p.undecodable[key]
		tr := sightingTransition(sg, p.asOf)
		next, change, write := tr(nil)
		p.led.records[k] = newClockEntry(next.FirstSeen, change)
		if write {
			jobs = append(jobs, recordWrite{key: key, id: sg.Identity, prev: prev, had: had, tr: tr, clocked: true, k: k})
		}
		if len(jobs) >= writeBatch {
			if err := flush(jobs); err != nil {
				return err
			}
			jobs = jobs[:0]
		}
	}
	return flush(jobs)
}

// writeAll writes the records, c.Concurrency at a time, and counts them in
// led.Writes; a concurrent writer's earlier first-seen wins in the ledger.
func (c *Clock) writeAll(ctx context.Context, jobs []recordWrite, led *Ledger) error {
	var (
		mu    sync.Mutex
		errs  []error
		wrote int
	)
	forEachBounded(c.Concurrency, jobs, func(j recordWrite) {
		rec, err := c.write(ctx, j.key, j.prev, j.had, j.tr)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("first-seen record %s: %w", j.id, err))
			return
		}
		wrote++
		if e, ok := led.records[j.k]; ok && j.clocked && rec != nil {
			// A concurrent writer may have set an earlier first-seen.
			e.firstSeen = rec.FirstSeen.UnixNano()
			led.records[j.k] = e
		}
	})
	led.Writes += wrote
	if len(errs) > 0 {
		return fmt.Errorf("record first-seen dates in KV: %w", errors.Join(errs[:min(len(errs), 5)]...))
	}
	return nil
}

// write stores tr(prev) with optimistic concurrency, re-reading and
// re-applying the transition when another reporter wrote first.
func (c *Clock) write(ctx context.Context, key string, prev stored, had bool, tr transition) (*Record, error) {
	for attempt := 0; ; attempt++ {
		next, _, write := tr(prev.rec)
		if !write {
			return prev.rec, nil
		}
		data, err := json.Marshal(next)
		if err != nil {
			return nil, err
		}
		if had {
			_, err = c.kv.Update(ctx, key, data, prev.rev)
		} else {
			_, err = c.kv.Create(ctx, key, data)
		}
		if err == nil {
			return &next, nil
		}
		conflict := errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
		if !conflict || attempt >= 4 {
			return nil, err
		}
		e, gerr := c.kv.Get(ctx, key)
		switch {
		case errors.Is(gerr, jetstream.ErrKeyNotFound):
			prev, had = stored{}, false
		case gerr != nil:
			return nil, gerr
		default:
			var r Record
			prev, had = stored{rev: e.Revision()}, true
			if json.Unmarshal(e.Value(), &r) == nil {
				prev.rec = &r
			}
		}
	}
}

func sightingTransition(s Sighting, asOf time.Time) transition {
	return func(prev *Record) (Record, Change, bool) {
		if prev == nil {
			return Record{
				Identity: s.Identity, Severity: s.Severity, FirstSeen: asOf, State: StateOpen,
				Clusters: s.Clusters, UpdatedAt: asOf,
			}, ChangeNew, true
		}
		next := *prev
		next.Identity = s.Identity
		change := ChangeStillOpen
		write := false
		switch {
		case prev.State == StateResolved && !asOf.Before(prev.ResolvedAt):
			// It came back. The clock keeps its first-seen date: the
			// vulnerability was known in this repository, and a workload
			// that only runs now and then (a weekly CronJob) must not get a
			// fresh deadline every time its pods reappear.
			next.State = StateOpen
			next.ResolvedAt = time.Time{}
			next.Reopened++
			next.ReopenedAt = asOf
			change, write = ChangeReopened, true
		case prev.State == StateResolved:
			// Evaluating a time before it was resolved (a backfill): it was
			// open then; report the old clock and change nothing.
		case asOf.Before(prev.FirstSeen):
			// A backfill saw it earlier than recorded.
			next.FirstSeen = asOf
			write = true
		}
		if next.Severity != s.Severity {
			next.Severity = s.Severity
			write = true
		}
		if prev.State == StateOpen && !slices.Equal(next.Clusters, s.Clusters) {
			next.Clusters = s.Clusters
			write = true
		}
		if change == ChangeReopened {
			next.Clusters = s.Clusters
		}
		if write && asOf.After(next.UpdatedAt) {
			next.UpdatedAt = asOf
		}
		return next, change, write
	}
}

func resolveTransition(asOf time.Time) transition {
	return func(prev *Record) (Record, Change, bool) {
		if prev == nil || prev.State != StateOpen || asOf.Before(prev.UpdatedAt) {
			if prev == nil {
				return Record{}, "", false
			}
			return *prev, "", false
		}
		next := *prev
		next.State = StateResolved
		next.ResolvedAt = asOf
		next.UpdatedAt = asOf
		return next, "", true
	}
}

// resolvable reports whether an open record absent from the observation may
// be marked resolved: the observation is not older than the record, none of
// its clusters went unobserved, and its repository has no image that failed
// or was not scanned.
func resolvable(r Record, asOf time.Time, observed, uncertain map[string]bool, coversFleet bool) bool {
	if asOf.Before(r.UpdatedAt) || uncertain[r.Repository] {
		return false
	}
	if len(r.Clusters) == 0 {
		return coversFleet
	}
	for _, c := range r.Clusters {
		if !observed[c] {
			return false
		}
	}
	return true
}

// sighting is what the clock keeps of a sighted identity: its worst
// severity (a SeverityRank) and its clusters (an index into
// sightings.lists): 8 bytes.
type sighting struct {
	clusters uint32
	severity uint8
}

// sightings are an observation's sightings merged by identity.
type sightings struct {
	ids *identities
	by  map[idKey]sighting
	// lists are the distinct cluster lists (0: none).
	lists [][]string
	index map[sliceID]uint32
}

// sighting is the Sighting of k.
func (ss *sightings) sighting(k idKey, s sighting) Sighting {
	return Sighting{Identity: ss.ids.identity(k), Severity: severityOf(s.severity), Clusters: ss.lists[s.clusters]}
}

// listIndex is the index of a canonical cluster list (one copy of each
// distinct list, so its address and length identify it).
func (ss *sightings) listIndex(list []string) uint32 {
	if len(list) == 0 {
		return 0
	}
	id := sliceID{&list[0], len(list)}
	i, ok := ss.index[id]
	if !ok {
		i = uint32(len(ss.lists))
		ss.index[id] = i
		ss.lists = append(ss.lists, list)
	}
	return i
}

// mergeSightings merges sightings of the same identity (several images of
// one repository): worst severity, union of clusters. Cluster lists are
// shared: one copy of each distinct list. The identities are interned in
// ids.
func mergeSightings(in iter.Seq[Sighting], ids *identities) *sightings {
	out := &sightings{ids: ids, by: map[idKey]sighting{}, lists: [][]string{nil}, index: map[sliceID]uint32{}}
	if in == nil {
		return out
	}
	lists := clusterLists{bySlice: map[sliceID][]string{}, byKey: map[string][]string{}}
	for s := range in {
		rank := uint8(SeverityRank(NormalizeSeverity(s.Severity)))
		k := ids.key(s.Identity)
		prev, ok := out.by[k]
		if !ok {
			out.by[k] = sighting{severity: rank, clusters: out.listIndex(lists.canonical(s.Clusters))}
			continue
		}
		clusters := prev.clusters
		if !slices.Equal(out.lists[clusters], s.Clusters) {
			clusters = out.listIndex(lists.union(out.lists[clusters], s.Clusters))
		}
		out.by[k] = sighting{severity: min(prev.severity, rank), clusters: clusters}
	}
	return out
}

// clusterLists keeps one sorted, duplicate-free copy of each cluster list.
type clusterLists struct {
	// bySlice finds the canonical copy of a caller's list (the images
	// share theirs) by its address and length.
	bySlice map[sliceID][]string
	byKey   map[string][]string
}

// sliceID identifies a slice by its first element's address and length.
type sliceID struct {
	first *string
	n     int
}

// canonical is the shared sorted, duplicate-free copy of list (nil when
// empty).
func (l *clusterLists) canonical(list []string) []string {
	if len(list) == 0 {
		return nil
	}
	id := sliceID{&list[0], len(list)}
	if c, ok := l.bySlice[id]; ok {
		return c
	}
	c := list
	if !sortedAndUnique(c) {
		c = sortedUnique(slices.Clone(c))
	}
	c = l.intern(c)
	l.bySlice[id] = c
	return c
}

// union is the shared copy of the union of two canonical lists.
func (l *clusterLists) union(a, b []string) []string {
	return l.intern(sortedUnique(append(slices.Clone(a), b...)))
}

func (l *clusterLists) intern(list []string) []string {
	if len(list) == 0 {
		return nil
	}
	key := strings.Join(list, "\x00")
	if c, ok := l.byKey[key]; ok {
		return c
	}
	l.byKey[key] = list
	return list
}

func sortedAndUnique(s []string) bool {
	for i := 1; i < len(s); i++ {
		if s[i-1] >= s[i] {
			return false
		}
	}
	return true
}

func setOf(list []string) map[string]bool {
	m := make(map[string]bool, len(list))
	for _, s := range list {
		m[s] = true
	}
	return m
}

func compareIdentity(a, b Identity) int {
	return cmpChain(
		strings.Compare(a.Repository, b.Repository),
		strings.Compare(a.VulnerabilityID, b.VulnerabilityID),
		strings.Compare(a.PkgName, b.PkgName),
		strings.Compare(a.PkgPath, b.PkgPath),
	)
}

func cmpChain(cs ...int) int {
	for _, c := range cs {
		if c != 0 {
			return c
		}
	}
	return 0
}

// forEachBounded calls fn for every item, at most limit (at least one) at a
// time, and returns when all calls have.
func forEachBounded[T any](limit int, items []T, fn func(T)) {
	sem := make(chan struct{}, max(1, limit))
	var wg sync.WaitGroup
	for _, it := range items {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(it)
		}()
	}
	wg.Wait()
}
