package feeds

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/fleetscan/fleetscan/internal/feeds/feedstest"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// day0 is the fixtures' date: the EPSS file scores 2025-08-25.
var day0 = time.Date(2025, 8, 25, 6, 0, 0, 0, time.UTC)

func testConfig(srv *feedstest.Server) Config {
	c := Defaults()
	c.KEVURL, c.EPSSURL = srv.FeedURL(feedstest.KEVPath), srv.FeedURL(feedstest.EPSSPath)
	c.Attempts, c.RetryWait, c.Timeout = 2, 10*time.Millisecond, 500*time.Millisecond
	return c
}

func newUpdater(t *testing.T, cfg Config, cache string, clk *clock) *Updater {
	return &Updater{Config: cfg, CacheDir: cache, Log: zaptest.NewLogger(t), Now: clk.now}
}

func mustUpdate(t *testing.T, u *Updater) Result {
	t.Helper()
	res, err := u.Update(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func outcomes(r Result) map[Kind]Outcome {
	m := map[Kind]Outcome{}
	for _, f := range r.Feeds {
		m[f.Feed] = f.Outcome
	}
	return m
}

func mustLoad(t *testing.T, src Source) *Enrichment {
	t.Helper()
	e, err := Load(t.Context(), src, DefaultMaxAge)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestUpdateFetchesValidatesAndStores: the first update downloads both
// feeds from their URLs; readers then find them under the cache dir. The
// next update asks conditionally and keeps the copies, recording the check.
func TestUpdateFetchesValidatesAndStores(t *testing.T) {
	srv := feedstest.NewServer(t)
	cache := t.TempDir()
	clk := &clock{t: day0}
	u := newUpdater(t, testConfig(srv), cache, clk)

	res := mustUpdate(t, u)
	if o := outcomes(res); o[KEV] != OutcomeUpdated || o[EPSS] != OutcomeUpdated || res.Err() != nil {
		t.Fatalf("first update: %v %v", o, res.Err())
	}
	for _, k := range Kinds {
		target, err := os.Readlink(filepath.Join(Dir(cache), string(k)))
		if err != nil || !strings.HasPrefix(target, string(k)+"-") || filepath.IsAbs(target) {
			t.Fatalf("%s link: %q %v (want a relative generation name)", k, target, err)
		}
	}
	if _, err := os.Stat(filepath.Join(Dir(cache), "epss", "epss.csv.gz")); err != nil {
		t.Errorf("the EPSS file is stored as served (gzipped): %v", err)
	}
	e := mustLoad(t, DirSource(cache))
	if k, ok := e.KEV(feedstest.RapidReset); !ok || k.DueDate.Format(time.DateOnly) != "2023-10-31" {
		t.Fatalf("KEV lookup after update: %+v %v", k, ok)
	}
	if s, ok := e.EPSS(feedstest.LooneyTunables); !ok || s.Percentile != 0.9887 {
		t.Fatalf("EPSS lookup after update: %+v %v", s, ok)
	}
	st := e.Status(KEV)
	if !st.Loaded || st.Meta.Version != feedstest.KEVVersion || st.Meta.Entries != 3 || !st.Meta.FetchedAt.Equal(day0) ||
		st.Meta.Source != srv.FeedURL(feedstest.KEVPath) || st.Meta.ETag != `"kev-1"` || st.State(day0) != StateFresh {
		t.Fatalf("KEV status %+v", st)
	}

	// A day later: 304 Not Modified, nothing downloaded, check recorded.
	clk.add(24 * time.Hour)
	res = mustUpdate(t, u)
	if o := outcomes(res); o[KEV] != OutcomeUnchanged || o[EPSS] != OutcomeUnchanged {
		t.Fatalf("second update: %v %v", o, res.Err())
	}
	st = mustLoad(t, DirSource(cache)).Status(KEV)
	if !st.Meta.FetchedAt.Equal(day0) || !st.Meta.CheckedAt.Equal(day0.Add(24*time.Hour)) {
		t.Fatalf("after a 304: fetched %s checked %s", st.Meta.FetchedAt, st.Meta.CheckedAt)
	}

	// The same bytes without an ETag: unchanged too, no new generation.
	srv.Set(feedstest.KEVPath, feedstest.Response{Body: feedstest.KEV()})
	clk.add(time.Hour)
	if o := outcomes(mustUpdate(t, u)); o[KEV] != OutcomeUnchanged {
		t.Fatalf("same content: %v", o)
	}
	if gens := generations(t, cache, KEV); len(gens) != 1 {
		t.Fatalf("generations %v, want one", gens)
	}

	// New content switches generations and keeps the previous one.
	newer := bytes.Replace(feedstest.KEV(), []byte(feedstest.KEVReleased), []byte("2025-08-26T17:00:00Z"), 1)
	srv.Set(feedstest.KEVPath, feedstest.Response{Body: newer})
	clk.add(time.Hour)
	if o := outcomes(mustUpdate(t, u)); o[KEV] != OutcomeUpdated {
		t.Fatalf("new content: %v", o)
	}
	if st := mustLoad(t, DirSource(cache)).Status(KEV); st.Meta.Date.Format(time.DateOnly) != "2025-08-26" {
		t.Fatalf("after new content: %+v", st.Meta)
	}
	if gens := generations(t, cache, KEV); len(gens) != 2 {
		t.Fatalf("generations %v, want the current and the previous", gens)
	}
}

func generations(t *testing.T, cache string, k Kind) []string {
	t.Helper()
	entries, err := os.ReadDir(Dir(cache))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), string(k)+"-") {
			out = append(out, e.Name())
		}
		if strings.HasPrefix(e.Name(), stagingPrefix) {
			t.Errorf("staging leftover %s", e.Name())
		}
	}
	return out
}

// TestUpdateKeepsLastGoodCopy: every way a fetch can go wrong leaves the
// stored copy in place and readable; the failure names the feed, flag and
// source; with the copy aging, readers see it stale.
func TestUpdateKeepsLastGoodCopy(t *testing.T) {
	truncatedGzip := feedstest.EPSSGzip()
	truncatedGzip = truncatedGzip[:len(truncatedGzip)*2/3]
	kevHalf := feedstest.KEV()[:len(feedstest.KEV())/2]
	shrunk := []byte("#model_version:v2025.03.14,score_date:2025-08-26T00:00:00+0000\ncve,epss,percentile\nCVE-2023-44487,0.9,0.99\n")
	older := bytes.Replace(feedstest.EPSS(), []byte("score_date:2025-08-25"), []byte("score_date:2025-08-20"), 1)
	tests := []struct {
		name string
		feed Kind
		resp feedstest.Response
		want string
		hits int // requests made for the feed (retries)
	}{
		{"HTTP 500 is retried, then fails", EPSS, feedstest.Response{Status: http.StatusInternalServerError, Body: []byte("oops")}, "HTTP 500 Internal Server Error", 2},
		{"HTTP 404 is not retried", KEV, feedstest.Response{Status: http.StatusNotFound}, "HTTP 404 Not Found", 1},
		{"a server that never answers times out", KEV, feedstest.Response{Hang: true}, "timed out after --feed-timeout=500ms", 2},
		{"a body that stops mid-way times out", EPSS, feedstest.Response{Body: feedstest.EPSSGzip(), HangAfter: 100}, "timed out after --feed-timeout=500ms", 2},
		{"bad gzip", EPSS, feedstest.Response{Body: append([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3}, "garbage"...)}, "invalid: EPSS scores: gzip", 1},
		{"truncated gzip", EPSS, feedstest.Response{Body: truncatedGzip}, "gzip: truncated stream", 1},
		{"truncated JSON", KEV, feedstest.Response{Body: kevHalf}, "invalid: KEV catalogue: not a KEV catalogue document: truncated document", 1},
		{"schema-less JSON", KEV, feedstest.Response{Body: []byte(`{"status": "ok", "data": []}`)}, `not a KEV catalogue: no "vulnerabilities" array`, 1},
		{"an HTML page with 200", KEV, feedstest.Response{Body: []byte("<!doctype html><title>Maintenance</title>")}, "invalid: KEV catalogue", 1},
		{"a feed that lost most of its CVEs", EPSS, feedstest.Response{Body: shrunk}, "refused: lists 1 CVEs, fewer than half the stored copy's 40", 1},
		{"a feed older than the stored copy", EPSS, feedstest.Response{Body: older}, "refused: dated 2025-08-20T00:00:00Z, older than the stored copy's 2025-08-25T00:00:00Z", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := feedstest.NewServer(t)
			cache := t.TempDir()
			clk := &clock{t: day0}
			u := newUpdater(t, testConfig(srv), cache, clk)
			mustUpdate(t, u)
			before := mustLoad(t, DirSource(cache)).Status(tt.feed).Meta

			path := map[Kind]string{KEV: feedstest.KEVPath, EPSS: feedstest.EPSSPath}[tt.feed]
			srv.Set(path, tt.resp)
			hits := srv.Hits(path)
			clk.add(24 * time.Hour)
			res, err := u.Update(t.Context())
			if err != nil {
				t.Fatalf("a feed failure must not fail the update as a whole: %v", err)
			}
			if o := outcomes(res); o[tt.feed] != OutcomeFailed {
				t.Fatalf("outcome %v", o)
			}
			msg := res.Err().Error()
			for _, want := range []string{tt.want, tt.feed.Title(), tt.feed.Flag(), srv.FeedURL(path), "keeping the copy fetched 2025-08-25T06:00:00Z"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q lacks %q", msg, want)
				}
			}
			if n := srv.Hits(path) - hits; n != tt.hits {
				t.Errorf("%d requests, want %d", n, tt.hits)
			}
			e := mustLoad(t, DirSource(cache))
			st := e.Status(tt.feed)
			if !st.Loaded || st.Meta.SHA256 != before.SHA256 || !st.Meta.CheckedAt.Equal(before.CheckedAt) {
				t.Fatalf("stored copy changed: %+v, was %+v", st.Meta, before)
			}
			if m := e.Lookup(feedstest.RapidReset); !m.InKEV() || !m.HasEPSS {
				t.Fatal("lookups fail after a failed update")
			}
			// Both feeds' copies date from day0: a week and a day later
			// they are stale, and the report is degraded.
			later := day0.Add(8 * 24 * time.Hour)
			if !st.Stale(later) || st.State(later) != StateStale || !e.Degraded(later) {
				t.Fatalf("not stale at %s: %+v", later, st)
			}
			if st.Stale(day0.Add(24 * time.Hour)) {
				t.Fatal("stale after a day")
			}
			if gens := generations(t, cache, tt.feed); len(gens) != 1 {
				t.Fatalf("generations %v", gens)
			}
		})
	}
}

// TestUpdateNothingStoredYet: a first fetch that fails leaves no copy; a
// reader sees the feed as never loaded, which is a state, not an error.
func TestUpdateNothingStoredYet(t *testing.T) {
	srv := feedstest.NewServer(t)
	srv.Set(feedstest.KEVPath, feedstest.Response{Status: http.StatusServiceUnavailable})
	cache := t.TempDir()
	res := mustUpdate(t, newUpdater(t, testConfig(srv), cache, &clock{t: day0}))
	if o := outcomes(res); o[KEV] != OutcomeFailed || o[EPSS] != OutcomeUpdated {
		t.Fatalf("%v", o)
	}
	if !strings.Contains(res.Err().Error(), "no copy stored yet") {
		t.Fatalf("error %v", res.Err())
	}
	e := mustLoad(t, DirSource(cache))
	if st := e.Status(KEV); st.Loaded || st.Err != nil || st.State(day0) != StateNeverLoaded || st.Degraded(day0) {
		t.Fatalf("KEV status %+v", st)
	}
	if _, ok := e.KEV(feedstest.RapidReset); ok {
		t.Fatal("found in a feed never loaded")
	}
	if e.Status(EPSS).State(day0) != StateFresh {
		t.Fatal("EPSS not loaded")
	}
}

// TestUpdateLocalSources: file:// URLs and plain paths are read like
// downloads; with LocalOnly (--skip-db-update) remote feeds are skipped but
// local ones still read.
func TestUpdateLocalSources(t *testing.T) {
	kevPath, epssPath := feedstest.WriteFiles(t, t.TempDir())
	for name, cfg := range map[string]Config{
		"paths":     {KEVURL: kevPath, EPSSURL: epssPath},
		"file URLs": {KEVURL: "file://" + kevPath, EPSSURL: "file://" + epssPath},
	} {
		t.Run(name, func(t *testing.T) {
			c := Defaults()
			c.KEVURL, c.EPSSURL, c.LocalOnly = cfg.KEVURL, cfg.EPSSURL, true
			cache := t.TempDir()
			res := mustUpdate(t, newUpdater(t, c, cache, &clock{t: day0}))
			if o := outcomes(res); o[KEV] != OutcomeUpdated || o[EPSS] != OutcomeUpdated {
				t.Fatalf("%v %v", o, res.Err())
			}
			if st := mustLoad(t, DirSource(cache)).Status(EPSS); st.Meta.Source != epssPath {
				t.Fatalf("source %q", st.Meta.Source)
			}
		})
	}
	t.Run("LocalOnly skips remote sources", func(t *testing.T) {
		srv := feedstest.NewServer(t)
		c := testConfig(srv)
		c.KEVURL, c.LocalOnly = kevPath, true
		res := mustUpdate(t, newUpdater(t, c, t.TempDir(), &clock{t: day0}))
		if o := outcomes(res); o[KEV] != OutcomeUpdated || o[EPSS] != OutcomeSkipped {
			t.Fatalf("%v", o)
		}
		if srv.Hits(feedstest.EPSSPath) != 0 {
			t.Fatal("a remote feed was fetched under LocalOnly")
		}
	})
	t.Run("nothing to fetch: a read-only cache directory is not written", func(t *testing.T) {
		srv := feedstest.NewServer(t)
		cache := t.TempDir()
		mustUpdate(t, newUpdater(t, testConfig(srv), cache, &clock{t: day0}))
		if err := os.Chmod(cache, 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Chmod(cache, 0o755) })
		if err := os.Chmod(Dir(cache), 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Chmod(Dir(cache), 0o755) })
		c := testConfig(srv)
		c.LocalOnly = true
		res := mustUpdate(t, newUpdater(t, c, cache, &clock{t: day0}))
		if o := outcomes(res); o[KEV] != OutcomeSkipped || o[EPSS] != OutcomeSkipped || !res.Feeds[0].HasCurrent {
			t.Fatalf("%v %+v", o, res.Feeds)
		}
		empty := t.TempDir()
		if err := os.Chmod(empty, 0o555); err != nil {
			t.Fatal(err)
		}
		res = mustUpdate(t, newUpdater(t, c, empty, &clock{t: day0}))
		if res.Feeds[0].HasCurrent || res.Err() != nil {
			t.Fatalf("%+v", res.Feeds)
		}
		if _, err := os.Stat(Dir(empty)); err == nil {
			t.Fatal("the feeds directory was created")
		}
	})
	t.Run("an empty URL disables a feed", func(t *testing.T) {
		c := Defaults()
		c.KEVURL, c.EPSSURL = kevPath, ""
		res := mustUpdate(t, newUpdater(t, c, t.TempDir(), &clock{t: day0}))
		if o := outcomes(res); o[KEV] != OutcomeUpdated || o[EPSS] != OutcomeDisabled || res.Err() != nil {
			t.Fatalf("%v %v", o, res.Err())
		}
	})
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"unsupported scheme", func(c *Config) { c.KEVURL = "ftp://mirror.example/kev.json" }, `--kev-url: ftp://mirror.example/kev.json: unsupported scheme "ftp"`},
		{"missing file", func(c *Config) { c.EPSSURL = filepath.Join(dir, "nope.csv") }, "--epss-url: stat " + filepath.Join(dir, "nope.csv")},
		{"a directory", func(c *Config) { c.EPSSURL = "file://" + dir }, "--epss-url: " + dir + ": is a directory"},
		{"file URL with a host", func(c *Config) { c.KEVURL = "file://mirror/kev.json" }, "--kev-url: file://mirror/kev.json: file URLs name a local path"},
		{"credentials are not echoed", func(c *Config) { c.KEVURL = "gopher://user:s3cret@mirror/x" }, "--kev-url: gopher://user:xxxxx@mirror/x"},
		{"age", func(c *Config) { c.MaxAge = 0 }, "--max-enrichment-age 0s: must be positive"},
		{"timeout", func(c *Config) { c.Timeout = -time.Second }, "--feed-timeout -1s: must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Defaults()
			tt.mod(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("credentials in %q", err)
			}
		})
	}
	if err := Defaults().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
}

// TestSourceRedacted: credentials and query tokens of a mirror URL never
// reach metadata, results or messages.
func TestSourceRedacted(t *testing.T) {
	srv := feedstest.NewServer(t)
	c := testConfig(srv)
	c.KEVURL = strings.Replace(srv.FeedURL(feedstest.KEVPath), "http://", "http://mirror:s3cret@", 1) + "?token=t0ken"
	srv.Set(feedstest.KEVPath, feedstest.Response{Status: http.StatusBadGateway})
	res := mustUpdate(t, newUpdater(t, c, t.TempDir(), &clock{t: day0}))
	msg := res.Err().Error()
	if strings.Contains(msg, "s3cret") || strings.Contains(msg, "t0ken") || !strings.Contains(msg, "mirror:xxxxx@") {
		t.Fatalf("error %q", msg)
	}
	srv.Set(feedstest.KEVPath, feedstest.Response{Body: feedstest.KEV()})
	cache := t.TempDir()
	res = mustUpdate(t, newUpdater(t, c, cache, &clock{t: day0}))
	data, err := os.ReadFile(filepath.Join(Dir(cache), "kev", metaFile))
	if err != nil || bytes.Contains(data, []byte("s3cret")) || bytes.Contains(data, []byte("t0ken")) || res.Feeds[0].Source != mustLoad(t, DirSource(cache)).Status(KEV).Meta.Source {
		t.Fatalf("meta.json %s %v", data, err)
	}
}

// TestConcurrentUpdatersTakeTurns: two updaters on one cache directory (a
// CronJob and an all-in-one) serialise on the lock and leave one
// consistent copy.
func TestConcurrentUpdatersTakeTurns(t *testing.T) {
	srv := feedstest.NewServer(t)
	cache := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := newUpdater(t, testConfig(srv), cache, &clock{t: day0}).Update(t.Context())
			if err == nil {
				err = res.Err()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	e := mustLoad(t, DirSource(cache))
	if !e.Status(KEV).Loaded || !e.Status(EPSS).Loaded {
		t.Fatalf("%+v", e.Statuses())
	}
	if gens := generations(t, cache, EPSS); len(gens) != 1 {
		t.Fatalf("generations %v: the second updater must have found the first one's copy", gens)
	}
}

// TestUpdateCancelled: a cancelled update stops with the context's error
// and leaves no staging directory.
func TestUpdateCancelled(t *testing.T) {
	srv := feedstest.NewServer(t)
	srv.Set(feedstest.KEVPath, feedstest.Response{Hang: true})
	cache := t.TempDir()
	cfg := testConfig(srv)
	cfg.Timeout = time.Minute
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err := newUpdater(t, cfg, cache, &clock{t: day0}).Update(ctx)
	if err == nil || !strings.Contains(err.Error(), "context deadline exceeded") {
		t.Fatalf("err = %v", err)
	}
	generations(t, cache, KEV)
}
