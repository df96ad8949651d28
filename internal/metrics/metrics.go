// Package metrics turns a report into Prometheus metrics: low-cardinality
// gauges (findings by cluster, namespace, severity and status; unaccepted
// SLA breaches; KEV findings; images by cluster and state; completeness;
// the report's age; the oldest breach), written as text exposition
// (metrics.prom, uploaded with the report) and optionally pushed to a
// Pushgateway. Series per vulnerability ID are opt-in (--metrics-per-cve).
// The fleet totals (fleetscan_report_*) equal the report's summary.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetscan/fleetscan/internal/report"
	"github.com/fleetscan/fleetscan/internal/sla"
)

// Image states in fleetscan_images and fleetscan_report_images.
const (
	StateScanned    = "scanned"
	StateFailed     = "failed"
	StateNotScanned = "not_scanned"
)

// States lists the image states in order.
var States = []string{StateScanned, StateFailed, StateNotScanned}

// Statuses lists the finding statuses (sla.Status values): open, accepted,
// acceptance-expired and the VEX not_affected and fixed (never breaches).
var Statuses = []string{string(sla.StatusOpen), string(sla.StatusAccepted), string(sla.StatusAcceptanceExpired),
	string(sla.StatusNotAffected), string(sla.StatusFixed)}

// Feed is an enrichment feed's freshness (KEV, EPSS).
type Feed struct {
	Name      string
	UpdatedAt time.Time
}

// Input is what the metrics describe.
type Input struct {
	Report *report.Report
	// KEV reports whether a finding's vulnerability is in CISA's KEV
	// catalogue (nil: fleetscan_kev_findings is not exported).
	KEV func(*report.Finding) bool
	// Feeds are the enrichment feeds the report used.
	Feeds []Feed
	// PerCVE adds fleetscan_vulnerability_findings.
	PerCVE bool
}

// Names are the metric families Build can export (for dashboards and
// alert rules to be checked against).
var Names = []string{
	"fleetscan_findings", "fleetscan_sla_breaches", "fleetscan_kev_findings", "fleetscan_images",
	"fleetscan_report_findings", "fleetscan_report_sla_breaches", "fleetscan_report_kev_findings",
	"fleetscan_report_images", "fleetscan_report_unresolved_containers", "fleetscan_report_clusters",
	"fleetscan_report_complete", "fleetscan_report_last_success_timestamp_seconds",
	"fleetscan_report_as_of_timestamp_seconds", "fleetscan_report_tickets", "fleetscan_report_diff_findings",
	"fleetscan_report_expired_acceptances", "fleetscan_sla_oldest_breach_age_seconds",
	"fleetscan_report_db_updated_timestamp_seconds", "fleetscan_feed_updated_timestamp_seconds",
	"fleetscan_vulnerability_findings",
}

// gauges are the report's metric families.
type gauges struct {
	findings, breaches, kev, images                  *prometheus.GaugeVec
	totFindings, totBreaches, totKEV, totImages      *prometheus.GaugeVec
	clusters, diff, feeds, perCVE                    *prometheus.GaugeVec
	unresolved, complete, lastSuccess, asOf, tickets prometheus.Gauge
	expired, oldestBreach, dbUpdated                 prometheus.Gauge
}

func gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
}

func gauge(name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
}

func newGauges() *gauges {
	return &gauges{
		findings:     gaugeVec("fleetscan_findings", "Findings by the cluster and namespace their image runs in, severity and status (a finding whose image runs in several namespaces counts in each).", "cluster", "namespace", "severity", "status"),
		breaches:     gaugeVec("fleetscan_sla_breaches", "Unaccepted SLA breaches (past the deadline, no active risk acceptance) by cluster, namespace and severity.", "cluster", "namespace", "severity"),
		kev:          gaugeVec("fleetscan_kev_findings", "Findings of vulnerabilities in CISA's KEV catalogue by cluster, namespace and severity.", "cluster", "namespace", "severity"),
		images:       gaugeVec("fleetscan_images", "Expected images (digest and platform) by cluster and state: scanned, failed, not_scanned.", "cluster", "state"),
		totFindings:  gaugeVec("fleetscan_report_findings", "Report rows by severity and status (sums to the report's findings).", "severity", "status"),
		totBreaches:  gaugeVec("fleetscan_report_sla_breaches", "Unaccepted SLA breaches in the report by severity (the exit status gate).", "severity"),
		totKEV:       gaugeVec("fleetscan_report_kev_findings", "Report rows of KEV vulnerabilities by severity.", "severity"),
		totImages:    gaugeVec("fleetscan_report_images", "Expected images in the report by state.", "state"),
		clusters:     gaugeVec("fleetscan_report_clusters", "Clusters in the report's scope by status (ok, unreachable).", "status"),
		diff:         gaugeVec("fleetscan_report_diff_findings", "Findings against the previous report: new, reopened, still_open, fixed.", "change"),
		feeds:        gaugeVec("fleetscan_feed_updated_timestamp_seconds", "When an enrichment feed (kev, epss) the report used was last current (Unix time).", "feed"),
		perCVE:       gaugeVec("fleetscan_vulnerability_findings", "Findings per vulnerability ID, severity and status (opt-in: --metrics-per-cve).", "vulnerability", "severity", "status"),
		unresolved:   gauge("fleetscan_report_unresolved_containers", "Containers whose image was never resolved to a digest (not scanned)."),
		complete:     gauge("fleetscan_report_complete", "1 when every expected image was scanned and every cluster reached, else 0."),
		lastSuccess:  gauge("fleetscan_report_last_success_timestamp_seconds", "When the last report was produced (Unix time)."),
		asOf:         gauge("fleetscan_report_as_of_timestamp_seconds", "The time the report's SLAs were evaluated at (--now; Unix time)."),
		tickets:      gauge("fleetscan_report_tickets", "Remediation tickets in the report."),
		expired:      gauge("fleetscan_report_expired_acceptances", "Risk acceptances that matched findings after they expired."),
		oldestBreach: gauge("fleetscan_sla_oldest_breach_age_seconds", "How long the oldest unaccepted breach has been past its deadline (0: none)."),
		dbUpdated:    gauge("fleetscan_report_db_updated_timestamp_seconds", "UpdatedAt of the newest vulnerability DB among the report's results (Unix time)."),
	}
}

// Build returns a registry holding the report's metrics.
func Build(in Input) (*prometheus.Registry, error) {
	g := newGauges()
	g.fill(in)
	reg := prometheus.NewRegistry()
	cs := []prometheus.Collector{g.findings, g.breaches, g.images, g.totFindings, g.totBreaches, g.totImages,
		g.clusters, g.diff, g.unresolved, g.complete, g.lastSuccess, g.asOf, g.tickets, g.expired, g.oldestBreach}
	if in.KEV != nil {
		cs = append(cs, g.kev, g.totKEV)
	}
	if in.Report.DB != nil {
		cs = append(cs, g.dbUpdated)
	}
	if len(in.Feeds) > 0 {
		cs = append(cs, g.feeds)
	}
	if in.PerCVE {
		cs = append(cs, g.perCVE)
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return reg, nil
}
