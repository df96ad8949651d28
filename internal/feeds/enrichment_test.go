package feeds

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/feeds/feedstest"
	"github.com/fleetscan/fleetscan/internal/sla"
)

func fixtureEnrichment(t testing.TB, fetchedAt time.Time) *Enrichment {
	t.Helper()
	kev, err := ParseKEV(bytes.NewReader(feedstest.KEV()))
	if err != nil {
		t.Fatal(err)
	}
	epss, err := ParseEPSS(bytes.NewReader(feedstest.EPSSGzip()))
	if err != nil {
		t.Fatal(err)
	}
	return New(kev, epss, fetchedAt, DefaultMaxAge)
}

func TestNilEnrichmentFindsNothing(t *testing.T) {
	var e *Enrichment
	if m := e.Lookup(feedstest.RapidReset); m.InKEV() || m.HasEPSS {
		t.Fatal("found")
	}
	if _, ok := e.KEV(feedstest.RapidReset); ok {
		t.Fatal("found")
	}
	if e.Degraded(day0) || e.Status(KEV).State(day0) != StateNeverLoaded || len(e.Statuses()) != 2 {
		t.Fatalf("%+v", e.Statuses())
	}
}

// TestEnrichmentDrivesThePolicy joins the fixture feeds with the SLA
// policy the way the reporter will: a finding's CVE is looked up once and
// its Exposure decides the deadline.
func TestEnrichmentDrivesThePolicy(t *testing.T) {
	e := fixtureEnrichment(t, day0)
	p := sla.DefaultPolicy()
	p.EPSS = sla.EPSSRule{Enabled: true, Percentile: 0.95, Days: 14}
	p.EOL = sla.EOLRule{Enabled: true, Days: 30}
	first := time.Date(2023, 9, 1, 6, 0, 0, 0, time.UTC)
	tests := []struct {
		cve      string
		severity string
		eol      bool
		asOf     time.Time
		rule     string
		deadline time.Time
	}{
		// Rapid Reset, MEDIUM: EPSS 0.9995 gives 14 days before the KEV
		// listing; from the listing day on the due date is later, so EPSS
		// still sets it.
		{feedstest.RapidReset, sla.Medium, false, time.Date(2023, 9, 2, 0, 0, 0, 0, time.UTC), sla.RuleEPSS, first.AddDate(0, 0, 14)},
		// Looney Tunables first seen long after its due date: breached at once.
		{feedstest.LooneyTunables, sla.High, false, time.Date(2024, 1, 15, 0, 0, 0, 0, time.UTC), sla.RuleKEV, time.Date(2023, 12, 12, 23, 59, 59, 0, time.UTC)},
		// At the threshold exactly.
		{feedstest.AtThreshold, sla.Low, false, first, sla.RuleEPSS, first.AddDate(0, 0, 14)},
		// Low EPSS, not in KEV, on an end-of-life image.
		{feedstest.NotListed, sla.Low, true, first, sla.RuleEOL, first.AddDate(0, 0, 30)},
		{feedstest.NotListed, sla.Low, false, first, sla.RuleSeverity, first.AddDate(0, 0, 180)},
		// Not a CVE: no enrichment.
		{"GHSA-xvch-5gv4-984h", sla.Medium, false, first, sla.RuleSeverity, first.AddDate(0, 0, 90)},
	}
	for _, tt := range tests {
		t.Run(tt.cve, func(t *testing.T) {
			fs := first
			if tt.cve == feedstest.LooneyTunables {
				fs = tt.asOf
			}
			d := p.Deadline(sla.DeadlineInput{Severity: tt.severity, FirstSeen: fs, AsOf: tt.asOf, Exposure: e.Lookup(tt.cve).Exposure(tt.eol)})
			if d.Rule != tt.rule || !d.At.Equal(tt.deadline) {
				t.Fatalf("deadline %s by %s, want %s by %s", d.At, d.Rule, tt.deadline, tt.rule)
			}
		})
	}
}

func TestStatusDescribe(t *testing.T) {
	e := fixtureEnrichment(t, day0)
	got := e.Status(KEV).Describe(day0)
	want := "KEV catalogue 2025.08.25 (3 CVEs, released 2025-08-25, fetched 2025-08-25 from (built in)): fresh"
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	later := day0.Add(9*24*time.Hour + 3*time.Hour)
	if got := e.Status(EPSS).Describe(later); !strings.HasSuffix(got, ": stale (9d9h old, more than 7d)") ||
		!strings.Contains(got, "EPSS scores v2025.03.14 (40 CVEs, scores of 2025-08-25") {
		t.Fatalf("stale EPSS: %s", got)
	}
	// KEV ages from its last check, not its release: CISA can go two
	// weeks without a release.
	if e.Status(KEV).Stale(day0.Add(6*24*time.Hour)) || !e.Status(KEV).Stale(day0.Add(8*24*time.Hour)) {
		t.Fatal("KEV staleness")
	}
	var none *Enrichment
	if got := none.Status(EPSS).Describe(day0); got != "EPSS scores: never loaded" {
		t.Fatal(got)
	}
}

func TestMemoMatchesLookup(t *testing.T) {
	e := fixtureEnrichment(t, day0)
	memo := e.Memo()
	for range 2 { // the second round is served from the cache
		for _, id := range []string{feedstest.RapidReset, feedstest.Log4Shell, feedstest.NotListed, "cve-2023-44487", "GHSA-xvch-5gv4-984h", ""} {
			if got, want := memo.Lookup(id), e.Lookup(id); got != want {
				t.Fatalf("%s: memo %+v, lookup %+v", id, got, want)
			}
		}
	}
	if m := (*Enrichment)(nil).Memo().Lookup(feedstest.RapidReset); m.InKEV() || m.HasEPSS {
		t.Fatal("a nil enrichment's memo found something")
	}
}
