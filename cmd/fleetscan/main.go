// Command fleetscan is the all-in-one: the dispatcher, workers and reporter
// in one process on an embedded NATS JetStream, for one person on a laptop.
//
//	fleetscan scan   scan the clusters of your kubeconfig (or inventory files)
//	fleetscan demo   run the real pipeline on a generated fleet, offline
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/cli"
	"github.com/fleetscan/fleetscan/internal/demo"
	"github.com/fleetscan/fleetscan/internal/logging"
	"github.com/fleetscan/fleetscan/internal/natsconn"
	"github.com/fleetscan/fleetscan/internal/pipeline"
	"github.com/fleetscan/fleetscan/internal/progress"
	"github.com/fleetscan/fleetscan/internal/reporter"
	"github.com/fleetscan/fleetscan/internal/s3upload"
	"github.com/fleetscan/fleetscan/internal/version"
)

const usage = `Usage: fleetscan <command> [flags]

Commands:
  scan     scan what your clusters run now and report SLA breaches
  demo     run the real pipeline on a generated fleet, fully offline
  query    which running images hold a package or are affected by a CVE
  vex      vex export: write the acceptances' VEX decisions as OpenVEX
  version  print the version

Run 'fleetscan <command> --help' for a command's flags.
`

const scanHead = `Usage: fleetscan scan [flags]

Runs the whole fleetscan pipeline in this process: an embedded NATS JetStream
(state in --state-dir, so SLA first-seen dates persist between runs), the
dispatcher over the current kubeconfig context (or --context, --all-contexts,
--inventory-file), --workers scans at a time with Trivy's library, and the
reporter. Writes the report to --out-dir and exits with the reporter's status.

Every flag and file is checked before any work; one process at a time owns
--state-dir (a second exits 4 naming the holder's PID). The first SIGINT or
SIGTERM stops taking work and lets in-flight scans finish within
--grace-period (their results are kept for the next run); a second exits at
once.

Flags (each also read from the environment variable shown):
`

const demoHead = `Usage: fleetscan demo [flags]

Generates a small fleet offline — sample images served from a registry on
127.0.0.1, a vulnerability DB of real advisories, three clusters' pods — and
runs the real pipeline on it twice: once as of --history-days ago, to start
the SLA clocks, and once today. Some findings are then past their deadline,
so the demo exits 1 and says why.

Flags (each also read from the environment variable shown):
`

var command = cli.Command{Name: "fleetscan", Failure: reporter.ExitNoReport, Interrupted: reporter.ExitNoReport}

func main() { os.Exit(cli.Main(command, run)) }

// run returns an error carrying the exit status: the reporter's bit mask,
// or 4 when no report could be produced (usage errors included; --help and
// --version exit 0).
func run(ctx context.Context, env cli.Env) error {
	if len(env.Args) == 0 {
		fmt.Fprint(env.Stderr, usage)
		return cli.Status(reporter.ExitNoReport)
	}
	cmd := env.Args[0]
	env.Args = env.Args[1:]
	// The log, the progress line and the shutdown notice share stderr.
	env.Stderr = cli.Serialize(env.Stderr)
	switch cmd {
	case "scan":
		return scan(ctx, env)
	case "demo":
		return runDemo(ctx, env)
	case "query":
		return runQuery(ctx, env)
	case "vex":
		return runVEX(env)
	case "version", "--version":
		cli.PrintVersion(env.Stdout, "fleetscan")
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(env.Stdout, usage)
		return nil
	default:
		return cli.Usage(fmt.Errorf("unknown command %q\n\n%s", cmd, usage))
	}
}

// parse parses args into fs, applies the environment and builds the logger.
func parse(fs *pflag.FlagSet, head string, env cli.Env, logCfg *logging.Config) (*zap.Logger, error) {
	logCfg.RegisterFlags(fs)
	fs.Usage = func() {
		fmt.Fprint(env.Stderr, head)
		fs.PrintDefaults()
		fmt.Fprint(env.Stderr, "\n"+reporter.ExitStatusHelp)
	}
	if err := cli.Parse(fs, env, "fleetscan", map[string]string{s3upload.EnvAlias: "s3-url"}, slices.Concat(natsconn.SecretFlags, reporter.SecretFlags)...); err != nil {
		return nil, err
	}
	log, err := logging.NewWriter(*logCfg, env.Stderr)
	if err != nil {
		return nil, cli.Usage(err)
	}
	log.Debug("fleetscan starting", zap.String("version", version.Version))
	return log, nil
}

func progressPrinter(stderr io.Writer) *progress.Printer {
	return progress.New(stderr, cli.IsTerminal(stderr), 10*time.Second)
}

func scan(ctx context.Context, env cli.Env) error {
	fs := pflag.NewFlagSet("fleetscan scan", pflag.ContinueOnError)
	cfg := pipeline.Defaults()
	cfg.RegisterFlags(fs)
	logCfg := logging.Defaults()
	logCfg.Level = "warn" // the progress bar and the summary are the output
	log, err := parse(fs, scanHead, env, &logCfg)
	if err != nil {
		return err
	}
	env.Redactor.Add(cfg.Report.Secrets()...)
	defer func() { _ = log.Sync() }()
	cfg.Complete(time.Now())
	// Every flag and file is checked before the state is locked, a job
	// published or a first-seen date written.
	if err := cfg.Validate(); err != nil {
		return cli.Usage(err)
	}
	out, err := pipeline.Run(ctx, cfg, pipeline.Deps{Log: log, Out: env.Stdout, Notice: env.Stderr, Progress: progressPrinter(env.Stderr),
		OnWritten: func(o reporter.Outcome) { env.Interrupts.ExitWith(o.ExitCode()) }})
	if err != nil {
		return err
	}
	return out.Err()
}

func runDemo(ctx context.Context, env cli.Env) error {
	fs := pflag.NewFlagSet("fleetscan demo", pflag.ContinueOnError)
	cfg := demo.Config{OutDir: "./fleetscan-report", Workers: runtime.NumCPU(), HistoryDays: 40}
	fs.StringVar(&cfg.OutDir, "out-dir", cfg.OutDir, "directory the demo's report is written to")
	fs.StringVar(&cfg.WorkDir, "work-dir", cfg.WorkDir, "keep the demo's registry data, DB, inventories and state here (default: a temporary directory, removed)")
	fs.IntVar(&cfg.Workers, "workers", cfg.Workers, "images scanned at the same time")
	fs.IntVar(&cfg.HistoryDays, "history-days", cfg.HistoryDays, "how many days back the first pass runs (starts the SLA clocks)")
	logCfg := logging.Defaults()
	logCfg.Level = "warn"
	log, err := parse(fs, demoHead, env, &logCfg)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	if err := cfg.Validate(); err != nil {
		return cli.Usage(err)
	}
	out, err := demo.Run(ctx, cfg, demo.Deps{Log: log, Out: env.Stdout, Notice: env.Stderr, Progress: progressPrinter(env.Stderr)})
	if err != nil {
		return err
	}
	return out.Err()
}
