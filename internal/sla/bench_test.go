package sla

import (
	"fmt"
	"slices"
	"testing"

	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/natsembed/natstest"
)

// BenchmarkObserve200k measures the first-seen clock on real embedded
// JetStream with 200,000 identities (2,000 images × 100 findings, each
// identity distinct — the worst case): the first observation creates every
// record, the second finds them all unchanged and writes nothing.
func BenchmarkObserve200k(b *testing.B) {
	sightings := make([]Sighting, 0, 200_000)
	for i := range 2000 {
		for j := range 100 {
			sightings = append(sightings, Sighting{
				Identity: Identity{Repository: fmt.Sprintf("registry.example.com/team/service-%d", i),
					VulnerabilityID: fmt.Sprintf("CVE-2024-%05d", j*37%5000), PkgName: fmt.Sprintf("package-%d", j)},
				Severity: "HIGH", Clusters: []string{fmt.Sprintf("cluster-%d", i%12)},
			})
		}
	}
	for _, phase := range []string{"first", "unchanged"} {
		b.Run(phase, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				env := natstest.Start(b)
				c := NewClock(env.Res.FirstSeen, zap.NewNop())
				obs := Observation{AsOf: day(0), Sightings: slices.Values(sightings), Observed: []string{"x"}}
				if phase == "unchanged" {
					if _, err := c.Observe(b.Context(), obs, true); err != nil {
						b.Fatal(err)
					}
					obs.AsOf = day(1)
				}
				b.StartTimer()
				led, err := c.Observe(b.Context(), obs, true)
				if err != nil {
					b.Fatal(err)
				}
				if phase == "first" && led.Writes != len(sightings) || phase == "unchanged" && led.Writes != 0 {
					b.Fatalf("%s: %d writes", phase, led.Writes)
				}
			}
		})
	}
}
