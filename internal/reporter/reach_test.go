package reporter

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/metrics"
)

// gateway is a Pushgateway stand-in answering status (a real one answers
// 200 to a PUT of /metrics/job/<job>).
type gateway struct {
	mu     sync.Mutex
	status int
	puts   []string
}

func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.puts = append(g.puts, r.Method+" "+r.URL.Path)
	w.WriteHeader(g.status)
}

// TestMetricsDelivery: metrics.prom is written next to the report with the
// report's totals and pushed; a Pushgateway that fails makes the run
// incomplete (exit bit 2) with the report and metrics file written, and the
// next run pushes again.
func TestMetricsDelivery(t *testing.T) {
	f := newFleet(t)
	wall := time.Now().UTC()
	f.dispatch("run-1", "c1", wall.Add(-time.Minute), map[string][]container{
		"prod": {{ns: "web", kind: "Deployment", name: "frontend", image: "docker.io/library/nginx:1.25", key: key('a')}},
	}, nil)
	f.scanned(key('a'), "c1", wall, vuln{"CVE-2025-0001", "HIGH", "openssl", "1", "2"}, vuln{"CVE-2025-0002", "CRITICAL", "zlib", "1", "2"})
	gw := &gateway{status: http.StatusInternalServerError}
	srv := httptest.NewServer(gw)
	defer srv.Close()

	for i, tt := range []struct {
		status int
		want   int
	}{{http.StatusInternalServerError, ExitIncomplete}, {http.StatusOK, ExitOK}} {
		gw.status = tt.status
		cfg := f.config("2025-03-10T06:00:00Z")
		cfg.Metrics.PushgatewayURL = srv.URL
		if i == 1 {
			cfg.Metrics.File = filepath.Join(t.TempDir(), "fleet.prom")
		}
		var out bytes.Buffer
		o, err := Run(f.ctx, cfg, f.deps(&out))
		if err != nil {
			t.Fatal(err)
		}
		if o.ExitCode() != tt.want {
			t.Fatalf("run %d: exit %d, want %d (%v)\n%s", i, o.ExitCode(), tt.want, o.Incomplete(), out.String())
		}
		if tt.want == ExitIncomplete && !strings.Contains(out.String(), "the Pushgateway push failed") {
			t.Fatalf("console does not say why:\n%s", out.String())
		}
		if want := cfg.Metrics.Path(cfg.OutDir); o.MetricsFile != want {
			t.Fatalf("metrics file %q, want %q", o.MetricsFile, want)
		}
		data, err := os.ReadFile(o.MetricsFile)
		if err != nil {
			t.Fatal(err)
		}
		fams, err := metrics.Families(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		var findings float64
		for _, m := range fams["fleetscan_report_findings"].GetMetric() {
			findings += m.GetGauge().GetValue()
		}
		if findings != float64(o.Report.Summary.Findings) || findings != 2 {
			t.Fatalf("fleetscan_report_findings sums to %v, report has %d", findings, o.Report.Summary.Findings)
		}
	}
	if len(gw.puts) != 2 || gw.puts[1] != "PUT /metrics/job/fleetscan_reporter" {
		t.Fatalf("pushes: %v", gw.puts)
	}
}

// trackerAPI is a GitHub Issues stand-in: it creates issues and reports
// them open; with fail set it answers 500.
type trackerAPI struct {
	mu      sync.Mutex
	fail    bool
	created []string
}

func (a *trackerAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	if r.Method == http.MethodPost && r.URL.Path == "/api/v3/repos/acme/platform/issues" {
		var req struct {
			Title  string   `json:"title"`
			Labels []string `json:"labels"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		a.created = append(a.created, strings.Join(req.Labels, ","))
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"number":%d,"state":"open"}`, len(a.created))
		return
	}
	fmt.Fprint(w, `{"number":1,"state":"open"}`)
}

// TestTicketDelivery: a tracker that fails makes the run incomplete (exit
// bit 2) and records nothing; the next run creates the issue once, and a
// rerun creates no duplicate.
func TestTicketDelivery(t *testing.T) {
	f := newFleet(t)
	wall := time.Now().UTC()
	f.dispatch("run-1", "c1", wall.Add(-time.Minute), map[string][]container{
		"prod": {{ns: "web", kind: "Deployment", name: "frontend", image: "docker.io/library/nginx:1.25", key: key('a')}},
	}, nil)
	f.scanned(key('a'), "c1", wall, vuln{"CVE-2025-0001", "HIGH", "openssl", "1", "2"})
	api := &trackerAPI{fail: true}
	srv := httptest.NewServer(api)
	defer srv.Close()
	t.Setenv("GITHUB_TOKEN", "ghp_testtoken")
	for i, want := range []int{ExitIncomplete, ExitOK, ExitOK} {
		api.mu.Lock()
		api.fail = i == 0
		api.mu.Unlock()
		cfg := f.config("2025-03-10T06:00:00Z")
		cfg.Tickets.GitHubRepo, cfg.Tickets.GitHubAPIURL = "acme/platform", srv.URL+"/api/v3/"
		d := f.deps(nil)
		d.Tickets = f.env.Res.Tickets
		o, err := Run(f.ctx, cfg, d)
		if err != nil {
			t.Fatal(err)
		}
		if o.ExitCode() != want {
			t.Fatalf("run %d: exit %d, want %d (%v)", i, o.ExitCode(), want, o.Incomplete())
		}
	}
	if len(api.created) != 1 || !strings.HasPrefix(api.created[0], "fleetscan,FS-") {
		t.Fatalf("issues created: %q, want one labelled with its ticket ID", api.created)
	}
}

// TestNotifyDelivery: a webhook that fails makes the run incomplete (exit
// bit 2); the next run delivers the digest.
func TestNotifyDelivery(t *testing.T) {
	f := newFleet(t)
	wall := time.Now().UTC()
	f.dispatch("run-1", "c1", wall.Add(-time.Minute), map[string][]container{
		"prod": {{ns: "web", kind: "Deployment", name: "frontend", image: "docker.io/library/nginx:1.25", key: key('a')}},
	}, nil)
	f.scanned(key('a'), "c1", wall, vuln{"CVE-2025-0001", "CRITICAL", "openssl", "1", "2"})
	gw := &gateway{status: http.StatusBadGateway}
	srv := httptest.NewServer(gw)
	defer srv.Close()
	for i, want := range []int{ExitIncomplete, ExitOK} {
		if i == 1 {
			gw.mu.Lock()
			gw.status = http.StatusOK
			gw.mu.Unlock()
		}
		cfg := f.config("2025-03-10T06:00:00Z")
		cfg.Notify.Webhook = srv.URL + "/hooks/T0KEN"
		o, err := Run(f.ctx, cfg, f.deps(nil))
		if err != nil {
			t.Fatal(err)
		}
		if o.ExitCode() != want {
			t.Fatalf("run %d: exit %d, want %d (%v)", i, o.ExitCode(), want, o.Incomplete())
		}
	}
	if last := gw.puts[len(gw.puts)-1]; last != "POST /hooks/T0KEN" {
		t.Fatalf("requests %v", gw.puts)
	}
}
