package worker

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/internal/fixture/fixturetest"
	"github.com/fleetscan/fleetscan/internal/natsembed/natstest"
	"github.com/fleetscan/fleetscan/internal/queue"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// env is a real embedded JetStream with the topology, a fixture DB, a
// registry serving the sample images and an open engine.
type env struct {
	nats     *natstest.Env
	store    *store.Store
	reg      *fixture.Registry
	cacheDir string
	pushed   map[string]fixture.Pushed
	engine   *Engine
}

func newEnv(t testing.TB, topo func(*topology.Config)) *env {
	t.Helper()
	e := &env{cacheDir: t.TempDir(), pushed: map[string]fixture.Pushed{}}
	var opts []natstest.Option
	if topo != nil {
		opts = append(opts, topo)
	}
	e.nats = natstest.Start(t, opts...)
	e.store = store.New(e.nats.JS, e.nats.Res)
	set, err := fixture.BaseAdvisories()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fixture.BuildDB(e.cacheDir, set, fixture.DBOptions{UpdatedAt: time.Now().Add(-time.Hour).UTC().Truncate(time.Second)}); err != nil {
		t.Fatal(err)
	}
	e.reg = fixturetest.NewRegistry(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	pushed, err := fixture.PushSamples(ctx, e.reg.Host, fixture.SampleImages())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pushed {
		e.pushed[p.Spec.Name] = p
	}
	eng, err := OpenEngine(ctx, e.config(t), zaptest.NewLogger(t), WithResources(e.nats.Res))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := eng.Close(); err != nil {
			t.Errorf("close engine: %v", err)
		}
	})
	e.engine = eng
	return e
}

// config is a worker configuration for tests: fast retries, no HTTP server.
func (e *env) config(t testing.TB) Config {
	cfg := DefaultConfig()
	cfg.DB.CacheDir = e.cacheDir
	cfg.ScratchDir = t.TempDir()
	cfg.Listen = ""
	cfg.WorkerName = "test-worker"
	cfg.Concurrency = 4
	cfg.ScanTimeout = 30 * time.Second
	cfg.GracePeriod = 5 * time.Second
	cfg.RetryDelay = 100 * time.Millisecond
	cfg.RetryMaxDelay = 500 * time.Millisecond
	cfg.DBCheckInterval = time.Hour
	cfg.LayerLeaseTTL = 2 * time.Second
	return cfg
}

// running is a worker running in the background.
type running struct {
	w      *Worker
	cancel context.CancelFunc
	done   chan error

	once sync.Once
	err  error
	ok   bool
}

// stop cancels the worker and waits for Run to return (once).
func (r *running) stop(t testing.TB) error {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case r.err = <-r.done:
			r.ok = true
		case <-time.After(time.Minute):
		}
	})
	if !r.ok {
		t.Fatal("worker did not stop within a minute")
	}
	return r.err
}

// start runs a worker with the env's engine (or scanner) until the test ends.
func (e *env) start(t testing.TB, cfg Config, scanner Scanner) *running {
	t.Helper()
	if scanner == nil {
		scanner = e.engine
	}
	return e.startWith(t, cfg, Deps{Scanner: scanner})
}

// startWith runs a worker with deps (completed with the env's NATS, store
// and logger) until the test ends.
func (e *env) startWith(t testing.TB, cfg Config, deps Deps) *running {
	t.Helper()
	deps.Conn, deps.Resources, deps.Store = e.nats.Conn, e.nats.Res, e.store
	if deps.Log == nil {
		deps.Log = zaptest.NewLogger(t)
	}
	w, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	// The worker runs until r.stop (at cleanup at the latest), not until
	// the test function returns.
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{w: w, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- w.Run(ctx) }()
	t.Cleanup(func() {
		if err := r.stop(t); err != nil {
			t.Errorf("worker: %v", err)
		}
	})
	return r
}

// job is the scan job of a pushed sample on its first platform.
func (e *env) job(t testing.TB, name, cycle string) contract.ScanJob {
	t.Helper()
	p, ok := e.pushed[name]
	if !ok {
		t.Fatalf("no sample %q", name)
	}
	return contract.NewScanJob("run-"+cycle, cycle, p.Key(p.Spec.Platforms[0]), p.Ref(), nil, time.Now())
}

func (e *env) publish(t testing.TB, jobs ...contract.ScanJob) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	st, err := queue.NewPublisher(e.nats.JS).Publish(ctx, jobs)
	if err != nil {
		t.Fatal(err)
	}
	if st.Stored != len(jobs) {
		t.Fatalf("stored %d of %d jobs", st.Stored, len(jobs))
	}
}

// waitResult polls the store until the result for key satisfies ok.
func (e *env) waitResult(t testing.TB, key contract.ImageKey, timeout time.Duration, ok func(contract.ScanResult) bool) contract.ScanResult {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last contract.ScanResult
	var lastErr error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		r, err := e.store.Result(ctx, key)
		cancel()
		if err == nil {
			last, lastErr = r, nil
			if ok == nil || ok(r) {
				return r
			}
		} else if !errors.Is(err, store.ErrNotFound) {
			lastErr = err
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no matching result for %s within %s (last: %+v, err %v)", key, timeout, last, lastErr)
	return contract.ScanResult{}
}

// scrape fetches one of the worker's HTTP endpoints.
func scrape(t testing.TB, w *Worker, path string) (int, string) {
	t.Helper()
	srv := httptest.NewServer(w.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// metricLine returns the value text of the first exposition line starting
// with prefix ("" when absent).
func metricLine(body, prefix string) string {
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, prefix) {
			return strings.TrimSpace(strings.TrimPrefix(l, prefix))
		}
	}
	return ""
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
