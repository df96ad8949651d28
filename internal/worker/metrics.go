package worker

import (
	"errors"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetscan/fleetscan/pkg/contract"
)

// Outcomes of a scan attempt, the "outcome" label of the scan metrics.
const (
	// OutcomeScanned: findings published.
	OutcomeScanned = "scanned"
	// OutcomeRetried: a retryable failure; the job goes back to the queue.
	OutcomeRetried = "retried"
	// OutcomeFailed: a failure result was recorded.
	OutcomeFailed = "failed"
	// OutcomeInterrupted: shutdown cut the scan short; the job was handed back.
	OutcomeInterrupted = "interrupted"
	// OutcomeReused: a stored result from the same DB, scanner and options
	// was published for the job's run; nothing was scanned.
	OutcomeReused = "reused"
)

// metrics are one worker's Prometheus collectors. Every series carries a
// constant "worker" label so several workers can share one registry.
type metrics struct {
	scans       *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	findings    *prometheus.CounterVec
	inFlight    prometheus.Gauge
	layerHits   prometheus.Counter
	layerMisses prometheus.Counter
	dbReloads   prometheus.Counter
	registryB   prometheus.Counter
	reused      prometheus.Counter
	redetected  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, worker string, dbAge func() float64) (*metrics, error) {
	cl := prometheus.Labels{"worker": worker}
	m := &metrics{
		scans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetscan_worker_scans_total", ConstLabels: cl,
			Help: "Scan attempts by outcome (scanned, reused, retried, failed, interrupted) and failure class.",
		}, []string{"outcome", "class"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fleetscan_worker_scan_duration_seconds", ConstLabels: cl,
			Help:    "Duration of scan attempts by outcome.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}, []string{"outcome"}),
		findings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetscan_worker_findings_total", ConstLabels: cl,
			Help: "Findings published, by severity.",
		}, []string{"severity"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fleetscan_worker_scans_in_flight", ConstLabels: cl,
			Help: "Scans running now.",
		}),
		layerHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fleetscan_worker_layer_cache_hits_total", ConstLabels: cl,
			Help: "Image layers whose analysis came from the layer cache.",
		}),
		layerMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fleetscan_worker_layer_cache_misses_total", ConstLabels: cl,
			Help: "Image layers downloaded and analysed.",
		}),
		dbReloads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fleetscan_worker_db_reloads_total", ConstLabels: cl,
			Help: "Times a newer vulnerability DB was swapped in without a restart.",
		}),
		registryB: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fleetscan_worker_registry_bytes_total", ConstLabels: cl,
			Help: "Bytes read from registries.",
		}),
		reused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fleetscan_worker_results_reused_total", ConstLabels: cl,
			Help: "Jobs answered by a stored result from the same DB, scanner and options (not scanned again).",
		}),
		redetected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fleetscan_worker_detection_only_scans_total", ConstLabels: cl,
			Help: "Scans run from a recorded analysis in the shared layer cache, without the registry (after a DB update).",
		}),
	}
	age := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "fleetscan_worker_db_age_seconds", ConstLabels: cl,
		Help: "Age of the open vulnerability DB (since its UpdatedAt).",
	}, dbAge)
	var errs []error
	for _, c := range []prometheus.Collector{m.scans, m.duration, m.findings, m.inFlight, m.layerHits, m.layerMisses, m.dbReloads, m.registryB, m.reused, m.redetected, age} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// Expose every class at zero so dashboards and alerts see the series
	// before the first failure.
	m.scans.WithLabelValues(OutcomeScanned, "")
	m.scans.WithLabelValues(OutcomeReused, "")
	for _, c := range contract.FailureClasses {
		m.scans.WithLabelValues(OutcomeFailed, string(c))
	}
	for _, s := range []string{"CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"} {
		m.findings.WithLabelValues(s)
	}
	return m, nil
}

func (m *metrics) observe(outcome, class string, d time.Duration) {
	m.scans.WithLabelValues(outcome, class).Inc()
	m.duration.WithLabelValues(outcome).Observe(d.Seconds())
}

func (m *metrics) countFindings(fs []contract.Finding) {
	counts := map[string]int{}
	for _, f := range fs {
		counts[strings.ToUpper(f.Severity)]++
	}
	for s, n := range counts {
		m.findings.WithLabelValues(s).Add(float64(n))
	}
}

// MetricNames lists the metric names a worker's /metrics page carries
// (histograms as their _bucket, _sum and _count series), for dashboards
// and alert rules to be checked against.
func MetricNames() ([]string, error) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg, "names", func() float64 { return 0 })
	if err != nil {
		return nil, err
	}
	// The duration histogram appears with a worker's first scan.
	m.duration.WithLabelValues(OutcomeScanned)
	fams, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, f := range fams {
		if f.GetType().String() == "HISTOGRAM" {
			names = append(names, f.GetName()+"_bucket", f.GetName()+"_sum", f.GetName()+"_count")
			continue
		}
		names = append(names, f.GetName())
	}
	return names, nil
}
