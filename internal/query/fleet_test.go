package query

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/internal/fixture/fixturetest"
	"github.com/fleetscan/fleetscan/internal/natsembed/natstest"
	"github.com/fleetscan/fleetscan/internal/pipeline"
	"github.com/fleetscan/fleetscan/internal/reporter"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// workload is one controller of a test cluster and the sample it runs.
type workload struct {
	namespace, kind, name string
	image                 string // sample name
	tag                   string
	arch                  string // node architecture
	init                  bool
}

// cluster is a test cluster.
type cluster struct {
	name      string
	workloads []workload
}

// testFleet is the fixture fleet the query tests scan: OS and language
// packages (Alpine, Debian, npm, PyPI, Go), the multi-arch node-app on
// amd64 and arm64 nodes, and the same node-app digest in three clusters.
func testFleet() []cluster {
	return []cluster{
		{name: "prod-eu", workloads: []workload{
			{"web", "Deployment", "storefront", "node-app", "1.0.0", "amd64", false},
			{"web", "Deployment", "storefront-arm", "node-app", "1.0.0", "arm64", false},
			{"payments", "StatefulSet", "ledger", "debian-12", "12.1", "amd64", false},
			{"monitoring", "DaemonSet", "node-agent", "go-agent", "0.3.1", "amd64", false},
			{"web", "Deployment", "static", "static-site", "latest", "amd64", false},
			{"batch", "CronJob", "export", "alpine-curl", "8.3.0", "amd64", false},
		}},
		{name: "prod-us", workloads: []workload{
			{"web", "Deployment", "storefront", "node-app", "1.0.0", "amd64", false},
			{"web", "Deployment", "storefront", "alpine-3.18", "3.18", "amd64", true},
			{"data", "Deployment", "risk-api", "python-app", "2.0.0", "amd64", false},
		}},
		{name: "staging", workloads: []workload{
			{"web", "Deployment", "storefront", "node-app", "1.0.0", "amd64", false},
			{"tools", "StatefulSet", "toolbox", "alpine-3.18", "3.18.0", "amd64", false},
		}},
	}
}

// writeCluster writes a cluster's pods and nodes as kubectl JSON.
func writeCluster(t testing.TB, dir string, c cluster, pushed map[string]fixture.Pushed) (pods, nodes string) {
	t.Helper()
	list := corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "List", APIVersion: "v1"}}
	ctrl := true
	for i, w := range c.workloads {
		p := pushed[w.image]
		ref := p.Repository + ":" + w.tag
		owner := metav1.OwnerReference{APIVersion: "apps/v1", Kind: w.kind, Name: w.name, UID: "u", Controller: &ctrl}
		meta := metav1.ObjectMeta{Namespace: w.namespace, Name: fmt.Sprintf("%s-%d", w.name, i)}
		switch w.kind {
		case "Deployment":
			owner.Kind, owner.Name = "ReplicaSet", w.name+"-7d9f8b6c5"
			meta.Labels = map[string]string{"pod-template-hash": "7d9f8b6c5"}
			meta.Name = fmt.Sprintf("%s-7d9f8b6c5-%05x", w.name, i)
		case "CronJob":
			owner.APIVersion, owner.Kind, owner.Name = "batch/v1", "Job", w.name+"-29412360"
		}
		meta.OwnerReferences = []metav1.OwnerReference{owner}
		st := corev1.ContainerStatus{Name: "c", Image: ref, ImageID: p.Repository + "@" + p.Digest, Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
		pod := corev1.Pod{TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"}, ObjectMeta: meta,
			Spec: corev1.PodSpec{NodeName: "node-" + w.arch}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
		if w.init {
			st.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}}
			pod.Spec.InitContainers = []corev1.Container{{Name: "c", Image: ref}}
			pod.Status.InitContainerStatuses = []corev1.ContainerStatus{st}
		} else {
			pod.Spec.Containers = []corev1.Container{{Name: "c", Image: ref}}
			pod.Status.ContainerStatuses = []corev1.ContainerStatus{st}
		}
		list.Items = append(list.Items, pod)
	}
	nl := corev1.NodeList{TypeMeta: metav1.TypeMeta{Kind: "List", APIVersion: "v1"}}
	for _, arch := range []string{"amd64", "arm64"} {
		nl.Items = append(nl.Items, corev1.Node{TypeMeta: metav1.TypeMeta{Kind: "Node", APIVersion: "v1"},
			ObjectMeta: metav1.ObjectMeta{Name: "node-" + arch, Labels: map[string]string{corev1.LabelOSStable: "linux", corev1.LabelArchStable: arch}}})
	}
	pods, nodes = filepath.Join(dir, c.name+".json"), filepath.Join(dir, c.name+"-nodes.json")
	for path, v := range map[string]any{pods: list, nodes: nl} {
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return pods, nodes
}

// scanned is the fixture fleet after one `fleetscan scan` on a JetStream.
type scanned struct {
	nats     *natstest.Env
	reg      *fixture.Registry
	pushed   map[string]fixture.Pushed
	cacheDir string
	outDir   string
	outcome  reporter.Outcome
	src      *Source
}

// scanFleet pushes the samples, builds the DB and runs the all-in-one
// pipeline (dispatcher, workers, reporter with --sbom) against an embedded
// JetStream, as `fleetscan scan --nats-url` would.
func scanFleet(t *testing.T) *scanned {
	t.Helper()
	s := &scanned{pushed: map[string]fixture.Pushed{}, cacheDir: t.TempDir(), outDir: t.TempDir()}
	s.nats = natstest.Start(t)
	s.reg = fixturetest.NewRegistry(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pushed, err := fixture.PushSamples(ctx, s.reg.Host, fixture.SampleImages())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pushed {
		s.pushed[p.Spec.Name] = p
	}
	set, err := fixture.BaseAdvisories()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fixture.BuildDB(s.cacheDir, set, fixture.DBOptions{UpdatedAt: time.Now().Add(-time.Hour).UTC().Truncate(time.Second)}); err != nil {
		t.Fatal(err)
	}
	cfg := pipeline.Defaults()
	cfg.NATS.URLs = s.nats.Server.URL()
	cfg.SkipDBUpdate = true
	cfg.Worker.DB.CacheDir = s.cacheDir
	cfg.Worker.DB.Registry.InsecureRegistries = []string{s.reg.Host}
	cfg.Worker.ScratchDir = t.TempDir()
	cfg.Workers = 2
	cfg.ScanWait = 2 * time.Minute
	cfg.Report.OutDir = s.outDir
	cfg.Report.SBOM = []string{"cyclonedx", "spdx"}
	dir := t.TempDir()
	for _, c := range testFleet() {
		pods, nodes := writeCluster(t, dir, c, s.pushed)
		cfg.Dispatch.Sources.InventoryFiles = append(cfg.Dispatch.Sources.InventoryFiles, c.name+"="+pods)
		cfg.Dispatch.Sources.NodesFiles = append(cfg.Dispatch.Sources.NodesFiles, c.name+"="+nodes)
	}
	cfg.Complete(time.Now())
	s.outcome, err = pipeline.Run(ctx, cfg, pipeline.Deps{})
	if err != nil {
		t.Fatalf("scan the fixture fleet: %v", err)
	}
	if sum := s.outcome.Report.Summary; sum.ImagesFailed+sum.ImagesNotScanned > 0 {
		t.Fatalf("fixture fleet not fully scanned: %v", s.outcome.Incomplete())
	}
	if s.src, err = OpenResources(ctx, s.nats.JS, nil); err != nil {
		t.Fatal(err)
	}
	return s
}

// findings are the stored results' findings by vulnerability:
// "digest platform package version fixed" lines.
func (s *scanned) findings(t *testing.T, running map[contract.ImageKey]bool) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	st := store.New(s.nats.JS, s.nats.Res)
	err := st.EachResult(t.Context(), func(r contract.ScanResult) error {
		if !running[r.ImageKey] {
			return nil
		}
		for _, f := range r.Findings {
			out[f.VulnerabilityID] = append(out[f.VulnerabilityID], fmt.Sprintf("%s %s %s %s fixed=%q", r.Digest, r.Platform, f.PkgName, f.PkgVersion, f.FixedVersion))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
