package scan

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/internal/fixture/fixturetest"
)

// TestConcurrentScans runs every sample image several times at once on one
// scanner (run it with -race: Trivy has package-global state).
func TestConcurrentScans(t *testing.T) {
	e := newEnv(t, TrivyConfig{})
	const rounds = 3
	var wg sync.WaitGroup
	errs := make(chan error, rounds*len(e.pushed)*2)
	for range rounds {
		for _, spec := range fixture.SampleImages() {
			for _, pl := range spec.Platforms {
				wg.Go(func() {
					p := e.pushed[spec.Name]
					ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
					defer cancel()
					rep, err := e.scanner.Scan(ctx, Request{Digest: p.Digest, Platform: pl, References: []string{p.Repository}})
					if err != nil {
						errs <- err
						return
					}
					want := spec.ExpectedWith(1)
					fixturetest.SortFindings(want)
					if diff := fixturetest.DiffFindings(want, tuples(rep.Findings)); diff != "" {
						errs <- errors.New(spec.Name + ": " + diff)
					}
				})
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestLayerCacheReusesSharedLayers(t *testing.T) {
	e := newEnv(t, TrivyConfig{})
	scan := func(name string) Report {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		rep, err := e.scanner.Scan(ctx, e.request(t, name))
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	cold := scan("alpine-3.18")
	if cold.LayersCached != 0 || cold.LayersAnalyzed != 1 {
		t.Errorf("first scan: cached %d analysed %d, want 0 and 1", cold.LayersCached, cold.LayersAnalyzed)
	}
	// alpine-curl is the same base layer plus one.
	shared := scan("alpine-curl")
	if shared.LayersCached != 1 || shared.LayersAnalyzed != 1 {
		t.Errorf("image sharing the base layer: cached %d analysed %d, want 1 and 1", shared.LayersCached, shared.LayersAnalyzed)
	}
	e.reg.ResetStats()
	warm := scan("alpine-curl")
	if warm.LayersCached != 2 || warm.LayersAnalyzed != 0 {
		t.Errorf("rescan: cached %d analysed %d, want 2 and 0", warm.LayersCached, warm.LayersAnalyzed)
	}
	// Only the manifest and config are fetched again, not the layers.
	if st := e.reg.Stats(); st.BlobRequests > 1 {
		t.Errorf("warm scan fetched %d blobs, want only the config", st.BlobRequests)
	}
	if diff := fixturetest.DiffFindings(tuples(shared.Findings), tuples(warm.Findings)); diff != "" {
		t.Errorf("cached analysis changed the findings:\n%s", diff)
	}
}

func TestRefreshDBSwapsWithNoScanRunning(t *testing.T) {
	e := newEnv(t, TrivyConfig{})
	spec := e.pushed["node-app"].Spec
	scanGen := func(gen int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		rep, err := e.scanner.Scan(ctx, e.request(t, "node-app"))
		if err != nil {
			t.Fatal(err)
		}
		want := spec.ExpectedWith(gen)
		fixturetest.SortFindings(want)
		if diff := fixturetest.DiffFindings(want, tuples(rep.Findings)); diff != "" {
			t.Errorf("DB generation %d: findings differ:\n%s", gen, diff)
		}
	}
	scanGen(1)
	if changed, err := e.scanner.RefreshDB(t.Context()); err != nil || changed {
		t.Fatalf("RefreshDB on an unchanged DB = %v, %v; want false, nil", changed, err)
	}
	before := e.scanner.DBInfo()

	// Scans keep running while the DB is swapped underneath.
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for ctx.Err() == nil {
				sctx, scancel := context.WithTimeout(ctx, time.Minute)
				_, err := e.scanner.Scan(sctx, e.request(t, "alpine-curl"))
				scancel()
				if err != nil && ctx.Err() == nil {
					t.Errorf("scan during the DB swap: %v", err)
					return
				}
			}
		})
	}
	e.rebuildDB(t)
	changed, err := e.scanner.RefreshDB(t.Context())
	cancel()
	wg.Wait()
	if err != nil || !changed {
		t.Fatalf("RefreshDB after a rebuild = %v, %v; want true, nil", changed, err)
	}
	after := e.scanner.DBInfo()
	if !after.UpdatedAt.After(before.UpdatedAt) {
		t.Errorf("DB updatedAt %s not after %s", after.UpdatedAt, before.UpdatedAt)
	}
	scanGen(2)
}
