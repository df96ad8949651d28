package metrics

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/fleetscan/fleetscan/internal/feeds"
	"github.com/fleetscan/fleetscan/internal/goldentest"
	"github.com/fleetscan/fleetscan/internal/report"
	"github.com/fleetscan/fleetscan/internal/report/sample"
	"github.com/fleetscan/fleetscan/internal/sla"
)

// kevSample marks CVE-2024-0001 as known exploited.
func kevSample(f *report.Finding) bool { return f.ID == "CVE-2024-0001" }

func writeSample(t *testing.T, in Input) (string, map[string]*dto.MetricFamily) {
	t.Helper()
	reg, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), FileName)
	if err := Write(path, reg); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fams, err := Families(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("metrics.prom does not parse: %v", err)
	}
	return string(data), fams
}

// sum adds the family's samples whose labels match want.
func sum(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	var total float64
	fam := fams[name]
	if fam == nil {
		return -1
	}
next:
	for _, m := range fam.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		total += m.GetGauge().GetValue()
	}
	return total
}

func TestGolden(t *testing.T) {
	text, _ := writeSample(t, Input{Report: sample.Report(), KEV: kevSample, PerCVE: true,
		Feeds: []Feed{{Name: "kev", UpdatedAt: sample.AsOf.Add(-24 * 3600e9)}, {Name: "epss", UpdatedAt: sample.AsOf}}})
	goldentest.Assert(t, "metrics.prom", []byte(text))
}

// TestTotalsEqualReport checks every fleet total against the report's
// summary, and every per-place gauge against an independent count of the
// report's rows.
func TestTotalsEqualReport(t *testing.T) {
	r := kevReport(t)
	_, fams := writeSample(t, Input{Report: r, KEV: func(f *report.Finding) bool { return f.Exploit.InKEV() }, PerCVE: true})
	s := r.Summary
	if s.Findings == 0 || s.BreachedUnaccepted == 0 || s.ImagesFailed == 0 || s.ImagesNotScanned == 0 || s.KEV == 0 {
		t.Fatalf("the sample must exercise every total: %+v", s)
	}
	checks := []struct {
		name   string
		metric string
		labels map[string]string
		want   int
	}{
		{"findings", "fleetscan_report_findings", nil, s.Findings},
		{"per CVE", "fleetscan_vulnerability_findings", nil, s.Findings},
		{"accepted", "fleetscan_report_findings", map[string]string{"status": "accepted"}, s.Accepted},
		{"acceptance expired", "fleetscan_report_findings", map[string]string{"status": "acceptance-expired"}, s.AcceptanceExpired},
		{"breaches", "fleetscan_report_sla_breaches", nil, s.BreachedUnaccepted},
		{"scanned", "fleetscan_report_images", map[string]string{"state": "scanned"}, s.ImagesScanned},
		{"failed", "fleetscan_report_images", map[string]string{"state": "failed"}, s.ImagesFailed},
		{"not scanned", "fleetscan_report_images", map[string]string{"state": "not_scanned"}, s.ImagesNotScanned},
		{"images", "fleetscan_report_images", nil, s.Images},
		{"unresolved", "fleetscan_report_unresolved_containers", nil, s.UnresolvedContainers},
		{"clusters", "fleetscan_report_clusters", nil, s.Clusters},
		{"unreachable", "fleetscan_report_clusters", map[string]string{"status": "unreachable"}, s.ClustersUnreachable},
		{"tickets", "fleetscan_report_tickets", nil, s.Tickets},
		{"new", "fleetscan_report_diff_findings", map[string]string{"change": "new"}, r.Diff.New},
		{"fixed", "fleetscan_report_diff_findings", map[string]string{"change": "fixed"}, r.Diff.Fixed},
		{"complete", "fleetscan_report_complete", nil, 0},
		{"kev", "fleetscan_report_kev_findings", nil, s.KEV},
		{"kev critical", "fleetscan_report_kev_findings", map[string]string{"severity": "CRITICAL"}, countRows(r, func(f *report.Finding) bool { return f.Exploit.InKEV() && f.Severity == "CRITICAL" })},
	}
	for sev, n := range s.BySeverity {
		checks = append(checks, struct {
			name   string
			metric string
			labels map[string]string
			want   int
		}{"severity " + sev, "fleetscan_report_findings", map[string]string{"severity": sev}, n})
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if got := sum(fams, c.metric, c.labels); got != float64(c.want) {
				t.Errorf("%s%v = %v, report says %d", c.metric, c.labels, got, c.want)
			}
		})
	}
}

// kevFeed lists two of the sample's vulnerabilities (one CRITICAL, one
// HIGH) in CISA's KEV format.
const kevFeed = `{"title": "CISA Catalog of Known Exploited Vulnerabilities", "catalogVersion": "2025.03.09",
  "dateReleased": "2025-03-09T17:00:00.000Z", "count": 2, "vulnerabilities": [
  {"cveID": "CVE-2024-0001", "vendorProject": "OpenSSL", "product": "OpenSSL", "vulnerabilityName": "x",
   "dateAdded": "2025-03-05", "shortDescription": "...", "requiredAction": "Update.", "dueDate": "2025-03-26",
   "knownRansomwareCampaignUse": "Unknown", "notes": "", "cwes": []},
  {"cveID": "CVE-2024-0002", "vendorProject": "OpenSSL", "product": "OpenSSL", "vulnerabilityName": "y",
   "dateAdded": "2025-03-05", "shortDescription": "...", "requiredAction": "Update.", "dueDate": "2025-03-26",
   "knownRansomwareCampaignUse": "Known", "notes": "", "cwes": []}]}`

// kevReport is the sample report built with the KEV feed loaded, so its
// summary counts KEV rows.
func kevReport(t *testing.T) *report.Report {
	t.Helper()
	kev, err := feeds.ParseKEV(strings.NewReader(kevFeed))
	if err != nil {
		t.Fatal(err)
	}
	in := sample.Input()
	in.Enrichment = feeds.New(kev, nil, in.AsOf.Add(-time.Hour), feeds.DefaultMaxAge)
	return report.Build(in)
}

func countRows(r *report.Report, keep func(*report.Finding) bool) int {
	n := 0
	for f := range r.Findings.All() {
		if keep(f) {
			n++
		}
	}
	return n
}

// TestVEXNotABreach: a breached finding a VEX statement says is not
// affected counts under status not_affected and never as a breach, in the
// fleet totals and per place.
func TestVEXNotABreach(t *testing.T) {
	base := sample.Report()
	in := sample.Input()
	in.VEX = sample.NotAffected("CVE-2024-0001", "docker.io/library/nginx")
	r := report.Build(in)
	for _, rep := range []*report.Report{base, r} {
		for f := range rep.Findings.All() {
			if f.ID == "CVE-2024-0001" && f.Gating() != (rep == base) {
				t.Fatalf("CVE-2024-0001 gating %v, status %s (VEX applied: %v)", f.Gating(), f.Status, rep == r)
			}
		}
	}
	if r.Summary.NotAffected != 1 || r.Summary.BreachedUnaccepted != base.Summary.BreachedUnaccepted-1 {
		t.Fatalf("summary with VEX %+v, without %+v", r.Summary, base.Summary)
	}
	_, fams := writeSample(t, Input{Report: r})
	rows := r.Findings.Slice()
	scopes := len(rows[slices.IndexFunc(rows, func(f report.Finding) bool { return f.ID == "CVE-2024-0001" })].Img.Scopes)
	for _, c := range []struct {
		metric string
		labels map[string]string
		want   int
	}{
		{"fleetscan_report_sla_breaches", nil, r.Summary.BreachedUnaccepted},
		{"fleetscan_report_findings", map[string]string{"status": "not_affected"}, 1},
		{"fleetscan_report_findings", map[string]string{"status": "fixed"}, 0},
		{"fleetscan_findings", map[string]string{"status": "not_affected", "severity": "CRITICAL"}, scopes},
		// Only CVE-2024-0004 (acceptance expired) is a CRITICAL breach of nginx now.
		{"fleetscan_sla_breaches", map[string]string{"cluster": "prod-eu", "namespace": "web", "severity": "CRITICAL"}, 1},
	} {
		if got := sum(fams, c.metric, c.labels); got != float64(c.want) {
			t.Errorf("%s%v = %v, want %d", c.metric, c.labels, got, c.want)
		}
	}
}

// TestPerPlace counts the rows per (cluster, namespace) and images per
// cluster from the report and compares them with the labelled gauges.
func TestPerPlace(t *testing.T) {
	r := sample.Report()
	_, fams := writeSample(t, Input{Report: r, KEV: kevSample})
	findings, breaches, kev := map[place]int{}, map[place]int{}, map[place]int{}
	for f := range r.Findings.All() {
		for _, sc := range f.Img.Scopes {
			findings[place{sc.Cluster, sc.Namespace, f.Severity, string(f.Status)}]++
			if f.Breached && f.Status != sla.StatusAccepted {
				breaches[place{sc.Cluster, sc.Namespace, f.Severity, ""}]++
			}
			if kevSample(f) {
				kev[place{sc.Cluster, sc.Namespace, f.Severity, ""}]++
			}
		}
	}
	if len(findings) < 4 || len(breaches) == 0 {
		t.Fatalf("sample too small: %v %v", findings, breaches)
	}
	for p, n := range findings {
		if got := sum(fams, "fleetscan_findings", map[string]string{"cluster": p.cluster, "namespace": p.ns, "severity": p.sev, "status": p.status}); got != float64(n) {
			t.Errorf("fleetscan_findings%v = %v, want %d", p, got, n)
		}
	}
	checkPlaces(t, fams, "fleetscan_sla_breaches", breaches)
	checkPlaces(t, fams, "fleetscan_kev_findings", kev)
	if got := len(fams["fleetscan_findings"].GetMetric()); got != len(findings) {
		t.Errorf("fleetscan_findings has %d series, want %d", got, len(findings))
	}
	images := map[[2]string]float64{{"prod-eu", "scanned"}: 2, {"staging", "scanned"}: 1, {"staging", "failed"}: 1, {"prod-eu", "not_scanned"}: 1}
	for k, want := range images {
		if got := sum(fams, "fleetscan_images", map[string]string{"cluster": k[0], "state": k[1]}); got != want {
			t.Errorf("fleetscan_images{cluster=%s,state=%s} = %v, want %v", k[0], k[1], got, want)
		}
	}
}

type place struct{ cluster, ns, sev, status string }

func checkPlaces(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[place]int) {
	t.Helper()
	for p, n := range want {
		if got := sum(fams, name, map[string]string{"cluster": p.cluster, "namespace": p.ns, "severity": p.sev}); got != float64(n) {
			t.Errorf("%s%v = %v, want %d", name, p, got, n)
		}
	}
	if got := len(fams[name].GetMetric()); got != len(want) {
		t.Errorf("%s has %d series, want %d", name, got, len(want))
	}
}

func TestOptional(t *testing.T) {
	_, fams := writeSample(t, Input{Report: sample.Report()})
	for _, name := range []string{"fleetscan_vulnerability_findings", "fleetscan_kev_findings", "fleetscan_feed_updated_timestamp_seconds"} {
		if fams[name] != nil {
			t.Errorf("%s exported without being asked for", name)
		}
	}
	// Oldest breach: CVE-2024-0004 (its acceptance expired), first seen
	// 2025-01-01, CRITICAL 7 days: past its deadline since 2025-01-08T06:00Z.
	if got := sum(fams, "fleetscan_sla_oldest_breach_age_seconds", nil); got != 61*24*3600 {
		t.Errorf("oldest breach age = %v, want 61 days", got)
	}
}

// pushgateway records the requests a real Pushgateway would get.
type pushgateway struct {
	mu     sync.Mutex
	reqs   []string
	bodies []string
	auth   []string
	status int
}

func (p *pushgateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	p.mu.Lock()
	defer p.mu.Unlock()
	user, pw, _ := r.BasicAuth()
	p.reqs = append(p.reqs, r.Method+" "+r.URL.Path)
	p.bodies = append(p.bodies, string(body))
	p.auth = append(p.auth, user+":"+pw)
	w.WriteHeader(p.status)
}

func TestPush(t *testing.T) {
	for _, tt := range []struct {
		name    string
		status  int
		wantErr bool
	}{{"accepted", http.StatusOK, false}, {"gateway error", http.StatusInternalServerError, true}} {
		t.Run(tt.name, func(t *testing.T) {
			gw := &pushgateway{status: tt.status}
			srv := httptest.NewServer(gw)
			defer srv.Close()
			reg, err := Build(Input{Report: sample.Report()})
			if err != nil {
				t.Fatal(err)
			}
			cfg := Defaults()
			cfg.PushgatewayURL = strings.Replace(srv.URL, "http://", "http://pusher:s3cret-pw@", 1)
			err = Push(t.Context(), cfg, reg, srv.Client())
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret-pw") {
				t.Fatalf("error leaks the password: %v", err)
			}
			if len(gw.reqs) != 1 || gw.reqs[0] != "PUT /metrics/job/fleetscan_reporter" || gw.auth[0] != "pusher:s3cret-pw" {
				t.Fatalf("requests %v auth %v", gw.reqs, gw.auth)
			}
			// The body is protobuf delimited; the families pushed are those built.
			if !strings.Contains(gw.bodies[0], "fleetscan_report_findings") {
				t.Fatalf("pushed body lacks the report's metrics")
			}
		})
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		name string
		cfg  func(*Config)
		want string
	}{
		{"defaults", func(*Config) {}, ""},
		{"file in a directory", func(c *Config) { c.File = filepath.Join(dir, "m.prom") }, ""},
		{"file without directory", func(c *Config) { c.File = filepath.Join(dir, "nope", "m.prom") }, "--metrics-file"},
		{"file is a directory", func(c *Config) { c.File = dir }, "--metrics-file"},
		{"bad scheme", func(c *Config) { c.PushgatewayURL = "ftp://gw:9091" }, "--pushgateway-url"},
		{"no host", func(c *Config) { c.PushgatewayURL = "http://" }, "--pushgateway-url"},
		{"secret not echoed", func(c *Config) { c.PushgatewayURL = "gopher://u:topsecret@gw" }, "REDACTED"},
		{"bad job", func(c *Config) { c.PushgatewayURL = "http://gw:9091"; c.Job = "a/b" }, "--pushgateway-job"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := Defaults()
			tt.cfg(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("err = %v, want one naming %s", err, tt.want)
			case err != nil && strings.Contains(err.Error(), "topsecret"):
				t.Fatalf("leaks: %v", err)
			}
		})
	}
}
