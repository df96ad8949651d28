package reporter

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/logging"
	"github.com/fleetscan/fleetscan/internal/progress"
	"github.com/fleetscan/fleetscan/internal/report"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/internal/vex"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// collected is the outcome of waiting for results.
type collected struct {
	images     []*report.Image
	failures   []report.Failure
	notScanned []report.NotScanned
	// uncertain are repositories with an image that has no usable result.
	uncertain []string
	db        *contract.DBInfo
	scanner   *contract.ScannerInfo
}

// pendingKey is an expected key without a current result yet.
type pendingKey struct {
	stale *contract.ScanResult // the latest result, when it is not current
}

// waitOptions say how long and how collect waits for results.
type waitOptions struct {
	// Wait bounds the wait; Interval is the poll and progress-log period.
	Wait, Interval time.Duration
	Now            func() time.Time
	// OnProgress, when set, is told the progress at every step.
	OnProgress func(progress.State)
}

// collect reads the result of every expected key, then watches the results
// stored afterwards (polling every interval if the watch fails) until all
// are done (scanned or failed) or the wait has passed; progress is logged
// every interval. Each result is compacted as soon as it is current, so
// findings are decoded once, without the fields the report drops
// (report.DecodeResult).
func collect(ctx context.Context, st Store, sc *scope, o waitOptions, log *zap.Logger) (*collected, error) {
	c := newCollector(st, sc, log)
	start := o.Now()
	// Results stored from now on are watched, so the wait reacts to each
	// as it is stored instead of polling every pending key.
	watch := c.watch(ctx, o.Wait)
	streamed, err := c.readAll(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.wait(ctx, watch, !streamed, start, o); err != nil {
		return nil, err
	}
	return c.finish(), nil
}

// collector holds what collect has gathered so far.
type collector struct {
	st  Store
	sc  *scope
	log *zap.Logger
	// keys are the expected keys, sorted; pending those still without a
	// current result; tokens finds a pending key by its subject token.
	keys    []contract.ImageKey
	pending map[contract.ImageKey]*pendingKey
	tokens  map[string]contract.ImageKey
	out     *collected
	intern  *report.Interner
	failed  int
	// lean decodes results without the fields the report drops.
	lean store.ReadOption
}

func newCollector(st Store, sc *scope, log *zap.Logger) *collector {
	keys := make([]contract.ImageKey, 0, len(sc.req))
	for k := range sc.req {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareKeys)
	c := &collector{st: st, sc: sc, log: log, keys: keys, out: &collected{}, intern: &report.Interner{},
		lean:    store.DecodeWith(report.DecodeResult),
		pending: make(map[contract.ImageKey]*pendingKey, len(keys)), tokens: make(map[string]contract.ImageKey, len(keys))}
	for _, k := range keys {
		c.pending[k] = &pendingKey{}
		c.tokens[k.Token()] = k
	}
	return c
}

// take records res as k's result when it is current for the scope, and
// remembers it as stale otherwise.
func (c *collector) take(k contract.ImageKey, res contract.ScanResult) {
	p := c.pending[k]
	if !c.sc.req[k].satisfiedBy(res) {
		p.stale = &contract.ScanResult{Cycle: res.Cycle, CompletedAt: res.CompletedAt, RunID: res.RunID}
		return
	}
	delete(c.pending, k)
	if res.Status == contract.StatusFailed {
		c.failed++
		c.out.failures = append(c.out.failures, failure(c.sc.fleet, res))
		return
	}
	img := c.sc.fleet.Image(k, res.Reference)
	img.Vulns = report.CompactResult(res, c.intern)
	img.VEX = attestations(res, c.log)
	img.OS = res.OS // its EOSL flag marks an end-of-life image
	c.out.images = append(c.out.images, img)
	if c.out.db == nil || res.DB.UpdatedAt.After(c.out.db.UpdatedAt) {
		db, scanner := res.DB, res.Scanner
		c.out.db, c.out.scanner = &db, &scanner
	}
}

// failUnreadable fails the image of a corrupt result, not the report.
func (c *collector) failUnreadable(k contract.ImageKey, err error) {
	delete(c.pending, k)
	c.failed++
	c.out.failures = append(c.out.failures, report.Failure{Digest: k.Digest, Platform: k.Platform.String(),
		Image: c.sc.fleet.Reference(k), Class: contract.FailureInternal, Reason: "stored result unreadable: " + err.Error(),
		Workloads: c.sc.fleet.Workloads(k)})
}

// watch opens a watch on the results stored from now on (nil when there is
// nothing to wait for, or the watch cannot be opened: the wait then polls).
func (c *collector) watch(ctx context.Context, wait time.Duration) *store.ResultWatch {
	if len(c.keys) == 0 || wait <= 0 {
		return nil
	}
	w, err := c.st.WatchResults(ctx, c.lean)
	if err != nil {
		c.log.Warn("cannot watch the results; polling them instead", zap.Error(err))
		return nil
	}
	return w
}

// readAll is the first pass: it streams every stored result once (far
// cheaper than one request per key). It reports false when streaming
// failed: the keys are then read one by one.
func (c *collector) readAll(ctx context.Context) (bool, error) {
	if len(c.keys) == 0 {
		return true, nil
	}
	err := c.st.EachResult(ctx, func(res contract.ScanResult) error {
		if _, ok := c.pending[res.ImageKey]; ok {
			c.take(res.ImageKey, res)
		}
		return nil
	}, c.lean)
	if err == nil {
		return true, nil
	}
	if ctx.Err() != nil {
		return false, fmt.Errorf("read scan results: %w", err)
	}
	c.log.Warn("streaming the results failed; reading them one by one", zap.Error(err))
	return false, nil
}

// readPending reads the pending keys one by one.
func (c *collector) readPending(ctx context.Context) error {
	for _, k := range c.keys {
		if _, ok := c.pending[k]; !ok {
			continue
		}
		res, err := c.st.Result(ctx, k, c.lean)
		var bad *contract.DecodeError
		switch {
		case errors.Is(err, store.ErrNotFound):
			continue
		case errors.As(err, &bad):
			c.failUnreadable(k, err)
			continue
		case err != nil:
			return fmt.Errorf("read result of %s: %w", k, err)
		}
		c.take(k, res)
	}
	return nil
}

// wait waits for the pending keys until none is left or the deadline
// (start + o.Wait) has passed: it wakes at each watched result, or polls
// every interval when poll is set or the watch fails.
func (c *collector) wait(ctx context.Context, watch *store.ResultWatch, poll bool, start time.Time, o waitOptions) error {
	deadline := start.Add(o.Wait)
	total, firstDone := len(c.keys), -1
	for {
		if poll {
			if err := c.readPending(ctx); err != nil {
				return err
			}
		}
		done := total - len(c.pending)
		if o.OnProgress != nil {
			o.OnProgress(progress.State{Done: done, Total: total, Failed: c.failed})
		}
		if firstDone < 0 {
			firstDone = done
		}
		t := o.Now()
		if len(c.pending) == 0 || !t.Before(deadline) {
			c.log.Info(fmt.Sprintf("results: %d/%d done, %d failed, %d not scanned", done, total, c.failed, len(c.pending)),
				zap.Int("done", done), zap.Int("total", total), zap.Int("failed", c.failed), zap.Int("missing", len(c.pending)),
				zap.Duration("waited", t.Sub(start).Round(time.Millisecond)))
			return nil
		}
		c.logWaiting(done, total, eta(done-firstDone, len(c.pending), t.Sub(start)), deadline.Sub(t))
		step := min(o.Interval, deadline.Sub(t))
		if watch != nil {
			if err := c.next(ctx, watch, step); err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("waiting for scan results: %w", ctx.Err())
				}
				c.log.Warn("watching the results failed; polling them instead", zap.Error(err))
				watch, poll = nil, true
			}
			continue
		}
		poll = true
		if err := sleep(ctx, step); err != nil {
			return fmt.Errorf("waiting for scan results: %w", err)
		}
	}
}

// eta estimates the time left from the rate at which keys were done since
// the wait began ("unknown" before the first).
func eta(doneSinceStart, left int, elapsed time.Duration) string {
	if doneSinceStart <= 0 || elapsed <= 0 {
		return "unknown"
	}
	rate := float64(doneSinceStart) / elapsed.Seconds()
	return time.Duration(float64(left) / rate * float64(time.Second)).Round(time.Second).String()
}

func (c *collector) logWaiting(done, total int, eta string, left time.Duration) {
	c.log.Info(fmt.Sprintf("waiting: %d/%d done, %d failed, ETA %s (giving up in %s)", done, total, c.failed, eta,
		left.Round(time.Second)),
		zap.Int("done", done), zap.Int("total", total), zap.Int("failed", c.failed), zap.String("eta", eta))
}

// next takes the results stored within step, waking at each; it returns
// early once no key is pending.
func (c *collector) next(ctx context.Context, watch *store.ResultWatch, step time.Duration) error {
	return watch.Next(ctx, step, func(token string, res contract.ScanResult, err error) bool {
		k, ok := c.tokens[token]
		if _, still := c.pending[k]; !ok || !still {
			return true
		}
		var bad *contract.DecodeError
		switch {
		case errors.As(err, &bad):
			c.failUnreadable(k, err)
		case err != nil:
			c.log.Warn("a watched result could not be read; it is read again at the next poll", zap.Error(err))
		default:
			c.take(k, res)
		}
		return len(c.pending) > 0
	})
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// finish lists the keys still pending as not scanned, and the repositories
// whose findings are uncertain (an image without a usable result).
func (c *collector) finish() *collected {
	out, fleet := c.out, c.sc.fleet
	repos := map[string]bool{}
	for _, f := range out.failures {
		markRepos(repos, fleet, f.Digest, f.Platform, f.Image)
	}
	for _, k := range c.keys {
		p, ok := c.pending[k]
		if !ok {
			continue
		}
		ref := fleet.Reference(k)
		out.notScanned = append(out.notScanned, report.NotScanned{Digest: k.Digest, Platform: k.Platform.String(),
			Image: ref, Reason: c.notScannedReason(k, p), Workloads: fleet.Workloads(k)})
		markRepos(repos, fleet, k.Digest, k.Platform.String(), ref)
	}
	for _, r := range c.sc.unresolvedRepos {
		repos[r] = true
	}
	for r := range repos {
		out.uncertain = append(out.uncertain, r)
	}
	slices.Sort(out.uncertain)
	slices.SortFunc(out.failures, func(a, b report.Failure) int {
		return cmp.Or(strings.Compare(a.Image, b.Image), strings.Compare(a.Digest, b.Digest), strings.Compare(a.Platform, b.Platform))
	})
	return out
}

func (c *collector) notScannedReason(k contract.ImageKey, p *pendingKey) string {
	if p.stale == nil {
		return "no scan result"
	}
	return fmt.Sprintf("no result for run %s yet (the latest is from cycle %s, completed %s)",
		c.sc.req[k].runID, p.stale.Cycle, p.stale.CompletedAt.UTC().Format(time.RFC3339))
}

func failure(fleet *report.Fleet, res contract.ScanResult) report.Failure {
	ref := fleet.Reference(res.ImageKey)
	if ref == "" {
		ref = res.Reference
	}
	f := report.Failure{Digest: res.Digest, Platform: res.Platform.String(), Image: ref,
		Class: contract.FailureInternal, Workloads: fleet.Workloads(res.ImageKey)}
	if res.Failure != nil {
		f.Class, f.Reason, f.Attempts = res.Failure.Class, res.Failure.Reason, res.Failure.Attempts
	}
	return f
}

// markRepos adds the repositories an image key runs under.
func markRepos(repos map[string]bool, fleet *report.Fleet, digest, platform, ref string) {
	p, err := contract.ParsePlatform(platform)
	if err != nil {
		return
	}
	for _, r := range fleet.Image(contract.ImageKey{Digest: digest, Platform: p}, ref).Repositories {
		repos[r] = true
	}
}

func compareKeys(a, b contract.ImageKey) int {
	return cmp.Or(strings.Compare(a.Digest, b.Digest), strings.Compare(a.Platform.String(), b.Platform.String()))
}

// attestations parses the VEX attestations the worker found attached to
// the image (--vex-oci); one that does not parse is logged and skipped.
func attestations(res contract.ScanResult, log *zap.Logger) *vex.Set {
	if len(res.VEXAttestations) == 0 {
		return nil
	}
	set := vex.NewSet()
	for _, a := range res.VEXAttestations {
		stmts, err := vex.Parse(a.Document, a.Source)
		if err != nil {
			log.Warn("VEX attestation skipped", logging.Digest(res.Digest), zap.Error(err))
			continue
		}
		set.Add(stmts...)
		set.Sources = append(set.Sources, a.Source)
	}
	return set
}
