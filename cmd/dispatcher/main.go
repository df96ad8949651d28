// Command dispatcher enumerates the containers running in one or more
// Kubernetes clusters, deduplicates their images by manifest digest and
// platform, and publishes one scan job per unique image to NATS JetStream.
// See --help for flags, exit status and the RBAC it needs.
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

	"github.com/fleetscan/fleetscan/internal/dispatcher"
	"github.com/fleetscan/fleetscan/internal/flagenv"
	"github.com/fleetscan/fleetscan/internal/logging"
	"github.com/fleetscan/fleetscan/internal/natsconn"
	"github.com/fleetscan/fleetscan/internal/queue"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/internal/version"
)

// Exit status.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

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
  1  no cluster could be enumerated, or publishing or storing failed
  2  invalid flags or configuration

RBAC needed on each live cluster (a ClusterRole bound to the dispatcher):
  ""     pods         list      (all namespaces)
  ""     nodes        get, list (node platform)
  apps   replicasets  get, list (Deployment attribution)
  batch  jobs         get, list (CronJob attribution)
`

// usageError marks errors caused by flags or configuration (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

func exitCode(err error, stderr io.Writer) int {
	var ue usageError
	switch {
	case err == nil, errors.Is(err, pflag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "dispatcher: %v\n", err)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "dispatcher: %v\n", err)
		return exitFailed
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("dispatcher", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := dispatcher.Defaults()
	natsCfg := natsconn.Defaults("fleetscan-dispatcher")
	topoCfg := topology.Defaults()
	logCfg := logging.Defaults()
	cfg.RegisterFlags(fs)
	natsCfg.RegisterFlags(fs)
	topoCfg.RegisterFlags(fs)
	logCfg.RegisterFlags(fs)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageHead)
		fs.PrintDefaults()
		fmt.Fprint(stderr, usageTail)
	}
	if err := flagenv.Parse(fs, args, nil); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	errs := []error{cfg.Validate(), logCfg.Validate()}
	if !cfg.DryRun {
		errs = append(errs, natsCfg.Validate(), topoCfg.Validate())
	}
	if err := errors.Join(errs...); err != nil {
		return usageError{err}
	}
	log, err := logging.New(logCfg)
	if err != nil {
		return usageError{err}
	}
	defer func() { _ = log.Sync() }()
	log = log.With(zap.String("component", "dispatcher"), zap.String("version", version.Version))

	resolver, err := cfg.Resolver()
	if err != nil {
		return usageError{err}
	}
	sources, failed, err := cfg.Sources.Open(log)
	if err != nil {
		return fmt.Errorf("open clusters: %w", err)
	}
	deps := dispatcher.Deps{Sources: sources, Failed: failed, Resolver: resolver, Log: log}
	if cfg.DryRun {
		_, err := dispatcher.DryRun(ctx, cfg, deps, stdout, stderr)
		return err
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
	st := store.New(js, res)
	deps.Publisher, deps.Store, deps.Reuse = queue.NewPublisher(js), st, st
	m, err := dispatcher.Run(ctx, cfg, deps)
	if err != nil {
		return err
	}
	log.Info("run manifest stored", logging.RunID(m.RunID), zap.Int("expected", len(m.Expected)), zap.Int("reused", m.Reused))
	return nil
}
