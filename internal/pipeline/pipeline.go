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

	"github.com/fleetscan/fleetscan/internal/dispatcher"
	"github.com/fleetscan/fleetscan/internal/feeds"
	"github.com/fleetscan/fleetscan/internal/natsconn"
	"github.com/fleetscan/fleetscan/internal/natsembed"
	"github.com/fleetscan/fleetscan/internal/progress"
	"github.com/fleetscan/fleetscan/internal/queue"
	"github.com/fleetscan/fleetscan/internal/reporter"
	"github.com/fleetscan/fleetscan/internal/sla"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/internal/trivydb"
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
	// ScanWait bounds how long the reporter waits for the scans.
	ScanWait time.Duration
}

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
		s.StringVar(&r.OutDir, "out-dir", r.OutDir, "directory the report files are written to")
		s.StringSliceVar(&r.Formats, "format", r.Formats, "report formats: csv, json, html, md, tickets")
		r.S3.RegisterFlags(s)
		r.RegisterSBOMFlags(s)
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
	c.Worker.Listen = ""
	// One --rescan: the dispatcher queues every image, the workers scan each
	// in full.
	c.Dispatch.Rescan = c.Worker.Rescan
	// The report covers this run, not older runs kept in the state dir.
	c.Report.RunID = c.Dispatch.RunID
	c.Report.Wait = c.ScanWait
}

// Validate checks every component's configuration.
func (c Config) Validate() error {
	reportErr := c.Report.Validate()
	if reportErr == nil {
		// The policy's content, not only its presence: before any work.
		reportErr = sla.ValidatePolicyFile(c.Report.SLAConfig)
	}
	errs := []error{c.Topology.Validate(), c.Dispatch.Validate(), c.Worker.Validate(), reportErr, c.Feeds.Validate()}
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
}

// ErrNoDB is returned when no usable vulnerability DB is available offline.
var ErrNoDB = errors.New("no usable vulnerability DB")

// Run executes one scan of the configured clusters and returns the
// reporter's outcome. An error means no report could be produced.
func Run(ctx context.Context, cfg Config, d Deps) (reporter.Outcome, error) {
	log := d.Log
	if log == nil {
		log = zap.NewNop()
	}
	if err := cfg.Validate(); err != nil {
		return reporter.Outcome{}, err
	}
	if err := ensureDB(ctx, cfg, log); err != nil {
		return reporter.Outcome{}, err
	}
	if err := refreshFeeds(ctx, cfg, log); err != nil {
		return reporter.Outcome{}, err
	}

	nc, shutdown, err := connect(ctx, cfg, log)
	if err != nil {
		return reporter.Outcome{}, err
	}
	defer shutdown()
	js, err := jetstream.New(nc)
	if err != nil {
		return reporter.Outcome{}, fmt.Errorf("jetstream: %w", err)
	}
	res, err := topology.Ensure(ctx, js, cfg.Topology)
	if err != nil {
		return reporter.Outcome{}, fmt.Errorf("ensure JetStream topology: %w", err)
	}
	st := store.New(js, res)
	st.Worker = cfg.Worker.WorkerName

	workers, err := startWorkers(ctx, cfg, nc, res, st, log)
	if err != nil {
		return reporter.Outcome{}, err
	}
	defer workers.close()

	manifest, err := dispatch(ctx, cfg, js, st, log)
	if err != nil {
		return reporter.Outcome{}, err
	}
	if d.OnManifest != nil {
		d.OnManifest(manifest)
	}
	out, err := reporter.Run(ctx, cfg.Report, reporterDeps(st, res, log, d))
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
// scanner identity first, so the dispatcher does not race them.
func startWorkers(ctx context.Context, cfg Config, nc *nats.Conn, res *topology.Resources, st *store.Store, log *zap.Logger) (*inProcessWorkers, error) {
	// Trivy's own warnings (end-of-life distributions, ...) are in the
	// results; on a laptop only its errors belong on the terminal.
	engine, err := worker.OpenEngine(ctx, cfg.Worker, log.Named("worker").WithOptions(zap.IncreaseLevel(zapcore.ErrorLevel)), worker.WithResources(res))
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

// reporterDeps wires the reporter to the run's store and progress display.
func reporterDeps(st *store.Store, res *topology.Resources, log *zap.Logger, d Deps) reporter.Deps {
	rd := reporter.NewDeps(st, res, log.Named("reporter"), d.Out)
	if d.Progress != nil || d.OnProgress != nil {
		rd.Progress = func(s progress.State) {
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
func ensureDB(ctx context.Context, cfg Config, log *zap.Logger) error {
	if cfg.SkipDBUpdate {
		if _, err := trivydb.Check(cfg.Worker.DB, time.Now()); err != nil {
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

// connect starts the embedded server (or dials the external one) and
// returns a connection and the function that closes both.
func connect(ctx context.Context, cfg Config, log *zap.Logger) (*nats.Conn, func(), error) {
	if cfg.NATS.URLs != "" {
		nc, err := natsconn.Connect(ctx, cfg.NATS, log)
		if err != nil {
			return nil, nil, err
		}
		return nc, nc.Close, nil
	}
	srv, err := natsembed.Start(natsembed.Config{StoreDir: filepath.Join(cfg.StateDir, "jetstream"), DontListen: true}, log.Named("nats"))
	if err != nil {
		return nil, nil, fmt.Errorf("start embedded NATS in --state-dir %s: %w", cfg.StateDir, err)
	}
	nc, err := nats.Connect("", srv.InProcessOption(), nats.Name("fleetscan"))
	if err != nil {
		srv.Shutdown()
		return nil, nil, fmt.Errorf("connect to embedded NATS: %w", err)
	}
	return nc, func() {
		if err := nc.Drain(); err != nil {
			nc.Close()
		}
		srv.Shutdown()
	}, nil
}
