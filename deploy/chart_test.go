package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// chartDir is the Helm chart. Its files/ directory links to this package's
// base, components and overlays, which the templates read.
const chartDir = "helm/fleetscan"

// toolPath returns a helper binary from the repository's .tools/bin (built
// by `make tools`); an error says how to build it.
func toolPath(name string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			bin := filepath.Join(d, ".tools", "bin", name)
			if st, err := os.Stat(bin); err != nil || st.Mode()&0o111 == 0 {
				return "", fmt.Errorf("%s not found: run `make tools` at the repository root (builds it once from the Go module proxy)", bin)
			}
			return bin, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.work above %s: cannot find the repository's .tools/bin", dir)
		}
	}
}

// tool is toolPath for a test, which fails (never skips) without it.
func tool(t testing.TB, name string) string {
	t.Helper()
	bin, err := toolPath(name)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

var (
	helmHomeOnce sync.Once
	helmHome     string
	helmHomeErr  error
)

// helmEnv is the environment for helm: its config, cache and data in a
// private directory rather than the user's home.
func helmEnv() ([]string, error) {
	helmHomeOnce.Do(func() { helmHome, helmHomeErr = os.MkdirTemp("", "fleetscan-helm-") })
	if helmHomeErr != nil {
		return nil, helmHomeErr
	}
	return append(os.Environ(),
		"HELM_CONFIG_HOME="+filepath.Join(helmHome, "config"),
		"HELM_CACHE_HOME="+filepath.Join(helmHome, "cache"),
		"HELM_DATA_HOME="+filepath.Join(helmHome, "data"),
	), nil
}

// runHelm runs the helm CLI and returns its standard output; an error
// carries its standard error.
func runHelm(args ...string) ([]byte, error) { return runHelmWith(nil, args...) }

// runHelmWith is runHelm with more environment variables.
func runHelmWith(extraEnv []string, args ...string) ([]byte, error) {
	bin, err := toolPath("helm")
	if err != nil {
		return nil, err
	}
	env, err := helmEnv()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(env, extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.Bytes(), nil
}

// valuesFile is the values file of a Helm shape.
func valuesFile(dir string) string {
	return filepath.Join(chartDir, "ci", strings.TrimPrefix(dir, "helm/")+"-values.yaml")
}

// helmTemplate renders a Helm shape as `helm template` does and decodes
// every object strictly.
func helmTemplate(dir string, extra ...string) ([]object, error) {
	args := append([]string{"template", "fleetscan", chartDir, "--namespace", "default", "-f", valuesFile(dir)}, extra...)
	out, err := runHelm(args...)
	if err != nil {
		return nil, err
	}
	return decodeStream(dir, out)
}

func decodeStream(source string, data []byte) ([]object, error) {
	docs, err := splitYAML(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	var objs []object
	for _, doc := range docs {
		o, err := decodeObject(source, doc)
		if err != nil {
			return nil, err
		}
		objs = append(objs, o)
	}
	return objs, nil
}

// TestChartReadsTheKustomizeSources: the chart's files/ are links to the
// kustomize sources, so there is one copy of every shared manifest, setting
// and NATS file.
func TestChartReadsTheKustomizeSources(t *testing.T) {
	for link, want := range map[string]string{"base": "../../../base", "components": "../../../components", "overlays": "../../../overlays"} {
		got, err := os.Readlink(filepath.Join(chartDir, "files", link))
		if err != nil || got != want {
			t.Errorf("%s/files/%s links to %q (%v), want %q", chartDir, link, got, err, want)
		}
	}
	// No template holds a manifest of its own: every object comes from a
	// file under files/ (or is a generated ConfigMap).
	tmpls, _ := filepath.Glob(filepath.Join(chartDir, "templates", "*"))
	for _, f := range tmpls {
		data, _ := os.ReadFile(f)
		if regexp.MustCompile(`(?m)^\s*(apiVersion|kind):`).Match(data) {
			t.Errorf("%s writes a manifest itself; the objects belong in the kustomize base", f)
		}
	}
}

// TestHelmLint runs `helm lint --strict` (warnings fail) with the values of
// every shape.
func TestHelmLint(t *testing.T) {
	for _, dir := range append([]string{""}, slices.Sorted(maps.Keys(helmShapes))...) {
		name := dir
		args := []string{"lint", "--strict", chartDir}
		if dir == "" {
			name = "defaults"
		} else {
			args = append(args, "-f", valuesFile(dir))
		}
		t.Run(name, func(t *testing.T) {
			out, err := runHelm(args...)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(out), "1 chart(s) linted, 0 chart(s) failed") {
				t.Errorf("helm lint: %s", out)
			}
		})
	}
}

// TestHelmRejectsBadValues: values.schema.json refuses misspelt or
// malformed values, and the templates refuse combinations that cannot work,
// each with a message naming the value.
func TestHelmRejectsBadValues(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"misspelt key", []string{"--set", "dispatcher.schedul=0 7 * * *"}, "schedul"},
		{"bad schedule", []string{"--set", "reporter.schedule=daily"}, "schedule"},
		{"member name not a Secret key", []string{"--set", "nats.members[0].name=Member_A"}, "name"},
		{"setting that is no environment variable", []string{"--set", "config.common.log-level=debug"}, "log-level"},
		{"unknown ConfigMap", []string{"--set", "config.scanner.FLEETSCAN_X=1"}, "scanner"},
		{"pull policy", []string{"--set", "image.pullPolicy=Sometimes"}, "pullPolicy"},
		{"digest", []string{"--set", "worker.image.digest=latest"}, "digest"},
		{"release record in the namespace the chart creates", []string{"--namespace", "platform-ops"}, "Install into another, existing namespace"},
		{"external NATS without TLS", []string{"--set", "nats.external.enabled=true", "--set", "nats.members[0].name=a", "--set", "nats.members[0].cidrs[0]=192.0.2.0/24"}, "nats.tls.enabled must be true"},
		{"external NATS open to everyone", []string{"--set", "nats.external.enabled=true", "--set", "nats.tls.enabled=true"}, "nats.members[].cidrs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runHelm(append([]string{"template", "fleetscan", chartDir}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

// helmOnly is what Helm adds and kustomize does not: its bookkeeping labels,
// the annotation that keeps the namespace on uninstall, and the checksum of
// the settings a pod reads (kustomize rolls pods by the generated
// ConfigMap's hashed name instead).
var (
	helmOnlyLabels      = []string{"app.kubernetes.io/managed-by", "helm.sh/chart"}
	helmOnlyAnnotations = []string{"helm.sh/resource-policy", "checksum/config"}
	// helmJobHash is the content hash the chart appends to a Job's name.
	helmJobHash = regexp.MustCompile(`^(.+)-[0-9a-f]{10}$`)
)

// normalize turns a rendering into comparable objects, keyed by kind,
// namespace and name: generated names lose their content hash (kustomize's
// ConfigMaps, the chart's Jobs) everywhere they appear, Helm's own labels
// and annotations go, and NATS configuration files are compared without
// comments and layout.
func normalize(t *testing.T, objs []object, helm bool) map[string]map[string]any {
	t.Helper()
	renames := map[string]string{}
	for _, o := range objs {
		switch {
		case !helm && o.GVK.Kind == "ConfigMap" && kustomizeHash.MatchString(o.Name):
			renames[o.Name] = generatedName(o.Name)
		case helm && o.GVK.Kind == "Job" && helmJobHash.MatchString(o.Name):
			renames[o.Name] = helmJobHash.FindStringSubmatch(o.Name)[1]
		}
	}
	out := map[string]map[string]any{}
	for _, o := range objs {
		var data []byte
		var err error
		if o.Typed != nil {
			data, err = json.Marshal(o.Typed)
		} else {
			data, err = yaml.YAMLToJSON(o.Raw)
		}
		if err != nil {
			t.Fatalf("%s: %v", o, err)
		}
		s := string(data)
		for from, to := range renames {
			s = strings.ReplaceAll(s, `"`+from+`"`, `"`+to+`"`)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatal(err)
		}
		if helm {
			md := m["metadata"].(map[string]any)
			if labels, ok := md["labels"].(map[string]any); ok {
				for _, l := range helmOnlyLabels {
					if _, ok := labels[l]; !ok {
						t.Errorf("%s: Helm label %s missing", o, l)
					}
					delete(labels, l)
				}
			}
			dropAnnotations(m)
		}
		if o.GVK.Kind == "ConfigMap" {
			if d, ok := m["data"].(map[string]any); ok {
				for k, v := range d {
					if strings.HasSuffix(k, ".conf") {
						d[k] = confTokens(v.(string))
					}
				}
			}
		}
		name := m["metadata"].(map[string]any)["name"].(string)
		out[fmt.Sprintf("%s %s/%s", o.GVK.Kind, o.NS, name)] = m
	}
	return out
}

// dropAnnotations deletes helmOnlyAnnotations from every annotations map in
// v (object and pod templates), and maps left empty.
func dropAnnotations(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if a, ok := val.(map[string]any); ok && k == "annotations" {
				for _, drop := range helmOnlyAnnotations {
					delete(a, drop)
				}
				if len(a) == 0 {
					delete(x, k)
				}
				continue
			}
			dropAnnotations(val)
		}
	case []any:
		for _, e := range x {
			dropAnnotations(e)
		}
	}
}

// confTokens is a NATS configuration file without comments and layout.
func confTokens(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if i := strings.Index(l, "#"); i >= 0 {
			l = l[:i]
		}
		if l = strings.Join(strings.Fields(l), " "); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// compareRenderings returns the differences between a kustomize and a Helm
// rendering, one message per object.
func compareRenderings(t *testing.T, kustomized, helmed []object) []string {
	want, got := normalize(t, kustomized, false), normalize(t, helmed, true)
	var diffs []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[k]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("%s: rendered by kustomize, missing from Helm", k))
			continue
		}
		if d := cmp.Diff(want[k], g); d != "" {
			diffs = append(diffs, fmt.Sprintf("%s differs (-kustomize +helm):\n%s", k, d))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: rendered by Helm, not by kustomize", k))
		}
	}
	return diffs
}

// TestHelmMatchesKustomize: for every shape, `helm template` with the
// shape's values renders the same objects as `kustomize build` of the
// matching overlay — same kinds, names, namespaces and every field — up to
// what Helm adds for its own bookkeeping (helmOnly*) and the hashes of
// generated names.
func TestHelmMatchesKustomize(t *testing.T) {
	for _, helmDir := range slices.Sorted(maps.Keys(helmShapes)) {
		kustomizeDir := helmShapes[helmDir]
		t.Run(helmDir, func(t *testing.T) {
			k, h := render(t, kustomizeDir), render(t, helmDir)
			for _, d := range compareRenderings(t, k, h) {
				t.Error(d)
			}
			t.Logf("%d objects compared with %s", len(k), kustomizeDir)
		})
	}

	// The comparison sees a drift: a value that changes one field of one
	// object is reported as exactly that.
	t.Run("detects drift", func(t *testing.T) {
		h, err := helmTemplate(helmSingleCluster, "--set", "dispatcher.schedule=0 7 * * *")
		if err != nil {
			t.Fatal(err)
		}
		diffs := compareRenderings(t, render(t, singleClusterDir), h)
		if len(diffs) != 1 || !strings.Contains(diffs[0], "CronJob platform-ops/fleetscan-dispatcher differs") || !strings.Contains(diffs[0], "0 7 * * *") {
			t.Errorf("differences %q, want the dispatcher's schedule only", diffs)
		}
	})
}

// TestHelmValues: each value reaches the objects it is documented to change
// (the shapes' comparison above covers the defaults).
func TestHelmValues(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	objs, err := helmTemplate(helmFleet,
		"--set", "image.repository=registry.example.com/fleetscan",
		"--set", "image.tag=v1.2.3",
		"--set", "worker.image.digest="+digest,
		"--set", "nats.image.repository=registry.example.com/nats",
		"--set", "imagePullSecrets[0]=pull",
		"--set", "nodeSelector.pool=scan",
		"--set", "priorityClassName=batch",
		"--set", "dispatcher.schedule=30 5 * * *",
		"--set", "reporter.schedule=45 7 * * *",
		"--set", "trivyDB.updater.schedule=0 */4 * * *",
		"--set", "trivyDB.size=20Gi",
		"--set", "trivyDB.storageClassName=efs",
		"--set", "nats.storage.size=50Gi",
		"--set", "nats.storage.storageClassName=ssd",
		"--set", "worker.resources.requests.cpu=1",
		"--set", "worker.resources.limits.cpu=4",
		"--set", "worker.autoscaling.maxReplicaCount=50",
		"--set", "worker.autoscaling.lagThreshold=10",
		"--set", "reporter.serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::111122223333:role/r",
		"--set", "reporter.serviceAccount.automountToken=true",
		"--set", "config.common.FLEETSCAN_LOG_LEVEL=debug",
		"--set", "config.worker.FLEETSCAN_CONCURRENCY=4",
		"--set", "namespace.name=scanning",
		"--set", "clusterDomain=corp.local",
		"--set", "nats.kedaOperator.namespace=autoscaling",
		"--set", "nats.external.annotations.lb=internal",
	)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods(objs) {
		if p.Owner.NS != "scanning" {
			t.Errorf("%s: namespace %s, want scanning", p, p.Owner.NS)
		}
		if p.Spec.NodeSelector["pool"] != "scan" || p.Spec.PriorityClassName != "batch" || len(p.Spec.ImagePullSecrets) != 1 || p.Spec.ImagePullSecrets[0].Name != "pull" {
			t.Errorf("%s: scheduling %v %q, pull secrets %v", p, p.Spec.NodeSelector, p.Spec.PriorityClassName, p.Spec.ImagePullSecrets)
		}
		for _, c := range containers(p.Spec) {
			want := map[string]string{
				"fleetscan-dispatcher": "registry.example.com/fleetscan/dispatcher:v1.2.3",
				"fleetscan-reporter":   "registry.example.com/fleetscan/reporter:v1.2.3",
				"fleetscan-nats":       "registry.example.com/nats:2.15.2-alpine",
			}[p.Owner.Name]
			if want == "" {
				want = "registry.example.com/fleetscan/worker@" + digest
			}
			if c.Image != want {
				t.Errorf("%s container %s: image %s, want %s", p, c.Name, c.Image, want)
			}
		}
	}
	schedules := map[string]string{"fleetscan-dispatcher": "30 5 * * *", "fleetscan-reporter": "45 7 * * *", "fleetscan-db-updater": "0 */4 * * *"}
	for name, want := range schedules {
		if got := cronJob(t, objs, name).Spec.Schedule; got != want {
			t.Errorf("CronJob %s: schedule %q, want %q", name, got, want)
		}
	}
	pvc := mustFind(t, objs, "PersistentVolumeClaim", "fleetscan-trivy-db").Typed.(*corev1.PersistentVolumeClaim)
	if pvc.Spec.Resources.Requests.Storage().String() != "20Gi" || pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName != "efs" {
		t.Errorf("Trivy DB PVC: %v %v", pvc.Spec.Resources.Requests, pvc.Spec.StorageClassName)
	}
	sts := mustFind(t, objs, "StatefulSet", "fleetscan-nats").Raw
	for _, want := range []string{"storage: 50Gi", "storageClassName: ssd"} {
		if !bytes.Contains(sts, []byte(want)) {
			t.Errorf("NATS StatefulSet lacks %q", want)
		}
	}
	dep := mustFind(t, objs, "Deployment", "fleetscan-worker").Raw
	if !bytes.Contains(dep, []byte("cpu: \"4\"")) && !bytes.Contains(dep, []byte("cpu: 4")) {
		t.Errorf("worker resources not set:\n%s", dep)
	}
	so := mustFind(t, objs, "ScaledObject", "fleetscan-worker").Scaled
	if *so.Spec.MaxReplicaCount != 50 || *so.Spec.MinReplicaCount != 0 || so.Spec.Triggers[0].Metadata["lagThreshold"] != "10" ||
		so.Spec.Triggers[0].Metadata["natsServerMonitoringEndpoint"] != "fleetscan-nats-headless.scanning.svc.corp.local:8222" {
		t.Errorf("ScaledObject: %+v %+v", so.Spec, so.Spec.Triggers)
	}
	sa := mustFind(t, objs, "ServiceAccount", "fleetscan-reporter").Typed.(*corev1.ServiceAccount)
	if sa.Annotations["eks.amazonaws.com/role-arn"] == "" {
		t.Errorf("reporter ServiceAccount annotations %v", sa.Annotations)
	}
	if rep := cronJob(t, objs, "fleetscan-reporter").Spec.JobTemplate.Spec.Template.Spec.AutomountServiceAccountToken; rep == nil || !*rep {
		t.Error("reporter: token not mounted with serviceAccount.automountToken")
	}
	if v, _ := configMapValue(objs, "fleetscan-common", "FLEETSCAN_LOG_LEVEL"); v != "debug" {
		t.Errorf("FLEETSCAN_LOG_LEVEL %q", v)
	}
	if v, _ := configMapValue(objs, "fleetscan-worker", "FLEETSCAN_CONCURRENCY"); v != "4" {
		t.Errorf("FLEETSCAN_CONCURRENCY %q", v)
	}
	crb := mustFind(t, objs, "ClusterRoleBinding", "fleetscan-dispatcher").Raw
	if !bytes.Contains(crb, []byte("namespace: scanning")) {
		t.Errorf("ClusterRoleBinding subject not in the release's namespace:\n%s", crb)
	}
	np := mustFind(t, objs, "NetworkPolicy", "fleetscan-nats").Raw
	if !bytes.Contains(np, []byte("kubernetes.io/metadata.name: autoscaling")) {
		t.Errorf("NATS NetworkPolicy does not admit KEDA's namespace:\n%s", np)
	}
	if lb := mustFind(t, objs, "Service", "fleetscan-nats-external").Typed.(*corev1.Service); lb.Annotations["lb"] != "internal" {
		t.Errorf("external Service annotations %v", lb.Annotations)
	}
	if ns := mustFind(t, objs, "Namespace", "scanning").Typed.(*corev1.Namespace); ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("namespace labels %v", ns.Labels)
	}

	t.Run("namespace.create=false", func(t *testing.T) {
		objs, err := helmTemplate(helmSingleCluster, "--set", "namespace.create=false", "--namespace", "platform-ops")
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := find(objs, "Namespace", "platform-ops"); ok {
			t.Error("the Namespace is rendered with namespace.create=false")
		}
	})
}

// TestHelmConfigChecksum: a changed setting rolls exactly the pods that
// read it (kustomize does the same through the generated ConfigMap names).
func TestHelmConfigChecksum(t *testing.T) {
	sums := func(args ...string) map[string]string {
		t.Helper()
		objs, err := helmTemplate(helmSingleCluster, args...)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, p := range pods(objs) {
			name := p.Owner.Name
			if _, ok := p.Owner.Typed.(*batchv1.Job); ok {
				name = helmJobHash.FindStringSubmatch(name)[1]
			}
			if p.Annos["checksum/config"] == "" {
				t.Errorf("%s: no checksum/config annotation", p)
			}
			out[name] = p.Annos["checksum/config"]
		}
		return out
	}
	base := sums()
	for _, tt := range []struct {
		set     string
		changed []string
	}{
		{"config.reporter.FLEETSCAN_WAIT=4h", []string{"fleetscan-reporter"}},
		{"config.worker.FLEETSCAN_CONCURRENCY=3", []string{"fleetscan-db-updater", "fleetscan-init", "fleetscan-worker"}},
		{"config.common.FLEETSCAN_LOG_LEVEL=debug", []string{"fleetscan-db-updater", "fleetscan-dispatcher", "fleetscan-init", "fleetscan-reporter", "fleetscan-worker"}},
	} {
		got := sums("--set", tt.set)
		var changed []string
		for name, sum := range got {
			if sum != base[name] {
				changed = append(changed, name)
			}
		}
		slices.Sort(changed)
		if !slices.Equal(changed, tt.changed) {
			t.Errorf("--set %s rolls %v, want %v", tt.set, changed, tt.changed)
		}
	}
}
