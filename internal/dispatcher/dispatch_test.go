package dispatcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/fleetscan/fleetscan/internal/goldentest"
	"github.com/fleetscan/fleetscan/internal/inventory"
	"github.com/fleetscan/fleetscan/internal/natsembed/natstest"
	"github.com/fleetscan/fleetscan/internal/queue"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

const (
	dA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	dB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	dC = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
)

var testNow = time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)

// podSource is an in-memory cluster.
type podSource struct {
	cluster string
	pods    []*corev1.Pod
	nodes   map[string]contract.Platform
	err     error
	// failAfter > 0 fails the listing with err after that many pods.
	failAfter int
}

func (s *podSource) Cluster() string { return s.cluster }
func (s *podSource) EachPod(_ context.Context, sel labels.Selector, fn func(*corev1.Pod) error) error {
	if s.err != nil && s.failAfter == 0 {
		return s.err
	}
	for i, p := range s.pods {
		if s.failAfter > 0 && i == s.failAfter {
			return s.err
		}
		if sel != nil && !sel.Matches(labels.Set(p.Labels)) {
			continue
		}
		if err := fn(p); err != nil {
			return err
		}
	}
	return nil
}
func (s *podSource) NodePlatforms(context.Context) (map[string]contract.Platform, error) {
	return s.nodes, nil
}
func (s *podSource) ControllerOf(context.Context, string, string, string) (*metav1.OwnerReference, bool, error) {
	return nil, false, nil
}

func pod(ns, name, node, image, imageID string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "main", Image: image}}},
		Status:     corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "main", ImageID: imageID}}},
	}
}

var amdNodes = map[string]contract.Platform{"n1": {OS: "linux", Architecture: "amd64"}, "n2": {OS: "linux", Architecture: "arm64"}}

// fleet is three clusters running dA under different tags, repositories and
// clusters, plus dB on two platforms and an unresolved container.
func fleet() []inventory.Source {
	return []inventory.Source{
		&podSource{cluster: "eu", nodes: amdNodes, pods: []*corev1.Pod{
			pod("web", "a-1", "n1", "nginx:1.25", "docker.io/library/nginx@"+dA),
			pod("web", "a-2", "n1", "nginx:1.25", "docker.io/library/nginx@"+dA),
			pod("web", "b-1", "n2", "redis:7", "docker.io/library/redis@"+dB),
		}},
		&podSource{cluster: "us", nodes: amdNodes, pods: []*corev1.Pod{
			pod("shop", "x-1", "n1", "mirror.example.com/library/nginx:stable", "mirror.example.com/library/nginx@"+dA),
			pod("shop", "x-2", "n1", "docker.io/library/nginx@"+dA, "docker.io/library/nginx@"+dA),
			pod("shop", "y-1", "n1", "redis:7", "docker-pullable://redis@"+dB),
			pod("shop", "w-1", "n1", "busybox:1", ""),
		}},
		&podSource{cluster: "ap", nodes: amdNodes, pods: []*corev1.Pod{
			pod("ops", "z-1", "n1", "nginx:latest", "docker.io/library/nginx@"+dA),
		}},
	}
}

func runDeps(t *testing.T, env *natstest.Env, sources []inventory.Source) Deps {
	return Deps{
		Sources: sources, Publisher: queue.NewPublisher(env.JS), Store: store.New(env.JS, env.Res),
		Log: zaptest.NewLogger(t), Now: func() time.Time { return testNow },
	}
}

func testConfig(cycle string) Config {
	c := Defaults()
	c.Cycle = cycle
	return c
}

// storedJobs reads every job in the jobs stream without consuming it.
func storedJobs(t *testing.T, env *natstest.Env) []contract.ScanJob {
	t.Helper()
	ctx := t.Context()
	info, err := env.Res.Jobs.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var jobs []contract.ScanJob
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := env.Res.Jobs.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		j, err := contract.DecodeScanJob(m.Data)
		if err != nil {
			t.Fatalf("job %d: %v", seq, err)
		}
		if want := topology.JobSubject(j.ImageKey); m.Subject != want {
			t.Fatalf("job on %s, want %s", m.Subject, want)
		}
		jobs = append(jobs, j)
	}
	return jobs
}

func TestRunDeduplicatesAcrossClusters(t *testing.T) {
	env := natstest.Start(t)
	ctx := t.Context()
	cfg := testConfig("2026-11-27")
	cfg.RunID = "20261127T060000Z-abcdef"
	m, err := Run(ctx, cfg, runDeps(t, env, fleet()))
	if err != nil {
		t.Fatal(err)
	}
	// dA@amd64 (5 containers, 2 tags, 2 repositories, 3 clusters), dB@arm64
	// and dB@amd64: three jobs.
	jobs := storedJobs(t, env)
	if len(jobs) != 3 || m.Published != 3 || m.Duplicates != 0 || len(m.Expected) != 3 {
		t.Fatalf("stored %d jobs, manifest published %d dup %d expected %d; want 3/3/0/3", len(jobs), m.Published, m.Duplicates, len(m.Expected))
	}
	byKey := map[string]contract.ScanJob{}
	for _, j := range jobs {
		byKey[j.ImageKey.String()] = j
		if j.RunID != cfg.RunID || j.Cycle != cfg.Cycle {
			t.Fatalf("job %s run %q cycle %q", j.ImageKey, j.RunID, j.Cycle)
		}
	}
	nginx := byKey[dA+"@linux/amd64"]
	if nginx.Reference != "docker.io/library/nginx@"+dA || len(nginx.AltReferences) != 1 || nginx.AltReferences[0] != "mirror.example.com/library/nginx@"+dA {
		t.Fatalf("nginx job references %q + %q", nginx.Reference, nginx.AltReferences)
	}
	if _, ok := byKey[dB+"@linux/arm64"]; !ok {
		t.Fatalf("no arm64 redis job in %v", byKey)
	}
	if _, ok := byKey[dB+"@linux/amd64"]; !ok {
		t.Fatalf("no amd64 redis job in %v", byKey)
	}

	st := store.New(env.JS, env.Res)
	stored, err := st.Manifest(ctx, cfg.RunID)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored.Clusters) != 3 || stored.Published != 3 || !stored.CreatedAt.Equal(testNow) {
		t.Fatalf("stored manifest %+v", stored)
	}
	for _, c := range stored.Clusters {
		if !c.OK {
			t.Fatalf("cluster %s not ok: %s", c.Name, c.Error)
		}
	}
	us, err := st.Inventory(ctx, "us")
	if err != nil {
		t.Fatal(err)
	}
	if us.RunID != cfg.RunID || us.Pods != 4 || len(us.Entries) != 4 || us.Entries[3].Resolution != contract.Unresolved {
		t.Fatalf("us inventory: %+v", us)
	}
	if stored.Clusters[2].Name != "us" || stored.Clusters[2].Unresolved != 1 || stored.Clusters[2].Containers != 4 {
		t.Fatalf("us status %+v", stored.Clusters[2])
	}
}

// TestTwoDispatchersSameCycle runs two dispatchers, each with its own NATS
// connection, at the same time over overlapping clusters: the stream stores
// every job once. A new cycle publishes again.
func TestTwoDispatchersSameCycle(t *testing.T) {
	env := natstest.Start(t)
	ctx := t.Context()
	dispatcher := func(sources []inventory.Source, cycle string) (contract.RunManifest, error) {
		nc, err := nats.Connect(env.Server.URL())
		if err != nil {
			return contract.RunManifest{}, err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return contract.RunManifest{}, err
		}
		res, err := topology.Ensure(ctx, js, env.Topo)
		if err != nil {
			return contract.RunManifest{}, err
		}
		return Run(ctx, testConfig(cycle), Deps{Sources: sources, Publisher: queue.NewPublisher(js), Store: store.New(js, res), Log: zaptest.NewLogger(t)})
	}
	all := fleet()
	var (
		wg         sync.WaitGroup
		manifests  [2]contract.RunManifest
		errs       [2]error
		partitions = [2][]inventory.Source{all[:2], all[1:]} // "us" in both
	)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			manifests[i], errs[i] = dispatcher(partitions[i], "2026-11-27")
		}()
	}
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		t.Fatal(err)
	}
	if jobs := storedJobs(t, env); len(jobs) != 3 {
		t.Fatalf("stream holds %d jobs, want 3", len(jobs))
	}
	published := manifests[0].Published + manifests[1].Published
	expected := len(manifests[0].Expected) + len(manifests[1].Expected)
	if published != 3 || published+manifests[0].Duplicates+manifests[1].Duplicates != expected {
		t.Fatalf("published %d+%d dup %d+%d expected %d+%d",
			manifests[0].Published, manifests[1].Published, manifests[0].Duplicates, manifests[1].Duplicates,
			len(manifests[0].Expected), len(manifests[1].Expected))
	}
	if manifests[0].RunID == manifests[1].RunID {
		t.Fatalf("two runs share the id %s", manifests[0].RunID)
	}

	m, err := dispatcher(all, "2026-11-28")
	if err != nil {
		t.Fatal(err)
	}
	if m.Published != 3 || len(storedJobs(t, env)) != 6 {
		t.Fatalf("next cycle published %d, stream holds %d; want 3 and 6", m.Published, len(storedJobs(t, env)))
	}
}

func TestRunRecordsFailedClusters(t *testing.T) {
	env := natstest.Start(t)
	ctx := t.Context()
	sources := append(fleet()[:1], &podSource{cluster: "down", err: errors.New("dial tcp 10.0.0.1:6443: connect: connection refused")})
	deps := runDeps(t, env, sources)
	core, logs := observer.New(zapcore.ErrorLevel)
	deps.Log = zap.New(core)
	deps.Failed = []inventory.ClusterFailure{{Cluster: "typo", Err: errors.New(`context "typo" not found`)}}
	cfg := testConfig("c1")
	cfg.RunID = "run-1"
	m, err := Run(ctx, cfg, deps)
	if err != nil {
		t.Fatalf("one cluster ok must not fail the run: %v", err)
	}
	want := map[string]string{"down": "connection refused", "eu": "", "typo": `context "typo" not found`}
	if len(m.Clusters) != 3 {
		t.Fatalf("clusters %+v", m.Clusters)
	}
	for _, c := range m.Clusters {
		if c.OK != (want[c.Name] == "") || !strings.Contains(c.Error, want[c.Name]) {
			t.Errorf("cluster %+v, want error %q", c, want[c.Name])
		}
	}
	for _, cluster := range []string{"down", "typo"} {
		if n := logs.FilterField(zap.String("cluster", cluster)).Len(); n == 0 {
			t.Errorf("failed cluster %s not logged at error level", cluster)
		}
	}
	if _, err := store.New(env.JS, env.Res).Inventory(ctx, "down"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("inventory of a failed cluster: %v", err)
	}

	t.Run("no cluster at all", func(t *testing.T) {
		deps := runDeps(t, env, []inventory.Source{&podSource{cluster: "down", err: errors.New("forbidden")}})
		cfg.RunID = "run-2"
		m, err := Run(ctx, cfg, deps)
		if !errors.Is(err, ErrNoCluster) {
			t.Fatalf("err = %v, want ErrNoCluster", err)
		}
		stored, serr := store.New(env.JS, env.Res).Manifest(ctx, "run-2")
		if serr != nil || len(stored.Clusters) != 1 || stored.Clusters[0].OK || len(m.Expected) != 0 {
			t.Fatalf("manifest of a run with no cluster: %+v, %v", stored, serr)
		}
	})
}

// TestClusterFailingMidwayContributesNothing: a cluster whose listing
// fails after several chunks were streamed into the plan and the store is
// recorded as failed; its keys are not expected and its previous complete
// inventory stays the latest.
func TestClusterFailingMidwayContributesNothing(t *testing.T) {
	env := natstest.Start(t)
	ctx := t.Context()
	eu := &podSource{cluster: "eu", nodes: amdNodes}
	for i := range 2500 {
		d := dA
		if i == 1500 {
			d = dC // only in the second chunk of eu
		}
		eu.pods = append(eu.pods, pod("web", fmt.Sprintf("a-%d", i), "n1", "nginx:1.25", "docker.io/library/nginx@"+d))
	}
	cfg := testConfig("c1")
	cfg.RunID = "run-1"
	if _, err := Run(ctx, cfg, runDeps(t, env, []inventory.Source{eu})); err != nil {
		t.Fatal(err)
	}
	eu.failAfter, eu.err = 2200, errors.New("stream error: connection reset")
	cfg.RunID = "run-2"
	m, err := Run(ctx, cfg, runDeps(t, env, []inventory.Source{eu, fleet()[2]}))
	if err != nil {
		t.Fatalf("one cluster ok must not fail the run: %v", err)
	}
	if len(m.Clusters) != 2 || m.Clusters[1].Name != "eu" || m.Clusters[1].OK || !strings.Contains(m.Clusters[1].Error, "connection reset") {
		t.Fatalf("clusters %+v", m.Clusters)
	}
	if len(m.Expected) != 1 || m.Expected[0].Digest != dA {
		t.Fatalf("expected %v, want only %s (the failed cluster's %s left out)", m.Expected, dA, dC)
	}
	inv, err := store.New(env.JS, env.Res).Inventory(ctx, "eu")
	if err != nil || inv.RunID != "run-1" || len(inv.Entries) != 2500 || inv.Pods != 2500 {
		t.Fatalf("eu inventory after a failed run: run %q, %d entries, %v; want run-1's 2,500", inv.RunID, len(inv.Entries), err)
	}
}

type failingPublisher struct{ published int }

func (f *failingPublisher) Publish(_ context.Context, jobs []contract.ScanJob) (queue.PublishStats, error) {
	return queue.PublishStats{Stored: f.published}, fmt.Errorf("nats: timeout")
}

type memStore struct {
	mu          sync.Mutex
	inventories map[string]contract.Inventory
	manifests   []contract.RunManifest
	failInv     error
}

// WriteInventory encodes the inventory as the store does and keeps it
// decoded.
func (s *memStore) WriteInventory(_ context.Context, h contract.InventoryHeader, fill store.InventoryFill) error {
	if s.failInv != nil {
		return fmt.Errorf("store inventory of cluster %s: %w", h.Cluster, s.failInv)
	}
	var buf bytes.Buffer
	enc, err := contract.NewInventoryEncoder(&buf, h, 2)
	if err != nil {
		return err
	}
	pods, err := fill(enc)
	if err == nil {
		err = enc.Close(pods)
	}
	if err != nil {
		return err
	}
	dec, err := contract.NewInventoryDecoder(&buf)
	if err != nil {
		return err
	}
	inv := contract.Inventory{RunID: h.RunID, Cycle: h.Cycle, Cluster: h.Cluster, CollectedAt: h.CollectedAt}
	for {
		entries, err := dec.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		inv.Entries = append(inv.Entries, entries...)
	}
	inv.Pods = dec.End().Pods
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inventories == nil {
		s.inventories = map[string]contract.Inventory{}
	}
	s.inventories[inv.Cluster] = inv
	return nil
}

func (s *memStore) PutManifest(_ context.Context, m contract.RunManifest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.manifests = append(s.manifests, m)
	return nil
}

func TestRunPublishOrStoreFailure(t *testing.T) {
	ctx := t.Context()
	t.Run("publish", func(t *testing.T) {
		st := &memStore{}
		m, err := Run(ctx, testConfig("c"), Deps{Sources: fleet(), Publisher: &failingPublisher{published: 1}, Store: st, Log: zaptest.NewLogger(t)})
		if err == nil || !strings.Contains(err.Error(), "publish 3 jobs: nats: timeout") {
			t.Fatalf("err = %v", err)
		}
		if len(st.manifests) != 0 || m.Published != 1 || len(st.inventories) != 3 {
			t.Fatalf("manifests stored %d (want 0), published %d, inventories %d", len(st.manifests), m.Published, len(st.inventories))
		}
	})
	t.Run("inventory", func(t *testing.T) {
		env := natstest.Start(t)
		st := &memStore{failInv: errors.New("object store unavailable")}
		_, err := Run(ctx, testConfig("c"), Deps{Sources: fleet()[:1], Publisher: queue.NewPublisher(env.JS), Store: st, Log: zaptest.NewLogger(t)})
		if err == nil || !strings.Contains(err.Error(), "store inventory of cluster eu: object store unavailable") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("no publisher", func(t *testing.T) {
		if _, err := Run(ctx, testConfig("c"), Deps{Sources: fleet()}); err == nil {
			t.Fatal("Run without publisher succeeded")
		}
	})
}

func TestDryRunGolden(t *testing.T) {
	testdata := filepath.Join("..", "inventory", "testdata")
	cfg := testConfig("2026-11-27")
	cfg.Sources.InventoryFiles = []string{"prod=" + filepath.Join(testdata, "pods.json"), "staging=" + filepath.Join(testdata, "pods.json")}
	cfg.Sources.NodesFiles = []string{"prod=" + filepath.Join(testdata, "nodes.json")}
	cfg.Sources.ExcludeNamespaces = []string{"kube-*"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	sources, failed, err := cfg.Sources.Open(zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	failed = append(failed, inventory.ClusterFailure{Cluster: "dr", Err: errors.New("Unauthorized")})
	var out, summary bytes.Buffer
	plan, err := DryRun(t.Context(), cfg, Deps{Sources: sources, Failed: failed, Log: zaptest.NewLogger(t)}, &out, &summary)
	if err != nil {
		t.Fatal(err)
	}
	goldentest.Assert(t, "plan.golden.json", out.Bytes())
	goldentest.Assert(t, "summary.golden.txt", summary.Bytes())
	// Same digests on other platforms in staging (no nodes file): the keys
	// differ, so the jobs do too.
	if got := len(plan.Expected()); got != 7 {
		t.Fatalf("%d jobs, want 7", got)
	}
}

func TestConfig(t *testing.T) {
	c := Defaults()
	c.Complete(time.Date(2026, 11, 27, 23, 59, 58, 0, time.FixedZone("x", -3600)))
	if c.Cycle != "2026-11-28" || !strings.HasPrefix(c.RunID, "20261128T005958Z-") || len(c.RunID) != len("20261128T005958Z-")+6 {
		t.Fatalf("cycle %q run id %q", c.Cycle, c.RunID)
	}
	a, b := NewRunID(testNow), NewRunID(testNow.Add(time.Second))
	if a >= b {
		t.Fatalf("run ids do not sort by time: %s, %s", a, b)
	}
	tests := []struct {
		mutate  func(*Config)
		wantErr string
	}{
		{func(c *Config) {}, ""},
		{func(c *Config) { c.Cycle = "2026 11" }, "--cycle"},
		{func(c *Config) { c.RunID = "a/b" }, "--run-id"},
		{func(c *Config) { c.ClusterConcurrency = 0 }, "--cluster-concurrency"},
		{func(c *Config) { c.RegistryTimeout = 0 }, "--registry-timeout"},
		{func(c *Config) { c.ResolveTags = false; c.InsecureRegistries = []string{"x"} }, "only apply with --resolve-tags"},
		{func(c *Config) { c.Sources.PageSize = -1 }, "--page-size"},
	}
	for _, tt := range tests {
		c := Defaults()
		tt.mutate(&c)
		err := c.Validate()
		if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("Validate = %v, want %q", err, tt.wantErr)
		}
	}
	c = Defaults()
	c.ResolveTags = false
	if r, err := c.Resolver(); r != nil || err != nil {
		t.Fatalf("resolver with --resolve-tags=false: %v %v", r, err)
	}
	c.ResolveTags, c.RegistryConfig = true, filepath.Join(t.TempDir(), "missing.json")
	if _, err := c.Resolver(); err == nil || !strings.Contains(err.Error(), "--registry-config") {
		t.Fatalf("missing registry config: %v", err)
	}
}
