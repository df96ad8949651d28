package pipeline

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/feeds"
)

// refreshFeeds brings the exploit feeds (CISA KEV, FIRST EPSS) under
// --cache-dir up to date with the same updater `worker db-update` uses;
// with --skip-db-update only explicitly given local files are read. A feed
// that cannot be fetched is not fatal: its last good copy stays (the report
// says how old it is, or that it was never loaded), and the reason is
// logged as a warning. Only a cancelled run, a bad configuration or an
// unusable cache directory stops the run.
//
// now is the run's calendar (Deps.Clock): the fetch time recorded with
// each copy, against which the report judges its age.
func refreshFeeds(ctx context.Context, cfg Config, now func() time.Time, log *zap.Logger) error {
	fc := cfg.Feeds
	fc.LocalOnly = cfg.SkipDBUpdate
	u := &feeds.Updater{Config: fc, CacheDir: cfg.Worker.DB.CacheDir, Log: log.Named("feeds"), Now: now}
	res, err := u.Update(ctx)
	if err != nil {
		return fmt.Errorf("exploit feeds in --cache-dir %s: %w", cfg.Worker.DB.CacheDir, err)
	}
	if err := res.Err(); err != nil {
		log.Warn("exploit feeds not refreshed; the report uses the last good copies", zap.Error(err))
	}
	return nil
}
