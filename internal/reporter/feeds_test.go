package reporter

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/fleetscan/fleetscan/internal/feeds"
	"github.com/fleetscan/fleetscan/internal/feeds/feedstest"
	"github.com/fleetscan/fleetscan/pkg/contract"
	"github.com/fleetscan/fleetscan/pkg/reportjson"
)

// publishFeeds does what `worker db-update --publish-feeds` does: it
// fetches the fixture feeds (CISA's KEV format, FIRST's gzipped EPSS CSV)
// into a cache directory as of fetchedAt and publishes them to the
// fleet's JetStream object store, where the reporter reads them.
func (f *fleetEnv) publishFeeds(fetchedAt time.Time) {
	f.t.Helper()
	kevPath, epssPath := feedstest.WriteFiles(f.t, f.t.TempDir())
	cfg := feeds.Defaults()
	cfg.KEVURL, cfg.EPSSURL = kevPath, epssPath
	cache := f.t.TempDir()
	u := &feeds.Updater{Config: cfg, CacheDir: cache, Log: zaptest.NewLogger(f.t), Now: func() time.Time { return fetchedAt }}
	res, err := u.Update(f.ctx)
	if err == nil {
		err = res.Err()
	}
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := feeds.Publish(f.ctx, f.env.Res.Feeds, feeds.DirSource(cache), zaptest.NewLogger(f.t)); err != nil {
		f.t.Fatal(err)
	}
}

// feedRun reports as the reporter command does (NewDeps: the feeds come
// from the JetStream object store) and returns the outcome and console.
func (f *fleetEnv) feedRun(cfg Config) (Outcome, string) {
	f.t.Helper()
	var out bytes.Buffer
	d := NewDeps(f.st, f.env.Res, zaptest.NewLogger(f.t), &out)
	o, err := Run(f.ctx, cfg, d)
	if err != nil {
		f.t.Fatal(err)
	}
	return o, out.String()
}

func writePolicy(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sla.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// fetchedAt is when the fixture feeds were fetched (the day after the
// KEV excerpt's release): fresh for any --now before 2025-09-01.
var fetchedAt = time.Date(2025, 8, 26, 6, 0, 0, 0, time.UTC)

// TestExploitAwareDeadlines runs the reporter end to end with --now over
// the fixture feeds published to JetStream: each case first records the
// first sighting, then reports at later days.
func TestExploitAwareDeadlines(t *testing.T) {
	type step struct {
		now                               string
		deadline, rule, breached, remains string
		exit                              int
	}
	tests := []struct {
		name   string
		policy string
		v      vuln
		steps  []step
	}{
		{
			// First seen 2023-10-01, MEDIUM (90 days); CISA lists it on
			// 2023-10-10, due 2023-10-31: from the listing day the due date
			// is the deadline, and it is breached the day after.
			name: "KEV added after first seen moves the deadline earlier from that day",
			v:    vuln{feedstest.RapidReset, "MEDIUM", "golang.org/x/net", "0.14.0", "0.17.0"},
			steps: []step{
				{"2023-10-01T06:00:00Z", "2023-12-30", "severity", "False", "90", 0},
				{"2023-10-09T06:00:00Z", "2023-12-30", "severity", "False", "82", 0},
				{"2023-10-10T06:00:00Z", "2023-10-31", "kev", "False", "21", 0},
				{"2023-11-01T06:00:00Z", "2023-10-31", "kev", "True", "-1", ExitBreached},
			},
		},
		{
			// With kev.days the deadline is max(first seen, listed) + days.
			name:   "KEV days count from the listing when it is later than first seen",
			policy: "kev: {enabled: true, days: 3}\n",
			v:      vuln{feedstest.RapidReset, "MEDIUM", "golang.org/x/net", "0.14.0", "0.17.0"},
			steps: []step{
				{"2023-10-01T06:00:00Z", "2023-12-30", "severity", "False", "90", 0},
				{"2023-10-10T06:00:00Z", "2023-10-13", "kev", "False", "2", 0},
				{"2023-10-14T06:00:00Z", "2023-10-13", "kev", "True", "-2", ExitBreached},
			},
		},
		{
			// First seen 2024-01-15, after the due date 2023-12-12: breached
			// at once, as BOD 22-01 means.
			name: "KEV due date already past at first sight is breached at once",
			v:    vuln{feedstest.LooneyTunables, "HIGH", "glibc", "2.36-9", "2.36-9+deb12u3"},
			steps: []step{
				{"2024-01-15T06:00:00Z", "2023-12-12", "kev", "True", "-34", ExitBreached},
			},
		},
		{
			// Percentile exactly at the threshold: the rule applies.
			name:   "EPSS at the threshold gets the rule's days",
			policy: "epss: {percentile: 0.95, days: 10}\n",
			v:      vuln{feedstest.AtThreshold, "LOW", "golang.org/x/crypto", "0.30.0", "0.31.0"},
			steps: []step{
				{"2024-02-01T06:00:00Z", "2024-02-11", "epss", "False", "10", 0},
				{"2024-02-12T06:00:00Z", "2024-02-11", "epss", "True", "-1", ExitBreached},
			},
		},
		{
			name:   "EPSS below the threshold keeps the severity deadline",
			policy: "epss: {percentile: 0.95, days: 10}\n",
			v:      vuln{feedstest.NotListed, "LOW", "openssl", "3.0.11-1", "3.0.12-1"},
			steps: []step{
				{"2024-02-01T06:00:00Z", "2024-07-30", "severity", "False", "180", 0},
			},
		},
		{
			// CRITICAL first seen 2023-10-20 (7 days: 2023-10-27); the KEV
			// due date (2023-10-31), kev.days and epss.days would all be
			// later: ignored.
			name:   "a rule that would move the deadline later is ignored",
			policy: "kev: {enabled: true, days: 30}\nepss: {percentile: 0.5, days: 30}\n",
			v:      vuln{feedstest.RapidReset, "CRITICAL", "golang.org/x/net", "0.14.0", "0.17.0"},
			steps: []step{
				{"2023-10-20T06:00:00Z", "2023-10-27", "severity", "False", "7", 0},
				{"2023-10-28T06:00:00Z", "2023-10-27", "severity", "True", "-1", ExitBreached},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFleet(t)
			f.publishFeeds(fetchedAt)
			wall := time.Now().UTC()
			f.dispatch("run-1", "c1", wall.Add(-time.Minute), map[string][]container{"prod": {{ns: "web", kind: "Deployment",
				name: "api", image: "ghcr.io/acme/api:v1", key: key('a')}}}, nil)
			f.scanned(key('a'), "c1", wall, tt.v)
			for _, s := range tt.steps {
				cfg := f.config(s.now)
				if tt.policy != "" {
					cfg.SLAConfig = writePolicy(t, tt.policy)
				}
				o, console := f.feedRun(cfg)
				row := rowFor(t, csvRows(t, cfg.OutDir), tt.v.id)
				got := step{s.now, row["sla_deadline"], row["sla_rule"], row["sla_breached"], row["days_remaining"], o.ExitCode()}
				if got != s {
					t.Errorf("as of %s:\n got %+v\nwant %+v\nconsole:\n%s", s.now, got, s, console)
				}
				if row["epss"] == "" || row["epss_percentile"] == "" || row["os_eol"] != "false" {
					t.Errorf("as of %s: exploit columns %v", s.now, row)
				}
				if kev := tt.v.id == feedstest.RapidReset || tt.v.id == feedstest.LooneyTunables; row["kev"] != map[bool]string{true: "true", false: "false"}[kev] {
					t.Errorf("as of %s: kev column %q", s.now, row["kev"])
				}
			}
		})
	}
}

// TestFeedColumnsAndRanking: the KEV row is marked with its due date and
// ransomware use, the EOL image is flagged, and among breached rows the
// KEV one leads a CRITICAL with an earlier deadline.
func TestFeedColumnsAndRanking(t *testing.T) {
	f := newFleet(t)
	f.publishFeeds(fetchedAt)
	wall := time.Now().UTC()
	f.dispatch("run-1", "c1", wall.Add(-time.Minute), map[string][]container{"prod": {
		{ns: "web", kind: "Deployment", name: "api", image: "ghcr.io/acme/api:v1", key: key('a')},
		{ns: "web", kind: "Deployment", name: "legacy", image: "docker.io/library/debian:9", key: key('b')},
	}}, nil)
	f.scanned(key('a'), "c1", wall, vuln{feedstest.RapidReset, "MEDIUM", "golang.org/x/net", "0.14.0", "0.17.0"})
	// An end-of-life Debian 9 image with a CRITICAL breached before the KEV row.
	r := contract.ScanResult{RunID: "run", Cycle: "c1", ImageKey: key('b'), Reference: "docker.io/library/debian:9",
		Status: contract.StatusScanned, CompletedAt: wall, Scanner: contract.ScannerInfo{Name: "trivy", Version: "0.74.0"},
		DB: contract.DBInfo{Version: 2, UpdatedAt: wall.Add(-time.Hour)}, OS: &contract.OSInfo{Family: "debian", Name: "9.13", EOSL: true},
		Findings: []contract.Finding{{VulnerabilityID: feedstest.NotListed, Severity: "CRITICAL", PkgName: "openssl", PkgVersion: "1.1.0l-1~deb9u6"}}}
	if err := f.st.PutResult(f.ctx, r); err != nil {
		t.Fatal(err)
	}
	f.feedRun(f.config("2023-10-01T06:00:00Z")) // first seen
	cfg := f.config("2023-11-15T06:00:00Z")
	o, console := f.feedRun(cfg)
	rows := csvRows(t, cfg.OutDir)
	if len(rows) != 2 || rows[0]["cve_id"] != feedstest.RapidReset || rows[1]["cve_id"] != feedstest.NotListed {
		t.Fatalf("order %v, want the breached KEV row before the breached CRITICAL with the earlier deadline", rows)
	}
	kev, eol := rows[0], rows[1]
	if kev["kev"] != "true" || kev["kev_due_date"] != "2023-10-31" || kev["ransomware"] != "false" || kev["epss"] != "0.9442" ||
		kev["epss_percentile"] != "0.9995" || kev["sla_rule"] != "kev" || kev["os_eol"] != "false" {
		t.Errorf("KEV row %v", kev)
	}
	if eol["kev"] != "false" || eol["kev_due_date"] != "" || eol["sla_rule"] != "severity" || eol["os_eol"] != "true" || eol["sla_deadline"] != "2023-10-08" {
		t.Errorf("EOL row %v", eol)
	}
	s := o.Report.Summary
	if s.KEV != 1 || s.KEVBreached != 1 || s.EOLImages != 1 || s.FeedsDegraded != 0 || o.ExitCode() != ExitBreached {
		t.Errorf("summary %+v, exit %d", s, o.ExitCode())
	}
	for _, want := range []string{"Exploits: 1 KEV findings (1 breached) · 1 end-of-life OS images",
		"KEV catalogue 2025.08.25 (3 CVEs, released 2025-08-25, fetched 2025-08-26 from ",
		"EPSS scores v2025.03.14 (40 CVEs, scores of 2025-08-25"} {
		if !strings.Contains(console, want) {
			t.Errorf("console lacks %q:\n%s", want, console)
		}
	}
	doc := decodeReport(t, cfg.OutDir)
	if k := doc.Findings[0]; !k.KEV || k.KEVDueDate.Format(time.DateOnly) != "2023-10-31" || k.DeadlineRule != "kev" ||
		k.EPSS == nil || *k.EPSS != 0.9442 || doc.Tickets[0].KEVVulnerabilities[0] != feedstest.RapidReset {
		t.Errorf("JSON KEV finding %+v, ticket %+v", k, doc.Tickets[0])
	}
}

func decodeReport(t *testing.T, dir string) *reportjson.Report {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := reportjson.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// TestFeedStates: a stale feed is reported as such and sets exit bit 2; a
// feed never loaded is stated in every format and is not an error.
func TestFeedStates(t *testing.T) {
	low := vuln{feedstest.NotListed, "LOW", "openssl", "3.0.11-1", "3.0.12-1"}
	tests := []struct {
		name    string
		publish bool
		now     string
		exit    int
		state   string
		console string
	}{
		// 2025-09-10: the EPSS scores of 2025-08-25 and the KEV catalogue
		// last confirmed 2025-08-26 are older than the default 7 days.
		{"stale feeds make the report incomplete", true, "2025-09-10T06:00:00Z", ExitIncomplete, "stale",
			"EPSS scores v2025.03.14 (40 CVEs, scores of 2025-08-25, fetched 2025-08-26"},
		{"fresh feeds", true, "2025-08-27T06:00:00Z", ExitOK, "fresh", "): fresh"},
		{"feeds never published are stated, not an error", false, "2025-09-10T06:00:00Z", ExitOK, "never loaded",
			"Feed:     KEV catalogue: never loaded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFleet(t)
			if tt.publish {
				f.publishFeeds(fetchedAt)
			}
			wall := time.Now().UTC()
			f.dispatch("run-1", "c1", wall.Add(-time.Minute), map[string][]container{"prod": {{ns: "web", kind: "Deployment",
				name: "api", image: "ghcr.io/acme/api:v1", key: key('a')}}}, nil)
			f.scanned(key('a'), "c1", wall, low)
			cfg := f.config(tt.now)
			o, console := f.feedRun(cfg)
			if o.ExitCode() != tt.exit {
				t.Fatalf("exit %d, want %d; console:\n%s", o.ExitCode(), tt.exit, console)
			}
			if !strings.Contains(console, tt.console) {
				t.Errorf("console lacks %q:\n%s", tt.console, console)
			}
			if tt.exit == ExitIncomplete && !strings.Contains(console, "the EPSS scores is stale") {
				t.Errorf("exit status line does not say why:\n%s", console)
			}
			doc := decodeReport(t, cfg.OutDir)
			if len(doc.Feeds) != 2 || doc.Feeds[0].State != tt.state || doc.Feeds[1].State != tt.state || doc.Complete != (tt.exit == ExitOK) {
				t.Errorf("report.json feeds %+v complete %v", doc.Feeds, doc.Complete)
			}
			for _, name := range []string{"report.md", "report.html"} {
				data, err := os.ReadFile(filepath.Join(cfg.OutDir, name))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Contains(data, []byte(": "+tt.state)) {
					t.Errorf("%s does not state the feeds are %s", name, tt.state)
				}
			}
			raw, _ := os.ReadFile(filepath.Join(cfg.OutDir, "report.json"))
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil || m["schemaVersion"] != reportjson.SchemaVersion {
				t.Errorf("schemaVersion %v (%v)", m["schemaVersion"], err)
			}
		})
	}
}
