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
	"os"
	"slices"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/cli"
	"github.com/fleetscan/fleetscan/internal/logging"
	"github.com/fleetscan/fleetscan/internal/natsconn"
	"github.com/fleetscan/fleetscan/internal/reporter"
	"github.com/fleetscan/fleetscan/internal/s3upload"
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

var command = cli.Command{Name: "reporter", Failure: reporter.ExitNoReport, Interrupted: reporter.ExitNoReport}

func main() { os.Exit(cli.Main(command, run)) }

// run produces one report. Its error carries the exit status: the report's
// bit mask, or 4 when no report could be produced (usage errors included;
// never 0-3, which alerting reads as a report's verdict).
func run(ctx context.Context, env cli.Env) error {
	fs := pflag.NewFlagSet("reporter", pflag.ContinueOnError)
	cfg := reporter.Defaults()
	natsCfg := natsconn.Defaults("fleetscan-reporter")
	natsCfg.GiveUpAfter = natsconn.BatchGiveUp
	topoCfg := topology.Defaults()
	logCfg := logging.Defaults()
	cfg.RegisterFlags(fs)
	natsCfg.RegisterFlags(fs)
	topoCfg.RegisterFlags(fs)
	logCfg.RegisterFlags(fs)
	fs.Usage = func() {
		fmt.Fprint(env.Stderr, usageHead)
		fs.PrintDefaults()
		fmt.Fprint(env.Stderr, usageTail)
	}
	if err := cli.Parse(fs, env, "reporter", map[string]string{s3upload.EnvAlias: "s3-url"}, slices.Concat(natsconn.SecretFlags, reporter.SecretFlags)...); err != nil {
		return err
	}
	env.Redactor.Add(cfg.Secrets()...)
	// Everything the flags name (files, the output directory) is checked
	// before NATS is reached or a first-seen date is written.
	if err := errors.Join(cfg.Check(), natsCfg.Validate(), topoCfg.Validate(), logCfg.Validate()); err != nil {
		return cli.Usage(err)
	}
	log, err := logging.NewWriter(logCfg, env.Stderr)
	if err != nil {
		return cli.Usage(err)
	}
	defer func() { _ = log.Sync() }()
	log = log.With(zap.String("component", "reporter"), zap.String("version", version.Version))

	out, err := report(ctx, cfg, natsCfg, topoCfg, log, env)
	if err != nil {
		err = cli.Cause(ctx, err)
		log.Error("no report produced", zap.Error(err), zap.Int("exit_status", reporter.ExitNoReport))
		return err
	}
	return out.Err()
}

func report(ctx context.Context, cfg reporter.Config, natsCfg natsconn.Config, topoCfg topology.Config, log *zap.Logger, env cli.Env) (reporter.Outcome, error) {
	s, err := natsconn.Open(ctx, natsCfg, topoCfg, log)
	if err != nil {
		return reporter.Outcome{}, err
	}
	defer s.Close()
	lctx, stop := s.WithLost(ctx)
	defer stop()
	d := reporter.NewDeps(store.New(s.JS, s.Res), s.Res, log, env.Stdout)
	// Once the files are written a second signal exits with their status.
	d.OnWritten = func(o reporter.Outcome) { env.Interrupts.ExitWith(o.ExitCode()) }
	out, err := reporter.Run(lctx, cfg, d)
	if err != nil && lctx.Err() == nil {
		err = s.Explain(ctx, err) // a step that failed as NATS went away
	}
	return out, cli.Cause(lctx, err)
}
