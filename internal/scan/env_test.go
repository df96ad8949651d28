package scan

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/internal/fixture/fixturetest"
	"github.com/fleetscan/fleetscan/internal/trivydb"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// testLogger logs through the test, but not in benchmarks (it would bury
// the results).
func testLogger(t testing.TB) *zap.Logger {
	if _, ok := t.(*testing.B); ok {
		return zap.NewNop()
	}
	return zaptest.NewLogger(t)
}

// openDB opens the DB under cacheDir as a worker does.
func openDB(t testing.TB, cacheDir string) *trivydb.Handle {
	t.Helper()
	cfg := trivydb.Defaults()
	cfg.CacheDir = cacheDir
	h, err := trivydb.Open(context.Background(), cfg, testLogger(t))
	if err != nil {
		t.Fatalf("open DB: %v", err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// env is a fixture DB, a registry serving the sample images and an open
// Trivy scanner.
type env struct {
	cacheDir string
	reg      *fixture.Registry
	pushed   map[string]fixture.Pushed
	db       *trivydb.Handle
	scanner  *Trivy
}

func newEnv(t testing.TB, cfg TrivyConfig, regOpts ...fixture.RegistryOption) *env {
	t.Helper()
	e := &env{cacheDir: t.TempDir(), pushed: map[string]fixture.Pushed{}}
	set, err := fixture.BaseAdvisories()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fixture.BuildDB(e.cacheDir, set, fixture.DBOptions{UpdatedAt: time.Now().Add(-time.Hour).UTC().Truncate(time.Second)}); err != nil {
		t.Fatal(err)
	}
	e.reg = fixturetest.NewRegistry(t, regOpts...)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	pushed, err := fixture.PushSamples(ctx, e.reg.Host, fixture.SampleImages())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pushed {
		e.pushed[p.Spec.Name] = p
	}
	e.db = openDB(t, e.cacheDir)
	e.reopenScanner(t, cfg)
	return e
}

// reopenScanner closes the env's scanner, if any, and opens one with cfg
// over the same DB (one Trivy scanner per process at a time).
func (e *env) reopenScanner(t testing.TB, cfg TrivyConfig) {
	t.Helper()
	if e.scanner != nil {
		if err := e.scanner.Close(); err != nil {
			t.Fatalf("close scanner: %v", err)
		}
	}
	cfg.CacheDir = e.cacheDir
	if cfg.ScratchDir == "" {
		cfg.ScratchDir = t.TempDir()
	}
	s, err := NewTrivy(cfg, e.db, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if e.scanner == nil {
		t.Cleanup(func() {
			if err := e.scanner.Close(); err != nil {
				t.Errorf("close scanner: %v", err)
			}
		})
	}
	e.scanner = s
}

// request scans a pushed sample on its first platform.
func (e *env) request(t testing.TB, name string) Request {
	t.Helper()
	p, ok := e.pushed[name]
	if !ok {
		t.Fatalf("no sample %q", name)
	}
	return Request{Digest: p.Digest, Platform: p.Spec.Platforms[0], References: []string{p.Repository}}
}

// rebuildDB replaces the DB under the cache dir with the updated advisories.
func (e *env) rebuildDB(t testing.TB) {
	t.Helper()
	set, err := fixture.UpdatedAdvisories()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fixture.BuildDB(e.cacheDir, set, fixture.DBOptions{UpdatedAt: time.Now().UTC().Truncate(time.Second)}); err != nil {
		t.Fatal(err)
	}
}

// tuples renders findings as the fixture's comparison records.
func tuples(fs []contract.Finding) []fixture.Finding {
	out := make([]fixture.Finding, 0, len(fs))
	for _, f := range fs {
		out = append(out, fixture.Finding{VulnerabilityID: f.VulnerabilityID, PkgName: f.PkgName, InstalledVersion: f.PkgVersion,
			FixedVersion: f.FixedVersion, Severity: f.Severity, Status: f.Status})
	}
	fixturetest.SortFindings(out)
	return out
}

// assertClass checks err's failure class and retryability.
func assertClass(t testing.TB, err error, class contract.FailureClass, retryable bool) {
	t.Helper()
	if err == nil {
		t.Fatalf("want a %s failure, got success", class)
	}
	got, retry := contract.Classify(err)
	if got != class || retry != retryable {
		t.Fatalf("class = %s (retryable %v), want %s (retryable %v); error: %v", got, retry, class, retryable, err)
	}
}

// pathLog records the request paths a registry served.
type pathLog struct {
	mu    sync.Mutex
	paths []string
}

func (l *pathLog) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.paths = append(l.paths, r.Method+" "+r.URL.Path)
		l.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

func (l *pathLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.paths
	l.paths = nil
	return out
}
