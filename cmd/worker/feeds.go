package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/feeds"
	"github.com/fleetscan/fleetscan/internal/natsconn"
	"github.com/fleetscan/fleetscan/internal/topology"
)

// feedFlags are db-update's flags for the exploit feeds (CISA KEV, FIRST
// EPSS) and for publishing them to JetStream.
type feedFlags struct {
	cfg     feeds.Config
	publish bool
	nats    natsconn.Config
	topo    topology.Config
}

func newFeedFlags(fs *pflag.FlagSet) *feedFlags {
	f := &feedFlags{cfg: feeds.Defaults(), nats: natsconn.Defaults("fleetscan-updater"), topo: topology.Defaults()}
	f.cfg.RegisterFlags(fs)
	fs.BoolVar(&f.publish, "publish-feeds", f.publish, "also publish the KEV and EPSS feeds to the JetStream object store "+topology.FeedsBucket+" for reporters in other pods (uses the --nats-* flags)")
	f.nats.RegisterFlags(fs)
	f.topo.RegisterFlags(fs)
	return f
}

func (f *feedFlags) validate() error {
	errs := []error{f.cfg.Validate()}
	if f.publish {
		errs = append(errs, f.nats.Validate(), f.topo.Validate())
	}
	return errors.Join(errs...)
}

// refresh updates the feeds under cacheDir (keeping the last good copy of
// a feed that fails), publishes the copies in use when asked, and prints
// one line per feed. The error names what failed; the feeds that worked
// are stored (and published) all the same.
func (f *feedFlags) refresh(ctx context.Context, cacheDir string, stdout io.Writer, log *zap.Logger) error {
	res, err := feeds.Update(ctx, f.cfg, cacheDir, log.Named("feeds"))
	if err != nil {
		return fmt.Errorf("update exploit feeds in %s: %w", cacheDir, err)
	}
	now := time.Now()
	for _, r := range res.Feeds {
		line := fmt.Sprintf("%s: %s", r.Feed.Title(), r.Outcome)
		if r.Source != "" {
			line += " (" + r.Source + ")"
		}
		if r.HasCurrent {
			line += "; in use: " + r.Status(f.cfg.MaxAge).Describe(now)
		}
		fmt.Fprintln(stdout, line)
	}
	errs := []error{res.Err()}
	if f.publish {
		errs = append(errs, f.publishTo(ctx, cacheDir, stdout, log))
	}
	return errors.Join(errs...)
}

func (f *feedFlags) publishTo(ctx context.Context, cacheDir string, stdout io.Writer, log *zap.Logger) error {
	nc, err := natsconn.Connect(ctx, f.nats, log)
	if err != nil {
		return fmt.Errorf("publish feeds: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("publish feeds: jetstream: %w", err)
	}
	res, err := topology.Ensure(ctx, js, f.topo)
	if err != nil {
		return fmt.Errorf("publish feeds: ensure JetStream topology: %w", err)
	}
	pub, err := feeds.Publish(ctx, res.Feeds, feeds.DirSource(cacheDir), log.Named("feeds"))
	for _, p := range pub {
		fmt.Fprintf(stdout, "%s: published to %s: %s\n", p.Feed.Title(), topology.FeedsBucket, p.Action)
	}
	return err
}
