package pipeline

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/feeds"
	"github.com/fleetscan/fleetscan/internal/vex"
)

// refreshFeeds brings the exploit feeds (CISA KEV, FIRST EPSS) under
// --cache-dir up to date with the same updater `worker db-update` uses;
// with --skip-db-update only explicitly given local files are read. A feed
// that cannot be fetched is not fatal: its last good copy stays (the report
// says how old it is, or that it was never loaded), and the reason is
// logged as a warning (so are the --vex-repo repositories, refreshed
// here too). Only a cancelled run, a bad configuration or an
// unusable cache directory stops the run.
//
// now is the run's calendar (Deps.Clock): the fetch time recorded with
// each copy, against which the report judges its age.
func refreshFeeds(ctx context.Context, cfg Config, now func() time.Time, log *zap.Logger) error {
	refreshVEXRepos(ctx, cfg, now(), log)
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

// refreshVEXRepos fetches the --vex-repo repositories into the cache dir
// (not with --skip-db-update). A repository that cannot be fetched keeps
// its last good copy and is logged as a warning, like the feeds.
func refreshVEXRepos(ctx context.Context, cfg Config, now time.Time, log *zap.Logger) {
	if len(cfg.VEXRepos) == 0 || cfg.SkipDBUpdate {
		return
	}
	client := &http.Client{Timeout: 2 * time.Minute}
	for _, r := range vex.UpdateRepositories(ctx, client, VEXRepoDir(cfg.Worker.DB.CacheDir), cfg.VEXRepos, now) {
		if r.Err != nil {
			log.Warn("VEX repository not refreshed; the last good copy (if any) is used", zap.String("url", r.URL), zap.Error(r.Err))
			continue
		}
		log.Info("VEX repository updated", zap.String("url", r.URL), zap.Int("documents", r.Meta.Documents))
	}
}
