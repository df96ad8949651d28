package scan

import (
	"context"
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/internal/fixture/fixturetest"
)

// TestFidelityWithTrivyCLI guards Trivy upgrades: for every sample image and
// platform, and for both DB generations, the library scan must report
// exactly what the Trivy CLI built from the same module version reports
// with the same DB (--skip-db-update --offline-scan), on (vulnerability ID,
// package, installed version, fixed version, severity, status).
func TestFidelityWithTrivyCLI(t *testing.T) {
	bin := fixturetest.RequireTrivyCLI(t)
	e := newEnv(t, TrivyConfig{})
	for gen := 1; gen <= 2; gen++ {
		if gen == 2 {
			e.rebuildDB(t)
			if changed, err := e.scanner.RefreshDB(t.Context()); err != nil || !changed {
				t.Fatalf("RefreshDB = %v, %v", changed, err)
			}
		}
		for _, spec := range fixture.SampleImages() {
			for _, pl := range spec.Platforms {
				t.Run(spec.Name+"/"+pl.String()+"/db"+string(rune('0'+gen)), func(t *testing.T) {
					p := e.pushed[spec.Name]
					ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
					defer cancel()
					cli, err := fixturetest.CLIScan(ctx, bin, e.cacheDir, p.Ref(), pl)
					if err != nil {
						t.Fatal(err)
					}
					rep, err := e.scanner.Scan(ctx, Request{Digest: p.Digest, Platform: pl, References: []string{p.Repository}})
					if err != nil {
						t.Fatal(err)
					}
					if diff := fixturetest.DiffFindings(cli, tuples(rep.Findings)); diff != "" {
						t.Errorf("library findings differ from `trivy image` (- CLI only, + library only):\n%s", diff)
					}
					// Guard against both sides silently finding nothing.
					if want := spec.ExpectedWith(gen); len(cli) != len(want) {
						t.Errorf("CLI found %d findings, the fixture expects %d", len(cli), len(want))
					}
				})
			}
		}
	}
}
