// Command fleetscan is the all-in-one: the dispatcher, workers and reporter
// in one process on an embedded NATS JetStream, for one person on a laptop.
//
//	fleetscan scan   scan the clusters of your kubeconfig (or inventory files)
//	fleetscan demo   run the real pipeline on a generated fleet, offline
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/demo"
	"github.com/fleetscan/fleetscan/internal/flagenv"
	"github.com/fleetscan/fleetscan/internal/logging"
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
  version  print the version

Run 'fleetscan <command> --help' for a command's flags.
`

const scanHead = `Usage: fleetscan scan [flags]

Runs the whole fleetscan pipeline in this process: an embedded NATS JetStream
(state in --state-dir, so SLA first-seen dates persist between runs), the
dispatcher over the current kubeconfig context (or --context, --all-contexts,
--inventory-file), --workers scans at a time with Trivy's library, and the
reporter. Writes the report to --out-dir and exits with the reporter's status.

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

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run returns the exit status: the reporter's bit mask, or 4 when no report
// could be produced (usage errors included; --help exits 0).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return reporter.ExitNoReport
	}
	switch args[0] {
	case "scan":
		return scan(ctx, args[1:], stdout, stderr)
	case "demo":
		return runDemo(ctx, args[1:], stdout, stderr)
	case "query":
		return runQuery(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "fleetscan %s\n", version.Version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "fleetscan: unknown command %q\n\n%s", args[0], usage)
		return reporter.ExitNoReport
	}
}

// parse parses args into fs, applies the environment and builds the logger.
// done is true when the caller should return code at once.
func parse(fs *pflag.FlagSet, head string, args []string, logCfg *logging.Config, stderr io.Writer) (log *zap.Logger, code int, done bool) {
	logCfg.RegisterFlags(fs)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, head)
		fs.PrintDefaults()
		fmt.Fprint(stderr, "\n"+reporter.ExitStatusHelp)
	}
	if err := flagenv.Parse(fs, args, map[string]string{s3upload.EnvAlias: "s3-url"}); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, 0, true
		}
		fmt.Fprintf(stderr, "fleetscan: %v\n", err)
		return nil, reporter.ExitNoReport, true
	}
	log, err := logging.New(*logCfg)
	if err != nil {
		fmt.Fprintf(stderr, "fleetscan: %v\n", err)
		return nil, reporter.ExitNoReport, true
	}
	log.Debug("fleetscan starting", zap.String("version", version.Version))
	return log, 0, false
}

func progressPrinter(stderr io.Writer) *progress.Printer {
	f, ok := stderr.(*os.File)
	return progress.New(stderr, ok && logging.IsTerminal(f), 10*time.Second)
}

func scan(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("fleetscan scan", pflag.ContinueOnError)
	cfg := pipeline.Defaults()
	cfg.RegisterFlags(fs)
	logCfg := logging.Defaults()
	logCfg.Level = "warn" // the progress bar and the summary are the output
	log, code, done := parse(fs, scanHead, args, &logCfg, stderr)
	if done {
		return code
	}
	defer func() { _ = log.Sync() }()
	cfg.Complete(time.Now())
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "fleetscan scan: %v\n", err)
		return reporter.ExitNoReport
	}
	out, err := pipeline.Run(ctx, cfg, pipeline.Deps{Log: log, Out: stdout, Progress: progressPrinter(stderr)})
	if err != nil {
		fmt.Fprintf(stderr, "fleetscan scan: %v\n", err)
	}
	return reporter.ExitCode(out, err)
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("fleetscan demo", pflag.ContinueOnError)
	cfg := demo.Config{OutDir: "./fleetscan-report", Workers: runtime.NumCPU(), HistoryDays: 40}
	fs.StringVar(&cfg.OutDir, "out-dir", cfg.OutDir, "directory the demo's report is written to")
	fs.StringVar(&cfg.WorkDir, "work-dir", cfg.WorkDir, "keep the demo's registry data, DB, inventories and state here (default: a temporary directory, removed)")
	fs.IntVar(&cfg.Workers, "workers", cfg.Workers, "images scanned at the same time")
	fs.IntVar(&cfg.HistoryDays, "history-days", cfg.HistoryDays, "how many days back the first pass runs (starts the SLA clocks)")
	logCfg := logging.Defaults()
	logCfg.Level = "warn"
	log, code, done := parse(fs, demoHead, args, &logCfg, stderr)
	if done {
		return code
	}
	defer func() { _ = log.Sync() }()
	out, err := demo.Run(ctx, cfg, demo.Deps{Log: log, Out: stdout, Progress: progressPrinter(stderr)})
	if err != nil {
		fmt.Fprintf(stderr, "fleetscan demo: %v\n", err)
	}
	return reporter.ExitCode(out, err)
}
