package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/fleetscan/fleetscan/internal/feeds"
	"github.com/fleetscan/fleetscan/internal/goldentest"
	"github.com/fleetscan/fleetscan/internal/sla"
	"github.com/fleetscan/fleetscan/internal/vex"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

func render(t *testing.T, r *Report, write func(io.Writer, *Report) error) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := write(&buf, r); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestGoldenOutputs(t *testing.T) {
	t.Parallel()
	r := Build(fixture(t))
	for _, tt := range []struct {
		name  string
		write func(io.Writer, *Report) error
	}{
		{"report.csv", WriteCSV},
		{"report.json", WriteJSON},
		{"report.md", WriteMarkdown},
		{"tickets.csv", WriteTicketsCSV},
		{"tickets.json", WriteTicketsJSON},
		{"console.txt", WriteConsole},
	} {
		t.Run(tt.name, func(t *testing.T) { goldentest.Assert(t, tt.name, render(t, r, tt.write)) })
	}
}

func TestJSONMatchesSchema(t *testing.T) {
	t.Parallel()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddResource("report.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	schema, err := c.Compile("report.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	in := fixture(t)
	for name, r := range map[string]*Report{
		"fixture": Build(in),
		"empty":   Build(Input{AsOf: in.AsOf, GeneratedAt: in.GeneratedAt, Scope: Scope{Mode: "run", RunID: "r1"}, Policy: sla.DefaultPolicy()}),
	} {
		t.Run(name, func(t *testing.T) {
			inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(render(t, r, WriteJSON)))
			if err != nil {
				t.Fatalf("report.json is not JSON: %v", err)
			}
			if err := schema.Validate(inst); err != nil {
				t.Fatalf("report.json does not match report.schema.json: %v", err)
			}
		})
	}
	// The schema must reject drift: an unknown field in a finding.
	bad, err := jsonschema.UnmarshalJSON(strings.NewReader(strings.Replace(string(render(t, Build(in), WriteJSON)),
		`"vulnerabilityId":`, `"surprise":1,"vulnerabilityId":`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if schema.Validate(bad) == nil {
		t.Fatal("schema accepted an unknown finding field")
	}
}

// TestBuildSemantics checks the SLA arithmetic, acceptance status, change
// classification and order row by row.
func TestBuildSemantics(t *testing.T) {
	t.Parallel()
	r := Build(fixture(t))
	type row struct {
		id        string
		firstSeen string
		deadline  string
		days      int
		breached  bool
		status    sla.Status
		change    sla.Change
		rule      string
		dlRule    string
		kev       bool
	}
	// Breached first; within that KEV first, then earliest deadline, higher
	// EPSS, severity. CVE-2024-0003 (MEDIUM, 90 days) is above the EPSS
	// percentile: 14 days. CVE-2024-0002 was listed in KEV after it was
	// first seen: CISA's due date (end of 2025-03-26) beats its 30 days.
	// CVE-2024-0005 is above the EPSS percentile too, but its 3-day
	// override is earlier than the rule's 14 days: the rule is ignored.
	want := []row{
		{"CVE-2023-9999", "2024-06-01", "2024-11-28", -102, true, sla.StatusAccepted, sla.ChangeStillOpen, "default", "severity", false},
		{"CVE-2024-0004", "2025-01-01", "2025-01-08", -61, true, sla.StatusAcceptanceExpired, sla.ChangeStillOpen, "default", "severity", false},
		{"CVE-2024-0003", "2025-01-15", "2025-01-29", -40, true, sla.StatusOpen, sla.ChangeStillOpen, "default", "epss", false},
		{"CVE-2024-0001", "2025-02-20", "2025-02-27", -11, true, sla.StatusOpen, sla.ChangeStillOpen, "default", "severity", false},
		{"CVE-2024-0002", "2025-03-01", "2025-03-26", 16, false, sla.StatusOpen, sla.ChangeStillOpen, "default", "kev", true},
		{"CVE-2024-0005", "2025-03-10", "2025-03-13", 3, false, sla.StatusAcceptanceExpired, sla.ChangeNew, "payments", "payments", false},
		{"GHSA-4v7x-pqxf-cx7m", "2025-03-05", "2025-04-04", 25, false, sla.StatusNotAffected, sla.ChangeReopened, "default", "severity", false},
	}
	if r.Findings.Len() != len(want) {
		t.Fatalf("%d findings, want %d", r.Findings.Len(), len(want))
	}
	for i, w := range want {
		f := r.Findings.At(i)
		got := row{f.ID, date(f.FirstSeen), date(f.Deadline), f.DaysRemaining, f.Breached, f.Status, f.Change, f.SLARule,
			f.DeadlineRule, f.Exploit.InKEV()}
		if got != w {
			t.Errorf("row %d = %+v\n        want %+v", i, got, w)
		}
	}
	if f := r.Findings.At(1); f.Image() != "docker.io/library/nginx:1.25" || len(f.Img.Clusters) != 2 || len(f.Img.Repositories) != 2 {
		t.Errorf("nginx row: image %q clusters %v repositories %v", f.Image(), f.Img.Clusters, f.Img.Repositories)
	}
	s := r.Summary
	if s.BreachedUnaccepted != 3 || s.Breached != 4 || s.Accepted != 1 || s.AcceptanceExpired != 2 || s.NotAffected != 1 ||
		s.KEV != 1 || s.KEVBreached != 0 || s.EOLImages != 1 || s.FeedsDegraded != 0 {
		t.Errorf("summary %+v", s)
	}
	if s.Images != 4 || s.ImagesScanned != 2 || s.ImagesFailed != 1 || s.ImagesNotScanned != 1 || s.UnresolvedContainers != 1 || s.ClustersUnreachable != 1 {
		t.Errorf("coverage %+v", s)
	}
	if r.Complete {
		t.Error("report with failures marked complete")
	}
	if d := r.Diff; d.New != 1 || d.Reopened != 1 || d.StillOpen != 10 || d.Fixed != 1 {
		t.Errorf("diff %+v", d)
	}
	// CVE-2024-0004 expired on its date; CVE-2024-0005's expire_on_fix
	// acceptance ended because a fixed version exists.
	if e := r.ExpiredAcceptances; len(e) != 2 || e[0].Vulnerability != "CVE-2024-0004" || e[0].FixAvailable ||
		e[1].Vulnerability != "CVE-2024-0005" || !e[1].FixAvailable {
		t.Errorf("expired acceptances %+v", r.ExpiredAcceptances)
	}
	// The staging-scoped acceptance of CVE-2024-0002 does not cover an image
	// that also runs in prod-eu.
	for _, f := range r.Findings.Slice() {
		if f.ID == "CVE-2024-0002" && (f.Status != sla.StatusOpen || f.Acceptance != nil) {
			t.Errorf("CVE-2024-0002: status %s, acceptance %+v: a scoped acceptance covered workloads outside its scope", f.Status, f.Acceptance)
		}
		if f.ID == "CVE-2024-0003" && (f.VEXStatus() != "under_investigation" || f.Status != sla.StatusOpen) {
			t.Errorf("CVE-2024-0003: vex %q status %s, want under_investigation and open", f.VEXStatus(), f.Status)
		}
	}
}

func TestFilters(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		filter Filter
		want   []string
	}{
		{"severity CRITICAL,HIGH", Filter{Severities: []string{"CRITICAL", "HIGH"}},
			[]string{"CVE-2024-0004", "CVE-2024-0001", "CVE-2024-0002", "CVE-2024-0005", "GHSA-4v7x-pqxf-cx7m"}},
		{"ignore unfixed drops status affected and no-status without fix", Filter{IgnoreUnfixed: true},
			[]string{"CVE-2023-9999", "CVE-2024-0004", "CVE-2024-0001", "CVE-2024-0002", "CVE-2024-0005", "GHSA-4v7x-pqxf-cx7m"}},
		{"LOW only", Filter{Severities: []string{"LOW"}}, []string{"CVE-2023-9999"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := fixture(t)
			in.Filter = tt.filter
			r := Build(in)
			var got []string
			for _, f := range r.Findings.Slice() {
				got = append(got, f.ID)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("got %v\nwant %v", got, tt.want)
			}
			// Summary and gate follow the filter.
			if r.Summary.Findings != len(tt.want) {
				t.Fatalf("summary findings %d", r.Summary.Findings)
			}
		})
	}
	// Without a status, ignore-unfixed keeps a finding that has a fixed version.
	f := Filter{IgnoreUnfixed: true}
	if !f.Keep(&Vuln{FixedVersion: "1.2"}) || f.Keep(&Vuln{}) || f.Keep(&Vuln{FixStatus: "will_not_fix", FixedVersion: "1.2"}) {
		t.Fatal("ignore-unfixed semantics")
	}
}

func TestNoLedgerStartsClockAtAsOf(t *testing.T) {
	t.Parallel()
	in := fixture(t)
	in.Ledger = nil
	r := Build(in)
	for _, f := range r.Findings.Slice() {
		if !f.FirstSeen.Equal(in.AsOf) || f.Change != sla.ChangeNew || f.Breached {
			t.Fatalf("%s: first seen %s change %s breached %v", f.ID, f.FirstSeen, f.Change, f.Breached)
		}
	}
}

func TestSightingsCoverEveryRepository(t *testing.T) {
	t.Parallel()
	in := fixture(t)
	s := slices.Collect(Sightings(in.Images))
	// nginx: 5 vulns × 2 repositories; api: 2 vulns × 1.
	if len(s) != 12 {
		t.Fatalf("%d sightings", len(s))
	}
	for _, x := range s {
		if x.Repository == "ghcr.io/acme/api" && (len(x.Clusters) != 1 || x.Clusters[0] != "prod-eu") {
			t.Fatalf("api sighting clusters %v", x.Clusters)
		}
	}
}

func TestTickets(t *testing.T) {
	t.Parallel()
	r := Build(fixture(t))
	got := map[string]Ticket{}
	tks := r.Tickets.Slice()
	for _, tk := range tks {
		got[tk.Repository+" "+tk.Package] = tk
	}
	openssl := got["docker.io/library/nginx openssl"]
	if openssl.FixedVersion != "3.1.5-r0" || strings.Join(openssl.Fixes, ",") != "CVE-2024-0001,CVE-2024-0002" ||
		openssl.Severity != "CRITICAL" || !openssl.Breached || date(openssl.Deadline) != "2025-02-27" {
		t.Errorf("openssl ticket %+v", openssl)
	}
	if !openssl.KEV || strings.Join(openssl.KEVVulnerabilities, ",") != "CVE-2024-0002" {
		t.Errorf("openssl ticket not marked KEV: %+v", openssl)
	}
	if want := "openssl 3.1.3-r0 → 3.1.5-r0 fixes CVE-2024-0001, CVE-2024-0002 in docker.io/library/nginx [KEV: CVE-2024-0002]"; openssl.Summary != want {
		t.Errorf("summary %q\nwant    %q", openssl.Summary, want)
	}
	if z := got["docker.io/library/nginx zlib"]; z.FixedVersion != "" || strings.Join(z.Unfixed, ",") != "CVE-2024-0003" ||
		!strings.Contains(z.Summary, "no fix available yet") {
		t.Errorf("zlib ticket %+v", z)
	}
	if std := got["ghcr.io/acme/api stdlib"]; std.FixedVersion != "1.21.9" {
		t.Errorf("stdlib target %q, want the same release line 1.21.9", std.FixedVersion)
	}
	if _, ok := got["docker.io/library/nginx busybox"]; ok {
		t.Error("accepted finding produced a ticket")
	}
	if _, ok := got["docker.io/library/nginx curl"]; !ok {
		t.Error("expired acceptance must still produce a ticket")
	}
	// Breached first, then KEV-listed: the breached KEV openssl ticket
	// leads the breached curl one (whose deadline is earlier).
	if tks[0].Package != "openssl" || !tks[0].Breached || tks[1].Package != "curl" {
		t.Errorf("first tickets %+v, %+v, want the breached KEV openssl one, then curl", tks[0], tks[1])
	}
	if len(tks[0].ID) != 13 || tks[0].ID != Build(fixture(t)).Tickets.At(0).ID {
		t.Errorf("ticket id %q not stable", tks[0].ID)
	}
}

func TestCompareVersions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b string
		want int
	}{
		{"3.1.4-r0", "3.1.3-r0", 1},
		{"3.1.10", "3.1.9", 1},
		{"1.0", "1.0", 0},
		{"v1.21.9", "1.21.9", 0},
		{"1.0~rc1", "1.0", -1},
		{"1.0", "1.0-r1", -1},
		{"2.36-9+deb12u4", "2.36-9+deb12u10", -1},
		{"1:2.0", "1:1.9", 1},
		{"1.2.3a", "1.2.3b", -1},
		{"0010", "9", 1},
	}
	for _, tt := range tests {
		if got := CompareVersions(tt.a, tt.b); got != tt.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := CompareVersions(tt.b, tt.a); got != -tt.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tt.b, tt.a, got, -tt.want)
		}
	}
	if got := fixTarget("1.22.0", "1.21.9, 1.22.2"); got != "1.22.2" {
		t.Errorf("fixTarget = %q", got)
	}
	if got := fixTarget("2.0", "1.5"); got != "1.5" {
		t.Errorf("fixTarget with nothing above installed = %q", got)
	}
}

func TestParseFormats(t *testing.T) {
	t.Parallel()
	got, err := ParseFormats([]string{"csv,JSON", "markdown", "csv"})
	if err != nil || len(got) != 3 || got[2] != FormatMarkdown {
		t.Fatalf("got %v, %v", got, err)
	}
	if _, err := ParseFormats([]string{"pdf"}); err == nil || !strings.Contains(err.Error(), `"pdf"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestWriteFiles(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "out")
	files, err := WriteFiles(dir, Build(fixture(t)), Formats)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
		st, err := os.Stat(f.Path)
		if err != nil || st.Size() != f.Size || f.Size == 0 {
			t.Errorf("%s: stat %v size %d", f.Name, err, f.Size)
		}
	}
	if strings.Join(names, ",") != "report.csv,report.json,report.html,report.md,tickets.csv,tickets.json" {
		t.Fatalf("files %v", names)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*"))
	if len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	// An unwritable directory is an error naming it.
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteFiles(filepath.Join(blocker, "sub"), Build(fixture(t)), Formats); err == nil || !strings.Contains(err.Error(), blocker) {
		t.Fatalf("err = %v", err)
	}
}

func TestFleetUsage(t *testing.T) {
	t.Parallel()
	f := NewFleet()
	k := contract.ImageKey{Digest: digest('e'), Platform: amd64}
	f.Add("c1", entry("ns", "", "", "b.example/x:1", k.Digest))
	f.Add("c1", entry("ns", "Deployment", "d", "a.example/x:1", k.Digest))
	unresolved := entry("ns", "Deployment", "d", "z.example/x:1", "")
	unresolved.Resolution = contract.Unresolved
	f.Add("c2", unresolved)
	img := f.Image(k, "ignored")
	// Tie on count: the lexically smallest reference wins.
	if img.Reference != "a.example/x:1" || len(img.Repositories) != 2 || strings.Join(img.Clusters, ",") != "c1" {
		t.Fatalf("image %+v", img)
	}
	if strings.Join(img.Workloads, ",") != "c1/ns/Deployment/d,c1/ns/Pod/-0" {
		t.Fatalf("workloads %v", img.Workloads)
	}
	other := f.Image(contract.ImageKey{Digest: digest('f'), Platform: amd64}, "reg.example/y@"+digest('f'))
	if other.Reference != "reg.example/y@"+digest('f') || other.Repositories[0] != "reg.example/y" {
		t.Fatalf("fallback image %+v", other)
	}
}

// TestAppendJSONStringMatchesEncodingJSON keeps the hand-written encoder
// byte-compatible with encoding/json.
func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "plain", `quote " backslash \ slash /`, "ctl \x00\x01\x1f\t\n\r", "<b>&amp;</b>",
		"ünïcødé ✓ 😀", "line\u2028para\u2029", "bad \xff\xfe utf8", "</script>"} {
		for _, html := range []bool{false, true} {
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(html)
			if err := enc.Encode(s); err != nil {
				t.Fatal(err)
			}
			want := strings.TrimSuffix(buf.String(), "\n")
			got := string(appendJSONString(nil, s, html))
			if utf8.ValidString(s) {
				if got != want {
					t.Errorf("appendJSONString(%q, html=%v) = %s, want %s", s, html, got, want)
				}
				continue
			}
			// Invalid UTF-8 becomes U+FFFD; encoding/json escapes it or not
			// depending on GOEXPERIMENT=jsonv2, so compare decoded values.
			var g, w string
			if err := json.Unmarshal([]byte(got), &g); err != nil {
				t.Fatalf("%s: %v", got, err)
			}
			if err := json.Unmarshal([]byte(want), &w); err != nil {
				t.Fatal(err)
			}
			if g != w {
				t.Errorf("appendJSONString(%q) decodes to %q, want %q", s, g, w)
			}
		}
	}
}

// TestRowsRankAndRenderLikeFindings: rows kept as compact records rank as
// compareFindings ranks the findings they came from, and render back to
// exactly those findings (times, rules, statuses, acceptances, VEX
// statements and exploit data included).
func TestRowsRankAndRenderLikeFindings(t *testing.T) {
	t.Parallel()
	asOf := ts("2025-03-01")
	images := []*Image{{Reference: "r", Platform: "linux/amd64"}, {Reference: "q", Platform: "linux/arm64"}}
	acc := &sla.Acceptance{Vulnerability: "CVE-001"}
	stmt := &vex.Statement{Status: vex.NotAffected, Source: "doc.json"}
	kev := &feeds.KEVEntry{}
	var rows []Finding
	for i := range 60 {
		v := &Vuln{ID: fmt.Sprintf("CVE-%03d", (i*7)%50), Severity: sla.Severities[i%5], PkgName: fmt.Sprint("p", i%3)}
		f := Finding{Vuln: v, Img: images[i%2], Breached: i%3 == 0, FirstSeen: asOf.AddDate(0, 0, -i),
			Deadline: ts("2025-01-01").AddDate(0, 0, i%4).Add(time.Duration(i) * time.Second), SLADays: i % 7,
			SLARule: []string{"default", "prod"}[i%2], DeadlineRule: []string{"severity", "kev", "epss"}[i%3],
			Status: []sla.Status{sla.StatusOpen, sla.StatusAccepted}[i%2], Change: sla.ChangeNew}
		f.DaysRemaining = daysRemaining(f.Deadline, asOf)
		if i%5 == 0 {
			f.Acceptance = acc
		}
		if i%7 == 0 {
			f.VEX = stmt
		}
		if i%4 == 0 {
			f.Exploit.KEV = kev
		}
		if i%6 == 0 {
			f.Exploit.EPSS, f.Exploit.HasEPSS = feeds.EPSSScore{Score: float64(i) / 100, Percentile: 0.5}, true
		}
		rows = append(rows, f)
	}
	want := slices.Clone(rows)
	slices.SortStableFunc(want, func(a, b Finding) int { return compareFindings(&a, &b) })
	tab := newRowTables(asOf, images)
	recs := make([]rowRec, len(rows))
	for i := range rows {
		recs[i] = tab.record(&rows[i])
	}
	tab.sortRows(recs)
	got := Rows{recs: recs, tab: tab}
	if got.Len() != len(want) {
		t.Fatalf("%d rows, want %d", got.Len(), len(want))
	}
	for i, g := range got.Slice() {
		if !reflect.DeepEqual(g, want[i]) {
			t.Fatalf("row %d renders as\n%+v\nwant\n%+v", i, g, want[i])
		}
	}
}

// TestEOLRuleAndFeedStates: with eol.days the end-of-life image's rows get
// at most first seen + days (the api image, whose OS is not EOL, keeps its
// deadlines); without feeds every row is unlisted and the report says the
// feeds were never loaded, without being incomplete for it; a stale feed
// makes it incomplete.
func TestEOLRuleAndFeedStates(t *testing.T) {
	t.Parallel()
	in := fixture(t)
	in.Policy.EOL = sla.EOLRule{Enabled: true, Days: 5}
	r := Build(in)
	for _, f := range r.Findings.Slice() {
		switch {
		case f.ID == "CVE-2024-0002": // first seen 2025-03-01: 2025-03-06 beats KEV's 2025-03-26
			if f.DeadlineRule != sla.RuleEOL || date(f.Deadline) != "2025-03-06" || !f.Breached {
				t.Errorf("%s: rule %s deadline %s breached %v", f.ID, f.DeadlineRule, date(f.Deadline), f.Breached)
			}
		case !f.Img.EOL() && f.DeadlineRule == sla.RuleEOL:
			t.Errorf("%s: eol rule on an image that is not end-of-life", f.ID)
		}
	}
	if r.Summary.EOLImages != 1 {
		t.Errorf("EOL images %d", r.Summary.EOLImages)
	}

	in = fixture(t)
	in.Enrichment = nil
	r = Build(in)
	if r.Summary.KEV != 0 || r.Summary.FeedsDegraded != 0 || len(r.Feeds) != 2 {
		t.Fatalf("without feeds: summary %+v feeds %+v", r.Summary, r.Feeds)
	}
	for _, fs := range r.Feeds {
		if fs.State != "never loaded" || fs.Degraded() {
			t.Errorf("feed %+v", fs)
		}
	}
	for _, f := range r.Findings.Slice() {
		if f.Exploit.InKEV() || f.Exploit.HasEPSS || f.DeadlineRule == sla.RuleKEV || f.DeadlineRule == sla.RuleEPSS {
			t.Errorf("%s enriched without feeds", f.ID)
		}
	}

	in = fixture(t)
	in.Enrichment = fixtureEnrichment(t, in.AsOf.Add(-8*24*time.Hour)) // KEV last confirmed 8 days ago
	r = Build(in)
	if r.Summary.FeedsDegraded != 1 || r.Feeds[0].State != "stale" || r.Feeds[1].State != "fresh" {
		t.Fatalf("stale KEV: summary %+v feeds %+v", r.Summary, r.Feeds)
	}
	if md := string(render(t, r, WriteMarkdown)); !strings.Contains(md, "): stale (8d old, more than 7d)") {
		t.Errorf("Markdown does not say the KEV catalogue is stale:\n%s", md)
	}
}
