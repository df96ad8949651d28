package inventory

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	appsv1 "k8s.io/api/apps/v1"
	authzv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/fleetscan/fleetscan/internal/kubeapitest"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// The RBAC documented in the package comment, exactly.
var dispatcherRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}},
	{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"list"}},
	{APIGroups: []string{"apps"}, Resources: []string{"replicasets"}, Verbs: []string{"get", "list"}},
	{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"get", "list"}},
	{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"list"}},
}

// ownerAnnotation is the annotation seedCluster puts on its namespaces.
const ownerAnnotation = "example.com/owner"

// wantNamespaces is what an inventory of seedCluster's pods records of
// their namespaces: every label and annotation but kubectl's
// last-applied-configuration and values over contract.MaxAnnotationValue.
var wantNamespaces = []contract.Namespace{
	{Name: "ops", Labels: map[string]string{corev1.LabelMetadataName: "ops"}, Annotations: map[string]string{ownerAnnotation: "ops-team"}},
	{Name: "shop", Labels: map[string]string{corev1.LabelMetadataName: "shop", "team": "shop-label"},
		Annotations: map[string]string{ownerAnnotation: "shop-annotation", "team": "shop-annotation"}},
}

const (
	realWebPods = 1100
	realJobPods = 100
)

// TestRealAPIServer runs the live source against a real kube-apiserver:
// pagination as the server implements it, owner lookups, node platforms,
// and the documented RBAC being exactly enough.
func TestRealAPIServer(t *testing.T) {
	srv := kubeapitest.Start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	seedCluster(ctx, t, srv.Client)

	grant(ctx, t, srv.Client, "fleetscan-dispatcher", dispatcherRules)
	grant(ctx, t, srv.Client, "no-nodes", []rbacv1.PolicyRule{dispatcherRules[0], dispatcherRules[2], dispatcherRules[3]})
	grant(ctx, t, srv.Client, "pods-and-nodes-only", dispatcherRules[:2])
	grant(ctx, t, srv.Client, "no-namespaces", dispatcherRules[:4])

	t.Run("paginates with the documented RBAC", func(t *testing.T) {
		cfg, calls := countingConfig(srv.UserConfig(t, "fleetscan-dispatcher"))
		src, err := NewKubeSourceForConfig("real", cfg, DefaultPageSize, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		res, err := (&Collector{Log: zaptest.NewLogger(t)}).Collect(ctx, src)
		if err != nil {
			t.Fatal(err)
		}
		if res.Pods != realWebPods+realJobPods || len(res.Entries) != res.Pods || res.Unresolved() != 0 {
			t.Fatalf("pods %d entries %d unresolved %d", res.Pods, len(res.Entries), res.Unresolved())
		}
		// 1,200 pods by 500: three List calls following Continue.
		if got := calls.get("GET /api/v1/pods"); got != 3 {
			t.Errorf("pod List calls = %d, want 3", got)
		}
		if got := calls.get("GET /apis/apps/v1/namespaces/shop/replicasets"); got != 1 {
			t.Errorf("ReplicaSet List calls = %d, want 1 (cached for 1,100 pods)", got)
		}
		if got := calls.get("GET /apis/batch/v1/namespaces/ops/jobs"); got != 1 {
			t.Errorf("Job List calls = %d, want 1", got)
		}
		if got := calls.get("GET /api/v1/namespaces"); got != 1 {
			t.Errorf("Namespace List calls = %d, want 1", got)
		}
		if !reflect.DeepEqual(res.Namespaces, wantNamespaces) {
			t.Errorf("namespaces:\n got %+v\nwant %+v", res.Namespaces, wantNamespaces)
		}
		counts := map[string]int{}
		for _, e := range res.Entries {
			counts[e.Workload.Kind+"/"+e.Workload.Name+" "+e.Platform.String()]++
			if e.Workload.Inferred {
				t.Fatalf("%s attributed by inference with owners readable", e.Pod)
			}
		}
		want := map[string]int{
			"Deployment/web linux/amd64": realWebPods / 2, "Deployment/web linux/arm64": realWebPods / 2,
			"CronJob/nightly linux/amd64": realJobPods,
		}
		for k, n := range want {
			if counts[k] != n {
				t.Errorf("%s: %d containers, want %d (all: %v)", k, counts[k], n, counts)
			}
		}
	})

	t.Run("small pages", func(t *testing.T) {
		cfg, calls := countingConfig(srv.Config)
		src, err := NewKubeSourceForConfig("real", cfg, 97, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		err = src.EachPod(ctx, nil, func(p *corev1.Pod) error {
			if seen[p.Namespace+"/"+p.Name] {
				return fmt.Errorf("pod %s/%s twice", p.Namespace, p.Name)
			}
			seen[p.Namespace+"/"+p.Name] = true
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if want := (realWebPods + realJobPods + 96) / 97; len(seen) != realWebPods+realJobPods || calls.get("GET /api/v1/pods") != want {
			t.Fatalf("%d pods in %d calls, want %d in %d", len(seen), calls.get("GET /api/v1/pods"), realWebPods+realJobPods, want)
		}
	})

	t.Run("forbidden nodes fails the cluster", func(t *testing.T) {
		src, err := NewKubeSourceForConfig("real", srv.UserConfig(t, "no-nodes"), DefaultPageSize, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		_, err = (&Collector{Log: zaptest.NewLogger(t)}).Collect(ctx, src)
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "cluster real: node platforms") {
			t.Fatalf("err = %v, want forbidden naming the cluster", err)
		}
	})

	t.Run("forbidden owners falls back to inference", func(t *testing.T) {
		src, err := NewKubeSourceForConfig("real", srv.UserConfig(t, "pods-and-nodes-only"), DefaultPageSize, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		res, err := (&Collector{Log: zaptest.NewLogger(t)}).Collect(ctx, src)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range res.Entries {
			if !e.Workload.Inferred || (e.Workload.Name != "web" && e.Workload.Name != "nightly") {
				t.Fatalf("%s: workload %+v, want an inferred Deployment web or CronJob nightly", e.Pod, e.Workload)
			}
		}
	})

	t.Run("forbidden namespaces records none", func(t *testing.T) {
		src, err := NewKubeSourceForConfig("real", srv.UserConfig(t, "no-namespaces"), DefaultPageSize, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		res, err := (&Collector{Log: zaptest.NewLogger(t)}).Collect(ctx, src)
		if err != nil {
			t.Fatalf("a forbidden namespace list must not fail the cluster: %v", err)
		}
		if res.Pods != realWebPods+realJobPods || res.Namespaces != nil {
			t.Fatalf("%d pods, namespaces %+v: want every pod and no namespaces", res.Pods, res.Namespaces)
		}
	})

	t.Run("namespace pages", func(t *testing.T) {
		cfg, calls := countingConfig(srv.Config)
		src, err := NewKubeSourceForConfig("real", cfg, 2, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		all, err := src.Namespaces(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// shop, ops, empty and the server's own (default, kube-system, ...),
		// two a page.
		if got, want := calls.get("GET /api/v1/namespaces"), (len(all)+1)/2; len(all) < 4 || got != want {
			t.Fatalf("%d namespaces in %d calls, want at least 4 in %d", len(all), got, want)
		}
		for _, name := range []string{"shop", "ops", "empty", "default"} {
			if all[name].Name != name {
				t.Errorf("namespace %s not listed", name)
			}
		}
		if got := all["empty"]; got.Name != "empty" || got.Annotations != nil {
			t.Fatalf("namespace empty: %+v (its annotations are all too large or last-applied)", got)
		}
	})

	t.Run("kubeconfig contexts", func(t *testing.T) {
		path := srv.Kubeconfig(t, "admin", map[string]*rest.Config{
			"admin": srv.Config, "dispatcher": srv.UserConfig(t, "fleetscan-dispatcher"), "no-nodes": srv.UserConfig(t, "no-nodes"),
		})
		sources, failed, err := Config{Kubeconfig: path, AllContexts: true, PageSize: 500}.Open(zaptest.NewLogger(t))
		if err != nil || len(failed) != 0 || len(sources) != 3 {
			t.Fatalf("Open: %d sources, failed %v, err %v", len(sources), failed, err)
		}
		for _, src := range sources {
			res, err := (&Collector{Log: zaptest.NewLogger(t)}).Collect(ctx, src)
			switch src.Cluster() {
			case "no-nodes":
				if !apierrors.IsForbidden(err) {
					t.Errorf("%s: err %v, want forbidden", src.Cluster(), err)
				}
			default:
				if err != nil || res.Pods != realWebPods+realJobPods {
					t.Errorf("%s: %d pods, err %v", src.Cluster(), res.Pods, err)
				}
			}
		}
	})

	// Last: it adds a namespace the subtests above do not count.
	t.Run("standalone Job named like a CronJob's", func(t *testing.T) {
		standaloneJob(ctx, t, srv)
	})
}

// standaloneJob: a Job named "<name>-<8 digits>" without a CronJob owner is
// a Job from the API server (looked up, not inferred) and an inferred
// CronJob from the same pods as a `kubectl get pods -A -o json` file.
func standaloneJob(ctx context.Context, t *testing.T, srv *kubeapitest.Server) {
	cs := srv.Client
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "adhoc",
		Labels: map[string]string{"team": "batch"}, Annotations: map[string]string{ownerAnnotation: "batch-team"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	job, err := cs.BatchV1().Jobs("adhoc").Create(ctx, &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "backfill-29412345"},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "app", Image: "busybox:1.36"}}}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	if _, err := cs.CoreV1().Pods("adhoc").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "backfill-29412345-x7k2p", OwnerReferences: []metav1.OwnerReference{
			{APIVersion: "batch/v1", Kind: "Job", Name: job.Name, UID: job.UID, Controller: &yes}}},
		Spec: corev1.PodSpec{NodeName: "node-amd", Containers: []corev1.Container{{Name: "app", Image: "docker.io/library/busybox@" + digestBusybox}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	live, err := NewKubeSourceForConfig("real", srv.UserConfig(t, "fleetscan-dispatcher"), DefaultPageSize, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	pods, err := cs.CoreV1().Pods("adhoc").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// As `kubectl get namespaces,pods -A -o json` prints them: one List of
	// both kinds.
	items := []any{nsItem(ns)}
	for i := range pods.Items {
		p := pods.Items[i]
		p.Kind, p.APIVersion = "Pod", "v1"
		items = append(items, p)
	}
	b, err := json.Marshal(map[string]any{"kind": "List", "apiVersion": "v1", "items": items})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "pods.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		src  Source
		want contract.Workload
	}{
		{"API server", live, contract.Workload{Kind: KindJob, Name: "backfill-29412345"}},
		{"file", NewFileSource("real", path, ""), contract.Workload{Kind: KindCronJob, Name: "backfill", Inferred: true}},
	} {
		res, err := (&Collector{Log: zaptest.NewLogger(t), Filter: Filter{IncludeNamespaces: []string{"adhoc"}}}).Collect(ctx, tc.src)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(res.Entries) != 1 || res.Entries[0].Workload != tc.want {
			t.Errorf("%s: entries %+v, want one with workload %+v", tc.name, res.Entries, tc.want)
		}
		want := []contract.Namespace{{Name: "adhoc", Labels: map[string]string{corev1.LabelMetadataName: "adhoc", "team": "batch"},
			Annotations: map[string]string{ownerAnnotation: "batch-team"}}}
		if !reflect.DeepEqual(res.Namespaces, want) {
			t.Errorf("%s: namespaces %+v, want %+v", tc.name, res.Namespaces, want)
		}
	}
}

// nsItem is a Namespace as kubectl prints it in a List.
func nsItem(ns *corev1.Namespace) *corev1.Namespace {
	ns = ns.DeepCopy()
	ns.Kind, ns.APIVersion = "Namespace", "v1"
	return ns
}

// seedCluster creates two labelled nodes, a Deployment's ReplicaSet with
// 1,100 pods over both nodes and a CronJob's Job with 100 pods, and sets
// each pod's container status as a kubelet would.
func seedCluster(ctx context.Context, t *testing.T, cs kubernetes.Interface) {
	t.Helper()
	start := time.Now()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	huge := map[string]string{
		corev1.LastAppliedConfigAnnotation: `{"apiVersion":"v1","kind":"Namespace"}`,
		"example.com/blob":                 strings.Repeat("x", contract.MaxAnnotationValue+1),
	}
	for _, ns := range []corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"team": "shop-label"},
			Annotations: map[string]string{ownerAnnotation: "shop-annotation", "team": "shop-annotation",
				corev1.LastAppliedConfigAnnotation: huge[corev1.LastAppliedConfigAnnotation], "example.com/blob": huge["example.com/blob"]}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "ops", Annotations: map[string]string{ownerAnnotation: "ops-team"}}},
		// No pods: no inventory records it.
		{ObjectMeta: metav1.ObjectMeta{Name: "empty", Annotations: huge}},
	} {
		must(cs.CoreV1().Namespaces().Create(ctx, &ns, metav1.CreateOptions{}))
	}
	for name, arch := range map[string]string{"node-amd": "amd64", "node-arm": "arm64"} {
		must(cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name,
			Labels: map[string]string{LabelOS: "linux", LabelArch: arch}}}, metav1.CreateOptions{}))
	}
	yes := true
	tmpl := func(labels map[string]string, restart corev1.RestartPolicy) corev1.PodTemplateSpec {
		return corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec:       corev1.PodSpec{RestartPolicy: restart, Containers: []corev1.Container{{Name: "app", Image: "nginx:1.25"}}},
		}
	}
	webLabels := map[string]string{"app": "web", "pod-template-hash": "5f7c9d8b6"}
	rs, err := cs.AppsV1().ReplicaSets("shop").Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web-5f7c9d8b6", OwnerReferences: []metav1.OwnerReference{
			{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: "00000000-0000-0000-0000-00000000d001", Controller: &yes}}},
		Spec: appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: webLabels}, Template: tmpl(webLabels, corev1.RestartPolicyAlways)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	job, err := cs.BatchV1().Jobs("ops").Create(ctx, &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "nightly-29412345", OwnerReferences: []metav1.OwnerReference{
			{APIVersion: "batch/v1", Kind: "CronJob", Name: "nightly", UID: "00000000-0000-0000-0000-00000000c001", Controller: &yes}}},
		Spec: batchv1.JobSpec{Template: tmpl(nil, corev1.RestartPolicyNever)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	type podSpec struct {
		ns, name, node string
		owner          metav1.OwnerReference
		labels         map[string]string
		digest         string
	}
	var specs []podSpec
	for i := range realWebPods {
		node := []string{"node-amd", "node-arm"}[i%2]
		specs = append(specs, podSpec{"shop", fmt.Sprintf("web-5f7c9d8b6-%05d", i), node,
			metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: &yes}, webLabels, digestNginx})
	}
	for i := range realJobPods {
		specs = append(specs, podSpec{"ops", fmt.Sprintf("nightly-29412345-%05d", i), "node-amd",
			metav1.OwnerReference{APIVersion: "batch/v1", Kind: "Job", Name: job.Name, UID: job.UID, Controller: &yes}, nil, digestBusybox})
	}
	work := make(chan podSpec)
	var (
		wg    sync.WaitGroup
		first atomic.Value
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range work {
				pod, err := cs.CoreV1().Pods(s.ns).Create(ctx, &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: s.name, Labels: s.labels, OwnerReferences: []metav1.OwnerReference{s.owner}},
					Spec:       corev1.PodSpec{NodeName: s.node, Containers: []corev1.Container{{Name: "app", Image: "nginx:1.25"}}},
				}, metav1.CreateOptions{})
				if err == nil {
					pod.Status.Phase = corev1.PodRunning
					pod.Status.ContainerStatuses = []corev1.ContainerStatus{{
						Name: "app", Image: "docker.io/library/nginx:1.25", ImageID: "docker.io/library/nginx@" + s.digest, Ready: true,
						State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}},
					}}
					_, err = cs.CoreV1().Pods(s.ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
				}
				if err != nil {
					first.CompareAndSwap(nil, fmt.Errorf("pod %s/%s: %w", s.ns, s.name, err))
				}
			}
		}()
	}
	for _, s := range specs {
		work <- s
	}
	close(work)
	wg.Wait()
	if err, _ := first.Load().(error); err != nil {
		t.Fatal(err)
	}
	t.Logf("seeded %d pods with statuses in %s", len(specs), time.Since(start).Round(time.Millisecond))
}

// grant binds a ClusterRole with rules to user and waits until the
// authorizer has seen it.
func grant(ctx context.Context, t *testing.T, cs kubernetes.Interface, user string, rules []rbacv1.PolicyRule) {
	t.Helper()
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: user}, Rules: rules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: user},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: user}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User: user, ResourceAttributes: &authzv1.ResourceAttributes{Verb: "list", Resource: "pods"},
		}}, metav1.CreateOptions{})
		if err == nil && r.Status.Allowed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("RBAC for %s not effective: %v", user, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type requestCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *requestCounter) get(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// countingConfig counts requests by "METHOD path".
func countingConfig(cfg *rest.Config) (*rest.Config, *requestCounter) {
	cfg = rest.CopyConfig(cfg)
	c := &requestCounter{n: map[string]int{}}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			c.mu.Lock()
			c.n[r.Method+" "+r.URL.Path]++
			c.mu.Unlock()
			return rt.RoundTrip(r)
		})
	})
	return cfg, c
}
