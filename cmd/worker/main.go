// Command worker scans the image digests the dispatcher queued, with
// Trivy's Go library against a shared read-only vulnerability DB, and
// publishes the results to NATS JetStream. `worker db-update` keeps that DB
// up to date (run by the updater CronJob). See --help.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/flagenv"
	"github.com/fleetscan/fleetscan/internal/logging"
	"github.com/fleetscan/fleetscan/internal/natsconn"
	"github.com/fleetscan/fleetscan/internal/scan"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/internal/trivydb"
	"github.com/fleetscan/fleetscan/internal/version"
	"github.com/fleetscan/fleetscan/internal/worker"
)

// Exit status.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

const usageHead = `Usage:
  worker [run] [flags]      scan queued images until SIGTERM (the default)
  worker db-update [flags]  download the vulnerability DB into --cache-dir if it is due

`

const runHelp = `worker run: pulls scan jobs from the workers' durable JetStream consumer,
scans each image by digest (for the job's platform, trying its mirrors) with
Trivy's vulnerability scanner against the DB under --cache-dir (never
downloaded here: see db-update), and publishes one result per job. Retryable
failures (rate limits, timeouts, registry errors) are retried with backoff up
to the delivery budget; permanent ones (not found, unauthorized, unsupported)
are recorded at once. On SIGTERM it stops taking jobs, lets in-flight scans
finish within --grace-period and hands the rest back to the queue.

With --ensure-topology-only it creates or updates the JetStream streams, the
workers' consumer, buckets and object stores, then exits (an init step, so
autoscalers find the consumer before the first worker starts).

Flags (each also read from the environment variable shown):
`

const dbUpdateHelp = `worker db-update: downloads the Trivy DB (and the Java DB with
--download-java-db) from the first working --db-repository into a staging
directory and switches --cache-dir/db to it atomically, so running workers
never see a half-written DB; they pick the new one up between jobs. Does
nothing while the DB is fresh.

It also fetches the CISA KEV catalogue (--kev-url) and FIRST's EPSS scores
(--epss-url) into --cache-dir/feeds the same way: validated in full, switched
atomically, the last good copy kept when a fetch fails (the command then
exits 1). With --publish-feeds it publishes the copies in use to JetStream,
where reporters in other pods read them.

Flags (each also read from the environment variable shown):
`

const usageTail = `
Exit status: 0 success (run: clean shutdown), 1 failure, 2 invalid flags or configuration.
`

// usageError marks errors caused by flags or configuration (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	// Trivy's per-process temporary directory.
	_ = scan.RemoveTempFiles()
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

func exitCode(err error, stderr io.Writer) int {
	var ue usageError
	switch {
	case err == nil, errors.Is(err, pflag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "worker: %v\n", err)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "worker: %v\n", err)
		return exitFailed
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return runWorker(ctx, args, stdout, stderr)
	case "db-update":
		return dbUpdate(ctx, args, stdout, stderr)
	case "help":
		fmt.Fprint(stderr, usageHead+"Run `worker <command> --help` for a command's flags.\n")
		return nil
	}
	return usageError{fmt.Errorf("unknown command %q (want run or db-update)", cmd)}
}

// parse parses and validates a subcommand's flags.
func parse(fs *pflag.FlagSet, args []string, stdout, stderr io.Writer, help string, validate func() error) error {
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageHead+help)
		fs.PrintDefaults()
		fmt.Fprint(stderr, usageTail)
	}
	if err := flagenv.Parse(fs, args, nil); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if *showVersion {
		fmt.Fprintln(stdout, "worker", version.Version)
		return pflag.ErrHelp
	}
	if err := validate(); err != nil {
		return usageError{err}
	}
	return nil
}

func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("worker run", pflag.ContinueOnError)
	cfg := worker.DefaultConfig()
	natsCfg := natsconn.Defaults("fleetscan-worker")
	topoCfg := topology.Defaults()
	logCfg := logging.Defaults()
	cfg.RegisterFlags(fs)
	natsCfg.RegisterFlags(fs)
	topoCfg.RegisterFlags(fs)
	logCfg.RegisterFlags(fs)
	ensureOnly := fs.Bool("ensure-topology-only", false, "create or update the JetStream topology, then exit (no DB needed)")
	if err := parse(fs, args, stdout, stderr, runHelp, func() error {
		return errors.Join(cfg.Validate(), natsCfg.Validate(), topoCfg.Validate(), logCfg.Validate())
	}); err != nil {
		return err
	}
	natsCfg.Name = "fleetscan-worker-" + cfg.WorkerName
	log, err := logging.New(logCfg)
	if err != nil {
		return usageError{err}
	}
	defer func() { _ = log.Sync() }()
	log = log.With(zap.String("component", "worker"), zap.String("version", version.Version))
	if *ensureOnly {
		return ensureTopology(ctx, natsCfg, topoCfg, stdout, log)
	}

	// Trivy writes its temporary files under $TMPDIR: keep them in the
	// scratch dir (the root file system is read only in the cluster).
	if err := os.MkdirAll(cfg.ScratchDir, 0o700); err != nil {
		return fmt.Errorf("--scratch-dir %s: %w", cfg.ScratchDir, err)
	}
	if err := os.Setenv("TMPDIR", cfg.ScratchDir); err != nil {
		return fmt.Errorf("--scratch-dir: %w", err)
	}

	// A missing or stale DB is reported before NATS is reached: it is the
	// more useful message (the engine opens after the topology, which the
	// shared layer cache needs).
	if _, err := trivydb.Check(cfg.DB, time.Now()); err != nil {
		return fmt.Errorf("vulnerability DB: %w", err)
	}
	nc, err := natsconn.Connect(ctx, natsCfg, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	res, err := topology.Ensure(ctx, js, topoCfg)
	if err != nil {
		return fmt.Errorf("ensure JetStream topology: %w", err)
	}

	engine, err := worker.OpenEngine(ctx, cfg, log, worker.WithResources(res))
	if err != nil {
		return err
	}
	defer func() {
		if err := engine.Close(); err != nil {
			log.Warn("close scanner", zap.Error(err))
		}
	}()
	st := store.New(js, res)
	st.Worker = cfg.WorkerName
	w, err := worker.New(cfg, worker.Deps{Conn: nc, Resources: res, Store: st, Scanner: engine, Log: log})
	if err != nil {
		return err
	}
	if err := w.Run(ctx); err != nil {
		return err
	}
	// Deliver outstanding acks and results before closing.
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		log.Warn("flush NATS connection", zap.Error(err))
	}
	return nil
}

func dbUpdate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("worker db-update", pflag.ContinueOnError)
	cfg := trivydb.Defaults()
	logCfg := logging.Defaults()
	cfg.RegisterFlags(fs)
	cfg.RegisterUpdateFlags(fs)
	cfg.Registry.RegisterFlags(fs)
	feedFlags := newFeedFlags(fs)
	logCfg.RegisterFlags(fs)
	if err := parse(fs, args, stdout, stderr, dbUpdateHelp, func() error {
		return errors.Join(cfg.ValidateUpdate(), feedFlags.validate(), logCfg.Validate())
	}); err != nil {
		return err
	}
	log, err := logging.New(logCfg)
	if err != nil {
		return usageError{err}
	}
	defer func() { _ = log.Sync() }()
	log = log.With(zap.String("component", "db-update"), zap.String("version", version.Version))
	res, err := trivydb.Update(ctx, cfg, log)
	if err != nil {
		return errors.Join(fmt.Errorf("update vulnerability DB in %s: %w", cfg.CacheDir, err), feedFlags.refresh(ctx, cfg.CacheDir, stdout, log))
	}
	report := func(what string, r trivydb.ArtifactResult) {
		state := "fresh, kept"
		if r.Updated {
			state = "updated from " + r.Repository
		}
		fmt.Fprintf(stdout, "%s: %s (%s); built %s, generation %s\n", what, state, r.Reason,
			r.Info.UpdatedAt.UTC().Format(time.RFC3339), r.Generation)
	}
	report("trivy DB", res.DB)
	if res.JavaDB != nil {
		report("java DB", *res.JavaDB)
	}
	return feedFlags.refresh(ctx, cfg.CacheDir, stdout, log)
}

// ensureTopology lays out the JetStream resources and returns.
func ensureTopology(ctx context.Context, natsCfg natsconn.Config, topoCfg topology.Config, stdout io.Writer, log *zap.Logger) error {
	nc, err := natsconn.Connect(ctx, natsCfg, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if _, err := topology.Ensure(ctx, js, topoCfg); err != nil {
		return fmt.Errorf("ensure JetStream topology: %w", err)
	}
	fmt.Fprintf(stdout, "JetStream topology ensured: stream %s, consumer %s\n", topology.JobsStream, topology.WorkersConsumer)
	return nil
}
