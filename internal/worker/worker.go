// Package worker scans queued image digests: it pulls jobs from the
// workers' durable JetStream consumer, scans each with a scan.Scanner under
// a per-image timeout, publishes the result through the store, and lets the
// queue retry, record or hand back what fails. Between jobs it swaps in a
// newer vulnerability DB with no scan running. It serves /metrics, /healthz
// and /readyz, and shuts down gracefully.
//
// A worker is a library component: the worker binary runs one, the
// all-in-one binary runs several in one process over one NATS connection,
// sharing one scanner (Trivy's DB handle is process-wide) and one metrics
// registry.
package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/logging"
	"github.com/fleetscan/fleetscan/internal/pkgindex"
	"github.com/fleetscan/fleetscan/internal/queue"
	"github.com/fleetscan/fleetscan/internal/scan"
	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// Scanner is what a worker needs from its scanner: scans, and the DB they
// run against. *scan.Trivy implements it.
type Scanner interface {
	scan.Scanner
	// RefreshDB swaps in a newer DB, waiting for running scans; it
	// reports whether it did.
	RefreshDB(ctx context.Context) (bool, error)
	// DBInfo describes the open DB.
	DBInfo() contract.DBInfo
	// Info names the scanner.
	Info() contract.ScannerInfo
}

// ResultStore is where a worker finds reusable results and publishes
// results, failures and its scanner identity. *store.Store implements it.
type ResultStore interface {
	// ReusableResult returns the stored result of key when its fingerprint
	// is fingerprint.
	ReusableResult(ctx context.Context, key contract.ImageKey, fingerprint string) (contract.ScanResult, bool, error)
	PutResult(ctx context.Context, r contract.ScanResult) error
	PutScannerIdentity(ctx context.Context, id contract.ScannerIdentity) error
	// RecordFailure stores the failure of a job whose delivery budget ran
	// out with no worker replying.
	queue.FailureRecorder
}

// Conn is what a worker needs of its NATS connection. *nats.Conn
// implements it.
type Conn interface {
	// Status is reported by /readyz.
	Status() nats.Status
	// Subscriber receives the exhausted-job advisories.
	queue.Subscriber
}

// Deps are the already-connected resources a worker uses.
type Deps struct {
	// Conn is the NATS connection (readiness, exhausted-job advisories).
	Conn Conn
	// Resources are the ensured JetStream resources (the jobs stream and
	// the workers' consumer).
	Resources *topology.Resources
	// Store publishes results (a *store.Store).
	Store ResultStore
	// Scanner scans images; share one between in-process workers.
	Scanner Scanner
	// Packages stores each scanned image's package record (the package
	// index's input); nil means the store over Resources.
	Packages PackageStore
	// Attestations discovers the VEX attestations of scanned images
	// (--vex-oci); nil means the scanner's (*scan.Trivy has them).
	Attestations scan.AttestationFinder
	// Metrics registers the worker's collectors; nil means a private
	// registry (served on Config.Listen).
	Metrics prometheus.Registerer
	// Gatherer serves /metrics; defaults to the private registry, or to
	// prometheus.DefaultGatherer when Metrics is set and this is nil.
	Gatherer prometheus.Gatherer
	Log      *zap.Logger
}

// PackageStore keeps package records (*pkgindex.Store).
type PackageStore interface {
	PutPackages(ctx context.Context, rec contract.ImagePackages) error
}

// Worker consumes scan jobs.
type Worker struct {
	cfg     Config
	conn    Conn
	res     *topology.Resources
	store   ResultStore
	scanner Scanner
	pkgs    PackageStore
	finder  scan.AttestationFinder
	attest  attestMemo
	log     *zap.Logger
	metrics *metrics
	gather  prometheus.Gatherer

	dbInfo  atomic.Pointer[contract.DBInfo]
	dbErr   atomic.Pointer[error]
	running atomic.Bool
	refresh sync.Mutex

	inFlight                              atomic.Int64
	retries                               retries
	scanned, reused, redetected           atomic.Int64
	layersCached, layersAnalyzed, pulledB atomic.Int64
}

// Stats sums what a worker did since it was built: the run summary of
// incremental scanning.
type Stats struct {
	// Scanned counts published scans, Redetected those of them that ran
	// from a recorded analysis without the registry (after a DB update).
	Scanned    int64
	Redetected int64
	// Reused counts jobs answered by a stored result (nothing scanned).
	Reused int64
	// LayersCached counts layers whose analysis came from the layer
	// cache; LayersAnalyzed those downloaded and analysed.
	LayersCached   int64
	LayersAnalyzed int64
	// BytesPulled counts bytes read from registries.
	BytesPulled int64
}

// Stats returns the worker's counters.
func (w *Worker) Stats() Stats {
	return Stats{
		Scanned: w.scanned.Load(), Redetected: w.redetected.Load(), Reused: w.reused.Load(),
		LayersCached: w.layersCached.Load(), LayersAnalyzed: w.layersAnalyzed.Load(), BytesPulled: w.pulledB.Load(),
	}
}

// InFlight is the number of jobs being handled now (a shutdown waits for
// them).
func (w *Worker) InFlight() int { return int(w.inFlight.Load()) }

// New builds a worker. It does not touch the queue until Run.
func New(cfg Config, deps Deps) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case deps.Conn == nil:
		return nil, errors.New("worker: a NATS connection is required")
	case deps.Resources == nil:
		return nil, errors.New("worker: JetStream resources are required (topology.Ensure)")
	case deps.Store == nil:
		return nil, errors.New("worker: a store is required")
	case deps.Scanner == nil:
		return nil, errors.New("worker: a scanner is required")
	}
	finder, ok := finderOf(deps)
	if cfg.VEXOCI && !ok {
		return nil, errors.New("--vex-oci: the scanner cannot discover attestations (worker.Deps.Attestations)")
	}
	log := deps.Log
	if log == nil {
		log = zap.NewNop()
	}
	w := &Worker{
		finder:  finder,
		cfg:     cfg,
		conn:    deps.Conn,
		res:     deps.Resources,
		store:   deps.Store,
		scanner: deps.Scanner,
		pkgs:    deps.Packages,
		log:     log.With(logging.Worker(cfg.WorkerName)),
	}
	if w.pkgs == nil && deps.Resources.Packages != nil {
		ps, err := pkgindex.NewStore(deps.Resources, log)
		if err != nil {
			return nil, err
		}
		w.pkgs = ps
	}
	info := deps.Scanner.DBInfo()
	w.dbInfo.Store(&info)

	reg, gather := deps.Metrics, deps.Gatherer
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, gather = r, r
	} else if gather == nil {
		gather = prometheus.DefaultGatherer
	}
	m, err := newMetrics(reg, cfg.WorkerName, w.dbAgeSeconds)
	if err != nil {
		return nil, fmt.Errorf("worker %s: register metrics: %w", cfg.WorkerName, err)
	}
	w.metrics, w.gather = m, gather
	return w, nil
}

func (w *Worker) dbAgeSeconds() float64 {
	return time.Since(w.dbInfo.Load().UpdatedAt).Seconds()
}

// Run consumes jobs until ctx is cancelled, then stops taking jobs, lets
// in-flight scans finish within the grace period and hands back the rest.
// It also serves HTTP on Config.Listen when set.
func (w *Worker) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("worker already running")
	}
	defer w.running.Store(false)

	var srv *http.Server
	if w.cfg.Listen != "" {
		ln, err := net.Listen("tcp", w.cfg.Listen)
		if err != nil {
			return fmt.Errorf("--listen %s: %w", w.cfg.Listen, err)
		}
		srv = &http.Server{Handler: w.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				w.log.Error("metrics server stopped", zap.Error(err))
			}
		}()
		w.log.Info("serving /metrics, /healthz and /readyz", zap.String("addr", ln.Addr().String()))
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
	}

	if err := w.Announce(ctx); err != nil {
		w.log.Warn("could not publish the scanner identity; the dispatcher will queue every image", zap.Error(err))
	}
	watcher, err := queue.WatchExhausted(w.conn, w.res.Jobs, w.store, w.log)
	if err != nil {
		return fmt.Errorf("watch exhausted jobs: %w", err)
	}
	defer func() {
		if err := watcher.Stop(); err != nil {
			w.log.Warn("stop exhausted-job watcher", zap.Error(err))
		}
	}()

	refreshCtx, stopRefresh := context.WithCancel(ctx)
	defer stopRefresh()
	go w.refreshLoop(refreshCtx)

	cons, err := queue.NewConsumer(ctx, w.res.Workers, queue.HandlerFunc(w.Handle), recorder{w}, queue.ConsumerConfig{
		Concurrency: w.cfg.Concurrency,
		Grace:       w.cfg.GracePeriod,
		RetryBase:   w.cfg.RetryDelay,
		RetryMax:    w.cfg.RetryMaxDelay,
		OnDecision:  w.decided,

		UnreachableBudget: w.cfg.UnreachableBudget,
	}, w.log)
	if err != nil {
		return fmt.Errorf("workers consumer: %w", err)
	}
	w.log.Info("worker started", zap.Int("concurrency", w.cfg.Concurrency), zap.Duration("scan_timeout", w.cfg.ScanTimeout),
		zap.Duration("grace_period", w.cfg.GracePeriod), logging.DBUpdatedAt(w.dbInfo.Load().UpdatedAt))
	err = cons.Run(ctx)
	w.log.Info("worker stopped")
	return err
}

// refreshLoop looks for a newer DB while the worker is idle.
func (w *Worker) refreshLoop(ctx context.Context) {
	t := time.NewTicker(w.cfg.DBCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.refreshDB(ctx)
		}
	}
}

// refreshDB swaps in a newer DB if there is one. It runs between jobs: the
// scanner waits for running scans before reopening.
//
// It waits for a check already running in another goroutine rather than
// skipping it: a job must not be judged (reused or not) against the DB that
// is being replaced.
func (w *Worker) refreshDB(ctx context.Context) {
	w.refresh.Lock()
	defer w.refresh.Unlock()
	reopened, err := w.scanner.RefreshDB(ctx)
	if err != nil {
		w.dbErr.Store(&err)
		w.log.Error("could not swap in the newer vulnerability DB; scanning with the open one", zap.Error(err))
		return
	}
	w.dbErr.Store(nil)
	// Another worker sharing the scanner may have done the reopen.
	info := w.scanner.DBInfo()
	if prev := w.dbInfo.Load(); *prev != info {
		w.dbInfo.Store(&info)
		w.log.Info("newer vulnerability DB in use", logging.DBVersion(info.Version), logging.DBUpdatedAt(info.UpdatedAt))
		if err := w.Announce(ctx); err != nil {
			w.log.Warn("could not publish the scanner identity; the dispatcher will not skip images for this DB", zap.Error(err))
		}
	}
	if reopened {
		w.metrics.dbReloads.Inc()
	}
}

// Handle scans one job and publishes its result. It returns an error
// classified for the queue (retry, or record and terminate); the queue
// reports what it did with it to decided.
func (w *Worker) Handle(ctx context.Context, d queue.Delivery) error {
	w.refreshDB(ctx)
	job := d.Job
	log := w.jobLogger(d)

	w.metrics.inFlight.Inc()
	defer w.metrics.inFlight.Dec()
	w.inFlight.Add(1)
	defer w.inFlight.Add(-1)
	w.retries.done(job.ID())
	start := time.Now()
	rescan := w.cfg.Rescan || job.Rescan
	if !rescan {
		if prev, ok := w.reusable(ctx, job, log); ok {
			return w.reuse(ctx, job, prev, start, log)
		}
	}
	req := scan.RequestFor(job)
	req.Pull = rescan
	sctx, cancel := context.WithTimeout(ctx, w.cfg.ScanTimeout)
	rep, err := w.scanner.Scan(sctx, req)
	timedOut := errors.Is(sctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
	cancel()
	if err == nil {
		err = w.publish(ctx, job, rep, start, log)
	}
	if err == nil {
		w.countScanned(rep, time.Since(start), log)
		return nil
	}
	if timedOut {
		err = contract.Retryable(contract.FailureTimeout, fmt.Errorf("scan exceeded --scan-timeout %s: %w", w.cfg.ScanTimeout, err))
	}
	return err
}

func (w *Worker) jobLogger(d queue.Delivery) *zap.Logger {
	return w.log.With(logging.JobID(d.Job.ID()), logging.Digest(d.Job.Digest),
		logging.Platform(d.Job.Platform), logging.Attempt(d.Attempt))
}

// reuse answers a job with the stored result prev.
func (w *Worker) reuse(ctx context.Context, job contract.ScanJob, prev contract.ScanResult, start time.Time, log *zap.Logger) error {
	if err := w.publishReused(ctx, job, prev, start); err != nil {
		return err
	}
	dur := time.Since(start)
	w.metrics.observe(OutcomeReused, "", dur)
	w.metrics.reused.Inc()
	w.reused.Add(1)
	log.Info("result reused", logging.Outcome(OutcomeReused), zap.Duration("duration", dur),
		zap.String("scanned_in_run", prev.RunID), zap.Int("findings", len(prev.Findings)))
	return nil
}

// countScanned records a published scan in the metrics, the stats and the log.
func (w *Worker) countScanned(rep scan.Report, dur time.Duration, log *zap.Logger) {
	w.metrics.observe(OutcomeScanned, "", dur)
	w.metrics.countFindings(rep.Findings)
	w.metrics.layerHits.Add(float64(rep.LayersCached))
	w.metrics.layerMisses.Add(float64(rep.LayersAnalyzed))
	w.metrics.registryB.Add(float64(rep.BytesFetched))
	if rep.DetectionOnly {
		w.metrics.redetected.Inc()
		w.redetected.Add(1)
	}
	w.scanned.Add(1)
	w.layersCached.Add(int64(rep.LayersCached))
	w.layersAnalyzed.Add(int64(rep.LayersAnalyzed))
	w.pulledB.Add(rep.BytesFetched)
	log.Info("scanned", logging.Outcome(OutcomeScanned), zap.Duration("duration", dur),
		zap.String("reference", rep.Reference), zap.Int("findings", len(rep.Findings)),
		zap.Int("layers_cached", rep.LayersCached), zap.Int("layers_analyzed", rep.LayersAnalyzed),
		zap.Int64("bytes_pulled", rep.BytesFetched), zap.Bool("detection_only", rep.DetectionOnly))
}

// decided counts and logs a failed job as the queue answered it: retried,
// handed back at shutdown (interrupted) or recorded as failed. Successes
// are counted by Handle, recorded failures by the recorder once stored.
func (w *Worker) decided(d queue.Decision) {
	w.retries.decided(d)
	var outcome string
	switch d.Action {
	case queue.ActionAck:
		return
	case queue.ActionRetry:
		outcome = OutcomeRetried
	case queue.ActionHandBack:
		outcome = OutcomeInterrupted
	default:
		outcome = OutcomeFailed
	}
	if outcome != OutcomeFailed {
		w.metrics.observe(outcome, string(d.Class), d.Duration)
	} else {
		w.metrics.duration.WithLabelValues(outcome).Observe(d.Duration.Seconds())
	}
	w.jobLogger(d.Delivery).Warn("scan failed", logging.Outcome(outcome), logging.FailureClass(d.Class),
		zap.Duration("duration", d.Duration), zap.Error(d.Err))
}

// reusable returns the stored result of the job's key when it answers the
// job as a new scan would: scanned (not failed) by the same scanner version
// with the same options, against the DB now open. Only the result's
// fingerprint header is compared; a result of another DB is not decoded.
func (w *Worker) reusable(ctx context.Context, job contract.ScanJob, log *zap.Logger) (contract.ScanResult, bool) {
	prev, ok, err := w.store.ReusableResult(ctx, job.ImageKey, contract.Fingerprint(w.scannerInfo(), w.scanner.DBInfo()))
	if err != nil {
		log.Warn("could not read the stored result; scanning", zap.Error(err))
		return contract.ScanResult{}, false
	}
	return prev, ok
}

// identity is what this worker scans with now.
func (w *Worker) identity() contract.ScannerIdentity {
	return contract.ScannerIdentity{
		SchemaVersion: contract.IdentitySchemaVersion,
		Scanner:       w.scannerInfo(),
		DB:            w.scanner.DBInfo(),
		Worker:        w.cfg.WorkerName,
		PublishedAt:   time.Now().UTC(),
	}
}

// Announce publishes the worker's scanner identity (scanner, options and
// open DB), with which the dispatcher decides which stored results need no
// new scan. Run calls it at start and after every DB switch.
func (w *Worker) Announce(ctx context.Context) error {
	id := w.identity()
	if err := w.store.PutScannerIdentity(ctx, id); err != nil {
		return err
	}
	w.log.Info("scanner identity published", zap.String("scanner", id.Scanner.Version),
		logging.DBVersion(id.DB.Version), logging.DBUpdatedAt(id.DB.UpdatedAt), logging.DBNextUpdate(id.DB.NextUpdate))
	return nil
}

// publishReused publishes a stored result again for the job's run.
func (w *Worker) publishReused(ctx context.Context, job contract.ScanJob, prev contract.ScanResult, start time.Time) error {
	r := prev
	r.SchemaVersion = contract.ResultSchemaVersion
	r.RunID, r.Cycle = job.RunID, job.Cycle
	r.StartedAt, r.CompletedAt = start.UTC(), time.Now().UTC()
	r.Worker = w.cfg.WorkerName
	r.Reused = true
	if err := w.store.PutResult(ctx, r); err != nil {
		return contract.Retryable(contract.FailureInternal, fmt.Errorf("publish reused result: %w", err))
	}
	return nil
}

// publish stores the findings of a successful scan, with the image's VEX
// attestations under --vex-oci.
func (w *Worker) publish(ctx context.Context, job contract.ScanJob, rep scan.Report, start time.Time, log *zap.Logger) error {
	var atts []contract.VEXAttestation
	discovered := false
	if w.cfg.VEXOCI {
		atts, discovered = w.attestations(ctx, job, rep.Reference, log)
	}
	r := contract.ScanResult{
		SchemaVersion: contract.ResultSchemaVersion,
		RunID:         job.RunID,
		Cycle:         job.Cycle,
		ImageKey:      job.ImageKey,
		Reference:     rep.Reference,
		Status:        contract.StatusScanned,
		StartedAt:     start.UTC(),
		CompletedAt:   time.Now().UTC(),
		Scanner:       withVEXOCI(rep.Scanner, discovered),
		DB:            rep.DB,
		OS:            rep.OS,
		Findings:      rep.Findings,
		Worker:        w.cfg.WorkerName,

		VEXAttestations: atts,
	}
	if err := w.store.PutResult(ctx, r); err != nil {
		return contract.Retryable(contract.FailureInternal, fmt.Errorf("publish result: %w", err))
	}
	w.putPackages(ctx, job.ImageKey, rep.Packages)
	return nil
}

// putPackages stores the image's package record next to its result. A
// failure is logged, not retried: the result stands, and the reporter
// rebuilds missing records from the layer cache.
func (w *Worker) putPackages(ctx context.Context, key contract.ImageKey, p *contract.ImagePackages) {
	if w.pkgs == nil || p == nil {
		return
	}
	rec := *p
	rec.ImageKey = key
	if err := w.pkgs.PutPackages(ctx, rec); err != nil {
		w.log.Warn("could not store the image's package record; the reporter rebuilds it from the layer cache",
			logging.Digest(key.Digest), logging.Platform(key.Platform), zap.Error(err))
	}
}

// recorder records the failure results of this worker's jobs, stamped
// with the worker, scanner and DB, and counts them.
type recorder struct{ w *Worker }

func (r recorder) RecordFailure(ctx context.Context, job contract.ScanJob, class contract.FailureClass, reason string, attempts int) error {
	r.w.retries.done(job.ID())
	res := contract.NewFailedResult(job, class, reason, attempts, time.Now())
	res.Worker = r.w.cfg.WorkerName
	res.Scanner = r.w.scannerInfo()
	res.DB = *r.w.dbInfo.Load()
	if err := r.w.store.PutResult(ctx, res); err != nil {
		return err
	}
	r.w.metrics.scans.WithLabelValues(OutcomeFailed, string(class)).Inc()
	return nil
}
