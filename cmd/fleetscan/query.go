package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"github.com/fleetscan/fleetscan/internal/flagenv"
	"github.com/fleetscan/fleetscan/internal/logging"
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

// Exit status of `fleetscan query`.
const (
	queryMatched = 0
	queryNoMatch = 1
	queryFailed  = 4
)

func runQuery(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("fleetscan query", pflag.ContinueOnError)
	def := pipeline.Defaults()
	cfg := query.Defaults(def.StateDir, def.Worker.DB.CacheDir)
	cfg.RegisterFlags(fs)
	logCfg := logging.Defaults()
	logCfg.Level = "warn"
	logCfg.RegisterFlags(fs)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, queryHead)
		fs.PrintDefaults()
		fmt.Fprint(stderr, "\n"+queryExitHelp)
	}
	if err := flagenv.Parse(fs, args, nil); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return queryMatched
		}
		fmt.Fprintf(stderr, "fleetscan query: %v\n", err)
		return queryFailed
	}
	log, err := logging.New(logCfg)
	if err != nil {
		fmt.Fprintf(stderr, "fleetscan query: %v\n", err)
		return queryFailed
	}
	defer func() { _ = log.Sync() }()
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "fleetscan query: %v\n", err)
		return queryFailed
	}
	js, closeState, err := query.Connect(ctx, cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "fleetscan query: %v\n", err)
		return queryFailed
	}
	defer closeState()
	src, err := query.OpenResources(ctx, js, log)
	if err != nil {
		fmt.Fprintf(stderr, "fleetscan query: %v\n", err)
		return queryFailed
	}
	res, err := query.Run(ctx, cfg, src, query.Deps{Log: log})
	if err != nil {
		fmt.Fprintf(stderr, "fleetscan query: %v\n", err)
		return queryFailed
	}
	for _, n := range res.Notes {
		fmt.Fprintf(stderr, "fleetscan query: note: %s\n", n)
	}
	if cfg.Format == query.FormatJSON {
		err = query.WriteJSON(stdout, res)
	} else {
		err = query.WriteTable(stdout, res)
	}
	if err != nil {
		fmt.Fprintf(stderr, "fleetscan query: write output: %v\n", err)
		return queryFailed
	}
	if len(res.Matches) == 0 {
		return queryNoMatch
	}
	return queryMatched
}
