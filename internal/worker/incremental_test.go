package worker

import (
	"context"
	"net/http"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"github.com/aquasecurity/trivy/pkg/fanal/analyzer"

	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/internal/fixture/fixturetest"
	"github.com/fleetscan/fleetscan/internal/layercache"
	"github.com/fleetscan/fleetscan/internal/scan"
	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// blobLog counts the registry's requests, and blob GETs per digest. Blob
// GETs are slowed down so that concurrent scans really overlap.
type blobLog struct {
	delay time.Duration

	mu       sync.Mutex
	requests int
	blobs    map[string]int
}

func (l *blobLog) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(r.URL.Path, "/")
		isBlob := r.Method == http.MethodGet && len(parts) >= 4 && parts[len(parts)-2] == "blobs"
		l.mu.Lock()
		if r.URL.Path != "/v2/" {
			l.requests++
		}
		if isBlob {
			l.blobs[parts[len(parts)-1]]++
		}
		l.mu.Unlock()
		if isBlob && l.delay > 0 {
			time.Sleep(l.delay)
		}
		next.ServeHTTP(w, r)
	})
}

func (l *blobLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.requests, l.blobs = 0, map[string]int{}
}

func (l *blobLog) snapshot() (int, map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int, len(l.blobs))
	for k, v := range l.blobs {
		out[k] = v
	}
	return l.requests, out
}

// fleet is the sample images pushed to a registry that logs blob fetches,
// with one job per image and platform.
type fleet struct {
	log    *blobLog
	reg    *fixture.Registry
	pushed []fixture.Pushed
	// layers are the layer digests of every image, configs their config
	// digests.
	layers  map[string]bool
	configs map[string]bool
}

func newFleet(t *testing.T, delay time.Duration) *fleet {
	t.Helper()
	f := &fleet{log: &blobLog{delay: delay, blobs: map[string]int{}}}
	f.reg = fixturetest.NewRegistry(t, fixture.WithMiddleware(f.log.wrap))
	f.push(t, fixture.SampleImages())
	return f
}

// push replaces the fleet's images with specs, pushed to its registry.
func (f *fleet) push(t *testing.T, specs []fixture.ImageSpec) {
	t.Helper()
	f.layers, f.configs = map[string]bool{}, map[string]bool{}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	pushed, err := fixture.PushSamples(ctx, f.reg.Host, specs)
	if err != nil {
		t.Fatal(err)
	}
	f.pushed = pushed
	for _, p := range pushed {
		for _, pl := range p.Spec.Platforms {
			img, err := p.Spec.Image(pl)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := img.ConfigName()
			if err != nil {
				t.Fatal(err)
			}
			f.configs[cfg.String()] = true
			layers, err := img.Layers()
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range layers {
				d, err := l.Digest()
				if err != nil {
					t.Fatal(err)
				}
				f.layers[d.String()] = true
			}
		}
	}
	f.log.reset()
}

func (f *fleet) jobs(cycle string) []contract.ScanJob {
	var out []contract.ScanJob
	for _, p := range f.pushed {
		for _, pl := range p.Spec.Platforms {
			out = append(out, contract.NewScanJob("run-"+cycle, cycle, p.Key(pl), p.Ref(), nil, time.Now()))
		}
	}
	return out
}

// layerFetches sums the blob GETs of image layers.
func (f *fleet) layerFetches() int {
	_, blobs := f.log.snapshot()
	n := 0
	for d, c := range blobs {
		if f.layers[d] {
			n += c
		}
	}
	return n
}

func (f *fleet) spec(key contract.ImageKey) fixture.ImageSpec {
	for _, p := range f.pushed {
		if p.Digest == key.Digest {
			return p.Spec
		}
	}
	return fixture.ImageSpec{}
}

// runCycle publishes the jobs of a cycle and waits for their results.
func (e *env) runCycle(t *testing.T, f *fleet, cycle string) map[contract.ImageKey]contract.ScanResult {
	t.Helper()
	jobs := f.jobs(cycle)
	e.publish(t, jobs...)
	out := map[contract.ImageKey]contract.ScanResult{}
	for _, j := range jobs {
		r := e.waitResult(t, j.ImageKey, time.Minute, func(r contract.ScanResult) bool { return r.Cycle == cycle })
		if r.Status != contract.StatusScanned {
			t.Fatalf("%s: %s %+v", j.ImageKey, r.Status, r.Failure)
		}
		out[j.ImageKey] = r
	}
	return out
}

func checkFindings(t *testing.T, f *fleet, results map[contract.ImageKey]contract.ScanResult, generation int) {
	t.Helper()
	for k, r := range results {
		want := f.spec(k).ExpectedWith(generation)
		fixturetest.SortFindings(want)
		if diff := fixturetest.DiffFindings(want, tuples(r.Findings)); diff != "" {
			t.Errorf("%s (DB generation %d): findings differ:\n%s", k, generation, diff)
		}
	}
}

func TestSecondRunSameDBPullsNothing(t *testing.T) {
	e := newEnv(t, nil)
	f := newFleet(t, 0)
	r := e.start(t, e.config(t), nil)
	first := e.runCycle(t, f, "c1")
	checkFindings(t, f, first, 1)
	if f.layerFetches() == 0 {
		t.Fatal("first run fetched no layer: the test registry is not in the path")
	}

	f.log.reset()
	second := e.runCycle(t, f, "c2")
	if n, blobs := f.log.snapshot(); n != 0 || len(blobs) != 0 {
		t.Errorf("second run, same DB: %d registry requests, blobs %v; want none", n, blobs)
	}
	for k, res := range second {
		prev := first[k]
		if !res.Reused || res.RunID != "run-c2" {
			t.Errorf("%s: reused=%v run %q, want a reused result for run-c2", k, res.Reused, res.RunID)
		}
		if !reflect.DeepEqual(res.Findings, prev.Findings) || !reflect.DeepEqual(res.OS, prev.OS) || res.Reference != prev.Reference || res.DB != prev.DB {
			t.Errorf("%s: reused result differs from the first run's", k)
		}
	}
	waitFor(t, func() bool { return testutil.ToFloat64(r.w.metrics.reused) == float64(len(second)) })
	if s := r.w.Stats(); s.Reused != int64(len(second)) || s.Scanned != int64(len(first)) || s.LayersAnalyzed == 0 || s.BytesPulled == 0 {
		t.Errorf("stats after two runs = %+v, want %d reused and %d scanned", s, len(second), len(first))
	}

	// The identity the dispatcher compares stored results with: this
	// worker's scanner and DB, published when it started.
	id, err := e.store.ScannerIdentity(t.Context())
	if err != nil {
		t.Fatalf("scanner identity: %v", err)
	}
	if id.Fingerprint() != first[f.jobs("c1")[0].ImageKey].Fingerprint() || id.Worker != "test-worker" || id.DB.NextUpdate.IsZero() {
		t.Errorf("published identity %+v does not match the results' scanner and DB", id)
	}

	// A job asking for a rescan (dispatcher --rescan) is scanned from the
	// registry by a worker without --rescan.
	f.log.reset()
	rescanJobs := f.jobs("c2r")
	for i := range rescanJobs {
		rescanJobs[i].Rescan = true
	}
	e.publish(t, rescanJobs...)
	for _, j := range rescanJobs {
		res := e.waitResult(t, j.ImageKey, time.Minute, func(r contract.ScanResult) bool { return r.Cycle == "c2r" })
		if res.Reused || res.Status != contract.StatusScanned || !reflect.DeepEqual(res.Findings, first[j.ImageKey].Findings) {
			t.Errorf("%s: rescan job gave reused=%v %s; want a new scan with the first run's findings", j.ImageKey, res.Reused, res.Status)
		}
	}
	if n, _ := f.log.snapshot(); n == 0 {
		t.Error("rescan jobs made no registry request: the images were not read again")
	}

	// --rescan: everything is scanned again; layers still come from the
	// shared cache (their keys include content and analyzer versions), so
	// only manifests and configs are read.
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	cfg := e.config(t)
	cfg.Rescan = true
	cfg.WorkerName = "rescanner"
	e.start(t, cfg, nil)
	f.log.reset()
	third := e.runCycle(t, f, "c3")
	if n := f.layerFetches(); n != 0 {
		t.Errorf("--rescan fetched %d layers, want 0 (all in the shared cache)", n)
	}
	if n, _ := f.log.snapshot(); n == 0 {
		t.Error("--rescan made no registry request: the images were not read again")
	}
	for k, res := range third {
		if res.Reused || res.Worker != "rescanner" {
			t.Errorf("%s: --rescan result reused=%v by %q", k, res.Reused, res.Worker)
		}
		if !reflect.DeepEqual(res.Findings, first[k].Findings) {
			t.Errorf("%s: --rescan findings differ from the first run's", k)
		}
	}
}

func TestDBUpdateRedetectsWithoutRegistry(t *testing.T) {
	e := newEnv(t, nil)
	f := newFleet(t, 0)
	r := e.start(t, e.config(t), nil)
	first := e.runCycle(t, f, "c1")
	checkFindings(t, f, first, 1)

	set, err := fixture.UpdatedAdvisories()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fixture.BuildDB(e.cacheDir, set, fixture.DBOptions{UpdatedAt: time.Now().UTC().Truncate(time.Second)}); err != nil {
		t.Fatal(err)
	}
	f.log.reset()
	updated := e.runCycle(t, f, "c2")
	if n, blobs := f.log.snapshot(); n != 0 || len(blobs) != 0 {
		t.Errorf("after a DB update: %d registry requests, blobs %v; want none (detection only)", n, blobs)
	}
	checkFindings(t, f, updated, 2)
	for k, res := range updated {
		if res.Reused || !res.DB.UpdatedAt.After(first[k].DB.UpdatedAt) {
			t.Errorf("%s: reused=%v DB %s; want a new detection with the newer DB", k, res.Reused, res.DB.UpdatedAt)
		}
	}
	waitFor(t, func() bool { return testutil.ToFloat64(r.w.metrics.redetected) == float64(len(updated)) })

	// A cold scan with the new DB, everything pulled and analysed again,
	// finds exactly the same.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	f.log.reset()
	for k, res := range updated {
		if err := e.engine.Layers.Clear(ctx); err != nil {
			t.Fatal(err)
		}
		req := scan.Request{Digest: k.Digest, Platform: k.Platform, References: []string{res.Reference}, Pull: true}
		cold, err := e.engine.Scan(ctx, req)
		if err != nil {
			t.Fatalf("cold scan of %s: %v", k, err)
		}
		if cold.DetectionOnly || cold.LayersCached != 0 {
			t.Fatalf("cold scan of %s used the cache (%d layers cached)", k, cold.LayersCached)
		}
		if !reflect.DeepEqual(cold.Findings, res.Findings) || !reflect.DeepEqual(cold.OS, res.OS) {
			t.Errorf("%s: detection-only findings differ from a cold scan with the same DB:\ncold %+v\nredetected %+v", k, cold.Findings, res.Findings)
		}
	}
	if f.layerFetches() == 0 {
		t.Error("the cold scans fetched no layer")
	}
}

// probeAnalyzer stands for an analyzer of another Trivy version: it finds
// nothing, but its presence and version enter Trivy's cache keys.
type probeAnalyzer struct{ version int }

func (p probeAnalyzer) Type() analyzer.Type { return "fleetscan-version-probe" }
func (p probeAnalyzer) Version() int        { return p.version }
func (p probeAnalyzer) Analyze(context.Context, analyzer.AnalysisInput) (*analyzer.AnalysisResult, error) {
	return nil, nil
}
func (p probeAnalyzer) Required(string, os.FileInfo) bool { return false }

// Not parallel: it changes Trivy's process-wide analyzer registry between
// scans.
func TestEntriesOfOtherAnalyzerVersionsAreNotUsed(t *testing.T) {
	e := newEnv(t, nil)
	f := newFleet(t, 0)
	var p fixture.Pushed
	for _, x := range f.pushed {
		if x.Spec.Name == "python-app" {
			p = x
		}
	}
	layers := len(p.Spec.Layers)
	req := scan.Request{Digest: p.Digest, Platform: p.Spec.Platforms[0], References: []string{p.Ref()}, Pull: true}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	want := p.Spec.ExpectedWith(1)
	fixturetest.SortFindings(want)

	steps := []struct {
		name        string
		probe       int // 0: not registered
		wantFetched int
	}{
		{"cold", 0, layers},
		{"warm, same analyzers", 0, 0},
		{"an extra analyzer (another Trivy's analyzer set)", 1, layers},
		{"that analyzer's version bumped", 2, layers},
		{"same analyzer version again", 2, 0},
		{"back to the original analyzers", 0, 0},
	}
	t.Cleanup(func() { analyzer.DeregisterAnalyzer(probeAnalyzer{}.Type()) })
	for _, s := range steps {
		analyzer.DeregisterAnalyzer(probeAnalyzer{}.Type())
		if s.probe > 0 {
			analyzer.RegisterAnalyzer(probeAnalyzer{version: s.probe})
		}
		f.log.reset()
		rep, err := e.engine.Scan(ctx, req)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := f.layerFetches(); got != s.wantFetched {
			t.Errorf("%s: %d layers fetched, want %d", s.name, got, s.wantFetched)
		}
		if diff := fixturetest.DiffFindings(want, tuples(rep.Findings)); diff != "" {
			t.Errorf("%s: findings differ:\n%s", s.name, diff)
		}
	}
}

func TestCrashedLeaseHolderIsTakenOverAfterTTL(t *testing.T) {
	e := newEnv(t, nil)
	f := newFleet(t, 0)
	var p fixture.Pushed
	for _, x := range f.pushed {
		if x.Spec.Name == "alpine-3.18" {
			p = x
		}
	}
	key := p.Key(p.Spec.Platforms[0])
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	// Learn the layer's cache key from a first scan, then drop its entry.
	if _, err := e.engine.Scan(ctx, scan.Request{Digest: p.Digest, Platform: key.Platform, References: []string{p.Ref()}, Pull: true}); err != nil {
		t.Fatal(err)
	}
	a, ok, err := e.engine.Layers.Analysis(ctx, key)
	if err != nil || !ok || len(a.BlobIDs) != 1 {
		t.Fatalf("recorded analysis = %+v %v %v", a, ok, err)
	}
	if err := e.engine.Layers.DeleteBlobs(ctx, a.BlobIDs); err != nil {
		t.Fatal(err)
	}

	// Another worker process leases the layer and dies.
	nc, err := nats.Connect(e.nats.Server.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	res, err := topology.Ensure(ctx, js, e.nats.Topo)
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.config(t)
	crashed, err := layercache.New(res, layercache.Config{TTL: e.nats.Topo.LayerCacheTTL, LeaseTTL: cfg.LayerLeaseTTL, Owner: "crashed"}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, missing, err := crashed.Scope().MissingBlobs(ctx, a.ArtifactID, a.BlobIDs); err != nil || len(missing) != 1 {
		t.Fatalf("crashed worker's lease: missing %v, %v", missing, err)
	}
	leased := time.Now()
	nc.Close()

	f.log.reset()
	cfg.Rescan = true
	r := e.start(t, cfg, nil)
	job := contract.NewScanJob("run-c2", "c2", key, p.Ref(), nil, time.Now())
	e.publish(t, job)
	got := e.waitResult(t, key, time.Minute, func(r contract.ScanResult) bool { return r.Cycle == "c2" })
	took := time.Since(leased)
	if got.Status != contract.StatusScanned {
		t.Fatalf("result %s %+v", got.Status, got.Failure)
	}
	if took < cfg.LayerLeaseTTL-200*time.Millisecond {
		t.Errorf("scanned %s after the lease was taken, before its %s TTL", took, cfg.LayerLeaseTTL)
	}
	if n := f.layerFetches(); n != 1 {
		t.Errorf("layer fetched %d times, want once (by the surviving worker)", n)
	}
	if w := e.engine.Layers.Stats().Waited; w != 1 {
		t.Errorf("waited for %d layers, want 1", w)
	}
	waitFor(t, func() bool { return testutil.ToFloat64(r.w.metrics.layerMisses) == 1 })
}

func TestSecondClusterPullsOnlyUnseenLayers(t *testing.T) {
	e := newEnv(t, nil)
	f := newFleet(t, 0)
	e.start(t, e.config(t), nil)
	first := e.runCycle(t, f, "c1")
	checkFindings(t, f, first, 1)
	seen := f.layers

	// The second cluster runs other images built on the same bases: each
	// adds one layer of its own.
	f.push(t, fixture.FleetImages(5))
	f.log.reset()
	second := e.runCycle(t, f, "c1")
	checkFindings(t, f, second, 1)
	_, blobs := f.log.snapshot()
	unseen := 0
	for d := range f.layers {
		want := 1
		if seen[d] {
			want = 0
		} else {
			unseen++
		}
		if blobs[d] != want {
			t.Errorf("layer %s (seen before: %v) fetched %d times, want %d", d, seen[d], blobs[d], want)
		}
	}
	if unseen != len(second) {
		t.Fatalf("%d unseen layers for %d images: the fleet does not share its bases as the test expects", unseen, len(second))
	}
}
