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

	"github.com/fleetscan/fleetscan/internal/progress"
	"github.com/fleetscan/fleetscan/internal/report"
	"github.com/fleetscan/fleetscan/internal/store"
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

// collect reads the result of every expected key, then watches the results
// stored afterwards (polling every interval if the watch fails) until all
// are done (scanned or failed) or wait has passed; progress is logged every
// interval. Each result
// is compacted as soon as it is current, so findings are decoded once.
func collect(ctx context.Context, st Store, sc *scope, wait, interval time.Duration, now func() time.Time, log *zap.Logger, onProgress func(progress.State)) (*collected, error) {
	keys := make([]contract.ImageKey, 0, len(sc.req))
	for k := range sc.req {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareKeys)
	pending := make(map[contract.ImageKey]*pendingKey, len(keys))
	for _, k := range keys {
		pending[k] = &pendingKey{}
	}
	out := &collected{}
	intern := report.Interner{}
	start := now()
	deadline := start.Add(wait)
	total, failed, firstDone := len(keys), 0, -1

	take := func(k contract.ImageKey, res contract.ScanResult) {
		p := pending[k]
		if !sc.req[k].satisfiedBy(res) {
			p.stale = &contract.ScanResult{Cycle: res.Cycle, CompletedAt: res.CompletedAt, RunID: res.RunID}
			return
		}
		delete(pending, k)
		if res.Status == contract.StatusFailed {
			failed++
			out.failures = append(out.failures, failure(sc.fleet, res))
			return
		}
		img := sc.fleet.Image(k, res.Reference)
		img.Vulns = report.Compact(res.Findings, intern)
		out.images = append(out.images, img)
		if out.db == nil || res.DB.UpdatedAt.After(out.db.UpdatedAt) {
			db, scanner := res.DB, res.Scanner
			out.db, out.scanner = &db, &scanner
		}
	}

	// Results stored from now on are watched, so the wait below reacts to
	// each as it is stored instead of polling every pending key.
	var watch *store.ResultWatch
	if len(keys) > 0 && wait > 0 {
		w, err := st.WatchResults(ctx)
		if err != nil {
			log.Warn("cannot watch the results; polling them instead", zap.Error(err))
		} else {
			watch = w
		}
	}
	// failUnreadable fails the image of a corrupt result, not the report.
	failUnreadable := func(k contract.ImageKey, err error) {
		delete(pending, k)
		failed++
		out.failures = append(out.failures, report.Failure{Digest: k.Digest, Platform: k.Platform.String(),
			Image: sc.fleet.Reference(k), Class: contract.FailureInternal, Reason: "stored result unreadable: " + err.Error(),
			Workloads: sc.fleet.Workloads(k)})
	}
	// readPending reads the pending keys one by one.
	readPending := func() error {
		for _, k := range keys {
			if _, ok := pending[k]; !ok {
				continue
			}
			res, err := st.Result(ctx, k)
			var bad *contract.DecodeError
			switch {
			case errors.Is(err, store.ErrNotFound):
				continue
			case errors.As(err, &bad):
				failUnreadable(k, err)
				continue
			case err != nil:
				return fmt.Errorf("read result of %s: %w", k, err)
			}
			take(k, res)
		}
		return nil
	}

	// First pass: stream every stored result once (far cheaper than one
	// request per key); when that fails, keys are read one by one.
	streamed := true
	if len(keys) > 0 {
		err := st.EachResult(ctx, func(res contract.ScanResult) error {
			if _, ok := pending[res.ImageKey]; ok {
				take(res.ImageKey, res)
			}
			return nil
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("read scan results: %w", err)
			}
			streamed = false
			log.Warn("streaming the results failed; reading them one by one", zap.Error(err))
		}
	}
	tokens := make(map[string]contract.ImageKey, len(pending))
	for k := range pending {
		tokens[k.Token()] = k
	}
	poll := !streamed
	for {
		if poll {
			if err := readPending(); err != nil {
				return nil, err
			}
		}
		done := total - len(pending)
		if onProgress != nil {
			onProgress(progress.State{Done: done, Total: total, Failed: failed})
		}
		if firstDone < 0 {
			firstDone = done
		}
		t := now()
		if len(pending) == 0 || !t.Before(deadline) {
			log.Info(fmt.Sprintf("results: %d/%d done, %d failed, %d not scanned", done, total, failed, len(pending)),
				zap.Int("done", done), zap.Int("total", total), zap.Int("failed", failed), zap.Int("missing", len(pending)),
				zap.Duration("waited", t.Sub(start).Round(time.Millisecond)))
			break
		}
		eta := "unknown"
		if elapsed := t.Sub(start); done > firstDone && elapsed > 0 {
			rate := float64(done-firstDone) / elapsed.Seconds()
			eta = time.Duration(float64(len(pending)) / rate * float64(time.Second)).Round(time.Second).String()
		}
		log.Info(fmt.Sprintf("waiting: %d/%d done, %d failed, ETA %s (giving up in %s)", done, total, failed, eta,
			deadline.Sub(t).Round(time.Second)),
			zap.Int("done", done), zap.Int("total", total), zap.Int("failed", failed), zap.String("eta", eta))
		step := min(interval, deadline.Sub(t))
		if watch != nil {
			// Wake at each stored result; log progress every interval.
			err := watch.Next(ctx, step, func(token string, res contract.ScanResult, err error) bool {
				k, ok := tokens[token]
				if _, still := pending[k]; !ok || !still {
					return true
				}
				var bad *contract.DecodeError
				switch {
				case errors.As(err, &bad):
					failUnreadable(k, err)
				case err != nil:
					log.Warn("a watched result could not be read; it is read again at the next poll", zap.Error(err))
				default:
					take(k, res)
				}
				return len(pending) > 0
			})
			if err != nil {
				if ctx.Err() != nil {
					return nil, fmt.Errorf("waiting for scan results: %w", ctx.Err())
				}
				log.Warn("watching the results failed; polling them instead", zap.Error(err))
				watch, poll = nil, true
			}
			continue
		}
		poll = true
		timer := time.NewTimer(step)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, fmt.Errorf("waiting for scan results: %w", ctx.Err())
		case <-timer.C:
		}
	}

	repos := map[string]bool{}
	for _, f := range out.failures {
		markRepos(repos, sc.fleet, f.Digest, f.Platform, f.Image)
	}
	for _, k := range keys {
		p, ok := pending[k]
		if !ok {
			continue
		}
		ref := sc.fleet.Reference(k)
		reason := "no scan result"
		if p.stale != nil {
			reason = fmt.Sprintf("no result for run %s yet (the latest is from cycle %s, completed %s)",
				sc.req[k].runID, p.stale.Cycle, p.stale.CompletedAt.UTC().Format(time.RFC3339))
		}
		out.notScanned = append(out.notScanned, report.NotScanned{Digest: k.Digest, Platform: k.Platform.String(),
			Image: ref, Reason: reason, Workloads: sc.fleet.Workloads(k)})
		markRepos(repos, sc.fleet, k.Digest, k.Platform.String(), ref)
	}
	for _, r := range sc.unresolvedRepos {
		repos[r] = true
	}
	for r := range repos {
		out.uncertain = append(out.uncertain, r)
	}
	slices.Sort(out.uncertain)
	slices.SortFunc(out.failures, func(a, b report.Failure) int {
		return cmp.Or(strings.Compare(a.Image, b.Image), strings.Compare(a.Digest, b.Digest), strings.Compare(a.Platform, b.Platform))
	})
	return out, nil
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
