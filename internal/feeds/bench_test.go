package feeds

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/feeds/feedstest"
	"github.com/fleetscan/fleetscan/internal/sla"
)

// Real sizes: CISA's catalogue lists about 1,400 CVEs, FIRST's daily file
// about 300,000.
const (
	benchKEV  = 1_500
	benchEPSS = 300_000
)

// benchFeeds builds feeds of the real sizes: EPSS scores for CVE-2000-0000
// upwards, every 200th of them in KEV.
func benchFeeds(b *testing.B) (kevJSON, epssGz []byte, ids []string) {
	b.Helper()
	var csv bytes.Buffer
	csv.WriteString("#model_version:v2025.03.14,score_date:2025-08-25T00:00:00+0000\ncve,epss,percentile\n")
	type item struct {
		CVEID, VendorProject, Product, VulnerabilityName, DateAdded, ShortDescription, RequiredAction, DueDate, KnownRansomwareCampaignUse string
	}
	doc := struct {
		CatalogVersion  string `json:"catalogVersion"`
		DateReleased    string `json:"dateReleased"`
		Count           int    `json:"count"`
		Vulnerabilities []item `json:"vulnerabilities"`
	}{CatalogVersion: "2025.08.25", DateReleased: feedstest.KEVReleased}
	for i := range benchEPSS {
		id := fmt.Sprintf("CVE-%d-%04d", 2000+i/12_000, i%12_000+1)
		ids = append(ids, id)
		fmt.Fprintf(&csv, "%s,%.5f,%.5f\n", id, float64(i%1000)/1000, float64(i)/benchEPSS)
		if i%200 == 0 && len(doc.Vulnerabilities) < benchKEV {
			doc.Vulnerabilities = append(doc.Vulnerabilities, item{CVEID: id, VendorProject: "Vendor", Product: "Product",
				VulnerabilityName: "A vulnerability", DateAdded: "2023-01-10", ShortDescription: "Something exploitable.",
				RequiredAction: "Apply mitigations per vendor instructions.", DueDate: "2023-01-31", KnownRansomwareCampaignUse: "Unknown"})
		}
	}
	doc.Count = len(doc.Vulnerabilities)
	kevJSON, err := json.Marshal(doc)
	if err != nil {
		b.Fatal(err)
	}
	return kevJSON, feedstest.Gzip(csv.Bytes()), ids
}

// benchFindings picks 200,000 findings' vulnerability IDs: a fleet's CVEs
// repeat across images; one in twenty is a GHSA without a CVE.
func benchFindings(ids []string) []string {
	out := make([]string, 200_000)
	for i := range out {
		if i%20 == 0 {
			out[i] = fmt.Sprintf("GHSA-%04x-abcd-efgh", i)
			continue
		}
		out[i] = ids[(i*7919+1)%30_000*10]
	}
	return out
}

// BenchmarkLoadRealSize: what the reporter pays once per run to read both
// feeds at their real sizes from the cache directory (EPSS gzipped).
func BenchmarkLoadRealSize(b *testing.B) {
	kevJSON, epssGz, _ := benchFeeds(b)
	dir := b.TempDir()
	kp, ep := filepath.Join(dir, "kev.json"), filepath.Join(dir, "epss.csv.gz")
	if err := os.WriteFile(kp, kevJSON, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(ep, epssGz, 0o644); err != nil {
		b.Fatal(err)
	}
	cache := b.TempDir()
	cfg := Defaults()
	cfg.KEVURL, cfg.EPSSURL = kp, ep
	if res, err := Update(b.Context(), cfg, cache, nil); err != nil || res.Err() != nil {
		b.Fatal(err, res.Err())
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		e, err := Load(b.Context(), DirSource(cache), DefaultMaxAge)
		if err != nil || e.Status(EPSS).Meta.Entries != benchEPSS || e.Status(KEV).Meta.Entries != benchKEV {
			b.Fatal(err, e.Statuses())
		}
	}
}

// BenchmarkEnrich200k: per report row, what enrichment adds to the
// deadline computation the report does today (DaysFor): one lookup in both
// feeds and the exploit-aware rules, over 200,000 findings.
func BenchmarkEnrich200k(b *testing.B) {
	kevJSON, epssGz, ids := benchFeeds(b)
	kev, err := ParseKEV(bytes.NewReader(kevJSON))
	if err != nil {
		b.Fatal(err)
	}
	epss, err := ParseEPSS(bytes.NewReader(epssGz))
	if err != nil {
		b.Fatal(err)
	}
	e := New(kev, epss, time.Now(), DefaultMaxAge)
	findings := benchFindings(ids)
	p := sla.DefaultPolicy()
	p.KEV.Days = 14
	p.EPSS = sla.EPSSRule{Enabled: true, Percentile: 0.95, Days: 30}
	first := time.Date(2023, 1, 1, 6, 0, 0, 0, time.UTC)
	asOf := time.Date(2024, 1, 1, 6, 0, 0, 0, time.UTC)
	sevs := []string{sla.Critical, sla.High, sla.Medium, sla.Low}

	b.Run("baseline-DaysFor", func(b *testing.B) {
		b.ReportAllocs()
		var sink int
		for b.Loop() {
			for i := range findings {
				d, _ := p.DaysFor(sevs[i%4], nil)
				sink += d
			}
		}
		_ = sink
	})
	b.Run("enriched-Lookup+Deadline", func(b *testing.B) {
		b.ReportAllocs()
		var inKEV int
		for b.Loop() {
			inKEV = 0
			for i, id := range findings {
				m := e.Lookup(id)
				d := p.Deadline(sla.DeadlineInput{Severity: sevs[i%4], FirstSeen: first, AsOf: asOf, Exposure: m.Exposure(i%50 == 0)})
				if d.Rule == sla.RuleKEV {
					inKEV++
				}
			}
		}
		if inKEV == 0 {
			b.Fatal("no KEV finding in the benchmark mix")
		}
	})
	// What the reporter should do: look each distinct vulnerability up
	// once (Memo), then compute every row's deadline.
	b.Run("enriched-Memo+Deadline", func(b *testing.B) {
		b.ReportAllocs()
		var inKEV int
		for b.Loop() {
			inKEV = 0
			memo := e.Memo()
			for i, id := range findings {
				m := memo.Lookup(id)
				d := p.Deadline(sla.DeadlineInput{Severity: sevs[i%4], FirstSeen: first, AsOf: asOf, Exposure: m.Exposure(i%50 == 0)})
				if d.Rule == sla.RuleKEV {
					inKEV++
				}
			}
		}
		if inKEV == 0 {
			b.Fatal("no KEV finding in the benchmark mix")
		}
	})
}
