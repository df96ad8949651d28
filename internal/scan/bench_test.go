package scan

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/internal/fixture/fixturetest"
)

// fleetSize is the number of images a benchmark iteration scans.
const fleetSize = 50

// benchFleet pushes fleetSize images that share their base layers, plus a
// shared layer of 3,000 files (12 MiB, like a distribution's /usr/share),
// so analysing a base layer costs what it does on real images.
func benchFleet(b *testing.B, e *env) []Request {
	b.Helper()
	// Deterministic, incompressible content: the layer digest is stable and
	// the download is as large as the files.
	rnd := rand.NewChaCha8([32]byte{'f', 'l', 'e', 'e', 't'})
	var files []fixture.File
	for i := range 3000 {
		content := make([]byte, 4096)
		_, _ = rnd.Read(content)
		files = append(files, fixture.File{Path: fmt.Sprintf("/usr/share/doc/pkg%02d/file%04d.txt", i%60, i), Content: content})
	}
	shared := fixture.FilesLayer("shared /usr/share", files...)
	ctx, cancel := context.WithTimeout(b.Context(), 5*time.Minute)
	defer cancel()
	var reqs []Request
	for _, spec := range fixture.FleetImages(fleetSize) {
		spec.Layers = append([]fixture.LayerSpec{shared}, spec.Layers...)
		p, err := fixture.PushSample(ctx, e.reg.Host, spec)
		if err != nil {
			b.Fatal(err)
		}
		reqs = append(reqs, Request{Digest: p.Digest, Platform: spec.Platforms[0], References: []string{p.Repository}})
	}
	return reqs
}

// scanAll scans reqs with `workers` scans in flight, as a worker with
// --concurrency=workers does, and returns the layer-cache hits and the bytes
// read from the registry.
func scanAll(b *testing.B, s *Trivy, reqs []Request, workers int) (int64, int64) {
	var next, hits, fetched atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(reqs) {
					return
				}
				ctx, cancel := context.WithTimeout(b.Context(), time.Minute)
				rep, err := s.Scan(ctx, reqs[i])
				cancel()
				if err != nil {
					b.Error(err)
					return
				}
				hits.Add(int64(rep.LayersCached))
				fetched.Add(rep.BytesFetched)
			}
		})
	}
	wg.Wait()
	return hits.Load(), fetched.Load()
}

func reportRate(b *testing.B, elapsed time.Duration) {
	b.ReportMetric(float64(fleetSize*b.N)/elapsed.Minutes(), "scans/min")
	b.ReportMetric(0, "ns/op")
}

func reportFetched(b *testing.B, fetched int64) {
	b.ReportMetric(float64(fetched)/1024/float64(fleetSize*b.N), "KiB-fetched/scan")
}

// BenchmarkFleetScan measures scans per minute over 50 images sharing base
// layers: with an empty layer cache (cold: each base layer is analysed
// once, then shared), with every layer cached (warm: a rescan after a DB
// update), and through the Trivy CLI one image at a time (the tutorial's
// loop; each invocation opens the DB and analyses every layer).
func BenchmarkFleetScan(b *testing.B) {
	e := newEnv(b, TrivyConfig{})
	reqs := benchFleet(b, e)
	workers := runtime.GOMAXPROCS(0)

	b.Run(fmt.Sprintf("library-cold-concurrency-%d", workers), func(b *testing.B) {
		var elapsed time.Duration
		var fetched int64
		for b.Loop() {
			e.reopenScanner(b, TrivyConfig{}) // empty layer cache
			start := time.Now()
			_, f := scanAll(b, e.scanner, reqs, workers)
			elapsed += time.Since(start)
			fetched += f
		}
		reportRate(b, elapsed)
		reportFetched(b, fetched)
	})
	b.Run(fmt.Sprintf("library-warm-concurrency-%d", workers), func(b *testing.B) {
		e.reopenScanner(b, TrivyConfig{})
		_, _ = scanAll(b, e.scanner, reqs, workers)
		var elapsed time.Duration
		var hits, fetched int64
		for b.Loop() {
			start := time.Now()
			h, f := scanAll(b, e.scanner, reqs, workers)
			elapsed += time.Since(start)
			hits, fetched = hits+h, fetched+f
		}
		reportRate(b, elapsed)
		reportFetched(b, fetched)
		b.ReportMetric(float64(hits)/float64(fleetSize*b.N), "cached-layers/scan")
	})
	b.Run("library-cold-sequential", func(b *testing.B) {
		var elapsed time.Duration
		for b.Loop() {
			e.reopenScanner(b, TrivyConfig{})
			start := time.Now()
			_, _ = scanAll(b, e.scanner, reqs, 1)
			elapsed += time.Since(start)
		}
		reportRate(b, elapsed)
	})
	b.Run("trivy-cli-one-by-one", func(b *testing.B) {
		bin, err := fixturetest.TrivyCLI()
		if err != nil {
			b.Fatal(err)
		}
		var elapsed time.Duration
		for b.Loop() {
			start := time.Now()
			for _, r := range reqs {
				ctx, cancel := context.WithTimeout(b.Context(), time.Minute)
				_, err := fixturetest.CLIScan(ctx, bin, e.cacheDir, r.References[0]+"@"+r.Digest, r.Platform)
				cancel()
				if err != nil {
					b.Fatal(err)
				}
			}
			elapsed += time.Since(start)
		}
		reportRate(b, elapsed)
	})
}
