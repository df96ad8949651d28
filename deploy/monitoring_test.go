package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/fleetscan/fleetscan/internal/metrics"
	"github.com/fleetscan/fleetscan/internal/report"
	"github.com/fleetscan/fleetscan/internal/report/sample"
	"github.com/fleetscan/fleetscan/internal/worker"
)

// The Prometheus Operator's kinds in components/monitoring, decoded into
// local types of the fields fleetscan sets (the operator's API package
// would pull in far more than these tests need).
var (
	prometheusRuleGVK = schema.GroupVersionKind{Group: "monitoring.coreos.com", Version: "v1", Kind: "PrometheusRule"}
	podMonitorGVK     = schema.GroupVersionKind{Group: "monitoring.coreos.com", Version: "v1", Kind: "PodMonitor"}
)

type monitoringMeta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type prometheusRule struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   monitoringMeta `json:"metadata"`
	Spec       struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert,omitempty"`
				Record      string            `json:"record,omitempty"`
				Expr        string            `json:"expr"`
				For         string            `json:"for,omitempty"`
				Labels      map[string]string `json:"labels,omitempty"`
				Annotations map[string]string `json:"annotations,omitempty"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

type podMonitor struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   monitoringMeta `json:"metadata"`
	Spec       struct {
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		PodMetricsEndpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path,omitempty"`
			Interval string `json:"interval,omitempty"`
		} `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

var monitoringKinds = map[schema.GroupVersionKind]func([]byte) (any, error){
	prometheusRuleGVK: func(doc []byte) (any, error) {
		var r prometheusRule
		return &r, yaml.UnmarshalStrict(doc, &r)
	},
	podMonitorGVK: func(doc []byte) (any, error) {
		var m podMonitor
		return &m, yaml.UnmarshalStrict(doc, &m)
	},
}

// installMonitoringCRDs creates the stand-ins of the Prometheus Operator's
// PrometheusRule and PodMonitor CRDs and waits until they are served.
func installMonitoringCRDs(ctx context.Context, t *testing.T, d *dryRunner) {
	t.Helper()
	crd, err := os.ReadFile("testdata/monitoring-crds.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs, err := splitYAML(crd)
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range docs {
		if w, err := d.apply(ctx, doc, false); err != nil || len(w) > 0 {
			t.Fatalf("create a monitoring CRD: %v (warnings %v)", err, w)
		}
	}
	for _, gvk := range []schema.GroupVersionKind{prometheusRuleGVK, podMonitorGVK} {
		for {
			d.mapper.Reset()
			if _, err := d.mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err == nil {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("the %s CRD is not served", gvk.Kind)
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

// promqlIgnored are the words of PromQL that are not metric names.
var promqlIgnored = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"offset": true, "and": true, "or": true, "unless": true, "bool": true, "inf": true, "nan": true,
}

var (
	promqlString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promqlMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promqlRange    = regexp.MustCompile(`\[[^\]]*\]`)
	promqlGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promqlOffset   = regexp.MustCompile(`\boffset\s+-?[0-9a-z]+`)
	promqlIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*(\s*\()?`)
	promqlNumber   = regexp.MustCompile(`\b[0-9]+(\.[0-9]+)?(e[+-]?[0-9]+)?\b`)
)

// promqlMetrics extracts the metric names a PromQL expression selects:
// identifiers that are not functions, aggregations, keywords, label names
// (in matchers and groupings), durations or Grafana variables.
func promqlMetrics(expr string) []string {
	e := promqlString.ReplaceAllString(expr, `""`)
	e = promqlMatchers.ReplaceAllString(e, " ")
	e = promqlRange.ReplaceAllString(e, " ")
	e = promqlGrouping.ReplaceAllString(e, " ")
	e = promqlOffset.ReplaceAllString(e, " ")
	e = regexp.MustCompile(`\$\{?[A-Za-z_][A-Za-z0-9_]*\}?`).ReplaceAllString(e, " ")
	e = promqlNumber.ReplaceAllString(e, " ")
	var out []string
	for _, m := range promqlIdent.FindAllString(e, -1) {
		if strings.HasSuffix(m, "(") || promqlIgnored[strings.ToLower(m)] {
			continue // a function or aggregation, or a keyword
		}
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

func TestPromQLMetrics(t *testing.T) {
	for _, tt := range []struct {
		expr string
		want []string
	}{
		{`sum by (cluster, namespace) (fleetscan_sla_breaches{cluster=~"$cluster"})`, []string{"fleetscan_sla_breaches"}},
		{`time() - max(fleetscan_report_last_success_timestamp_seconds) > 36 * 3600`, []string{"fleetscan_report_last_success_timestamp_seconds"}},
		{`a > b offset 1d or c unless on (x) group_left(y) d`, []string{"a", "b", "c", "d"}},
		{`histogram_quantile(0.95, sum by (le) (rate(x_bucket[$__rate_interval])))`, []string{"x_bucket"}},
		{`rate(foo_total{job="a{b}"}[5m]) / 1e3`, []string{"foo_total"}},
		{`{{ $labels.x }}`, nil},
	} {
		if got := promqlMetrics(tt.expr); !slices.Equal(got, tt.want) {
			t.Errorf("promqlMetrics(%q) = %q, want %q", tt.expr, got, tt.want)
		}
	}
}

// exportedMetrics are the names fleetscan exports: a generated metrics.prom
// (the sample report with every optional family on) and the worker's
// /metrics.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	reg, err := metrics.Build(metrics.Input{Report: sample.Report(), PerCVE: true,
		KEV:   func(*report.Finding) bool { return true },
		Feeds: []metrics.Feed{{Name: "kev", UpdatedAt: sample.AsOf}}})
	if err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/" + metrics.FileName
	if err := metrics.Write(path, reg); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fams, err := metrics.Families(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for n := range fams {
		names[n] = true
	}
	for _, n := range metrics.Names {
		if !names[n] {
			t.Errorf("metrics.Names lists %s, which the generated metrics.prom lacks", n)
		}
	}
	wn, err := worker.MetricNames()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range wn {
		names[n] = true
	}
	return names
}

// dashboardExprs are the PromQL expressions of the Grafana dashboard's
// panels and variables.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("components/monitoring/fleetscan-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	var exprs []string
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if m := regexp.MustCompile(`label_values\(([a-z_:]+)`).FindStringSubmatch(v.Definition); m != nil {
			exprs = append(exprs, m[1])
		}
	}
	return exprs
}

// TestDashboardAndAlertsUseExportedMetrics: every metric the dashboard and
// the alert rules query is one fleetscan exports.
func TestDashboardAndAlertsUseExportedMetrics(t *testing.T) {
	exported := exportedMetrics(t)
	rule := mustFind(t, render(t, allComponentsDir), "PrometheusRule", "fleetscan").Monitoring.(*prometheusRule)
	sources := map[string][]string{"dashboard": dashboardExprs(t)}
	alerts := []string{}
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			sources["alert "+r.Alert] = []string{r.Expr}
			alerts = append(alerts, r.Alert)
		}
	}
	want := []string{"FleetscanNewUnacceptedBreaches", "FleetscanReportStale", "FleetscanReportIncomplete", "FleetscanVulnerabilityDBStale", "FleetscanFeedStale"}
	if !slices.Equal(alerts, want) {
		t.Errorf("alerts %q, want %q", alerts, want)
	}
	used := 0
	for src, exprs := range sources {
		for _, e := range exprs {
			names := promqlMetrics(e)
			if len(names) == 0 {
				t.Errorf("%s: %q selects no metric", src, e)
			}
			for _, n := range names {
				used++
				if !exported[n] {
					t.Errorf("%s: %q uses %s, which fleetscan does not export", src, e, n)
				}
			}
		}
	}
	t.Logf("%d metric uses checked against %d exported names", used, len(exported))
}

// TestPodMonitorSelectsWorkers: the PodMonitor selects the worker pods and
// scrapes the port their /metrics listens on.
func TestPodMonitorSelectsWorkers(t *testing.T) {
	objs := render(t, allComponentsDir)
	pm := mustFind(t, objs, "PodMonitor", "fleetscan-worker").Monitoring.(*podMonitor)
	dep := mustFind(t, objs, "Deployment", "fleetscan-worker").Typed.(*appsv1.Deployment)
	for k, v := range pm.Spec.Selector.MatchLabels {
		if dep.Spec.Template.Labels[k] != v {
			t.Errorf("PodMonitor selects %s=%s; worker pods have %q", k, v, dep.Spec.Template.Labels[k])
		}
	}
	if len(pm.Spec.PodMetricsEndpoints) != 1 {
		t.Fatalf("endpoints: %+v", pm.Spec.PodMetricsEndpoints)
	}
	port := pm.Spec.PodMetricsEndpoints[0].Port
	found := false
	for _, c := range dep.Spec.Template.Spec.Containers {
		for _, p := range c.Ports {
			found = found || p.Name == port
		}
	}
	if !found {
		t.Errorf("PodMonitor scrapes port %q, which the worker does not declare", port)
	}
	cm := mustFind(t, objs, "ConfigMap", "fleetscan-grafana-dashboard")
	if !strings.Contains(string(cm.Raw), "grafana_dashboard: \"1\"") {
		t.Errorf("the dashboard ConfigMap lacks the grafana_dashboard label:\n%s", cm.Raw)
	}
}
