package reporter

import (
	"bytes"
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
