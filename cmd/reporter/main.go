// Command reporter builds fleetscan's SLA-ranked vulnerability report from
// the inventories, run manifests and scan results in NATS JetStream, writes
// it (CSV, JSON, HTML, Markdown, tickets) to a directory, optionally
// uploads it to S3, and exits with a status a CronJob or an alert can key
// on. See --help for flags and the exit status.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/flagenv"
	"github.com/fleetscan/fleetscan/internal/logging"
	"github.com/fleetscan/fleetscan/internal/natsconn"
	"github.com/fleetscan/fleetscan/internal/reporter"
	"github.com/fleetscan/fleetscan/internal/s3upload"
	"github.com/fleetscan/fleetscan/internal/sla"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/internal/version"
)

const usageHead = `Usage: reporter [flags]

Reports which known vulnerabilities run in the fleet and which breached their
remediation SLA. By default it covers the latest inventory of every cluster
collected within --max-age; --run covers one dispatcher run. SLA clocks start
when a finding is first seen (kept in JetStream across runs), so a rebuilt
image that still carries the vulnerable package keeps its deadline.

Flags (each also read from the environment variable shown):
`

const usageTail = `
Outputs in --out-dir: report.csv (the first eight columns are the original
tutorial's), report.json, report.html (self-contained), report.md,
tickets.csv and tickets.json.

` + reporter.ExitStatusHelp

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run returns the exit status. Usage errors exit 4 (never 0-3, which
// alerting reads as a report's verdict); --help exits 0.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("reporter", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := reporter.Defaults()
	natsCfg := natsconn.Defaults("fleetscan-reporter")
	topoCfg := topology.Defaults()
	logCfg := logging.Defaults()
	cfg.RegisterFlags(fs)
	natsCfg.RegisterFlags(fs)
	topoCfg.RegisterFlags(fs)
	logCfg.RegisterFlags(fs)
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprint(stderr, usageHead)
		fs.PrintDefaults()
		fmt.Fprint(stderr, usageTail)
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "reporter: %v\n", err)
		return reporter.ExitNoReport
	}
	if err := flagenv.Parse(fs, args, map[string]string{s3upload.EnvAlias: "s3-url"}); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return reporter.ExitOK
		}
		return fail(err)
	}
	if *showVersion {
		fmt.Fprintln(stdout, "reporter", version.Version)
		return reporter.ExitOK
	}
	if err := errors.Join(cfg.Validate(), natsCfg.Validate(), topoCfg.Validate(), logCfg.Validate()); err != nil {
		return fail(err)
	}
	if err := sla.ValidatePolicyFile(cfg.SLAConfig); err != nil {
		return fail(err) // the policy's content, before NATS is reached
	}
	log, err := logging.New(logCfg)
	if err != nil {
		return fail(err)
	}
	defer func() { _ = log.Sync() }()
	log = log.With(zap.String("component", "reporter"), zap.String("version", version.Version))

	out, err := report(ctx, cfg, natsCfg, topoCfg, log, stdout)
	code := reporter.ExitCode(out, err)
	if err != nil {
		log.Error("no report produced", zap.Error(err), zap.Int("exit_status", code))
		fmt.Fprintf(stderr, "reporter: %v\n", err)
	}
	return code
}

func report(ctx context.Context, cfg reporter.Config, natsCfg natsconn.Config, topoCfg topology.Config, log *zap.Logger, stdout io.Writer) (reporter.Outcome, error) {
	nc, err := natsconn.Connect(ctx, natsCfg, log)
	if err != nil {
		return reporter.Outcome{}, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return reporter.Outcome{}, fmt.Errorf("jetstream: %w", err)
	}
	res, err := topology.Ensure(ctx, js, topoCfg)
	if err != nil {
		return reporter.Outcome{}, fmt.Errorf("ensure JetStream topology: %w", err)
	}
	return reporter.Run(ctx, cfg, reporter.NewDeps(store.New(js, res), res, log, stdout))
}
