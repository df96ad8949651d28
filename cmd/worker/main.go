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
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/cli"
	"github.com/fleetscan/fleetscan/internal/logging"
	"github.com/fleetscan/fleetscan/internal/natsconn"
	"github.com/fleetscan/fleetscan/internal/scan"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/internal/trivydb"
	"github.com/fleetscan/fleetscan/internal/version"
	"github.com/fleetscan/fleetscan/internal/worker"
)

var command = cli.Command{Name: "worker", Failure: cli.ExitFailed, Interrupted: cli.ExitFailed}

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
Exit status: 0 success (run: clean shutdown), 1 failure (or a second
SIGINT/SIGTERM during the shutdown), 4 invalid flags, files or configuration.
`

func main() {
	code := cli.Main(command, run)
	// Trivy's per-process temporary directory.
	_ = scan.RemoveTempFiles()
	os.Exit(code)
}

func run(ctx context.Context, env cli.Env) error {
	cmd, args := "run", env.Args
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	env.Args = args
	switch cmd {
	case "run":
		return runWorker(ctx, env)
	case "db-update":
		return dbUpdate(ctx, env)
	case "help":
		fmt.Fprint(env.Stderr, usageHead+"Run `worker <command> --help` for a command's flags.\n")
		return nil
	}
	return cli.Usage(fmt.Errorf("unknown command %q (want run or db-update)", cmd))
}

// parse parses and validates a subcommand's flags.
func parse(fs *pflag.FlagSet, env cli.Env, help string, validate func() error) error {
	fs.Usage = func() {
		fmt.Fprint(env.Stderr, usageHead+help)
		fs.PrintDefaults()
		fmt.Fprint(env.Stderr, usageTail)
	}
	if err := cli.Parse(fs, env, "worker", nil, natsconn.SecretFlags...); err != nil {
		return err
	}
	return cli.Usage(validate())
}

// dbHint says how this binary gets a vulnerability DB.
func dbHint(cacheDir string, err error) error {
	switch {
	case errors.Is(err, trivydb.ErrMissing):
		return fmt.Errorf("%w; run the DB updater (`worker db-update --cache-dir=%s`) first", err, cacheDir)
	case errors.Is(err, trivydb.ErrStale):
		return fmt.Errorf("%w; run the DB updater (`worker db-update`) or raise --max-db-age", err)
	}
	return err
}

func runWorker(ctx context.Context, env cli.Env) error {
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
	if err := parse(fs, env, runHelp, func() error {
		return errors.Join(cfg.Validate(), natsCfg.Validate(), topoCfg.Validate(), logCfg.Validate())
	}); err != nil {
		return err
	}
	natsCfg.Name = "fleetscan-worker-" + cfg.WorkerName
	// The log and the shutdown notice (written from another goroutine)
	// share stderr: one lock keeps their lines whole.
	env.Stderr = cli.Serialize(env.Stderr)
	log, err := logging.NewWriter(logCfg, env.Stderr)
	if err != nil {
		return cli.Usage(err)
	}
	defer func() { _ = log.Sync() }()
	log = log.With(zap.String("component", "worker"), zap.String("version", version.Version))
	if *ensureOnly {
		return ensureTopology(ctx, natsCfg, topoCfg, env.Stdout, log)
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
		return fmt.Errorf("vulnerability DB: %w", dbHint(cfg.DB.CacheDir, err))
	}
	// A worker is a service: it reconnects to NATS for as long as it runs.
	s, err := natsconn.Open(ctx, natsCfg, topoCfg, log)
	if err != nil {
		return err
	}
	defer s.Close()

	engine, err := worker.OpenEngine(ctx, cfg, log, worker.WithResources(s.Res))
	if err != nil {
		return dbHint(cfg.DB.CacheDir, err)
	}
	defer func() {
		if err := engine.Close(); err != nil {
			log.Warn("close scanner", zap.Error(err))
		}
	}()
	st := store.New(s.JS, s.Res)
	st.Worker = cfg.WorkerName
	w, err := worker.New(cfg, worker.Deps{Conn: s.Conn, Resources: s.Res, Store: st, Scanner: engine, Log: log})
	if err != nil {
		return err
	}
	context.AfterFunc(ctx, func() {
		fmt.Fprintf(env.Stderr, "worker: stopped taking jobs; waiting up to %s (until %s) for %d in-flight scans, then handing the rest back to the queue\n",
			cfg.GracePeriod, time.Now().Add(cfg.GracePeriod).Format(time.TimeOnly), w.InFlight())
	})
	if err := w.Run(ctx); err != nil {
		return err
	}
	// Deliver outstanding acks and results before closing.
	s.Drain(5 * time.Second)
	return nil
}

func dbUpdate(ctx context.Context, env cli.Env) error {
	fs := pflag.NewFlagSet("worker db-update", pflag.ContinueOnError)
	cfg := trivydb.Defaults()
	logCfg := logging.Defaults()
	cfg.RegisterFlags(fs)
	cfg.RegisterUpdateFlags(fs)
	cfg.Registry.RegisterFlags(fs)
	feedFlags := newFeedFlags(fs)
	var vexRepos []string
	fs.StringArrayVar(&vexRepos, "vex-repo", nil, "VEX repository URL (VEX Hub format) to fetch into <cache-dir>/vex for the reporter's --vex-repo-dir; repeatable (a failed fetch keeps the last good copy)")
	logCfg.RegisterFlags(fs)
	if err := parse(fs, env, dbUpdateHelp, func() error {
		return errors.Join(cfg.ValidateUpdate(), feedFlags.validate(), logCfg.Validate(), checkVEXRepos(vexRepos))
	}); err != nil {
		return err
	}
	log, err := logging.NewWriter(logCfg, env.Stderr)
	if err != nil {
		return cli.Usage(err)
	}
	defer func() { _ = log.Sync() }()
	log = log.With(zap.String("component", "db-update"), zap.String("version", version.Version))
	res, err := trivydb.Update(ctx, cfg, log)
	if err != nil {
		return errors.Join(fmt.Errorf("update vulnerability DB in %s: %w", cfg.CacheDir, err), feedFlags.refresh(ctx, cfg.CacheDir, env.Stdout, log))
	}
	report := func(what string, r trivydb.ArtifactResult) {
		state := "fresh, kept"
		if r.Updated {
			state = "updated from " + r.Repository
		}
		fmt.Fprintf(env.Stdout, "%s: %s (%s); built %s, generation %s\n", what, state, r.Reason,
			r.Info.UpdatedAt.UTC().Format(time.RFC3339), r.Generation)
	}
	report("trivy DB", res.DB)
	if res.JavaDB != nil {
		report("java DB", *res.JavaDB)
	}
	return errors.Join(feedFlags.refresh(ctx, cfg.CacheDir, env.Stdout, log), refreshVEXRepos(ctx, cfg.CacheDir, vexRepos, env.Stdout))
}

// ensureTopology lays out the JetStream resources and returns.
func ensureTopology(ctx context.Context, natsCfg natsconn.Config, topoCfg topology.Config, stdout io.Writer, log *zap.Logger) error {
	s, err := natsconn.Open(ctx, natsCfg, topoCfg, log)
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Fprintf(stdout, "JetStream topology ensured: stream %s, consumer %s\n", topology.JobsStream, topology.WorkersConsumer)
	return nil
}
