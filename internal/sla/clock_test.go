package sla

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/fleetscan/fleetscan/internal/natsembed/natstest"
)

var (
	idA = Identity{Repository: "docker.io/library/nginx", VulnerabilityID: "CVE-2024-0001", PkgName: "openssl"}
	idB = Identity{Repository: "docker.io/library/nginx", VulnerabilityID: "CVE-2024-0002", PkgName: "zlib"}
	idC = Identity{Repository: "docker.io/library/redis", VulnerabilityID: "CVE-2024-0003", PkgName: "musl"}
	idD = Identity{Repository: "ghcr.io/acme/api", VulnerabilityID: "GHSA-xxxx", PkgName: "golang.org/x/net", PkgPath: "app/bin/api"}
)

func sight(id Identity, sev string, clusters ...string) Sighting {
	return Sighting{Identity: id, Severity: sev, Clusters: clusters}
}

func day(n int) time.Time { return time.Date(2025, 1, 1, 6, 0, 0, 0, time.UTC).AddDate(0, 0, n) }

func mustObserve(t *testing.T, c *Clock, obs Observation) *Ledger {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	led, err := c.Observe(ctx, obs, true)
	if err != nil {
		t.Fatal(err)
	}
	return led
}

func stored1(t *testing.T, kv jetstream.KeyValue, id Identity) Record {
	t.Helper()
	e, err := kv.Get(t.Context(), id.Key())
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	var r Record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// revisions are the stored records' revisions by key.
func revisions(t *testing.T, c *Clock) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	if err := c.each(t.Context(), func(key string, _ *Record, rev uint64) { out[key] = rev }); err != nil {
		t.Fatal(err)
	}
	return out
}

func wantChange(t *testing.T, led *Ledger, id Identity, change Change, firstSeen time.Time) {
	t.Helper()
	first, ch, ok := led.Lookup(id)
	if !ok {
		t.Fatalf("%s not in ledger", id)
	}
	if ch != change || !first.Equal(firstSeen) {
		t.Fatalf("%s: change %s first seen %s; want %s %s", id, ch, first, change, firstSeen)
	}
}

// TestClockAcrossRuns drives one bucket through three observations: new
// findings, kept clocks, resolution (guarded by uncertain repositories and
// unobserved clusters), and a reopened finding that keeps its clock.
func TestClockAcrossRuns(t *testing.T) {
	env := natstest.Start(t)
	c := NewClock(env.Res.FirstSeen, env.Res.FirstSeenStream, zaptest.NewLogger(t))

	// Run 1: everything is new.
	led := mustObserve(t, c, Observation{
		AsOf: day(0), Observed: []string{"c1", "c2"}, CoversFleet: true,
		Sightings: slices.Values([]Sighting{
			sight(idA, "HIGH", "c1"), sight(idA, "critical", "c2"), // merged: worst severity, both clusters
			sight(idB, "MEDIUM", "c1"), sight(idC, "LOW", "c1"),
		}),
	})
	for _, id := range []Identity{idA, idB, idC} {
		wantChange(t, led, id, ChangeNew, day(0))
	}
	if led.Writes != 3 || len(led.Fixed) != 0 {
		t.Fatalf("writes %d fixed %d", led.Writes, len(led.Fixed))
	}
	if r := stored1(t, env.Res.FirstSeen, idA); r.Severity != "CRITICAL" || len(r.Clusters) != 2 || r.State != StateOpen {
		t.Fatalf("stored A = %+v", r)
	}

	// Run 2 (day 10): A kept, B gone → resolved, C gone but redis had an
	// unscanned image → kept open, D new in c2.
	led = mustObserve(t, c, Observation{
		AsOf: day(10), Observed: []string{"c1", "c2"}, Uncertain: []string{idC.Repository}, CoversFleet: true,
		Sightings: slices.Values([]Sighting{sight(idA, "CRITICAL", "c1", "c2"), sight(idD, "HIGH", "c2")}),
	})
	wantChange(t, led, idA, ChangeStillOpen, day(0))
	wantChange(t, led, idD, ChangeNew, day(10))
	if len(led.Fixed) != 1 || led.Fixed[0].Identity != idB || !led.Fixed[0].ResolvedAt.Equal(day(10)) {
		t.Fatalf("fixed = %+v, want B resolved at day 10", led.Fixed)
	}
	if led.Writes != 2 { // D created, B resolved; A unchanged
		t.Fatalf("writes = %d, want 2", led.Writes)
	}
	if r := stored1(t, env.Res.FirstSeen, idC); r.State != StateOpen {
		t.Fatalf("C resolved despite uncertain repository: %+v", r)
	}

	// Run 3 (day 20): B is back → reopened, first seen still day 0. Only c1 is
	// observed: D (last seen in c2) must not be resolved; C is gone from c1
	// with nothing uncertain → resolved. B is not listed as fixed again.
	led = mustObserve(t, c, Observation{
		AsOf: day(20), Observed: []string{"c1"},
		Sightings: slices.Values([]Sighting{sight(idA, "CRITICAL", "c1", "c2"), sight(idB, "MEDIUM", "c1")}),
	})
	wantChange(t, led, idA, ChangeStillOpen, day(0))
	wantChange(t, led, idB, ChangeReopened, day(0))
	if len(led.Fixed) != 1 || led.Fixed[0].Identity != idC {
		t.Fatalf("fixed = %+v, want only C", led.Fixed)
	}
	if r := stored1(t, env.Res.FirstSeen, idD); r.State != StateOpen {
		t.Fatalf("D resolved although its cluster was not observed: %+v", r)
	}
	b := stored1(t, env.Res.FirstSeen, idB)
	if b.Reopened != 1 || !b.ReopenedAt.Equal(day(20)) || !b.ResolvedAt.IsZero() {
		t.Fatalf("B = %+v", b)
	}

	// A dry run (record=false) reports what would change and writes nothing.
	ctx := t.Context()
	before := revisions(t, c)
	dry, err := c.Observe(ctx, Observation{AsOf: day(30), Observed: []string{"c1", "c2"}, CoversFleet: true}, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(dry.Fixed) != 3 || dry.Writes != 0 {
		t.Fatalf("dry run fixed %d writes %d, want 3 and 0", len(dry.Fixed), dry.Writes)
	}
	after := revisions(t, c)
	for k, v := range before {
		if after[k] != v {
			t.Fatalf("dry run changed %s", k)
		}
	}

	// A backfill (as-of before the recorded first seen) moves the clock
	// earlier and never resolves newer records.
	led = mustObserve(t, c, Observation{
		AsOf: day(-5), Observed: []string{"c1", "c2"}, CoversFleet: true,
		Sightings: slices.Values([]Sighting{sight(idA, "CRITICAL", "c1", "c2")}),
	})
	wantChange(t, led, idA, ChangeStillOpen, day(-5))
	if len(led.Fixed) != 0 {
		t.Fatalf("backfill resolved %+v", led.Fixed)
	}
}

// racingKV writes a competing record right before the clock's first write,
// as a second reporter would.
type racingKV struct {
	KV
	once sync.Once
	race func()
}

func (r *racingKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	r.once.Do(r.race)
	return r.KV.Create(ctx, key, value, opts...)
}

func TestClockConcurrentWriterKeepsEarliestFirstSeen(t *testing.T) {
	env := natstest.Start(t)
	log := zaptest.NewLogger(t)
	other := NewClock(env.Res.FirstSeen, env.Res.FirstSeenStream, log)
	kv := &racingKV{KV: env.Res.FirstSeen}
	kv.race = func() {
		// The other reporter saw A a day earlier and wrote first.
		if _, err := other.Observe(t.Context(), Observation{AsOf: day(-1), Sightings: slices.Values([]Sighting{sight(idA, "HIGH", "c1")})}, true); err != nil {
			t.Error(err)
		}
	}
	c := NewClock(kv, env.Res.FirstSeenStream, log)
	led := mustObserve(t, c, Observation{AsOf: day(0), Sightings: slices.Values([]Sighting{sight(idA, "HIGH", "c1")})})
	first, _, _ := led.Lookup(idA)
	if !first.Equal(day(-1)) {
		t.Fatalf("first seen %s, want the other reporter's %s", first, day(-1))
	}
	if r := stored1(t, env.Res.FirstSeen, idA); !r.FirstSeen.Equal(day(-1)) {
		t.Fatalf("stored first seen %s", r.FirstSeen)
	}
}

func TestIdentityKeyIsValidKVKey(t *testing.T) {
	env := natstest.Start(t)
	ctx := t.Context()
	odd := Identity{Repository: "localhost:5000/a b/ü", VulnerabilityID: "CVE-1*>", PkgName: "pkg.with.dots", PkgPath: "/usr/lib/x.jar!/inner"}
	if _, err := env.Res.FirstSeen.Create(ctx, odd.Key(), []byte("{}")); err != nil {
		t.Fatalf("key %q rejected: %v", odd.Key(), err)
	}
	if odd.Key() == idA.Key() || len(odd.Key()) != 64 {
		t.Fatalf("bad key %q", odd.Key())
	}
}

// TestClockRetention prunes records past --first-seen-retention: resolved
// longer ago, or open in clusters unobserved for longer. Younger and
// sighted records are kept, a dry run only counts, and a pruned finding
// that comes back is new again with a fresh clock.
func TestClockRetention(t *testing.T) {
	env := natstest.Start(t)
	c := NewClock(env.Res.FirstSeen, env.Res.FirstSeenStream, zaptest.NewLogger(t))
	const retention = 100 * 24 * time.Hour
	obs := func(d int, observed []string, s ...Sighting) Observation {
		return Observation{AsOf: day(d), Observed: observed, Sightings: slices.Values(s), Retention: retention}
	}
	c1 := []string{"c1"}
	mustObserve(t, c, obs(0, []string{"c1", "c2"}, sight(idA, "HIGH", "c1"), sight(idB, "LOW", "c1"), sight(idC, "LOW", "c2")))
	// Day 10: B is fixed; c2 is gone from now on, so C stays open.
	if led := mustObserve(t, c, obs(10, c1, sight(idA, "HIGH", "c1"))); len(led.Fixed) != 1 || led.Pruned != 0 {
		t.Fatalf("day 10: fixed %+v, pruned %d", led.Fixed, led.Pruned)
	}
	exists := func(id Identity) bool {
		_, err := env.Res.FirstSeen.Get(t.Context(), id.Key())
		return err == nil
	}
	steps := []struct {
		day    int
		pruned int
		gone   []Identity
		kept   []Identity
	}{
		// Cutoff day 5: C's cluster was last observed on day 0; B was
		// resolved on day 10, younger than the retention.
		{105, 1, []Identity{idC}, []Identity{idA, idB}},
		// Cutoff day 15: B is now past it. A, sighted since day 0, stays.
		{115, 1, []Identity{idB}, []Identity{idA}},
	}
	for _, st := range steps {
		dry, err := c.Observe(t.Context(), obs(st.day, c1, sight(idA, "HIGH", "c1")), false)
		if err != nil || dry.Pruned != st.pruned {
			t.Fatalf("day %d dry run: pruned %d (%v), want %d", st.day, dry.Pruned, err, st.pruned)
		}
		for _, id := range st.gone {
			if !exists(id) {
				t.Fatalf("day %d: the dry run pruned %s", st.day, id)
			}
		}
		led := mustObserve(t, c, obs(st.day, c1, sight(idA, "HIGH", "c1")))
		if led.Pruned != st.pruned || len(led.Fixed) != 0 {
			t.Fatalf("day %d: pruned %d fixed %+v, want %d pruned, none fixed", st.day, led.Pruned, led.Fixed, st.pruned)
		}
		wantChange(t, led, idA, ChangeStillOpen, day(0))
		for _, id := range st.gone {
			if exists(id) {
				t.Errorf("day %d: %s not pruned", st.day, id)
			}
		}
		for _, id := range st.kept {
			if !exists(id) {
				t.Errorf("day %d: %s pruned", st.day, id)
			}
		}
	}
	// Day 120: B and C come back (c2 too): new, with a fresh clock.
	led := mustObserve(t, c, obs(120, []string{"c1", "c2"}, sight(idA, "HIGH", "c1"), sight(idB, "LOW", "c1"), sight(idC, "LOW", "c2")))
	wantChange(t, led, idB, ChangeNew, day(120))
	wantChange(t, led, idC, ChangeNew, day(120))
	wantChange(t, led, idA, ChangeStillOpen, day(0))
	if led.Pruned != 0 {
		t.Fatalf("day 120 pruned %d", led.Pruned)
	}
}

// streamMessages is how many messages the bucket's stream holds: records,
// markers and the clusters key.
func streamMessages(t *testing.T, kv jetstream.KeyValue) uint64 {
	t.Helper()
	st, err := kv.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return st.Values()
}

// TestPruningLeavesBoundedState prunes n records past retention: each
// leaves a purge marker that the server removes after the clock's
// MarkerTTL, so the bucket's stream then holds the live record and the
// clusters key only, whatever n. The pruned findings that come back are
// new, with a fresh clock.
func TestPruningLeavesBoundedState(t *testing.T) {
	const markerTTL = time.Second
	tests := []struct {
		name string
		n    int
	}{
		{"one pruned", 1},
		{"fifty pruned", 50},
		{"five hundred pruned", 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := natstest.Start(t)
			core, logs := observer.New(zap.InfoLevel)
			c := NewClock(env.Res.FirstSeen, env.Res.FirstSeenStream, zap.New(core))
			c.MarkerTTL = markerTTL
			obs := func(d int, observed []string, s []Sighting) Observation {
				return Observation{AsOf: day(d), Observed: observed, Sightings: slices.Values(s), Retention: 100 * 24 * time.Hour}
			}
			live := []Sighting{sight(idA, "HIGH", "c1")}
			gone := make([]Sighting, tt.n)
			for i := range gone {
				id := Identity{Repository: "ghcr.io/acme/old", VulnerabilityID: fmt.Sprintf("CVE-2025-%05d", i), PkgName: "openssl"}
				gone[i] = sight(id, "HIGH", "gone")
			}
			all := slices.Concat(live, gone)
			mustObserve(t, c, obs(0, []string{"c1", "gone"}, all))
			before := streamMessages(t, env.Res.FirstSeen)
			// Day 101: cluster gone was last observed more than 100 days ago.
			started := time.Now()
			if led := mustObserve(t, c, obs(101, []string{"c1"}, live)); led.Pruned != tt.n {
				t.Fatalf("pruned %d, want %d", led.Pruned, tt.n)
			}
			took := time.Since(started)
			markers := streamMessages(t, env.Res.FirstSeen)
			const want = 2 // idA and the clusters key
			waited := natstest.WaitForValues(t, env.Res.FirstSeen, want, markerTTL+30*time.Second)
			t.Logf("%d records pruned (whole observation %s): %d stream messages before, %d just after (markers), %d after %s",
				tt.n, took, before, markers, want, waited)
			if before != uint64(tt.n)+want || markers > uint64(tt.n)+want {
				t.Fatalf("stream messages %d before pruning, %d after; want %d, at most %d", before, markers, tt.n+want, tt.n+want)
			}
			pruned := logs.FilterMessage("first-seen records pruned").AllUntimed()
			if len(pruned) != 1 || pruned[0].ContextMap()["marker_ttl"] != markerTTL || logs.FilterLevelExact(zap.WarnLevel).Len() != 0 {
				t.Fatalf("logged %+v", logs.AllUntimed())
			}
			led := mustObserve(t, c, obs(102, []string{"c1", "gone"}, all))
			for _, s := range gone {
				wantChange(t, led, s.Identity, ChangeNew, day(102))
			}
			wantChange(t, led, idA, ChangeStillOpen, day(0))
			if got := streamMessages(t, env.Res.FirstSeen); got != uint64(tt.n)+want {
				t.Fatalf("%d stream messages with every record back, want %d", got, tt.n+want)
			}
		})
	}
}

// TestClockReadsTheBucketInBatches: the stored records are read through an
// ordered consumer a batch at a time: thousands of records (several
// batches) all come back; deleted and purged keys are not records, and an
// undecodable value is reported and rewritten when its identity is
// sighted.
func TestClockReadsTheBucketInBatches(t *testing.T) {
	env := natstest.Start(t)
	kv := env.Res.FirstSeen
	core, logs := observer.New(zap.WarnLevel)
	c := NewClock(kv, env.Res.FirstSeenStream, zap.New(core))
	const n = 2*readBatch + 345
	var sightings []Sighting
	for i := range n {
		id := Identity{Repository: fmt.Sprintf("registry.example/app-%d", i%37), VulnerabilityID: fmt.Sprintf("CVE-2025-%05d", i), PkgName: "pkg"}
		sightings = append(sightings, sight(id, "HIGH", "c1"))
	}
	if led := mustObserve(t, c, Observation{AsOf: day(0), Sightings: slices.Values(sightings), Observed: []string{"c1"}}); led.Writes != n {
		t.Fatalf("first observation wrote %d records, want %d", led.Writes, n)
	}
	// idA's value is garbage; idB was deleted, idC purged.
	for _, id := range []Identity{idB, idC} {
		mustObserve(t, c, Observation{AsOf: day(0), Sightings: slices.Values([]Sighting{sight(id, "LOW", "c2")}), Observed: []string{"c2"}})
	}
	if _, err := kv.Put(t.Context(), idA.Key(), []byte("not a record")); err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(t.Context(), idB.Key()); err != nil {
		t.Fatal(err)
	}
	if err := kv.Purge(t.Context(), idC.Key()); err != nil {
		t.Fatal(err)
	}
	revs := revisions(t, c)
	if len(revs) != n+1 {
		t.Fatalf("read %d records back, want the %d written and the undecodable one", len(revs), n)
	}
	if _, ok := revs[idB.Key()]; ok {
		t.Error("a deleted record was read back")
	}
	all := append(slices.Clone(sightings), sight(idA, "HIGH", "c1"), sight(idB, "LOW", "c2"), sight(idC, "LOW", "c2"))
	led := mustObserve(t, c, Observation{AsOf: day(1), Sightings: slices.Values(all), Observed: []string{"c1", "c2"}})
	if got := led.Count(ChangeStillOpen); got != n {
		t.Errorf("%d still open after reading the bucket back, want %d", got, n)
	}
	for _, id := range []Identity{idA, idB, idC} {
		wantChange(t, led, id, ChangeNew, day(1))
	}
	if led.Writes != 3 {
		t.Errorf("%d writes, want 3 (the undecodable, deleted and purged records' identities)", led.Writes)
	}
	if logs.FilterMessage("ignoring undecodable first-seen record; it will be rewritten when seen").Len() == 0 {
		t.Error("the undecodable record was not reported")
	}
}
