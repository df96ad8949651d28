package inventory

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap/zaptest"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/fleetscan/fleetscan/pkg/contract"
)

func ownedBy(apiVersion, kind, name string) []metav1.OwnerReference {
	yes := true
	return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, UID: types.UID("u-" + name), Controller: &yes}}
}

func testPod(ns, name string, owners []metav1.OwnerReference, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, OwnerReferences: owners, Labels: labels},
		Spec:       corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Image: "nginx:1.25"}}},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{
			{Name: "c", ImageID: "docker.io/library/nginx@" + digestNginx},
		}},
	}
}

// callCounter counts verbs per resource seen by a fake clientset.
type callCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *callCounter) reactor(a k8stesting.Action) (bool, runtime.Object, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[a.GetVerb()+" "+a.GetResource().Resource]++
	return false, nil, nil
}

func (c *callCounter) get(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}

func TestAttribution(t *testing.T) {
	t.Parallel()
	objects := []runtime.Object{
		&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "web-5f7c9", OwnerReferences: ownedBy("apps/v1", "Deployment", "web")}},
		&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "lonely-rs"}},
		&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "canary-6d8f", OwnerReferences: ownedBy("argoproj.io/v1alpha1", "Rollout", "canary")}},
		&batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "nightly-29412345", OwnerReferences: ownedBy("batch/v1", "CronJob", "nightly")}},
		&batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "once"}},
	}
	tests := []struct {
		name string
		pod  *corev1.Pod
		want contract.Workload
	}{
		{"deployment through its replicaset", testPod("a", "web-5f7c9-aaaaa", ownedBy("apps/v1", "ReplicaSet", "web-5f7c9"), nil), contract.Workload{Kind: KindDeployment, Name: "web"}},
		{"second pod of the same replicaset", testPod("a", "web-5f7c9-bbbbb", ownedBy("apps/v1", "ReplicaSet", "web-5f7c9"), nil), contract.Workload{Kind: KindDeployment, Name: "web"}},
		{"replicaset without owner", testPod("a", "lonely-rs-ccccc", ownedBy("apps/v1", "ReplicaSet", "lonely-rs"), nil), contract.Workload{Kind: KindReplicaSet, Name: "lonely-rs"}},
		{"replicaset of another controller", testPod("a", "canary-6d8f-x", ownedBy("apps/v1", "ReplicaSet", "canary-6d8f"), nil), contract.Workload{Kind: "Rollout", Name: "canary"}},
		{"deleted replicaset: inferred from hash", testPod("a", "api-7b9d8-x", ownedBy("apps/v1", "ReplicaSet", "api-7b9d8"), map[string]string{"pod-template-hash": "7b9d8"}),
			contract.Workload{Kind: KindDeployment, Name: "api", Inferred: true}},
		{"deleted replicaset without hash label", testPod("a", "api-7b9d8-y", ownedBy("apps/v1", "ReplicaSet", "api-7b9d8"), nil), contract.Workload{Kind: KindReplicaSet, Name: "api-7b9d8"}},
		{"cronjob through its job", testPod("a", "nightly-29412345-q", ownedBy("batch/v1", "Job", "nightly-29412345"), nil), contract.Workload{Kind: KindCronJob, Name: "nightly"}},
		{"job without owner", testPod("a", "once-x", ownedBy("batch/v1", "Job", "once"), nil), contract.Workload{Kind: KindJob, Name: "once"}},
		{"deleted cron job: inferred", testPod("a", "hourly-29412346-z", ownedBy("batch/v1", "Job", "hourly-29412346"), nil), contract.Workload{Kind: KindCronJob, Name: "hourly", Inferred: true}},
		{"deleted job with short suffix stays a job", testPod("a", "migrate-2-z", ownedBy("batch/v1", "Job", "migrate-2"), nil), contract.Workload{Kind: KindJob, Name: "migrate-2"}},
		{"statefulset", testPod("a", "db-0", ownedBy("apps/v1", "StatefulSet", "db"), nil), contract.Workload{Kind: KindStatefulSet, Name: "db"}},
		{"daemonset", testPod("a", "agent-x", ownedBy("apps/v1", "DaemonSet", "agent"), nil), contract.Workload{Kind: KindDaemonSet, Name: "agent"}},
		{"static pod mirrored by its node", testPod("kube-system", "etcd-n1", ownedBy("v1", "Node", "n1"), nil), contract.Workload{Kind: "Node", Name: "n1"}},
		{"bare pod", testPod("a", "debug", nil, nil), contract.Workload{Kind: KindPod, Name: "debug"}},
		{"non-controller owner ignored", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "p",
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "cm"}}}}, contract.Workload{Kind: KindPod, Name: "p"}},
		{"ReplicaSet kind of another group", testPod("a", "x", ownedBy("example.com/v1", "ReplicaSet", "x-rs"), nil), contract.Workload{Kind: "ReplicaSet", Name: "x-rs"}},
	}
	cs := fake.NewClientset(objects...)
	var calls callCounter
	cs.PrependReactor("*", "*", calls.reactor)
	src := NewKubeSource("c", cs, 2, zaptest.NewLogger(t))
	a := &attributor{lookup: src, onErr: func(kind, ns string, err error) { t.Errorf("lookup %s in %s: %v", kind, ns, err) }}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := a.workload(t.Context(), tt.pod); got != tt.want {
				t.Fatalf("workload = %+v, want %+v", got, tt.want)
			}
		})
	}
	// One listing per kind and namespace (the fake ignores Limit: one page),
	// then one GET per name missing from it, cached even when not found.
	if got := calls.get("list replicasets"); got != 1 {
		t.Errorf("list replicasets calls = %d, want 1", got)
	}
	if got := calls.get("list jobs"); got != 1 {
		t.Errorf("list jobs calls = %d, want 1", got)
	}
	if got := calls.get("get replicasets"); got != 1 {
		t.Errorf("get replicasets = %d, want 1 (api-7b9d8, then cached)", got)
	}
}

func TestAttributionLookupFailureFallsBack(t *testing.T) {
	t.Parallel()
	cs := fake.NewClientset()
	forbidden := 0
	cs.PrependReactor("list", "replicasets", func(k8stesting.Action) (bool, runtime.Object, error) {
		forbidden++
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "replicasets"}, "", fmt.Errorf("RBAC: access denied"))
	})
	var warned []string
	a := &attributor{lookup: NewKubeSource("c", cs, 100, zaptest.NewLogger(t)), onErr: func(kind, ns string, err error) {
		warned = append(warned, kind+"/"+ns+": "+err.Error())
	}}
	for i := range 3 {
		pod := testPod("a", fmt.Sprintf("web-5f7c9-%d", i), ownedBy("apps/v1", "ReplicaSet", "web-5f7c9"), map[string]string{"pod-template-hash": "5f7c9"})
		if got, want := a.workload(t.Context(), pod), (contract.Workload{Kind: KindDeployment, Name: "web", Inferred: true}); got != want {
			t.Fatalf("workload = %+v, want %+v", got, want)
		}
	}
	if forbidden != 1 || len(warned) != 1 || !strings.Contains(warned[0], "forbidden") {
		t.Fatalf("list calls %d, warnings %q: want one of each", forbidden, warned)
	}
}

// paginatePods makes the fake clientset honour Limit and Continue (it
// ignores them by itself) and counts the List calls.
func paginatePods(cs *fake.Clientset, pods []corev1.Pod) *int {
	calls := 0
	cs.PrependReactor("list", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		calls++
		opts := a.(k8stesting.ListActionImpl).ListOptions
		start := 0
		if opts.Continue != "" {
			var err error
			if start, err = strconv.Atoi(opts.Continue); err != nil {
				return true, nil, apierrors.NewBadRequest("bad continue token")
			}
		}
		end := len(pods)
		if opts.Limit > 0 {
			end = min(start+int(opts.Limit), len(pods))
		}
		l := &corev1.PodList{Items: pods[start:end]}
		if end < len(pods) {
			l.Continue = strconv.Itoa(end)
			rem := int64(len(pods) - end)
			l.RemainingItemCount = &rem
		}
		return true, l, nil
	})
	return &calls
}

func manyPods(n int) []corev1.Pod {
	pods := make([]corev1.Pod, n)
	for i := range pods {
		pods[i] = *testPod(fmt.Sprintf("ns-%d", i%7), fmt.Sprintf("pod-%05d", i), nil, map[string]string{"i": strconv.Itoa(i)})
	}
	return pods
}

func TestKubeSourcePaginates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pods, pageSize, wantCalls int
	}{
		{1234, 100, 13},
		{1000, 500, 2},
		{1001, 500, 3},
		{0, 500, 1},
		{10, 1, 10},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d pods by %d", tt.pods, tt.pageSize), func(t *testing.T) {
			cs := fake.NewClientset()
			calls := paginatePods(cs, manyPods(tt.pods))
			src := NewKubeSource("c", cs, int64(tt.pageSize), zaptest.NewLogger(t))
			seen := map[string]bool{}
			err := src.EachPod(t.Context(), nil, func(p *corev1.Pod) error {
				if seen[p.Name] {
					t.Fatalf("pod %s seen twice", p.Name)
				}
				seen[p.Name] = true
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(seen) != tt.pods || *calls != tt.wantCalls {
				t.Fatalf("saw %d pods in %d List calls, want %d in %d", len(seen), *calls, tt.pods, tt.wantCalls)
			}
		})
	}
}

func TestKubeSourceRetriesAndExpiredContinue(t *testing.T) {
	t.Parallel()
	pods := manyPods(30)
	cs := fake.NewClientset()
	calls := 0
	cs.PrependReactor("list", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		calls++
		opts := a.(k8stesting.ListActionImpl).ListOptions
		switch {
		case calls == 1:
			return true, nil, apierrors.NewServiceUnavailable("etcd leader changed")
		case opts.Continue == "10":
			// The token expired; the server offers a fresh one.
			st := apierrors.NewResourceExpired("continue token too old")
			st.ErrStatus.ListMeta.Continue = "fresh-20"
			return true, nil, st
		case opts.Continue == "fresh-20":
			return true, &corev1.PodList{Items: pods[20:]}, nil
		case opts.Continue == "":
			return true, &corev1.PodList{ListMeta: metav1.ListMeta{Continue: "10"}, Items: pods[:10]}, nil
		}
		return true, nil, fmt.Errorf("unexpected continue %q", opts.Continue)
	})
	src := NewKubeSource("c", cs, 10, zaptest.NewLogger(t))
	src.wait = 1 // no real sleeping in tests
	n := 0
	if err := src.EachPod(t.Context(), nil, func(*corev1.Pod) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	// Pods 10..19 were lost with the expired token: the inconsistent
	// continuation is followed rather than restarting (no pod twice).
	if n != 20 || calls != 4 {
		t.Fatalf("pods %d calls %d, want 20 and 4", n, calls)
	}

	t.Run("permanent error is not retried", func(t *testing.T) {
		cs := fake.NewClientset()
		calls := 0
		cs.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
			calls++
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", fmt.Errorf("no"))
		})
		err := NewKubeSource("c", cs, 10, zaptest.NewLogger(t)).EachPod(t.Context(), nil, func(*corev1.Pod) error { return nil })
		if !apierrors.IsForbidden(err) || calls != 1 || !strings.Contains(err.Error(), "list pods (page 1)") {
			t.Fatalf("err %v after %d calls", err, calls)
		}
	})
}

func TestKubeSourceNodesAndSelector(t *testing.T) {
	t.Parallel()
	cs := fake.NewClientset(
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{LabelOS: "linux", LabelArch: "arm64"}}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2"}},
		testPod("a", "p1", nil, map[string]string{"app": "web"}),
		testPod("a", "p2", nil, map[string]string{"app": "db"}),
	)
	var selectors []string
	cs.PrependReactor("list", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		selectors = append(selectors, a.(k8stesting.ListActionImpl).ListOptions.LabelSelector)
		return false, nil, nil
	})
	filter, err := Config{Selector: "app=web", PageSize: 10}.Filter()
	if err != nil {
		t.Fatal(err)
	}
	res, err := (&Collector{Filter: filter, Log: zaptest.NewLogger(t)}).Collect(t.Context(), NewKubeSource("c", cs, 10, zaptest.NewLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	if res.Pods != 1 || res.Entries[0].Pod != "p1" || res.Entries[0].Platform != arm64 {
		t.Fatalf("result %+v", res)
	}
	if len(selectors) != 1 || selectors[0] != "app=web" {
		t.Fatalf("selectors sent to the server: %q", selectors)
	}
}
