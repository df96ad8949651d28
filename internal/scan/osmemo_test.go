package scan

import (
	"context"
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/internal/fixture/fixturetest"
)

// TestOSDetectionSharedBetweenSameBase: images built on the same base share
// one OS-package detection, and every image still gets exactly its own
// findings (its app packages, its base's OS packages); images whose OS
// packages differ (alpine with and without curl) never share.
func TestOSDetectionSharedBetweenSameBase(t *testing.T) {
	e := newEnv(t, TrivyConfig{})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	specs := fixture.FleetImages(12) // every base twice or more, each image with a layer of its own
	pushed, err := fixture.PushSamples(ctx, e.reg.Host, specs)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alpine-3.18", "alpine-curl"} {
		pushed = append(pushed, e.pushed[name])
	}
	for _, p := range pushed {
		rep, err := e.scanner.Scan(ctx, Request{Digest: p.Digest, Platform: p.Spec.Platforms[0], References: []string{p.Repository}})
		if err != nil {
			t.Fatalf("%s: %v", p.Spec.Name, err)
		}
		want := append([]fixture.Finding(nil), p.Spec.Expected...)
		fixturetest.SortFindings(want)
		if diff := fixturetest.DiffFindings(want, tuples(rep.Findings)); diff != "" {
			t.Errorf("%s: findings differ:\n%s", p.Spec.Name, diff)
		}
	}
	hits, misses := e.scanner.osMemo.hits.Load(), e.scanner.osMemo.misses.Load()
	t.Logf("OS detection: %d shared, %d run", hits, misses)
	if hits == 0 || misses == 0 || hits+misses > int64(len(pushed)) {
		t.Errorf("OS detection shared %d times and run %d times over %d images; want both, once per distinct base", hits, misses, len(pushed))
	}
}
