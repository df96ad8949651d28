package metrics

import (
	"strings"

	"github.com/fleetscan/fleetscan/internal/report"
	"github.com/fleetscan/fleetscan/internal/sla"
)

// fill sets every gauge from the report.
func (g *gauges) fill(in Input) {
	r := in.Report
	g.zeroTotals(r, in.KEV != nil)
	var oldest float64
	for f := range r.Findings.All() {
		g.countFinding(f, in)
		if f.Gating() {
			oldest = max(oldest, r.AsOf.Sub(f.Deadline).Seconds())
		}
	}
	g.oldestBreach.Set(oldest)
	g.fillImages(r)
	g.fillReport(r)
	for _, fd := range in.Feeds {
		g.feeds.WithLabelValues(fd.Name).Set(unix(fd.UpdatedAt.Unix()))
	}
}

// zeroTotals exposes every fleet total at zero, so alerts and dashboards
// see the series before the first finding.
func (g *gauges) zeroTotals(r *report.Report, kev bool) {
	for _, sev := range r.Policy.Severities {
		for _, st := range Statuses {
			g.totFindings.WithLabelValues(sev, st)
		}
		g.totBreaches.WithLabelValues(sev)
		if kev {
			g.totKEV.WithLabelValues(sev)
		}
	}
	for _, st := range States {
		g.totImages.WithLabelValues(st)
	}
	for _, st := range []string{report.ClusterOK, report.ClusterUnreachable} {
		g.clusters.WithLabelValues(st)
	}
}

// countFinding adds one report row: to the fleet totals once, to each
// (cluster, namespace) its image runs in.
func (g *gauges) countFinding(f *report.Finding, in Input) {
	status := string(f.Status)
	kev := in.KEV != nil && in.KEV(f)
	g.totFindings.WithLabelValues(f.Severity, status).Inc()
	if f.Gating() {
		g.totBreaches.WithLabelValues(f.Severity).Inc()
	}
	if kev {
		g.totKEV.WithLabelValues(f.Severity).Inc()
	}
	if in.PerCVE {
		g.perCVE.WithLabelValues(f.ID, f.Severity, status).Inc()
	}
	for _, sc := range scopes(f.Img) {
		g.findings.WithLabelValues(sc.Cluster, sc.Namespace, f.Severity, status).Inc()
		if f.Gating() {
			g.breaches.WithLabelValues(sc.Cluster, sc.Namespace, f.Severity).Inc()
		}
		if kev {
			g.kev.WithLabelValues(sc.Cluster, sc.Namespace, f.Severity).Inc()
		}
	}
}

// scopes are where an image runs; one empty scope when unknown.
func scopes(img *report.Image) []sla.Scope {
	if img == nil || len(img.Scopes) == 0 {
		return []sla.Scope{{}}
	}
	return img.Scopes
}

// fillImages counts images by state, in total and per cluster they run in
// (failed and not-scanned images by the clusters of their workloads).
func (g *gauges) fillImages(r *report.Report) {
	for _, img := range r.Images {
		g.totImages.WithLabelValues(StateScanned).Inc()
		for _, c := range img.Clusters {
			g.images.WithLabelValues(c, StateScanned).Inc()
		}
	}
	for _, f := range r.Failures {
		g.totImages.WithLabelValues(StateFailed).Inc()
		for _, c := range workloadClusters(f.Workloads) {
			g.images.WithLabelValues(c, StateFailed).Inc()
		}
	}
	for _, ns := range r.NotScanned {
		if ns.Digest == "" {
			continue // an unresolved container: fleetscan_report_unresolved_containers
		}
		g.totImages.WithLabelValues(StateNotScanned).Inc()
		for _, c := range workloadClusters(ns.Workloads) {
			g.images.WithLabelValues(c, StateNotScanned).Inc()
		}
	}
}

// workloadClusters are the distinct clusters of "cluster/namespace/Kind/name"
// workload names, in order.
func workloadClusters(workloads []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, w := range workloads {
		c, _, _ := strings.Cut(w, "/")
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out
}

// fillReport sets the report-wide gauges.
func (g *gauges) fillReport(r *report.Report) {
	s := r.Summary
	g.unresolved.Set(float64(s.UnresolvedContainers))
	for _, c := range r.Clusters {
		g.clusters.WithLabelValues(c.Status).Inc()
	}
	g.complete.Set(boolValue(r.Complete))
	g.lastSuccess.Set(unix(r.GeneratedAt.Unix()))
	g.asOf.Set(unix(r.AsOf.Unix()))
	g.tickets.Set(float64(s.Tickets))
	g.expired.Set(float64(len(r.ExpiredAcceptances)))
	g.diff.WithLabelValues("new").Set(float64(r.Diff.New))
	g.diff.WithLabelValues("reopened").Set(float64(r.Diff.Reopened))
	g.diff.WithLabelValues("still_open").Set(float64(r.Diff.StillOpen))
	g.diff.WithLabelValues("fixed").Set(float64(r.Diff.Fixed))
	if r.DB != nil {
		g.dbUpdated.Set(unix(r.DB.UpdatedAt.Unix()))
	}
}

func unix(sec int64) float64 { return float64(sec) }

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
