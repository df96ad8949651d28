package report

import (
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/report/reporttest"
	"github.com/fleetscan/fleetscan/internal/rss"
	"github.com/fleetscan/fleetscan/internal/sla"
)

func benchFleet() *Fleet {
	f := NewFleet()
	for c := range reporttest.Clusters {
		for _, e := range reporttest.Entries(c) {
			f.Add(reporttest.ClusterName(c), e)
		}
	}
	return f
}

// BenchmarkReport200k measures the reporter's path from scan results to
// every output file: 2,000 results carrying 200,000 findings (the synthetic
// fleet of package reporttest) are compacted,
// joined with the fleet inventory and first-seen clocks, ranked, and
// rendered as CSV, JSON, HTML, Markdown and tickets. It reports the peak
// RSS of the process (VmHWM) as peak-RSS-MiB.
func BenchmarkReport200k(b *testing.B) {
	asOf := ts("2025-03-10T06:00:00Z")
	fleet := benchFleet()
	policy := sla.DefaultPolicy()
	// Clocks for every identity, spread over the past 200 days.
	led := mapLedger{}
	intern := &Interner{}
	for i := range reporttest.Images {
		img := fleet.Image(reporttest.Key(i), "")
		img.Vulns = Compact(reporttest.Result(i, "c1", asOf).Findings, intern)
		for k := range img.Vulns {
			id := identity(img.Repositories[0], img.Vulns[k])
			if _, ok := led[id]; !ok {
				led.set(id, asOf.Add(-time.Duration(len(led)%200)*24*time.Hour), sla.ChangeStillOpen)
			}
		}
	}
	dir := b.TempDir()
	b.ReportAllocs()
	b.ResetTimer()
	var files []File
	for b.Loop() {
		in := &Interner{}
		images := make([]*Image, 0, reporttest.Images)
		for i := range reporttest.Images {
			res := reporttest.Result(i, "c1", asOf)
			img := fleet.Image(res.ImageKey, res.Reference)
			img.Vulns = Compact(res.Findings, in)
			images = append(images, img)
		}
		r := Build(Input{GeneratedAt: asOf, AsOf: asOf, Scope: Scope{Mode: "fleet"}, Images: images,
			Policy: policy, Ledger: led})
		if len(r.Findings) != reporttest.Images*reporttest.PerImage {
			b.Fatalf("%d findings", len(r.Findings))
		}
		var err error
		if files, err = WriteFiles(dir, r, Formats); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	var total int64
	for _, f := range files {
		total += f.Size
		b.ReportMetric(float64(f.Size)/(1<<20), f.Name+"-MiB")
	}
	b.ReportMetric(float64(total)/(1<<20), "output-MiB")
	if hwm, err := rss.Peak(); err == nil {
		b.ReportMetric(float64(hwm)/(1<<20), "peak-RSS-MiB")
	}
}
