package sla

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/natsembed/natstest"
)

// BenchmarkObserve200k measures the first-seen clock on real embedded
// JetStream with 200,000 identities (2,000 images × 100 findings, each
// identity distinct — the worst case): the first observation creates every
// record, the second finds them all unchanged and writes nothing, the
// third (a hundred days on, no cluster observed since) prunes them all.
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
	clusters := make([]string, 12)
	for i := range clusters {
		clusters[i] = fmt.Sprintf("cluster-%d", i)
	}
	for _, phase := range []string{"first", "unchanged", "prune"} {
		b.Run(phase, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				env := natstest.Start(b)
				c := NewClock(env.Res.FirstSeen, env.Res.FirstSeenStream, zap.NewNop())
				obs := Observation{AsOf: day(0), Sightings: slices.Values(sightings), Observed: []string{"x"}}
				if phase == "prune" {
					// Every cluster observed on day 0, none since.
					obs.Observed, obs.Retention = clusters, 100*24*time.Hour
				}
				if phase != "first" {
					if _, err := c.Observe(b.Context(), obs, true); err != nil {
						b.Fatal(err)
					}
					obs.AsOf = day(1)
				}
				if phase == "prune" {
					obs = Observation{AsOf: day(101), Sightings: slices.Values([]Sighting(nil)), Observed: []string{"x"}, Retention: 100 * 24 * time.Hour}
				}
				b.StartTimer()
				led, err := c.Observe(b.Context(), obs, true)
				if err != nil {
					b.Fatal(err)
				}
				if phase == "first" && led.Writes != len(sightings) || phase == "unchanged" && led.Writes != 0 ||
					phase == "prune" && led.Pruned != len(sightings) {
					b.Fatalf("%s: %d writes, %d pruned", phase, led.Writes, led.Pruned)
				}
			}
		})
	}
}
