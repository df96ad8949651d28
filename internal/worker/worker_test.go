package worker

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/internal/fixture/fixturetest"
	"github.com/fleetscan/fleetscan/internal/scan"
	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// slowScanner delays every scan and records how many ran at once.
type slowScanner struct {
	Scanner
	delay           time.Duration
	cur, max, calls atomic.Int64
}

func (s *slowScanner) Scan(ctx context.Context, req scan.Request) (scan.Report, error) {
	s.calls.Add(1)
	n := s.cur.Add(1)
	defer s.cur.Add(-1)
	for {
		m := s.max.Load()
		if n <= m || s.max.CompareAndSwap(m, n) {
			break
		}
	}
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return scan.Report{}, ctx.Err()
	}
	return s.Scanner.Scan(ctx, req)
}

func TestWorkerScansJobs(t *testing.T) {
	e := newEnv(t, nil)
	slow := &slowScanner{Scanner: e.engine, delay: 200 * time.Millisecond}
	r := e.start(t, e.config(t), slow)

	type want struct {
		spec fixture.ImageSpec
		job  contract.ScanJob
	}
	var jobs []contract.ScanJob
	var wants []want
	for _, spec := range fixture.SampleImages() {
		p := e.pushed[spec.Name]
		for _, pl := range spec.Platforms {
			j := contract.NewScanJob("run-1", "c1", p.Key(pl), p.Ref(), nil, time.Now())
			jobs = append(jobs, j)
			wants = append(wants, want{spec, j})
		}
	}
	e.publish(t, jobs...)
	for _, w := range wants {
		res := e.waitResult(t, w.job.ImageKey, time.Minute, nil)
		if res.Status != contract.StatusScanned {
			t.Errorf("%s: status %s (%+v)", w.spec.Name, res.Status, res.Failure)
			continue
		}
		exp := w.spec.ExpectedWith(1)
		fixturetest.SortFindings(exp)
		if diff := fixturetest.DiffFindings(exp, tuples(res.Findings)); diff != "" {
			t.Errorf("%s %s: findings differ:\n%s", w.spec.Name, w.job.Platform, diff)
		}
		if res.Worker != "test-worker" || res.RunID != "run-1" || res.Cycle != "c1" || res.Reference != w.job.Reference {
			t.Errorf("%s: result identity %q %q %q %q", w.spec.Name, res.Worker, res.RunID, res.Cycle, res.Reference)
		}
		if res.Scanner.Name != "trivy" || res.Scanner.Version == "" || res.DB.UpdatedAt.IsZero() || res.DB.Version != 2 {
			t.Errorf("%s: scanner %+v, DB %+v", w.spec.Name, res.Scanner, res.DB)
		}
		if res.StartedAt.IsZero() || res.CompletedAt.Before(res.StartedAt) {
			t.Errorf("%s: started %s completed %s", w.spec.Name, res.StartedAt, res.CompletedAt)
		}
	}
	if m := slow.max.Load(); m < 2 {
		t.Errorf("at most %d scans ran at once with --concurrency 4", m)
	}
	// The next cycle, same DB and scanner: the stored result is reused,
	// nothing is pulled (incremental_test.go covers rescans).
	hitsBefore := testutil.ToFloat64(r.w.metrics.layerHits)
	rescan := e.job(t, "alpine-curl", "c2")
	e.publish(t, rescan)
	again := e.waitResult(t, rescan.ImageKey, time.Minute, func(r contract.ScanResult) bool { return r.Cycle == "c2" })
	if !again.Reused || again.RunID != rescan.RunID {
		t.Errorf("next cycle: reused=%v run %q, want a reused result for run %q", again.Reused, again.RunID, rescan.RunID)
	}
	// Metrics are counted just after the result is stored.
	waitFor(t, func() bool {
		return testutil.ToFloat64(r.w.metrics.scans.WithLabelValues(OutcomeReused, "")) >= 1
	})
	if got := testutil.ToFloat64(r.w.metrics.layerHits) - hitsBefore; got != 0 {
		t.Errorf("reused result: %v layer cache hits, want 0 (nothing scanned)", got)
	}
	if got := testutil.ToFloat64(r.w.metrics.scans.WithLabelValues(OutcomeScanned, "")); int(got) != len(jobs) {
		t.Errorf("scans_total{outcome=scanned} = %v, want %d", got, len(jobs))
	}
	code, body := scrape(t, r.w, "/metrics")
	for _, m := range []string{"fleetscan_worker_scans_total", "fleetscan_worker_scan_duration_seconds_bucket", "fleetscan_worker_findings_total",
		"fleetscan_worker_db_age_seconds", "fleetscan_worker_scans_in_flight", "fleetscan_worker_layer_cache_hits_total"} {
		if code != http.StatusOK || !strings.Contains(body, m) {
			t.Errorf("/metrics (%d) lacks %s", code, m)
		}
	}
	if v := metricLine(body, `fleetscan_worker_findings_total{severity="CRITICAL",worker="test-worker"}`); v == "" || v == "0" {
		t.Errorf("no critical findings counted (%q)", v)
	}
	if code, body := scrape(t, r.w, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d %s", code, body)
	}
	if code, body := scrape(t, r.w, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d %s", code, body)
	}
}

func TestWorkerFailureClasses(t *testing.T) {
	e := newEnv(t, func(c *topology.Config) { c.MaxDeliver = 2 })
	cases := []struct {
		sample   string
		fault    fixture.FaultKind
		class    contract.FailureClass
		attempts int
	}{
		{"alpine-3.18", fixture.FaultNotFound, contract.FailureNotFound, 1},
		{"alpine-curl", fixture.FaultUnauthorized, contract.FailureUnauthorized, 1},
		{"debian-12", fixture.FaultRateLimited, contract.FailureRateLimited, 2},
		{"python-app", fixture.FaultServerError, contract.FailureInternal, 2},
		{"go-agent", fixture.FaultHang, contract.FailureTimeout, 2},
	}
	for _, tc := range cases {
		e.reg.InjectFault(fixture.Fault{Kind: tc.fault, Repository: e.pushed[tc.sample].Spec.Repository, Manifests: true})
	}
	// Rate limits and server errors are retried inside the registry client
	// for about 4 s, so only the hanging registry gets a short timeout: it
	// runs on a second worker after the others.
	cfg := e.config(t)
	cfg.Concurrency = 4
	r := e.start(t, cfg, nil)
	var jobs []contract.ScanJob
	for _, tc := range cases[:4] {
		jobs = append(jobs, e.job(t, tc.sample, "c1"))
	}
	e.publish(t, jobs...)
	check := func(tc int, j contract.ScanJob, worker string) {
		t.Helper()
		c := cases[tc]
		res := e.waitResult(t, j.ImageKey, time.Minute, nil)
		if res.Status != contract.StatusFailed || res.Failure == nil {
			t.Fatalf("%s: status %s, want failed", c.sample, res.Status)
		}
		if res.Failure.Class != c.class || res.Failure.Attempts != c.attempts {
			t.Errorf("%s (%s): class %s after %d attempts, want %s after %d; reason %q",
				c.sample, c.fault, res.Failure.Class, res.Failure.Attempts, c.class, c.attempts, res.Failure.Reason)
		}
		if res.Failure.Reason == "" || res.Worker != worker || res.Scanner.Name != "trivy" {
			t.Errorf("%s: failure result lacks reason/worker/scanner: %+v", c.sample, res)
		}
	}
	for i, j := range jobs {
		check(i, j, cfg.WorkerName)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		outcome string
		class   contract.FailureClass
		want    float64
	}{
		{OutcomeFailed, contract.FailureNotFound, 1},
		{OutcomeFailed, contract.FailureUnauthorized, 1},
		{OutcomeRetried, contract.FailureRateLimited, 1},
		{OutcomeFailed, contract.FailureRateLimited, 1},
		{OutcomeRetried, contract.FailureInternal, 1},
		{OutcomeFailed, contract.FailureInternal, 1},
	} {
		if got := testutil.ToFloat64(r.w.metrics.scans.WithLabelValues(c.outcome, string(c.class))); got != c.want {
			t.Errorf("scans_total{outcome=%s,class=%s} = %v, want %v", c.outcome, c.class, got, c.want)
		}
	}

	cfg.ScanTimeout = time.Second
	cfg.WorkerName = "test-worker-2"
	e.start(t, cfg, nil)
	hang := e.job(t, "go-agent", "c1")
	start := time.Now()
	e.publish(t, hang)
	check(4, hang, cfg.WorkerName)
	if el := time.Since(start); el > 20*time.Second {
		t.Errorf("two 1s-timeout attempts took %s", el)
	}
}

func TestWorkerRedeliversAfterCrash(t *testing.T) {
	const ackWait = 2 * time.Second
	e := newEnv(t, func(c *topology.Config) { c.AckWait = ackWait })
	job := e.job(t, "alpine-curl", "c1")
	e.publish(t, job)

	// A worker takes the job and dies: no ack, no heartbeat, no nak.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	batch, err := e.nats.Res.Workers.Fetch(1, jetstream.FetchContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	var taken int
	for range batch.Messages() {
		taken++
	}
	if taken != 1 {
		t.Fatalf("crashed worker took %d jobs, want 1", taken)
	}
	crashed := time.Now()

	slow := &slowScanner{Scanner: e.engine}
	e.start(t, e.config(t), slow)
	res := e.waitResult(t, job.ImageKey, time.Minute, nil)
	if res.Status != contract.StatusScanned {
		t.Fatalf("status %s: %+v", res.Status, res.Failure)
	}
	if el := time.Since(crashed); el < ackWait-200*time.Millisecond {
		t.Errorf("redelivered after %s, before AckWait %s", el, ackWait)
	}
	if n := slow.calls.Load(); n != 1 {
		t.Errorf("scanned %d times, want once", n)
	}
}

func TestWorkerRecordsJobsOfDeadWorkers(t *testing.T) {
	e := newEnv(t, func(c *topology.Config) { c.AckWait = time.Second; c.MaxDeliver = 1 })
	job := e.job(t, "debian-12", "c1")
	e.publish(t, job)
	// The only delivery the budget allows goes to a worker that dies.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	batch, err := e.nats.Res.Workers.Fetch(1, jetstream.FetchContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	taken := 0
	for range batch.Messages() {
		taken++
	}
	if taken != 1 {
		t.Fatalf("dead worker took %d jobs, want 1", taken)
	}
	// A live worker's advisory watcher records the failure once the
	// budget runs out without a reply, and removes the job.
	e.start(t, e.config(t), nil)
	res := e.waitResult(t, job.ImageKey, 30*time.Second, nil)
	if res.Status != contract.StatusFailed || res.Failure.Class != contract.FailureTimeout || !strings.Contains(res.Failure.Reason, "no worker completed") {
		t.Errorf("result %s %+v, want a timeout failure naming the dead workers", res.Status, res.Failure)
	}
	waitFor(t, func() bool {
		info, err := e.nats.Res.Jobs.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
}

// panicky panics on one digest.
type panicky struct {
	Scanner
	digest string
}

func (p panicky) Scan(ctx context.Context, req scan.Request) (scan.Report, error) {
	if req.Digest == p.digest {
		panic("analyzer blew up")
	}
	return p.Scanner.Scan(ctx, req)
}

func TestWorkerRecoversFromPanic(t *testing.T) {
	e := newEnv(t, nil)
	bad := e.job(t, "alpine-3.18", "c1")
	e.start(t, e.config(t), panicky{Scanner: e.engine, digest: bad.Digest})
	good := e.job(t, "debian-12", "c1")
	e.publish(t, bad, good)
	res := e.waitResult(t, bad.ImageKey, time.Minute, nil)
	if res.Status != contract.StatusFailed || res.Failure.Class != contract.FailureInternal || !strings.Contains(res.Failure.Reason, "panicked") {
		t.Errorf("panicking scan recorded as %+v", res.Failure)
	}
	if res.Failure != nil && res.Failure.Attempts != 1 {
		t.Errorf("a panic was retried: %d attempts", res.Failure.Attempts)
	}
	if r := e.waitResult(t, good.ImageKey, time.Minute, nil); r.Status != contract.StatusScanned {
		t.Errorf("other job: %s", r.Status)
	}
	// The worker keeps taking jobs after the panic.
	later := e.job(t, "python-app", "c1")
	e.publish(t, later)
	if r := e.waitResult(t, later.ImageKey, time.Minute, nil); r.Status != contract.StatusScanned {
		t.Errorf("job after the panic: %s", r.Status)
	}
}

func TestWorkerGracefulShutdown(t *testing.T) {
	t.Run("finishes a scan within the grace period", func(t *testing.T) {
		e := newEnv(t, nil)
		slow := &slowScanner{Scanner: e.engine, delay: 1500 * time.Millisecond}
		r := e.start(t, e.config(t), slow)
		job := e.job(t, "alpine-curl", "c1")
		e.publish(t, job)
		waitFor(t, func() bool { return slow.cur.Load() == 1 })
		if err := r.stop(t); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		res, err := e.store.Result(ctx, job.ImageKey)
		if err != nil || res.Status != contract.StatusScanned {
			t.Fatalf("in-flight scan not finished before exit: %v %+v", err, res)
		}
		if lag := consumerLag(t, e); lag != 0 {
			t.Errorf("%d jobs left in the queue", lag)
		}
	})
	t.Run("hands back what cannot finish", func(t *testing.T) {
		e := newEnv(t, nil)
		job := e.job(t, "alpine-3.18", "c1")
		e.reg.InjectFault(fixture.Fault{Kind: fixture.FaultHang, Repository: e.pushed["alpine-3.18"].Spec.Repository, Manifests: true})
		cfg := e.config(t)
		cfg.GracePeriod = 500 * time.Millisecond
		cfg.ScanTimeout = time.Minute
		r := e.start(t, cfg, nil)
		e.publish(t, job)
		waitFor(t, func() bool { return e.reg.Stats().Faults > 0 })
		stopped := time.Now()
		if err := r.stop(t); err != nil {
			t.Fatal(err)
		}
		if el := time.Since(stopped); el > 10*time.Second {
			t.Errorf("shutdown took %s with a 500ms grace period", el)
		}
		if got := testutil.ToFloat64(r.w.metrics.scans.WithLabelValues(OutcomeInterrupted, string(contract.FailureInternal))) +
			testutil.ToFloat64(r.w.metrics.scans.WithLabelValues(OutcomeInterrupted, string(contract.FailureTimeout))); got != 1 {
			t.Errorf("interrupted scans = %v, want 1", got)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if res, err := e.store.Result(ctx, job.ImageKey); err == nil {
			t.Fatalf("an interrupted scan recorded a result: %+v", res)
		}
		if lag := consumerLag(t, e); lag != 1 {
			t.Fatalf("queue holds %d jobs, want the handed-back one", lag)
		}
		// Another worker picks it up at once.
		e.reg.ClearFaults()
		cfg.WorkerName = "successor"
		e.start(t, cfg, nil)
		if res := e.waitResult(t, job.ImageKey, 30*time.Second, nil); res.Status != contract.StatusScanned || res.Worker != "successor" {
			t.Errorf("handed-back job: %s by %s", res.Status, res.Worker)
		}
	})
}

func TestWorkerLargeResult(t *testing.T) {
	e := newEnv(t, nil)
	// 1500 copies of a vulnerable lodash, each in its own node_modules:
	// Trivy reports each (two CVEs apiece).
	const copies = 1500
	var files []fixture.File
	for i := range copies {
		fs, err := fixture.NpmPackages(fmt.Sprintf("/app/node_modules/dep%04d/node_modules", i), []fixture.Package{{Name: "lodash", Version: "4.17.20"}})
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, fs...)
	}
	pl := contract.Platform{OS: "linux", Architecture: "amd64"}
	spec := fixture.ImageSpec{Name: "monorepo", Repository: "fixtures/monorepo", Tags: []string{"1"}, Platforms: []contract.Platform{pl},
		Layers: []fixture.LayerSpec{fixture.FilesLayer("vendored dependencies", files...)}}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	p, err := fixture.PushSample(ctx, e.reg.Host, spec)
	if err != nil {
		t.Fatal(err)
	}
	e.start(t, e.config(t), nil)
	job := contract.NewScanJob("run-1", "c1", p.Key(pl), p.Ref(), nil, time.Now())
	e.publish(t, job)
	res := e.waitResult(t, job.ImageKey, 2*time.Minute, nil)
	if res.Status != contract.StatusScanned {
		t.Fatalf("status %s: %+v", res.Status, res.Failure)
	}
	if len(res.Findings) != 2*copies {
		t.Errorf("%d findings round-tripped, want %d", len(res.Findings), 2*copies)
	}
	paths := map[string]bool{}
	for _, f := range res.Findings {
		paths[f.PkgPath] = true
	}
	if len(paths) != copies {
		t.Errorf("%d distinct package paths, want %d", len(paths), copies)
	}
	// Too large for one message: stored as a claim check.
	info, err := e.nats.Res.ResultBlobs.GetInfo(ctx, job.ImageKey.Token())
	if err != nil {
		t.Fatalf("large result not in the %s object store: %v", topology.ResultBlobsBucket, err)
	}
	if info.Size < 256<<10 {
		t.Errorf("claim-checked result is only %d bytes", info.Size)
	}
}

func TestWorkerSwapsDBBetweenJobs(t *testing.T) {
	e := newEnv(t, nil)
	r := e.start(t, e.config(t), nil)
	spec := e.pushed["node-app"].Spec
	first := e.job(t, "node-app", "c1")
	e.publish(t, first)
	res1 := e.waitResult(t, first.ImageKey, time.Minute, nil)
	want := spec.ExpectedWith(1)
	fixturetest.SortFindings(want)
	if diff := fixturetest.DiffFindings(want, tuples(res1.Findings)); diff != "" {
		t.Fatalf("first DB generation:\n%s", diff)
	}

	set, err := fixture.UpdatedAdvisories()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fixture.BuildDB(e.cacheDir, set, fixture.DBOptions{UpdatedAt: time.Now().UTC().Truncate(time.Second)}); err != nil {
		t.Fatal(err)
	}
	second := e.job(t, "node-app", "c2")
	e.publish(t, second)
	res2 := e.waitResult(t, second.ImageKey, time.Minute, func(r contract.ScanResult) bool { return r.Cycle == "c2" })
	want = spec.ExpectedWith(2)
	fixturetest.SortFindings(want)
	if diff := fixturetest.DiffFindings(want, tuples(res2.Findings)); diff != "" {
		t.Errorf("after the DB swap:\n%s", diff)
	}
	if !res2.DB.UpdatedAt.After(res1.DB.UpdatedAt) {
		t.Errorf("second result's DB %s not newer than %s", res2.DB.UpdatedAt, res1.DB.UpdatedAt)
	}
	if got := testutil.ToFloat64(r.w.metrics.dbReloads); got != 1 {
		t.Errorf("db reloads = %v, want 1", got)
	}
}

func TestWorkerReadiness(t *testing.T) {
	e := newEnv(t, nil)
	cfg := e.config(t)
	w, err := New(cfg, Deps{Conn: e.nats.Conn, Resources: e.nats.Res, Store: e.store, Scanner: e.engine})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Ready(); err != nil {
		t.Fatalf("fresh worker not ready: %v", err)
	}
	// The DB ages past --max-db-age while the worker runs.
	w.cfg.DB.MaxDBAge = 30 * time.Minute
	if code, body := scrape(t, w, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "--max-db-age") {
		t.Errorf("/readyz with a stale DB = %d %q", code, body)
	}
	w.cfg.DB.MaxDBAge = 72 * time.Hour
	e.nats.Conn.Close()
	if code, body := scrape(t, w, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "NATS") {
		t.Errorf("/readyz without NATS = %d %q", code, body)
	}
	if code, _ := scrape(t, w, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d, want 200 (alive even when not ready)", code)
	}
}

func consumerLag(t testing.TB, e *env) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	info, err := e.nats.Res.Workers.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.NumPending + uint64(info.NumAckPending)
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A scan that outlives AckWait is not redelivered: the worker heartbeats
// (every AckWait/3: 1 s, so a loaded machine may delay one by 2 s without a
// redelivery; the schedule itself is checked on a fake clock in queue).
func TestWorkerHeartbeatsLongScans(t *testing.T) {
	const ackWait = 3 * time.Second
	e := newEnv(t, func(c *topology.Config) { c.AckWait = ackWait })
	slow := &slowScanner{Scanner: e.engine, delay: ackWait + 2*time.Second}
	cfg := e.config(t)
	e.start(t, cfg, slow)
	cfg.WorkerName = "second"
	e.start(t, cfg, slow) // would take a redelivered job
	job := e.job(t, "alpine-3.18", "c1")
	e.publish(t, job)
	res := e.waitResult(t, job.ImageKey, time.Minute, nil)
	if res.Status != contract.StatusScanned {
		t.Fatalf("status %s", res.Status)
	}
	if n := slow.calls.Load(); n != 1 {
		t.Errorf("a %s scan with AckWait %s ran %d times, want once", slow.delay, ackWait, n)
	}
}

// Several in-process workers (the all-in-one) share a scanner and a
// metrics registry; each series carries its worker's name.
func TestWorkersShareMetricsRegistry(t *testing.T) {
	e := newEnv(t, nil)
	reg := prometheus.NewRegistry()
	deps := Deps{Conn: e.nats.Conn, Resources: e.nats.Res, Store: e.store, Scanner: e.engine, Metrics: reg, Gatherer: reg}
	var workers []*Worker
	for _, name := range []string{"w-1", "w-2"} {
		cfg := e.config(t)
		cfg.WorkerName = name
		w, err := New(cfg, deps)
		if err != nil {
			t.Fatalf("worker %s: %v", name, err)
		}
		workers = append(workers, w)
	}
	cfg := e.config(t)
	cfg.WorkerName = "w-1"
	if _, err := New(cfg, deps); err == nil || !strings.Contains(err.Error(), "register metrics") {
		t.Errorf("a second worker named w-1 on the same registry: %v, want a registration error", err)
	}
	_, body := scrape(t, workers[0], "/metrics")
	for _, name := range []string{"w-1", "w-2"} {
		if !strings.Contains(body, `fleetscan_worker_scans_in_flight{worker="`+name+`"}`) {
			t.Errorf("shared /metrics lacks worker %s", name)
		}
	}
}
