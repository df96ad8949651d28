package inventory

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/fleetscan/fleetscan/pkg/contract"
)

// Digests in testdata/pods.json.
const (
	digestNginx    = "sha256:ee8033170a45643b1f4bc0f33ff4564b0922e6618fd0e93c0e15f64f9917e44c"
	digestBusybox  = "sha256:3c26c8e5e75a2132ce9abb95283e5c64be547749decb3106a6a1ed32fe64d43f"
	digestPostgres = "sha256:5fbe0c96916b5138cb789771cdb3f561e1a11131f539923ec53ba05c66db5e22"
	digestAgent    = "sha256:b4d764851a639cc651ab4285064cc37b67eb5d71bf600527d30411cb4cbc8175"
	digestCoreDNS  = "sha256:8a32e516d7415be524a7fcec482ad2918f2b6ef2a7f4cb8e2e232b361436b20b"
)

var (
	amd64 = contract.Platform{OS: "linux", Architecture: "amd64"}
	arm64 = contract.Platform{OS: "linux", Architecture: "arm64"}
	armv7 = contract.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}
)

func testdataSource(t *testing.T, withNodes bool) *FileSource {
	nodes := ""
	if withNodes {
		nodes = filepath.Join("testdata", "nodes.json")
	}
	return NewFileSource("prod", filepath.Join("testdata", "pods.json"), nodes)
}

func TestCollectInventoryFile(t *testing.T) {
	t.Parallel()
	c := &Collector{Log: zaptest.NewLogger(t)}
	res, err := c.Collect(t.Context(), testdataSource(t, true))
	if err != nil {
		t.Fatal(err)
	}
	if res.Cluster != "prod" || res.Pods != 10 || len(res.Entries) != 12 {
		t.Fatalf("cluster %q pods %d entries %d, want prod/10/12", res.Cluster, res.Pods, len(res.Entries))
	}
	if res.ContainerErrors != 2 || res.UnknownPlatform != 1 || res.Unresolved() != 4 {
		t.Fatalf("container errors %d unknown platform %d unresolved %d, want 2/1/4", res.ContainerErrors, res.UnknownPlatform, res.Unresolved())
	}
	type want struct {
		pod, container string
		kind           contract.ContainerKind
		image, digest  string
		resolution     contract.Resolution
		platform       contract.Platform
		workload       contract.Workload
		reason         string // substring
	}
	deploy := func(n string) contract.Workload {
		return contract.Workload{Kind: KindDeployment, Name: n, Inferred: true}
	}
	wants := []want{
		{"web-7d4b9c6f5-x2x9k", "wait-db", contract.ContainerInit, "docker.io/library/busybox:1.36", digestBusybox, contract.ResolvedStatus, amd64, deploy("web"), ""},
		{"web-7d4b9c6f5-x2x9k", "nginx", contract.ContainerRegular, "docker.io/library/nginx:1.25", digestNginx, contract.ResolvedStatus, amd64, deploy("web"), ""},
		{"web-7d4b9c6f5-p8k2m", "nginx", contract.ContainerRegular, "docker.io/library/nginx:1.25", digestNginx, contract.ResolvedStatus, arm64, deploy("web"), ""},
		{"db-0", "postgres", contract.ContainerRegular, "docker.io/library/postgres:16", digestPostgres, contract.ResolvedStatus, arm64, contract.Workload{Kind: KindStatefulSet, Name: "db"}, ""},
		{"agent-4kq7z", "agent", contract.ContainerRegular, "ghcr.io/acme/agent@" + digestAgent, digestAgent, contract.ResolvedSpec, armv7, contract.Workload{Kind: KindDaemonSet, Name: "agent"}, ""},
		{"backup-29412345-7tq2x", "backup", contract.ContainerRegular, "registry.example.com/tools/backup:2.1", "", contract.Unresolved, amd64,
			contract.Workload{Kind: KindCronJob, Name: "backup", Inferred: true}, ReasonLocalID + "; tag resolution disabled"},
		{"migrate-2-q9w8e", "migrate", contract.ContainerRegular, "Example.com/Migrate:v2", "", contract.Unresolved, amd64,
			contract.Workload{Kind: KindJob, Name: "migrate-2"}, ReasonLocalID + "; spec image: image reference \"Example.com/Migrate:v2\""},
		{"debug", "shell", contract.ContainerRegular, "docker.io/library/alpine:3.19", "", contract.Unresolved, contract.DefaultPlatform,
			contract.Workload{Kind: KindPod, Name: "debug"}, ReasonNoID + " (container waiting: ImagePullBackOff); tag resolution disabled"},
		{"debug", "debugger", contract.ContainerEphemeral, "docker.io/library/busybox:1.36", digestBusybox, contract.ResolvedStatus, contract.DefaultPlatform,
			contract.Workload{Kind: KindPod, Name: "debug"}, ""},
		{"coredns-5dd5756b68-abcde", "coredns", contract.ContainerRegular, "registry.k8s.io/coredns/coredns:v1.11.1", digestCoreDNS, contract.ResolvedStatus, amd64, deploy("coredns"), ""},
		{"legacy-api", "api", contract.ContainerRegular, "mirror.example.com/library/nginx:1.25", "", contract.Unresolved, amd64,
			contract.Workload{Kind: KindPod, Name: "legacy-api"}, `unknown scheme "cri-o://"`},
		{"cache-mirror-0", "nginx", contract.ContainerRegular, "mirror.example.com/library/nginx:1.25", digestNginx, contract.ResolvedStatus, amd64,
			contract.Workload{Kind: KindStatefulSet, Name: "cache-mirror"}, ""},
	}
	for i, w := range wants {
		e := res.Entries[i]
		t.Run(w.pod+"/"+w.container, func(t *testing.T) {
			if e.Pod != w.pod || e.Container != w.container || e.ContainerKind != w.kind {
				t.Fatalf("entry %d is %s/%s (%s), want %s/%s (%s)", i, e.Pod, e.Container, e.ContainerKind, w.pod, w.container, w.kind)
			}
			if e.Image != w.image || e.Digest != w.digest || e.Resolution != w.resolution {
				t.Errorf("image %q digest %q resolution %q, want %q %q %q", e.Image, e.Digest, e.Resolution, w.image, w.digest, w.resolution)
			}
			if e.Platform != w.platform || e.Workload != w.workload {
				t.Errorf("platform %v workload %+v, want %v %+v", e.Platform, e.Workload, w.platform, w.workload)
			}
			if w.reason == "" && e.Reason != "" || !strings.Contains(e.Reason, w.reason) {
				t.Errorf("reason %q, want it to contain %q", e.Reason, w.reason)
			}
			if e.Digest == "" && e.Reason == "" {
				t.Error("unresolved entry without a reason")
			}
		})
	}
	inv := contract.Inventory{RunID: "r", Cycle: "c", Cluster: res.Cluster, CollectedAt: testNow, Pods: res.Pods, Entries: res.Entries}
	data, err := inv.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := contract.DecodeInventory(data); err != nil {
		t.Fatalf("inventory does not validate: %v", err)
	}
}

func TestCollectFilters(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		filter   Filter
		wantPods int
	}{
		{"everything", Filter{}, 10},
		{"include shop", Filter{IncludeNamespaces: []string{"shop"}}, 6},
		{"include glob", Filter{IncludeNamespaces: []string{"kube-*", "mon*"}}, 2},
		{"exclude wins", Filter{IncludeNamespaces: []string{"*"}, ExcludeNamespaces: []string{"kube-*", "ops"}}, 7},
		{"selector", Filter{Selector: labels.SelectorFromSet(labels.Set{"app": "web"})}, 2},
		{"selector and namespace", Filter{Selector: labels.SelectorFromSet(labels.Set{"app": "web"}), ExcludeNamespaces: []string{"shop"}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Collector{Filter: tt.filter, Log: zaptest.NewLogger(t)}
			res, err := c.Collect(t.Context(), testdataSource(t, true))
			if err != nil {
				t.Fatal(err)
			}
			if res.Pods != tt.wantPods {
				t.Fatalf("pods = %d, want %d", res.Pods, tt.wantPods)
			}
		})
	}
	if err := (Filter{IncludeNamespaces: []string{"[a-"}}).Validate(); err == nil || !strings.Contains(err.Error(), "--include-namespace") {
		t.Fatalf("bad glob: %v", err)
	}
}

func TestCollectWithoutNodesAssumesDefault(t *testing.T) {
	t.Parallel()
	res, err := (&Collector{Log: zaptest.NewLogger(t)}).Collect(t.Context(), testdataSource(t, false))
	if err != nil {
		t.Fatal(err)
	}
	if res.UnknownPlatform != res.Pods {
		t.Fatalf("unknown platform pods = %d, want all %d", res.UnknownPlatform, res.Pods)
	}
	for _, e := range res.Entries {
		if e.Platform != contract.DefaultPlatform {
			t.Fatalf("%s/%s platform %v, want default", e.Pod, e.Container, e.Platform)
		}
	}
}

func TestFileSourceMalformed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, content, wantErr string
	}{
		{"not json", "hello", "not a JSON List object"},
		{"array", "[]", "not a JSON List object"},
		{"single deployment", `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x"}}`, `kind "Deployment", want List, PodList or Pod`},
		// Everything after the first value is read: garbage is an error
		// naming the offset, never dropped silently.
		{"trailing garbage", `{"kind":"List","items":[]}` + "\n" + `garbage`, "offset 26, after 1 JSON values: malformed JSON"},
		{"trailing array", `{"kind":"List","items":[]} []`, "offset 26, after 1 JSON values: got [, want another List or Pod object"},
		{"second value of another kind", `{"kind":"List","items":[]}{"kind":"NodeList","items":[]}`, `JSON value 2 at offset 26: kind "NodeList", want List or PodList`},
		{"second value truncated", `{"kind":"List","items":[]}{"kind":"List","items":[{"kind":"Pod"}`, "JSON value 2 at offset 26"},
		{"no items", `{"apiVersion":"v1","kind":"List"}`, `no "items" array`},
		{"items not array", `{"kind":"List","items":{}}`, `"items"`},
		{"wrong item kind", `{"kind":"List","items":[{"kind":"Deployment","metadata":{"name":"x"}}]}`, `items[0]: kind "Deployment", want Pod`},
		{"bad item", `{"kind":"List","items":[{"kind":"Pod","spec":{"containers":"nope"}}]}`, "items[0]"},
		{"truncated", `{"kind":"List","items":[{"kind":"Pod","metadata":{"name":"x"}}`, "unexpected end of JSON input"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "pods.json")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			err := NewFileSource("x", path, "").EachPod(t.Context(), nil, func(*corev1.Pod) error { return nil })
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %v: want it to contain %q and name %s", err, tt.wantErr, path)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		_, err := (&Collector{}).Collect(t.Context(), NewFileSource("x", filepath.Join(t.TempDir(), "nope.json"), ""))
		if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "cluster x") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("a stream of Lists and Pods is read whole", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "pods.json")
		pod := func(name string) string { return `{"kind":"Pod","metadata":{"name":"` + name + `","namespace":"n"}}` }
		content := `{"kind":"List","items":[` + pod("a") + `,` + pod("b") + `]}` + "\n" +
			`{"kind":"PodList","items":[` + pod("c") + `]}` + "\n" + pod("d") + "\n"
		os.WriteFile(path, []byte(content), 0o600)
		var names []string
		err := NewFileSource("x", path, "").EachPod(t.Context(), nil, func(p *corev1.Pod) error { names = append(names, p.Name); return nil })
		if err != nil || strings.Join(names, ",") != "a,b,c,d" {
			t.Fatalf("pods %v err %v, want a,b,c,d", names, err)
		}
	})
	t.Run("PodList kind accepted", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "pods.json")
		os.WriteFile(path, []byte(`{"metadata":{},"items":[{"metadata":{"name":"a","namespace":"n"}}],"kind":"PodList","apiVersion":"v1"}`), 0o600)
		n := 0
		if err := NewFileSource("x", path, "").EachPod(t.Context(), nil, func(*corev1.Pod) error { n++; return nil }); err != nil || n != 1 {
			t.Fatalf("pods %d err %v", n, err)
		}
	})
}

func TestPodEntriesErrorsNameTheContainer(t *testing.T) {
	t.Parallel()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "good", Image: "nginx:1"},
			{Name: "bad-spec", Image: "example.com/UPPER:1"},
			{Name: "bad-id", Image: "nginx:1"},
			{Name: "no-status", Image: "nginx:1"},
		}},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{
			// Statuses out of spec order: matched by name.
			{Name: "bad-id", ImageID: "docker-pullable://nginx@sha256:short"},
			{Name: "good", ImageID: "docker.io/library/nginx@" + digestNginx},
			{Name: "bad-spec", ImageID: "docker.io/library/nginx@" + digestNginx},
		}},
	}
	entries, err := PodEntries(pod, amd64, contract.Workload{Kind: KindPod, Name: "p"})
	if len(entries) != 4 {
		t.Fatalf("%d entries, want 4 (none dropped)", len(entries))
	}
	var cerrs []*ContainerError
	for _, e := range unjoin(err) {
		var ce *ContainerError
		if !errors.As(e, &ce) {
			t.Fatalf("%T is not a *ContainerError: %v", e, e)
		}
		cerrs = append(cerrs, ce)
	}
	if len(cerrs) != 2 || cerrs[0].Container != "bad-spec" || cerrs[1].Container != "bad-id" {
		t.Fatalf("errors %v, want bad-spec and bad-id", err)
	}
	for _, ce := range cerrs {
		if !strings.Contains(ce.Error(), "pod ns/p container "+ce.Container) {
			t.Fatalf("error %q does not name the pod and container", ce)
		}
	}
	if entries[0].Digest != digestNginx || entries[1].Digest != digestNginx || entries[1].Image != "example.com/UPPER:1" {
		t.Fatalf("good/bad-spec entries: %+v %+v", entries[0], entries[1])
	}
	if entries[2].Digest != "" || !strings.Contains(entries[2].Reason, "sha256:short") {
		t.Fatalf("bad-id entry: %+v", entries[2])
	}
	if entries[3].Reason != ReasonNoStatus {
		t.Fatalf("no-status reason %q", entries[3].Reason)
	}
}

func TestEntryReferences(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		e    contract.InventoryEntry
		want []string
	}{
		{"status same repo", contract.InventoryEntry{Image: "docker.io/library/nginx:1.25", ImageID: "docker.io/library/nginx@" + digestNginx, Digest: digestNginx},
			[]string{"docker.io/library/nginx@" + digestNginx}},
		{"mirror", contract.InventoryEntry{Image: "mirror.example.com/library/nginx:1.25", ImageID: "docker.io/library/nginx@" + digestNginx, Digest: digestNginx},
			[]string{"docker.io/library/nginx@" + digestNginx, "mirror.example.com/library/nginx@" + digestNginx}},
		{"status digest differs from spec pin", contract.InventoryEntry{Image: "nginx@" + digestNginx, ImageID: "docker.io/library/nginx@" + digestBusybox, Digest: digestNginx},
			[]string{"docker.io/library/nginx@" + digestNginx}},
		{"bad spec", contract.InventoryEntry{Image: "UPPER", ImageID: "docker.io/library/nginx@" + digestNginx, Digest: digestNginx},
			[]string{"docker.io/library/nginx@" + digestNginx}},
		{"unresolved", contract.InventoryEntry{Image: "nginx:1"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := EntryReferences(tt.e)
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNodePlatform(t *testing.T) {
	t.Parallel()
	node := func(labels map[string]string, info corev1.NodeSystemInfo) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Status: corev1.NodeStatus{NodeInfo: info}}
	}
	tests := []struct {
		name   string
		node   *corev1.Node
		want   contract.Platform
		wantOK bool
	}{
		{"labels", node(map[string]string{LabelOS: "linux", LabelArch: "arm64"}, corev1.NodeSystemInfo{}), arm64, true},
		{"arm64 gets no assumed variant", node(map[string]string{LabelOS: "linux", LabelArch: "arm64"}, corev1.NodeSystemInfo{Architecture: "arm64"}), arm64, true},
		{"variant label", node(map[string]string{LabelOS: "linux", LabelArch: "arm", VariantLabel: "v7"}, corev1.NodeSystemInfo{}), armv7, true},
		{"beta labels", node(map[string]string{"beta.kubernetes.io/os": "windows", "beta.kubernetes.io/arch": "amd64"}, corev1.NodeSystemInfo{}),
			contract.Platform{OS: "windows", Architecture: "amd64"}, true},
		{"node info fallback", node(nil, corev1.NodeSystemInfo{OperatingSystem: "linux", Architecture: "s390x"}), contract.Platform{OS: "linux", Architecture: "s390x"}, true},
		{"arch only", node(map[string]string{LabelArch: "ppc64le"}, corev1.NodeSystemInfo{}), contract.Platform{OS: "linux", Architecture: "ppc64le"}, true},
		{"nothing", node(nil, corev1.NodeSystemInfo{}), contract.Platform{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := NodePlatform(tt.node)
			if got != tt.want || ok != tt.wantOK {
				t.Fatalf("got %v %v, want %v %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestPodPlatformFromNodeSelector(t *testing.T) {
	t.Parallel()
	pod := &corev1.Pod{Spec: corev1.PodSpec{NodeSelector: map[string]string{LabelArch: "arm64"}}}
	if p, known := podPlatform(pod, nil); !known || p != arm64 {
		t.Fatalf("pending pod with arch selector: %v %v", p, known)
	}
	pod.Spec.NodeName = "gone"
	if p, known := podPlatform(pod, map[string]contract.Platform{"other": amd64}); !known || p != arm64 {
		t.Fatalf("pod on unknown node: %v %v", p, known)
	}
	if p, known := podPlatform(&corev1.Pod{}, nil); known || p != contract.DefaultPlatform {
		t.Fatalf("no information: %v %v", p, known)
	}
}

// TestFileSourceNamespaces: Namespace objects in the pods file (`kubectl
// get namespaces,pods -A -o json`) are recorded for the namespaces that
// have inventoried pods, less last-applied-configuration and oversized
// annotations; the pod selector does not filter them; a file of pods only
// records none.
func TestFileSourceNamespaces(t *testing.T) {
	t.Parallel()
	withNamespaces := `{"kind":"List","apiVersion":"v1","items":[
{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"web","labels":{"team":"web-label"},"annotations":{"example.com/owner":"web-annotation","kubectl.kubernetes.io/last-applied-configuration":"{}"}}},
{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"unused","labels":{"team":"nobody"}}},
{"kind":"Pod","apiVersion":"v1","metadata":{"name":"a","namespace":"web","labels":{"app":"a"},"annotations":{"pod":"not a namespace's"}},"spec":{"containers":[{"name":"c","image":"nginx@` + digestNginx + `"}]}},
{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"batch","labels":{"team":"batch"}}},
{"kind":"Pod","apiVersion":"v1","metadata":{"name":"c","namespace":"batch","labels":{"app":"a"}},"spec":{"containers":[{"name":"c","image":"nginx@` + digestNginx + `"}]}},
{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"ops","annotations":{"example.com/owner":"ops-team","example.com/blob":"` + strings.Repeat("x", contract.MaxAnnotationValue+1) + `"}}},
{"kind":"Pod","apiVersion":"v1","metadata":{"name":"b","namespace":"ops","labels":{"app":"b"}},"spec":{"containers":[{"name":"c","image":"nginx@` + digestNginx + `"}]}}
]}`
	sel, err := labels.Parse("app in (a,b)")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, content string
		want          []contract.Namespace
	}{
		{"namespaces and pods", withNamespaces, []contract.Namespace{
			// No annotations of its own: none of the pod before it.
			{Name: "batch", Labels: map[string]string{"team": "batch"}},
			{Name: "ops", Annotations: map[string]string{"example.com/owner": "ops-team"}},
			{Name: "web", Labels: map[string]string{"team": "web-label"}, Annotations: map[string]string{"example.com/owner": "web-annotation"}},
		}},
		{"pods only", `{"kind":"List","items":[{"kind":"Pod","metadata":{"name":"a","namespace":"web"},"spec":{"containers":[{"name":"c","image":"nginx@` + digestNginx + `"}]}}]}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "pods.json")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			res, err := (&Collector{Log: zaptest.NewLogger(t), Filter: Filter{Selector: sel}}).Collect(t.Context(), NewFileSource("x", path, ""))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(res.Namespaces, tt.want) {
				t.Fatalf("namespaces\n got %+v\nwant %+v", res.Namespaces, tt.want)
			}
		})
	}
}
