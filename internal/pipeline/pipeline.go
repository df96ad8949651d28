// Package pipeline runs fleetscan's whole pipeline in one process — what
// `fleetscan scan` and `fleetscan demo` do: a NATS JetStream (embedded, with
// its file store under a state directory, or an external one), the
// dispatcher over the configured clusters, in-process workers and the
// reporter. It wires the same packages the three binaries use (dispatch,
// worker, reporting); there is no second implementation.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/fleetscan/fleetscan/internal/dirlock"
	"github.com/fleetscan/fleetscan/internal/dispatcher"
	"github.com/fleetscan/fleetscan/internal/feeds"
	"github.com/fleetscan/fleetscan/internal/natsconn"
	"github.com/fleetscan/fleetscan/internal/natsembed"
	"github.com/fleetscan/fleetscan/internal/progress"
	"github.com/fleetscan/fleetscan/internal/queue"
	"github.com/fleetscan/fleetscan/internal/reporter"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/internal/trivydb"
	"github.com/fleetscan/fleetscan/internal/vex"
	"github.com/fleetscan/fleetscan/internal/worker"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// Config is the all-in-one configuration: the three components' own
// configurations plus what only the all-in-one has.
type Config struct {
	// StateDir holds the embedded NATS file store, so SLA first-seen dates
	// persist between runs.
	StateDir string
	// NATS connects to an external server when NATS.URLs is set; empty
	// starts an embedded one.
	NATS     natsconn.Config
	Topology topology.Config
	Dispatch dispatcher.Config
	Worker   worker.Config
	Report   reporter.Config
	// Workers is the number of scans in flight.
	Workers int
	// SkipDBUpdate uses the DB under --cache-dir as it is (offline use).
	SkipDBUpdate bool
	// Feeds are the exploit feeds (KEV, EPSS) refreshed into --cache-dir
	// with the DB.
	Feeds feeds.Config
	// VEXRepos are VEX Hub–style repositories fetched into
	// <cache-dir>/vex with the DB (unless SkipDBUpdate) and applied by the
	// reporter.
	VEXRepos []string
	// ScanWait bounds how long the reporter waits for the scans.
	ScanWait time.Duration
	// GracePeriod is how long in-flight scans may finish after the first
	// interrupt (their results are kept for the next run).
	GracePeriod time.Duration
}

// DefaultGracePeriod is short: a person pressed Ctrl-C and is waiting.
const DefaultGracePeriod = 10 * time.Second

// Defaults returns the all-in-one defaults: state and cache under the XDG
// directories, one worker per CPU, the report in ./fleetscan-report.
func Defaults() Config {
	c := Config{
		StateDir: filepath.Join(xdgDir("XDG_STATE_HOME", ".local/state"), "fleetscan"),
		NATS:     natsconn.Defaults("fleetscan"),
		Topology: topology.Defaults(),
		Dispatch: dispatcher.Defaults(),
		Worker:   worker.DefaultConfig(),
		Report:   reporter.Defaults(),
		Feeds:    feeds.Defaults(),
		Workers:  runtime.NumCPU(),
		ScanWait: time.Hour,

		GracePeriod: DefaultGracePeriod,
	}
	c.NATS.URLs = "" // embedded unless --nats-url is given
	c.Worker.DB.CacheDir = filepath.Join(xdgDir("XDG_CACHE_HOME", ".cache"), "fleetscan", "trivy")
	c.Worker.Listen = ""
	c.Worker.WorkerName = "fleetscan"
	// One process: report progress often, the wait is what the user watches.
	c.Report.PollInterval = 500 * time.Millisecond
	return c
}

// xdgDir returns $env, or ~/fallback.
func xdgDir(env, fallback string) string {
	if d := os.Getenv(env); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), filepath.Base(fallback))
	}
	return filepath.Join(home, fallback)
}

// RegisterFlags binds every flag. The components share some flag names
// (--insecure-registry, --registry-config): each is registered once and
// Complete copies its value to every component that uses it.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.StateDir, "state-dir", c.StateDir, "embedded NATS state (SLA first-seen dates persist here between runs)")
	fs.IntVar(&c.Workers, "workers", c.Workers, "images scanned at the same time")
	fs.BoolVar(&c.SkipDBUpdate, "skip-db-update", c.SkipDBUpdate, "use the vulnerability DB and the KEV/EPSS feeds under --cache-dir as they are; do not download (offline use; local --kev-url/--epss-url files are still read)")
	fs.DurationVar(&c.ScanWait, "scan-wait", c.ScanWait, "give up waiting for scans after this long (what is missing is reported as not scanned)")
	fs.DurationVar(&c.GracePeriod, "grace-period", c.GracePeriod, "on the first SIGINT/SIGTERM, let in-flight scans finish this long (their results are kept); a second signal exits at once")

	sub := func(register func(*pflag.FlagSet)) {
		s := pflag.NewFlagSet("", pflag.ContinueOnError)
		register(s)
		fs.AddFlagSet(s) // skips names already registered
	}
	sub(c.NATS.RegisterFlags)
	sub(func(s *pflag.FlagSet) {
		c.Worker.DB.RegisterFlags(s)
		c.Worker.DB.RegisterUpdateFlags(s)
		c.Worker.DB.Registry.RegisterFlags(s)
		s.DurationVar(&c.Worker.ScanTimeout, "scan-timeout", c.Worker.ScanTimeout, "give up on one image's scan after this long")
		s.StringVar(&c.Worker.ScratchDir, "scratch-dir", c.Worker.ScratchDir, "writable directory for the layer-analysis cache and temporary files")
		c.Worker.RegisterIncrementalFlags(s)
		c.Worker.RegisterRetryFlags(s)
		s.DurationVar(&c.Topology.LayerCacheTTL, "layer-cache-ttl", c.Topology.LayerCacheTTL, "drop a shared layer-analysis cache entry not used for this long (each use refreshes it)")
	})
	sub(c.Feeds.RegisterFlags)
	sub(c.Dispatch.Sources.RegisterFlags)
	sub(func(s *pflag.FlagSet) {
		s.BoolVar(&c.Dispatch.ResolveTags, "resolve-tags", c.Dispatch.ResolveTags, "resolve the spec tag against its registry (HEAD) when a container status has no manifest digest")
	})
	sub(func(s *pflag.FlagSet) {
		r := &c.Report
		s.StringVar(&r.Now, "now", r.Now, "evaluate SLAs and record first-seen dates as of this time (RFC 3339 or YYYY-MM-DD; default: now)")
		s.StringVar(&r.SLA, "sla", r.SLA, "days to remediate per severity, e.g. CRITICAL=3,HIGH=14 (default CRITICAL=7,HIGH=30,MEDIUM=90,LOW=180,UNKNOWN=365)")
		s.StringVar(&r.SLAConfig, "sla-config", r.SLAConfig, "SLA policy YAML: base days and overrides by cluster/namespace glob")
		s.StringSliceVar(&r.Severities, "severity", r.Severities, "severities to report and gate, as Trivy names them")
		s.BoolVar(&r.IgnoreUnfixed, "ignore-unfixed", r.IgnoreUnfixed, "leave out vulnerabilities without a fixed version (as Trivy does)")
		s.StringVar(&r.AcceptFile, "accept-file", r.AcceptFile, "risk acceptances YAML (vulnerability, repository glob, optional package, expires, reason)")
		r.RegisterRetentionFlag(s)
		s.StringVar(&r.OutDir, "out-dir", r.OutDir, "directory the report files are written to")
		s.StringSliceVar(&r.Formats, "format", r.Formats, "report formats: csv, json, html, md, tickets")
		r.S3.RegisterFlags(s)
		r.RegisterSBOMFlags(s)
		r.RegisterVEXFlags(s)
		c.Worker.RegisterVEXFlags(s)
		s.StringArrayVar(&c.VEXRepos, "vex-repo", c.VEXRepos, "VEX repository URL (VEX Hub format: <url>/.well-known/vex-repository.json); repeatable. Fetched into --cache-dir with the DB (last good copy kept; not with --skip-db-update) and applied to the report")
		r.RegisterReachFlags(s)
	})
}

// Complete copies shared values between the components and fills the
// all-in-one's fixed choices. Call it after parsing, before Validate.
func (c *Config) Complete(now time.Time) {
	c.Dispatch.InsecureRegistries = c.Worker.DB.Registry.InsecureRegistries
	c.Dispatch.RegistryConfig = c.Worker.DB.Registry.DockerConfig
	if !c.Dispatch.ResolveTags {
		c.Dispatch.InsecureRegistries, c.Dispatch.RegistryConfig = nil, ""
	}
	if c.Dispatch.RunID == "" {
		c.Dispatch.RunID = dispatcher.NewRunID(now)
	}
	if c.Dispatch.Cycle == "" {
		// Each all-in-one run is its own cycle: it scans what runs now
		// (stored results still answer unchanged images, see the worker).
		c.Dispatch.Cycle = c.Dispatch.RunID
	}
	c.Dispatch.Complete(now)
	c.Worker.Concurrency = c.Workers
	c.Worker.GracePeriod = c.GracePeriod
	c.Worker.Listen = ""
	// One --rescan: the dispatcher queues every image, the workers scan each
	// in full.
	c.Dispatch.Rescan = c.Worker.Rescan
	// The report covers this run, not older runs kept in the state dir.
	c.Report.RunID = c.Dispatch.RunID
	c.Report.Wait = c.ScanWait
	if len(c.VEXRepos) > 0 {
		c.Report.VEXRepoDir, c.Report.VEXRepos = VEXRepoDir(c.Worker.DB.CacheDir), c.VEXRepos
	}
	// One --max-enrichment-age for the updater and the report.
	c.Report.MaxEnrichmentAge = c.Feeds.MaxAge
}

// VEXRepoDir is where the VEX repositories are kept under the cache dir.
func VEXRepoDir(cacheDir string) string { return filepath.Join(cacheDir, "vex") }

// Validate checks every component's configuration and everything the
// flags name (files, the output directory), before any work. Values the
// all-in-one sets for its components from its own flags (--workers,
// --grace-period, --scan-wait) are checked under those flags' names only, so
// every message names a flag of `fleetscan scan`.
func (c Config) Validate() error {
	w, r := c.Worker, c.Report
	w.Concurrency, w.GracePeriod = max(1, w.Concurrency), max(time.Second, w.GracePeriod)
	r.Wait = max(0, r.Wait)
	r.MaxEnrichmentAge = max(time.Hour, r.MaxEnrichmentAge) // checked as the updater's --max-enrichment-age
	errs := []error{c.Topology.Validate(), c.Dispatch.Validate(), c.Dispatch.Sources.CheckFiles(), w.Validate(), r.Check(), c.Feeds.Validate()}
	if c.GracePeriod <= 0 {
		errs = append(errs, fmt.Errorf("--grace-period %s: must be positive", c.GracePeriod))
	}
	if c.NATS.URLs != "" {
		errs = append(errs, c.NATS.Validate())
	} else if strings.TrimSpace(c.StateDir) == "" {
		errs = append(errs, errors.New("--state-dir is required with the embedded NATS (no --nats-url)"))
	}
	if c.Workers < 1 {
		errs = append(errs, fmt.Errorf("--workers %d: want at least 1", c.Workers))
	}
	if c.ScanWait <= 0 {
		errs = append(errs, fmt.Errorf("--scan-wait %s: must be positive", c.ScanWait))
	}
	for _, u := range c.VEXRepos {
		if err := vex.CheckRepositoryURL(u); err != nil {
			errs = append(errs, fmt.Errorf("--vex-repo: %w", err))
		}
	}
	if !c.SkipDBUpdate {
		errs = append(errs, c.Worker.DB.ValidateUpdate())
	}
	return errors.Join(errs...)
}

// Deps are the run's collaborators.
type Deps struct {
	Log *zap.Logger
	// Out receives the console summary.
	Out io.Writer
	// Progress shows scan progress (nil: none).
	Progress *progress.Printer
	// OnManifest is called with the dispatcher's manifest (tests, demo).
	OnManifest func(contract.RunManifest)
	// OnProgress is called with the reporter's progress while it collects
	// results, last with Done == Total when every image is done
	// (benchmarks time the scan phase with it).
	OnProgress func(progress.State)
	// Notice receives what a person waiting on the run must know, such as
	// what an interrupted run still waits for (nil: discarded).
	Notice io.Writer
	// OnWritten is told the outcome once the report files are written.
	OnWritten func(reporter.Outcome)
	// Clock is the calendar the run lives on (nil: time.Now): the
	// vulnerability DB's age is judged against it. The demo builds its DB
	// as of its own "today" and passes that day here.
	Clock func() time.Time
}

func (d Deps) now() time.Time {
	if d.Clock != nil {
		return d.Clock()
	}
	return time.Now()
}

// ErrNoDB is returned when no usable vulnerability DB is available offline.
var ErrNoDB = errors.New("no usable vulnerability DB")

// Run executes one scan of the configured clusters and returns the
// reporter's outcome. An error means no report could be produced.
//
// It owns its state: --state-dir (and the embedded NATS store in it) is
// locked before anything else, so a second run on the same state fails at
// once naming the holder. When ctx ends (the first interrupt) it stops
// taking work, says on Notice what it waits for and until when, lets
// in-flight scans finish within the grace period and returns an error
// naming the interruption; no report is written then. A NATS connection
// lost for longer than natsconn.BatchGiveUp ends the run the same way,
// naming the server.
func Run(ctx context.Context, cfg Config, d Deps) (reporter.Outcome, error) {
	log := d.Log
	if log == nil {
		log = zap.NewNop()
	}
	notice := d.Notice
	if notice == nil {
		notice = io.Discard
	}
	if err := cfg.Validate(); err != nil {
		return reporter.Outcome{}, err
	}
	if cfg.NATS.URLs == "" {
		lock, err := dirlock.Acquire(cfg.StateDir, "fleetscan scan")
		if err != nil {
			return reporter.Outcome{}, fmt.Errorf("--state-dir: %w", err)
		}
		defer func() { _ = lock.Release() }()
		if lock.Previous != 0 {
			log.Warn("took over the state directory of a process that is gone", zap.String("dir", lock.Dir()), zap.Int("pid", lock.Previous))
		}
	}
	if err := ensureDB(ctx, cfg, d.now, log); err != nil {
		return reporter.Outcome{}, interrupted(ctx, err)
	}
	if err := refreshFeeds(ctx, cfg, d.now, log); err != nil {
		return reporter.Outcome{}, interrupted(ctx, err)
	}

	sess, shutdown, err := open(ctx, cfg, log)
	if err != nil {
		return reporter.Outcome{}, interrupted(ctx, err)
	}
	defer shutdown()
	runCtx, stopLost := sess.WithLost(ctx)
	defer stopLost()
	out, err := run(runCtx, cfg, d, sess, notice, log)
	if err != nil && runCtx.Err() == nil {
		// A step that failed while NATS was going away failed because of it.
		if lost := sess.Explain(ctx, err); lost != err {
			return out, noReport(lost)
		}
	}
	return out, interrupted(runCtx, err)
}

// interrupted explains an error caused by the end of the run's context
// (an interrupt, a lost NATS connection).
func interrupted(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil {
		return err
	}
	cause := context.Cause(ctx)
	if cause == nil || errors.Is(err, cause) {
		return err
	}
	return noReport(cause)
}

// noReport is the error of a run its interruption ended.
func noReport(cause error) error {
	return fmt.Errorf("%w: no report written (results stored so far are kept for the next run)", cause)
}

// run is the pipeline on an open session: workers, dispatcher, reporter.
func run(ctx context.Context, cfg Config, d Deps, sess *natsconn.Session, notice io.Writer, log *zap.Logger) (reporter.Outcome, error) {
	st := store.New(sess.JS, sess.Res)
	st.Worker = cfg.Worker.WorkerName

	workers, err := startWorkers(ctx, cfg, sess.Conn, sess.Res, st, d.now, log)
	if err != nil {
		return reporter.Outcome{}, err
	}
	defer workers.close()
	stopNotice := context.AfterFunc(ctx, func() { workers.notice(notice, cfg) })
	defer stopNotice()

	manifest, err := dispatch(ctx, cfg, sess.JS, st, log)
	if err != nil {
		return reporter.Outcome{}, err
	}
	if d.OnManifest != nil {
		d.OnManifest(manifest)
	}
	rd := reporterDeps(st, sess.Res, log, d, workers.w)
	// The all-in-one reads the feeds it refreshed under --cache-dir.
	rd.Feeds = feeds.DirSource(cfg.Worker.DB.CacheDir)
	out, err := reporter.Run(ctx, cfg.Report, rd)
	workers.stop() // their counters are final once they stopped
	if d.Out != nil && err == nil {
		writeIncremental(d.Out, manifest.Reused, workers.w.Stats())
	}
	return out, err
}

// inProcessWorkers are the run's workers over one scanner.
type inProcessWorkers struct {
	w      *worker.Worker
	engine *worker.Engine
	log    *zap.Logger
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// startWorkers opens the scanner and starts the workers; they publish the
// scanner identity first, so the dispatcher does not race them. now is the
// calendar the DB's freshness is judged against.
func startWorkers(ctx context.Context, cfg Config, nc *nats.Conn, res *topology.Resources, st *store.Store, now func() time.Time, log *zap.Logger) (*inProcessWorkers, error) {
	// Trivy's own warnings (end-of-life distributions, ...) are in the
	// results; on a laptop only its errors belong on the terminal.
	engine, err := worker.OpenEngine(ctx, cfg.Worker, log.Named("worker").WithOptions(zap.IncreaseLevel(zapcore.ErrorLevel)),
		worker.WithResources(res), worker.WithClock(now))
	if err != nil {
		return nil, dbError(cfg, err)
	}
	p := &inProcessWorkers{engine: engine, log: log, done: make(chan error, 1)}
	p.w, err = worker.New(cfg.Worker, worker.Deps{Conn: nc, Resources: res, Store: st, Scanner: engine, Log: log.Named("worker")})
	if err != nil {
		p.closeEngine()
		return nil, err
	}
	// The dispatcher compares stored results with the identity the workers
	// publish; publish it before dispatching rather than racing Run.
	if err := p.w.Announce(ctx); err != nil {
		log.Warn("could not publish the scanner identity; every image will be queued", zap.Error(err))
	}
	workerCtx, cancel := context.WithCancel(ctx)
	p.cancel = cancel
	go func() { p.done <- p.w.Run(workerCtx) }()
	return p, nil
}

// notice says, at the first interrupt, what the run still waits for and
// until when: the workers stopped taking jobs; in-flight scans get the
// grace period.
func (p *inProcessWorkers) notice(w io.Writer, cfg Config) {
	until := time.Now().Add(cfg.GracePeriod).Format(time.TimeOnly)
	if n := p.w.InFlight(); n > 0 {
		fmt.Fprintf(w, "fleetscan: stopped taking work; waiting up to %s (until %s) for %d in-flight scans to finish, then closing the state in %s\n",
			cfg.GracePeriod, until, n, cfg.StateDir)
		return
	}
	fmt.Fprintf(w, "fleetscan: stopped taking work; no scan in flight; closing the state in %s\n", cfg.StateDir)
}

// stop stops the workers and waits for them (once).
func (p *inProcessWorkers) stop() {
	p.once.Do(func() {
		p.cancel()
		if err := <-p.done; err != nil {
			p.log.Warn("workers stopped with an error", zap.Error(err))
		}
	})
}

// close stops the workers, then closes the scanner.
func (p *inProcessWorkers) close() {
	p.stop()
	p.closeEngine()
}

func (p *inProcessWorkers) closeEngine() {
	if err := p.engine.Close(); err != nil {
		p.log.Warn("close scanner", zap.Error(err))
	}
}

// dispatch runs the dispatcher over the configured clusters.
func dispatch(ctx context.Context, cfg Config, js jetstream.JetStream, st *store.Store, log *zap.Logger) (contract.RunManifest, error) {
	resolver, err := cfg.Dispatch.Resolver()
	if err != nil {
		return contract.RunManifest{}, err
	}
	sources, failed, err := cfg.Dispatch.Sources.Open(log.Named("dispatcher"))
	if err != nil {
		return contract.RunManifest{}, fmt.Errorf("open clusters: %w", err)
	}
	manifest, err := dispatcher.Run(ctx, cfg.Dispatch, dispatcher.Deps{
		Sources: sources, Failed: failed, Resolver: resolver,
		Publisher: queue.NewPublisher(js), Store: st, Reuse: st, Log: log.Named("dispatcher"),
	})
	if err != nil {
		return contract.RunManifest{}, fmt.Errorf("dispatch: %w", err)
	}
	return manifest, nil
}

// reporterDeps wires the reporter to the run's store and progress display;
// the progress counts the jobs w holds for a retry.
func reporterDeps(st *store.Store, res *topology.Resources, log *zap.Logger, d Deps, w *worker.Worker) reporter.Deps {
	rd := reporter.NewDeps(st, res, log.Named("reporter"), d.Out)
	if d.Progress != nil || d.OnProgress != nil {
		rd.Progress = func(s progress.State) {
			// Jobs waiting for a retry hold the run: the estimate counts them.
			s.Retrying, s.RetryUntil = w.Retrying()
			if d.OnProgress != nil {
				d.OnProgress(s)
			}
			switch {
			case d.Progress == nil:
			case s.Done >= s.Total:
				d.Progress.Finish(s)
			default:
				d.Progress.Update(s)
			}
		}
	}
	if d.Progress != nil && d.Out != nil {
		rd.Out = d.Progress.BreakWriter(d.Out)
	}
	rd.OnWritten = d.OnWritten
	return rd
}

// writeIncremental prints what incremental scanning saved in this run:
// images the dispatcher did not queue (reused) plus those a worker answered
// from a stored result.
func writeIncremental(out io.Writer, reused int, s worker.Stats) {
	fmt.Fprintf(out, "Scans: %d reused (same DB and scanner; %d not even queued), %d re-detected from cached analyses without the registry, %d pulled; "+
		"layers: %d from the layer cache, %d analysed; %.1f MiB pulled from registries\n",
		int64(reused)+s.Reused, reused, s.Redetected, s.Scanned-s.Redetected, s.LayersCached, s.LayersAnalyzed, float64(s.BytesPulled)/(1<<20))
}

// ensureDB downloads or refreshes the DB unless told not to, with the same
// updater the worker's db-update uses.
func ensureDB(ctx context.Context, cfg Config, now func() time.Time, log *zap.Logger) error {
	if cfg.SkipDBUpdate {
		if _, err := trivydb.Check(cfg.Worker.DB, now()); err != nil {
			return dbError(cfg, err)
		}
		return nil
	}
	if _, err := trivydb.Update(ctx, cfg.Worker.DB, log.Named("db")); err != nil {
		return fmt.Errorf("%w: update the vulnerability DB in %s: %w (offline? use --skip-db-update with a --cache-dir that holds a DB)",
			ErrNoDB, cfg.Worker.DB.CacheDir, err)
	}
	return nil
}

func dbError(cfg Config, err error) error {
	if errors.Is(err, trivydb.ErrMissing) || errors.Is(err, trivydb.ErrStale) {
		hint := "run without --skip-db-update to download it, or point --cache-dir at a directory holding db/trivy.db"
		if errors.Is(err, trivydb.ErrStale) {
			hint = "run without --skip-db-update to refresh it, or raise --max-db-age"
		}
		return fmt.Errorf("%w in %s: %w (%s)", ErrNoDB, cfg.Worker.DB.CacheDir, err, hint)
	}
	return err
}

// open starts the embedded server (or dials the external one) and opens
// the session on it; shutdown closes both.
func open(ctx context.Context, cfg Config, log *zap.Logger) (*natsconn.Session, func(), error) {
	nc := cfg.NATS
	if nc.GiveUpAfter <= 0 {
		nc.GiveUpAfter = natsconn.BatchGiveUp
	}
	if cfg.NATS.URLs != "" {
		s, err := natsconn.Open(ctx, nc, cfg.Topology, log)
		if err != nil {
			return nil, nil, err
		}
		return s, func() { s.Drain(5 * time.Second) }, nil
	}
	srv, err := natsembed.Start(natsembed.Config{StoreDir: filepath.Join(cfg.StateDir, "jetstream"), DontListen: true}, log.Named("nats"))
	if err != nil {
		return nil, nil, fmt.Errorf("start embedded NATS in --state-dir %s: %w", cfg.StateDir, err)
	}
	nc.URLs, nc.Name = "", "fleetscan"
	s, err := natsconn.Open(ctx, nc, cfg.Topology, log, srv.InProcessOption())
	if err != nil {
		srv.Shutdown()
		return nil, nil, fmt.Errorf("embedded NATS: %w", err)
	}
	return s, func() {
		s.Drain(5 * time.Second)
		srv.Shutdown()
	}, nil
}
