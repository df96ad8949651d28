package feeds

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/logging"
)

// Outcome is what an update did with one feed.
type Outcome string

const (
	// OutcomeUpdated: a new copy was validated and switched in.
	OutcomeUpdated Outcome = "updated"
	// OutcomeUnchanged: the source still serves the stored copy; its check
	// time was refreshed.
	OutcomeUnchanged Outcome = "unchanged"
	// OutcomeDisabled: the feed's URL is empty.
	OutcomeDisabled Outcome = "disabled"
	// OutcomeSkipped: a remote source under LocalOnly (--skip-db-update).
	OutcomeSkipped Outcome = "skipped"
	// OutcomeFailed: the fetch or the validation failed; the last good
	// copy (if any) is kept.
	OutcomeFailed Outcome = "failed"
)

// FeedResult is the outcome of updating one feed.
type FeedResult struct {
	Feed    Kind
	Source  string
	Outcome Outcome
	// Err is set when Outcome is OutcomeFailed.
	Err error
	// Current describes the copy in use after the update; HasCurrent is
	// false when there is none.
	Current    Meta
	HasCurrent bool
	// Generation is the directory Dir(cacheDir)/<feed> points to.
	Generation string
}

// Status is the feed as a reader at now would find it after the update.
func (r FeedResult) Status(maxAge time.Duration) Status {
	return Status{Feed: r.Feed, Loaded: r.HasCurrent, Meta: r.Current, MaxAge: maxAge}
}

// Result is the outcome of Update: one entry per feed, in Kinds order.
type Result struct {
	Feeds []FeedResult
}

// Err joins the failures, naming each feed, its flag and source.
func (r Result) Err() error {
	var errs []error
	for _, f := range r.Feeds {
		if f.Outcome == OutcomeFailed {
			errs = append(errs, fmt.Errorf("%s (%s %s): %w; %s", f.Feed.Title(), f.Feed.Flag(), f.Source, f.Err, keptCopy(f)))
		}
	}
	return errors.Join(errs...)
}

func keptCopy(f FeedResult) string {
	if !f.HasCurrent {
		return "no copy stored yet"
	}
	return fmt.Sprintf("keeping the copy fetched %s", f.Current.FetchedAt.UTC().Format(time.RFC3339))
}

// Updater fetches the feeds into a cache directory the way trivydb's
// updater keeps the DB: each fetch goes to a staging directory, is parsed
// and validated in full, then switched in atomically; a failed fetch or a
// bad feed leaves the last good copy in place. Updaters sharing a cache
// directory take turns on a lock file.
type Updater struct {
	Config   Config
	CacheDir string
	Log      *zap.Logger
	// Client fetches http(s) sources (default http.DefaultClient, which
	// honours HTTPS_PROXY).
	Client *http.Client
	// Now is the clock stamped into the metadata (default time.Now).
	Now func() time.Time
}

// Update runs an Updater with the default client and clock.
func Update(ctx context.Context, cfg Config, cacheDir string, log *zap.Logger) (Result, error) {
	u := &Updater{Config: cfg, CacheDir: cacheDir, Log: log}
	return u.Update(ctx)
}

func (u *Updater) log() *zap.Logger {
	if u.Log == nil {
		return zap.NewNop()
	}
	return u.Log
}

func (u *Updater) now() time.Time {
	if u.Now == nil {
		return time.Now().UTC()
	}
	return u.Now().UTC()
}

// Update brings every enabled feed up to date. The error is for what stops
// the whole update (the configuration, the cache directory, the lock, a
// cancelled context); a feed that fails is reported in its FeedResult and
// in Result.Err, and keeps its last good copy.
func (u *Updater) Update(ctx context.Context) (Result, error) {
	if err := u.Config.Validate(); err != nil {
		return Result{}, err
	}
	d := diskStore{dir: Dir(u.CacheDir)}
	if !u.fetchesAnything() {
		// Nothing to fetch (feeds disabled, or remote under LocalOnly):
		// report the stored copies without writing, so a read-only cache
		// directory works offline.
		return u.idle(d), nil
	}
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return Result{}, fmt.Errorf("--cache-dir %s: %w", u.CacheDir, err)
	}
	unlock, err := d.lock(ctx, u.log())
	if err != nil {
		return Result{}, err
	}
	defer unlock()
	var res Result
	for _, k := range Kinds {
		fr := u.updateFeed(ctx, d, k)
		if ctx.Err() != nil {
			return res, fmt.Errorf("update %s: %w", k.Title(), ctx.Err())
		}
		u.logResult(fr)
		res.Feeds = append(res.Feeds, fr)
	}
	return res, nil
}

// fetchesAnything reports whether some feed has a source to fetch.
func (u *Updater) fetchesAnything() bool {
	for _, k := range Kinds {
		src, err := parseSource(u.Config.URL(k))
		if err != nil || (!src.disabled() && (src.local() || !u.Config.LocalOnly)) {
			return true
		}
	}
	return false
}

// idle reports every feed as disabled or skipped, with its stored copy.
func (u *Updater) idle(d diskStore) Result {
	var res Result
	for _, k := range Kinds {
		src, _ := parseSource(u.Config.URL(k))
		fr := FeedResult{Feed: k, Source: src.String(), Outcome: OutcomeSkipped}
		if src.disabled() {
			fr.Outcome = OutcomeDisabled
		}
		if m, gen, err := d.current(k); err == nil {
			fr.Current, fr.HasCurrent, fr.Generation = m, true, filepath.Base(gen)
		}
		u.logResult(fr)
		res.Feeds = append(res.Feeds, fr)
	}
	return res
}

func (u *Updater) logResult(fr FeedResult) {
	fields := []zap.Field{zap.String("feed", string(fr.Feed)), zap.String("source", fr.Source), logging.Outcome(string(fr.Outcome))}
	if fr.HasCurrent {
		fields = append(fields, zap.String("version", fr.Current.Version), zap.Time("date", fr.Current.Date),
			zap.Int("entries", fr.Current.Entries), zap.String("generation", fr.Generation))
	}
	switch fr.Outcome {
	case OutcomeFailed:
		u.log().Warn(fr.Feed.Title()+" update failed; "+keptCopy(fr), append(fields, zap.Error(fr.Err))...)
	default:
		u.log().Info(fr.Feed.Title()+" "+string(fr.Outcome), fields...)
	}
}

// updateFeed updates one feed; it never returns with the stored copy
// half-replaced.
func (u *Updater) updateFeed(ctx context.Context, d diskStore, k Kind) FeedResult {
	fr := FeedResult{Feed: k}
	prev, gen, err := d.current(k)
	if err == nil {
		// A copy damaged on disk must not be confirmed by a 304 or by the
		// same bytes' hash: check it, and fetch afresh when it is bad.
		err = d.verify(gen, prev)
	}
	var prevp *Meta
	switch {
	case err == nil:
		fr.Current, fr.HasCurrent, fr.Generation, prevp = prev, true, filepath.Base(gen), &prev
	case !errors.Is(err, ErrNotStored):
		// An unreadable current copy is replaced by the next good fetch.
		u.log().Warn("stored feed unreadable; fetching a new copy", zap.String("feed", string(k)), zap.Error(err))
	}
	src, err := parseSource(u.Config.URL(k))
	if err != nil {
		fr.Outcome, fr.Err = OutcomeFailed, err
		return fr
	}
	fr.Source = src.String()
	switch {
	case src.disabled():
		fr.Outcome = OutcomeDisabled
		return fr
	case u.Config.LocalOnly && !src.local():
		fr.Outcome = OutcomeSkipped
		return fr
	}

	staging, err := d.stage(k)
	if err != nil {
		fr.Outcome, fr.Err = OutcomeFailed, fmt.Errorf("--cache-dir: %w", err)
		return fr
	}
	defer os.RemoveAll(staging) // a no-op once renamed into a generation
	dl, err := u.fetch(ctx, k, src, prevp, staging)
	if err != nil {
		fr.Outcome, fr.Err = OutcomeFailed, fmt.Errorf("fetch: %w", err)
		return fr
	}
	now := u.now()
	if dl.notModified {
		return u.confirm(d, fr, prev, dl, now)
	}
	m, err := validate(k, filepath.Join(staging, dl.file))
	if err != nil {
		fr.Outcome, fr.Err = OutcomeFailed, fmt.Errorf("invalid: %w", err)
		return fr
	}
	m.Source, m.File, m.Size, m.SHA256 = fr.Source, dl.file, dl.size, dl.sha256
	m.FetchedAt, m.CheckedAt, m.ETag, m.LastModified = now, now, dl.etag, dl.lastModified
	if prevp != nil && prev.SHA256 == m.SHA256 {
		return u.confirm(d, fr, prev, dl, now)
	}
	if prevp != nil {
		if err := plausibleSuccessor(prev, m); err != nil {
			fr.Outcome, fr.Err = OutcomeFailed, fmt.Errorf("refused: %w", err)
			return fr
		}
	}
	g, err := d.commit(k, staging, m, now, u.log())
	if err != nil {
		fr.Outcome, fr.Err = OutcomeFailed, fmt.Errorf("switch: %w", err)
		return fr
	}
	fr.Outcome, fr.Current, fr.HasCurrent, fr.Generation = OutcomeUpdated, m, true, g
	return fr
}

// confirm records that the source still serves the stored copy.
func (u *Updater) confirm(d diskStore, fr FeedResult, prev Meta, dl download, now time.Time) FeedResult {
	prev.CheckedAt = now
	prev.Source = fr.Source
	if dl.etag != "" {
		prev.ETag = dl.etag
	}
	if dl.lastModified != "" {
		prev.LastModified = dl.lastModified
	}
	if err := d.rewriteMeta(fr.Feed, prev); err != nil {
		fr.Outcome, fr.Err = OutcomeFailed, fmt.Errorf("record the check: %w", err)
		return fr
	}
	fr.Outcome, fr.Current = OutcomeUnchanged, prev
	return fr
}

// validate parses a downloaded feed in full with the parser readers use.
func validate(k Kind, path string) (Meta, error) {
	f, err := os.Open(path)
	if err != nil {
		return Meta{}, err
	}
	defer f.Close()
	m := Meta{Feed: k}
	switch k {
	case KEV:
		c, err := ParseKEV(f)
		if err != nil {
			return Meta{}, err
		}
		m.Version, m.Date, m.Entries = c.Version, c.Released, c.Len()
	default:
		s, err := ParseEPSS(f)
		if err != nil {
			return Meta{}, err
		}
		m.Version, m.Date, m.Entries = s.ModelVersion, s.ScoreDate, s.Len()
	}
	return m, nil
}

// plausibleSuccessor guards against what parses but cannot be the next
// copy of the feed: one older than the stored copy (a stale mirror) or
// one that lost more than half its CVEs (a cut-off plain-text file; both
// feeds only ever grow).
func plausibleSuccessor(prev, next Meta) error {
	if next.Date.Before(prev.Date) {
		return fmt.Errorf("dated %s, older than the stored copy's %s", next.Date.Format(time.RFC3339), prev.Date.Format(time.RFC3339))
	}
	if next.Entries*2 < prev.Entries {
		return fmt.Errorf("lists %d CVEs, fewer than half the stored copy's %d (truncated?)", next.Entries, prev.Entries)
	}
	return nil
}
