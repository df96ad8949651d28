package integration_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/internal/kubeapitest"
	"github.com/fleetscan/fleetscan/pkg/contract"
	"github.com/fleetscan/fleetscan/test/integration/harness"
)

// apiFleet is what the API-server scenario created and what a correct
// dispatch of it yields.
type apiFleet struct {
	pods       int
	containers int
	unresolved int
	keys       map[contract.ImageKey]fixture.Pushed
	// workloads maps "namespace/pod" to the Deployment owning it.
	workloads map[string]string
}

// populate creates nodes, ReplicaSets owned by Deployments, and n pods whose
// container statuses carry the imageID forms real runtimes write:
// containerd's "repo@sha256:…", dockershim's "docker-pullable://repo@sha256:…",
// specs pinned by digest, init containers, local-only IDs ("sha256:<config>")
// and pods not started yet (no status) — the last two unresolvable.
func populate(ctx context.Context, t *testing.T, kc kubernetes.Interface, p *pipeline, n int) apiFleet {
	t.Helper()
	nodes := map[string]contract.Platform{"node-amd64-1": linuxAMD64, "node-amd64-2": linuxAMD64, "node-arm64-1": linuxARM64}
	for name, pl := range nodes {
		_, err := kc.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name: name, Labels: map[string]string{"kubernetes.io/os": pl.OS, "kubernetes.io/arch": pl.Architecture},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create node %s: %v", name, err)
		}
	}
	var names []string
	for name := range p.images {
		names = append(names, name)
	}
	slices.Sort(names)
	// Object names are DNS labels: "alpine-3.18" → "alpine-3-18".
	dns := func(name string) string { return strings.ReplaceAll(name, ".", "-") }
	namespaces := []string{"payments", "search", "web", "batch", "platform"}
	for _, ns := range namespaces {
		if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create namespace %s: %v", ns, err)
		}
	}
	// One ReplicaSet per (namespace, image), owned by a Deployment of the
	// image's name.
	rsUID := map[string]metav1.OwnerReference{}
	for _, ns := range namespaces {
		for _, name := range names {
			rsName := dns(name) + "-5d4f8b7c9"
			rs := &appsv1.ReplicaSet{
				ObjectMeta: metav1.ObjectMeta{Name: rsName, Namespace: ns, OwnerReferences: []metav1.OwnerReference{{
					APIVersion: "apps/v1", Kind: "Deployment", Name: dns(name), UID: "00000000-0000-0000-0000-000000000001", Controller: ptrTo(true),
				}}},
				Spec: appsv1.ReplicaSetSpec{
					Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
						Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "placeholder"}}},
					},
				},
			}
			created, err := kc.AppsV1().ReplicaSets(ns).Create(ctx, rs, metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("create replicaset %s/%s: %v", ns, rsName, err)
			}
			rsUID[ns+"/"+name] = metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rsName, UID: created.UID, Controller: ptrTo(true)}
		}
	}

	f := apiFleet{keys: map[contract.ImageKey]fixture.Pushed{}, workloads: map[string]string{}}
	type item struct {
		pod    *corev1.Pod
		status corev1.PodStatus
	}
	items := make([]item, 0, n)
	for i := range n {
		name := names[i%len(names)]
		img := p.images[name]
		ns := namespaces[(i/len(names))%len(namespaces)]
		node := []string{"node-amd64-1", "node-amd64-2"}[i%2]
		if img.Spec.MultiArch() && i%3 == 0 {
			node = "node-arm64-1"
		}
		tagRef := p.ref(img, img.Spec.Tags[0])
		repo := strings.Replace(img.Repository, p.reg.HostAddr, p.pullHost, 1)
		spec, imageID := tagRef, repo+"@"+img.Digest
		resolved := true
		switch {
		case i%97 == 0:
			// Pending: scheduled, not started, no status yet.
			imageID, resolved = "", false
		case i%50 == 0:
			// A runtime that reports only the local image (config) ID.
			imageID, resolved = "sha256:"+strings.Repeat(strconv.Itoa(i%10), 64), false
		case i%4 == 1:
			imageID = "docker-pullable://" + imageID
		case i%4 == 2:
			spec, resolved = repo+"@"+img.Digest, true
		}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: fmt.Sprintf("%s-5d4f8b7c9-%05d", dns(name), i), Namespace: ns,
				Labels:          map[string]string{"app": name},
				OwnerReferences: []metav1.OwnerReference{rsUID[ns+"/"+name]},
			},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: spec}}},
		}
		status := corev1.PodStatus{Phase: corev1.PodRunning}
		if imageID != "" {
			status.ContainerStatuses = []corev1.ContainerStatus{{
				Name: "app", Image: tagRef, ImageID: imageID, Ready: true,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
			}}
		} else {
			status.Phase = corev1.PodPending
		}
		f.containers++
		if i%10 == 3 {
			// An init container running the curl image, resolved from its
			// own status.
			curl := p.images["alpine-curl"]
			curlRepo := strings.Replace(curl.Repository, p.reg.HostAddr, p.pullHost, 1)
			pod.Spec.InitContainers = []corev1.Container{{Name: "fetch", Image: p.ref(curl, "8.3.0")}}
			status.InitContainerStatuses = []corev1.ContainerStatus{{
				Name: "fetch", Image: p.ref(curl, "8.3.0"), ImageID: curlRepo + "@" + curl.Digest,
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}},
			}}
			f.containers++
			f.keys[contract.ImageKey{Digest: curl.Digest, Platform: nodes[node]}] = curl
		}
		if resolved {
			f.keys[contract.ImageKey{Digest: img.Digest, Platform: nodes[node]}] = img
		} else {
			f.unresolved++
		}
		f.workloads[ns+"/"+pod.Name] = dns(name)
		items = append(items, item{pod, status})
	}
	f.pods = n

	// Create and set statuses concurrently (no kubelet writes them here).
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	next := make(chan item)
	for range 16 {
		wg.Go(func() {
			for it := range next {
				created, err := kc.CoreV1().Pods(it.pod.Namespace).Create(ctx, it.pod, metav1.CreateOptions{})
				if err == nil {
					created.Status = it.status
					_, err = kc.CoreV1().Pods(it.pod.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{})
				}
				if err != nil {
					select {
					case errs <- fmt.Errorf("pod %s/%s: %w", it.pod.Namespace, it.pod.Name, err):
					default:
					}
				}
			}
		})
	}
	for _, it := range items {
		next <- it
	}
	close(next)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatalf("populate the API server: %v", err)
	}
	t.Logf("created %d pods (%d containers) with statuses in %s", n, f.containers, time.Since(start).Round(time.Millisecond))
	return f
}

func ptrTo[T any](v T) *T { return &v }

// dispatcherRBAC grants user exactly what the dispatcher's usage text says
// it needs, so the scenario also checks that documentation.
func dispatcherRBAC(ctx context.Context, t *testing.T, kc kubernetes.Interface, user string) {
	t.Helper()
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "fleetscan-dispatcher"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}},
			{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"list"}},
			{APIGroups: []string{"apps"}, Resources: []string{"replicasets"}, Verbs: []string{"get", "list"}},
			{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"get", "list"}},
		},
	}
	if _, err := kc.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "fleetscan-dispatcher"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: user}},
	}
	if _, err := kc.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// podListCalls reads how many LIST requests for pods the API server served,
// from its own metrics.
func podListCalls(ctx context.Context, t *testing.T, kc kubernetes.Interface) int {
	t.Helper()
	body, err := kc.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatalf("API server metrics: %v", err)
	}
	total := 0
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_request_total{") || !strings.Contains(line, `resource="pods"`) ||
			!strings.Contains(line, `verb="LIST"`) || !strings.Contains(line, `code="200"`) {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		total += int(v)
	}
	return total
}

// TestRealAPIServer runs the dispatcher container against a real
// kube-apiserver holding a few thousand pods, as a user with only the
// documented RBAC, listing them in pages.
func TestRealAPIServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	p := newPipeline(t, ctx, pipelineOptions{})
	p.pushStandardImages(ctx)

	kube := kubeapitest.Start(t)
	const user = "fleetscan-dispatcher"
	dispatcherRBAC(ctx, t, kube.Client, user)
	admin := *kube.Config
	admin.QPS, admin.Burst = 2000, 4000
	kc, err := kubernetes.NewForConfig(&admin)
	if err != nil {
		t.Fatal(err)
	}
	const pods, pageSize = 3000, 500
	f := populate(ctx, t, kc, p, pods)
	kubeconfig := kube.Kubeconfig(t, "prod", map[string]*rest.Config{"prod": kube.UserConfig(t, user)})
	p.startWorkers(ctx, 2)
	listsBefore := podListCalls(ctx, t, kc)

	// The API server listens on the host's loopback: the dispatcher
	// container shares the host's network, and reaches NATS through its
	// published port.
	args := []string{
		"--nats-url", p.nats.URL(),
		"--js-replicas", "1", "--js-ack-wait", p.opts.ackWait.String(), "--js-max-deliver", strconv.Itoa(p.opts.maxDeliver),
		"--log-format", "json",
		"--kubeconfig", "/etc/fleetscan/kubeconfig", "--context", "prod",
		"--page-size", strconv.Itoa(pageSize),
		"--cycle", p.cycle, "--run-id", "api-run",
	}
	start := time.Now()
	run := p.env.Run(ctx, harness.Spec{
		Name:        "dispatcher",
		Image:       p.env.FleetscanImage(ctx, "dispatcher"),
		Cmd:         args,
		HostNetwork: true,
		Files:       []testcontainers.ContainerFile{{HostFilePath: kubeconfig, ContainerFilePath: "/etc/fleetscan/kubeconfig", FileMode: 0o644}},
	}, 3*time.Minute)
	if run.Code != 0 {
		t.Fatalf("dispatcher against the API server: %s", run)
	}
	t.Logf("dispatched %d pods in %s", pods, time.Since(start).Round(time.Millisecond))

	if lists := podListCalls(ctx, t, kc) - listsBefore; lists < pods/pageSize {
		t.Errorf("the dispatcher listed pods in %d calls, want at least %d pages of %d", lists, pods/pageSize, pageSize)
	}

	m, err := p.st.Manifest(ctx, "api-run")
	if err != nil {
		t.Fatal(err)
	}
	var want []contract.ImageKey
	for k := range f.keys {
		want = append(want, k)
	}
	sortKeys(want)
	got := slices.Clone(m.Expected)
	sortKeys(got)
	if !slices.Equal(got, want) {
		t.Errorf("manifest expects %d keys, want %d:\n got %v\nwant %v", len(got), len(want), got, want)
	}
	if m.Published != len(want) {
		t.Errorf("published %d jobs, want %d", m.Published, len(want))
	}
	if len(m.Clusters) != 1 {
		t.Fatalf("manifest clusters = %+v, want one", m.Clusters)
	}
	cs := m.Clusters[0]
	if cs.Name != "prod" || !cs.OK || cs.Pods != pods || cs.Containers != f.containers || cs.Unresolved != f.unresolved {
		t.Errorf("cluster status = %+v; want prod ok, %d pods, %d containers, %d unresolved", cs, pods, f.containers, f.unresolved)
	}

	inv, err := p.st.Inventory(ctx, "prod")
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Entries) != f.containers {
		t.Errorf("inventory has %d entries, want %d", len(inv.Entries), f.containers)
	}
	wrongOwner := 0
	for _, e := range inv.Entries {
		if e.Workload.Kind != "Deployment" || e.Workload.Name != f.workloads[e.Namespace+"/"+e.Pod] {
			wrongOwner++
			if wrongOwner <= 3 {
				t.Errorf("entry %s/%s/%s owned by %+v, want Deployment %s", e.Namespace, e.Pod, e.Container, e.Workload, f.workloads[e.Namespace+"/"+e.Pod])
			}
		}
	}
	if wrongOwner > 0 {
		t.Errorf("%d of %d entries attributed to the wrong workload", wrongOwner, len(inv.Entries))
	}

	// The workers scan the distinct images; the report covers every
	// resolved one and flags the unresolved containers as a gap (exit 2).
	if got := p.waitResults(ctx, want, 2*time.Minute); len(got) != len(want) {
		t.Fatalf("%d of %d images scanned", len(got), len(want))
	}
	rr := p.runReporter(ctx, "api-run")
	rep := rr.report
	if rr.Code != 2 {
		t.Errorf("reporter exit status %d, want 2 (unresolved containers make the report incomplete)\n%s", rr.Code, rr)
	}
	if rep.Summary.ImagesScanned != len(want) || rep.Summary.ImagesFailed != 0 || rep.Summary.UnresolvedContainers == 0 || rep.Complete {
		t.Errorf("report summary %+v complete=%v; want %d images scanned, unresolved containers counted, incomplete", rep.Summary, rep.Complete, len(want))
	}
	for _, ns := range rep.NotScanned {
		if ns.Digest == "" && ns.Reason == "" {
			t.Errorf("unresolved image %s listed without a reason", ns.Image)
		}
	}
	if len(rep.Clusters) != 1 || rep.Clusters[0].Pods != pods {
		t.Errorf("report clusters %+v, want prod with %d pods", rep.Clusters, pods)
	}
	checkFindings(t, rep, harness.ExpectedFindings(f.keys))
}

func sortKeys(keys []contract.ImageKey) {
	slices.SortFunc(keys, func(a, b contract.ImageKey) int { return strings.Compare(a.String(), b.String()) })
}
