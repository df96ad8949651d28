package main

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/fleetscan/fleetscan/internal/cli"
	"github.com/fleetscan/fleetscan/internal/logging"
	"github.com/fleetscan/fleetscan/internal/natsconn"
	"github.com/fleetscan/fleetscan/internal/pipeline"
	"github.com/fleetscan/fleetscan/internal/query"
)

const queryHead = `Usage: fleetscan query (--package NAME [--version CONSTRAINT] | --purl PURL | --cve ID [--db-update]) [flags]

Answers "where do we run it?" across every cluster at once, without pulling
an image: which running image digests hold a package, or are affected by a
vulnerability (detected now, with the current DB, over the packages the
workers recorded). Reads the all-in-one state (--state-dir) or an external
NATS (--nats-url); only digests in the clusters' current inventories are
reported, with the workloads and references that run them.

Examples:
  fleetscan query --package log4j-core --version '<2.17.1'
  fleetscan query --purl pkg:npm/lodash@4.17.20 --format json
  fleetscan query --cve CVE-2024-3094 --db-update

Flags (each also read from the environment variable shown):
`

const queryExitHelp = `Exit status:
  0  something matched
  1  nothing matched
  4  error: bad flags, no fleetscan state, NATS unreachable, no usable DB
`

// queryNoMatch is `fleetscan query`'s status when nothing matched (0:
// something did; 4: an error, as for every fleetscan command).
const queryNoMatch = 1

func runQuery(ctx context.Context, env cli.Env) error {
	fs := pflag.NewFlagSet("fleetscan query", pflag.ContinueOnError)
	def := pipeline.Defaults()
	cfg := query.Defaults(def.StateDir, def.Worker.DB.CacheDir)
	cfg.RegisterFlags(fs)
	logCfg := logging.Defaults()
	logCfg.Level = "warn"
	logCfg.RegisterFlags(fs)
	fs.Usage = func() {
		fmt.Fprint(env.Stderr, queryHead)
		fs.PrintDefaults()
		fmt.Fprint(env.Stderr, "\n"+queryExitHelp)
	}
	if err := cli.Parse(fs, env, "fleetscan", nil, natsconn.SecretFlags...); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return cli.Usage(fmt.Errorf("query: %w", err))
	}
	log, err := logging.NewWriter(logCfg, env.Stderr)
	if err != nil {
		return cli.Usage(err)
	}
	defer func() { _ = log.Sync() }()
	js, closeState, err := query.Connect(ctx, cfg, log)
	if err != nil {
		return fmt.Errorf("query: %w", err)
	}
	defer closeState()
	src, err := query.OpenResources(ctx, js, log)
	if err != nil {
		return fmt.Errorf("query: %w", err)
	}
	res, err := query.Run(ctx, cfg, src, query.Deps{Log: log})
	if err != nil {
		return fmt.Errorf("query: %w", cli.Cause(ctx, err))
	}
	for _, n := range res.Notes {
		fmt.Fprintf(env.Stderr, "fleetscan query: note: %s\n", n)
	}
	if cfg.Format == query.FormatJSON {
		err = query.WriteJSON(env.Stdout, res)
	} else {
		err = query.WriteTable(env.Stdout, res)
	}
	if err != nil {
		return fmt.Errorf("query: write output: %w", err)
	}
	if len(res.Matches) == 0 {
		return cli.Status(queryNoMatch)
	}
	return nil
}
