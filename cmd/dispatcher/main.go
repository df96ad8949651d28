// Command dispatcher enumerates the containers running in one or more
// Kubernetes clusters, deduplicates their images by manifest digest and
// platform, and publishes one scan job per unique image to NATS JetStream.
// See --help for flags, exit status and the RBAC it needs.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/cli"
	"github.com/fleetscan/fleetscan/internal/dispatcher"
	"github.com/fleetscan/fleetscan/internal/logging"
	"github.com/fleetscan/fleetscan/internal/natsconn"
	"github.com/fleetscan/fleetscan/internal/queue"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/internal/version"
)

var command = cli.Command{Name: "dispatcher", Failure: cli.ExitFailed, Interrupted: cli.ExitFailed}

const usageHead = `Usage: dispatcher [flags]

Lists the pods of one or more Kubernetes clusters (or kubectl JSON files),
resolves the image digest each container really runs, and publishes one scan
job per unique digest+platform to NATS JetStream, with the run's inventories
and manifest. Several dispatchers of one --cycle publish each image once.

Flags (each also read from the environment variable shown):
`

const usageTail = `
Exit status:
  0  at least one cluster was enumerated and every job, inventory and the run
     manifest were stored (a cluster that failed is logged as an error and
     recorded in the manifest as not ok)
  1  no cluster could be enumerated, publishing or storing failed, NATS was
     lost, or a second SIGINT/SIGTERM ended the run at once
  4  invalid flags, files or configuration (nothing was published)

RBAC needed on each live cluster (a ClusterRole bound to the dispatcher):
  ""     pods         list      (all namespaces)
  ""     nodes        list      (node platform)
  apps   replicasets  get, list (Deployment attribution)
  batch  jobs         get, list (CronJob attribution)
  ""     namespaces   list      (namespace labels and annotations: owners)
`

func main() { os.Exit(cli.Main(command, run)) }

func run(ctx context.Context, env cli.Env) error {
	fs := pflag.NewFlagSet("dispatcher", pflag.ContinueOnError)
	cfg := dispatcher.Defaults()
	natsCfg := natsconn.Defaults("fleetscan-dispatcher")
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
	if err := cli.Parse(fs, env, "dispatcher", nil, natsconn.SecretFlags...); err != nil {
		return err
	}
	errs := []error{cfg.Validate(), cfg.Sources.CheckFiles(), logCfg.Validate()}
	if !cfg.DryRun {
		errs = append(errs, natsCfg.Validate(), topoCfg.Validate())
	}
	if err := errors.Join(errs...); err != nil {
		return cli.Usage(err)
	}
	log, err := logging.NewWriter(logCfg, env.Stderr)
	if err != nil {
		return cli.Usage(err)
	}
	defer func() { _ = log.Sync() }()
	log = log.With(zap.String("component", "dispatcher"), zap.String("version", version.Version))

	resolver, err := cfg.Resolver()
	if err != nil {
		return cli.Usage(err)
	}
	sources, failed, err := cfg.Sources.Open(log)
	if err != nil {
		return cli.Usage(fmt.Errorf("open clusters: %w", err))
	}
	deps := dispatcher.Deps{Sources: sources, Failed: failed, Resolver: resolver, Log: log}
	if cfg.DryRun {
		_, err := dispatcher.DryRun(ctx, cfg, deps, env.Stdout, env.Stderr)
		return cli.Cause(ctx, err)
	}

	s, err := natsconn.Open(ctx, natsCfg, topoCfg, log)
	if err != nil {
		return cli.Cause(ctx, err)
	}
	defer s.Close()
	lctx, stop := s.WithLost(ctx)
	defer stop()
	st := store.New(s.JS, s.Res)
	deps.Publisher, deps.Store, deps.Reuse = queue.NewPublisher(s.JS), st, st
	m, err := dispatcher.Run(lctx, cfg, deps)
	if err != nil && lctx.Err() == nil {
		err = s.Explain(ctx, err) // a step that failed as NATS went away
	}
	if err != nil {
		return cli.Cause(lctx, err)
	}
	log.Info("run manifest stored", logging.RunID(m.RunID), zap.Int("expected", len(m.Expected)), zap.Int("reused", m.Reused))
	return nil
}
