package report

import (
	"bytes"
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/feeds"
	"github.com/fleetscan/fleetscan/internal/feeds/feedstest"
	"github.com/fleetscan/fleetscan/internal/report/reporttest"
	"github.com/fleetscan/fleetscan/internal/rss"
	"github.com/fleetscan/fleetscan/internal/sla"
)

// fleetImages compacts the results of the first n images of fleet into
// fl's images, as the reporter's collector does.
func fleetImages(fl *Fleet, fleet reporttest.Fleet, n int, asOf time.Time, in *Interner) []*Image {
	images := make([]*Image, 0, n)
	for i := range n {
		res := fleet.Result(i, "c1", asOf)
		img := fl.Image(res.ImageKey, res.Reference)
		img.Vulns = Compact(res.Findings, in)
		images = append(images, img)
	}
	return images
}

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
//
// feeds=none builds without exploit feeds; feeds=kev+epss with feeds of
// the real sizes (feedstest.RealSize: KEV 1,500 entries, a quarter of the
// fleet's vulnerabilities among them; EPSS 300,000 scores) and an EPSS rule,
// so every row carries its KEV and EPSS cells: the difference is what
// enrichment costs the build and the writers (issue 16: under 10 %). Run
// the two in separate processes (-bench 'Report200k/feeds=none') for a
// fair comparison of peak RSS.
func BenchmarkReport200k(b *testing.B) {
	enriched := benchEnrichment(b)
	for _, v := range []struct {
		name string
		e    *feeds.Enrichment
	}{{"feeds=none", nil}, {"feeds=kev+epss", enriched}} {
		b.Run(v.name, func(b *testing.B) { benchReport(b, v.e) })
	}
}

// benchEnrichment loads feeds of the real sizes naming the fleet's
// vulnerabilities.
func benchEnrichment(b *testing.B) *feeds.Enrichment {
	kevJSON, epssCSV, err := feedstest.RealSize(reporttest.VulnerabilityIDs())
	if err != nil {
		b.Fatal(err)
	}
	kev, err := feeds.ParseKEV(bytes.NewReader(kevJSON))
	if err != nil {
		b.Fatal(err)
	}
	epss, err := feeds.ParseEPSS(bytes.NewReader(epssCSV))
	if err != nil {
		b.Fatal(err)
	}
	return feeds.New(kev, epss, ts("2025-03-09T18:00:00Z"), feeds.DefaultMaxAge)
}

func benchReport(b *testing.B, enrichment *feeds.Enrichment) {
	asOf := ts("2025-03-10T06:00:00Z")
	fleet := benchFleet()
	policy := sla.DefaultPolicy()
	if enrichment != nil {
		policy.EPSS = sla.EPSSRule{Enabled: true, Percentile: 0.9, Days: 14}
	}
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
	cpu0, _ := rss.CPU()
	n := 0
	for b.Loop() {
		n++
		images := fleetImages(fleet, reporttest.Default, reporttest.Images, asOf, &Interner{})
		r := Build(Input{GeneratedAt: asOf, AsOf: asOf, Scope: Scope{Mode: "fleet"}, Images: images,
			Policy: policy, Ledger: led, Enrichment: enrichment})
		if r.Findings.Len() != reporttest.Images*reporttest.PerImage {
			b.Fatalf("%d findings", r.Findings.Len())
		}
		if enrichment != nil && r.Summary.KEV == 0 {
			b.Fatal("no KEV rows: the feeds were not applied")
		}
		var err error
		if files, err = WriteFiles(dir, r, Formats); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if cpu1, err := rss.CPU(); err == nil {
		b.ReportMetric((cpu1-cpu0).Seconds()/float64(n), "cpu-s/op")
	}
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
