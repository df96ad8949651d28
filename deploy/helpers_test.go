package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Paths of the kustomizations, relative to this package's directory.
const (
	baseDir          = "base"
	singleClusterDir = "overlays/single-cluster"
	fleetDir         = "overlays/fleet"
	fleetMemberDir   = "overlays/fleet-member"
	// allComponentsDir exists only in the in-memory copy used by render: the
	// base with every optional component switched on.
	allComponentsDir = "overlays/zz-all-components"
)

// The Helm chart (helm/fleetscan) rendered with the values of each shape
// (helm/fleetscan/ci/<shape>-values.yaml); helmShapes names the kustomize
// build each must equal.
const (
	helmSingleCluster = "helm/single-cluster"
	helmFleet         = "helm/fleet"
	helmFleetMember   = "helm/fleet-member"
	helmAllOptions    = "helm/all-options"
)

var helmShapes = map[string]string{
	helmSingleCluster: singleClusterDir,
	helmFleet:         fleetDir,
	helmFleetMember:   fleetMemberDir,
	helmAllOptions:    allComponentsDir,
}

// builds lists every rendering a test checks: the kustomizations and the
// chart's shapes, so every policy below holds for kustomize and Helm alike.
var builds = []string{baseDir, singleClusterDir, fleetDir, fleetMemberDir, allComponentsDir,
	helmSingleCluster, helmFleet, helmFleetMember, helmAllOptions}

// shape is the kustomize build a rendering stands for: a Helm shape's
// overlay, or dir itself.
func shape(dir string) string {
	if k, ok := helmShapes[dir]; ok {
		return k
	}
	return dir
}

// strictDecoder decodes YAML into client-go's types and fails on unknown or
// duplicate fields.
var strictDecoder = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
	kjson.SerializerOptions{Yaml: true, Strict: true})

// scaledObjectGVK is KEDA's ScaledObject, decoded into local types (KEDA's
// API package would pull in ~600 packages).
var scaledObjectGVK = schema.GroupVersionKind{Group: "keda.sh", Version: "v1alpha1", Kind: "ScaledObject"}

// object is one decoded manifest.
type object struct {
	Source string // file or kustomization it came from
	GVK    schema.GroupVersionKind
	Name   string
	NS     string
	// Typed is the client-go object; nil for a ScaledObject.
	Typed runtime.Object
	// Scaled is set for a ScaledObject.
	Scaled *scaledObject
	// Monitoring is set for the Prometheus Operator's kinds
	// (*prometheusRule, *podMonitor).
	Monitoring any
	Raw        []byte
}

func (o object) String() string {
	return fmt.Sprintf("%s %s/%s (%s)", o.GVK.Kind, o.NS, o.Name, o.Source)
}

// decodeObject decodes one YAML document strictly.
func decodeObject(source string, doc []byte) (object, error) {
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return object{}, fmt.Errorf("%s: %w", source, err)
	}
	gv, err := schema.ParseGroupVersion(tm.APIVersion)
	if err != nil {
		return object{}, fmt.Errorf("%s: apiVersion %q: %w", source, tm.APIVersion, err)
	}
	o := object{Source: source, GVK: gv.WithKind(tm.Kind), Name: tm.Metadata.Name, NS: tm.Metadata.Namespace, Raw: doc}
	if o.GVK.Kind == "" {
		return object{}, fmt.Errorf("%s: document has no kind", source)
	}
	if o.GVK == scaledObjectGVK {
		var so scaledObject
		if err := yaml.UnmarshalStrict(doc, &so); err != nil {
			return object{}, fmt.Errorf("%s: ScaledObject %s: %w", source, o.Name, err)
		}
		o.Scaled = &so
		return o, nil
	}
	if decode, ok := monitoringKinds[o.GVK]; ok {
		v, err := decode(doc)
		if err != nil {
			return object{}, fmt.Errorf("%s: %s %s: %w", source, o.GVK.Kind, o.Name, err)
		}
		o.Monitoring = v
		return o, nil
	}
	typed, gvk, err := strictDecoder.Decode(doc, nil, nil)
	if err != nil {
		return object{}, fmt.Errorf("%s: %s %s: %w", source, o.GVK.Kind, o.Name, err)
	}
	if *gvk != o.GVK {
		return object{}, fmt.Errorf("%s: decoded as %s, want %s", source, gvk, o.GVK)
	}
	o.Typed = typed
	return o, nil
}

// splitYAML returns the non-empty documents of a multi-document YAML stream.
func splitYAML(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		var v any
		if err := yaml.Unmarshal(doc, &v); err != nil {
			return nil, err
		}
		if v != nil { // comments only
			docs = append(docs, doc)
		}
	}
}

// isKustomization reports whether a file is a kustomization (or component).
func isKustomization(path string) bool {
	return filepath.Base(path) == "kustomization.yaml"
}

// skipDirs are not kustomize sources: the Helm chart (templates, values;
// its files/ links back to the kustomize sources) and test fixtures.
var skipDirs = map[string]bool{"helm": true, "testdata": true}

// yamlFiles lists every YAML file under dir (but skipDirs).
func yamlFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && skipDirs[p] {
			return filepath.SkipDir
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return files
}

// allComponentsKustomization switches every component on over the base.
const allComponentsKustomization = `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: platform-ops
resources:
  - ../../base
components:
  - ../../components/nats-tls
  - ../../components/registry-auth
  - ../../components/monitoring
`

var (
	renderMu    sync.Mutex
	renderCache = map[string][]object{}
)

// render runs kustomize (its Go API, as `kustomize build` does) on dir and
// decodes every resulting object strictly. Results are cached per dir.
func render(t *testing.T, dir string) []object {
	t.Helper()
	renderMu.Lock()
	defer renderMu.Unlock()
	if objs, ok := renderCache[dir]; ok {
		return objs
	}
	objs, err := renderUncached(dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	renderCache[dir] = objs
	return objs
}

func renderUncached(dir string) ([]object, error) {
	if _, ok := helmShapes[dir]; ok {
		return helmTemplate(dir)
	}
	mem, err := deployTreeInMemory()
	if err != nil {
		return nil, err
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(mem, "/deploy/"+dir)
	if err != nil {
		return nil, err
	}
	var objs []object
	for _, r := range m.Resources() {
		doc, err := r.AsYAML()
		if err != nil {
			return nil, err
		}
		o, err := decodeObject(dir, doc)
		if err != nil {
			return nil, err
		}
		objs = append(objs, o)
	}
	return objs, nil
}

// deployTreeInMemory copies this directory's manifests into an in-memory
// file system under /deploy and adds the all-components overlay.
func deployTreeInMemory() (filesys.FileSystem, error) {
	mem := filesys.MakeFsInMemory()
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && skipDirs[p] {
			return filepath.SkipDir
		}
		if err != nil || d.IsDir() || strings.HasSuffix(p, ".go") {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return mem.WriteFile(filepath.Join("/deploy", p), data)
	})
	if err != nil {
		return nil, err
	}
	return mem, mem.WriteFile(filepath.Join("/deploy", allComponentsDir, "kustomization.yaml"), []byte(allComponentsKustomization))
}

// decodeKustomization decodes a kustomization.yaml strictly.
func decodeKustomization(data []byte) (types.Kustomization, error) {
	var k types.Kustomization
	err := yaml.UnmarshalStrict(data, &k)
	return k, err
}

// find returns the rendered object of kind and name (the name as written
// in the manifests: kustomize's generated ConfigMaps and the chart's Jobs
// are matched without their content hash).
func find(objs []object, kind, name string) (object, bool) {
	for _, o := range objs {
		if o.GVK.Kind != kind {
			continue
		}
		if o.Name == name || (kind == "ConfigMap" && generatedName(o.Name) == name) ||
			(kind == "Job" && helmJobHash.MatchString(o.Name) && helmJobHash.FindStringSubmatch(o.Name)[1] == name) {
			return o, true
		}
	}
	return object{}, false
}

func mustFind(t *testing.T, objs []object, kind, name string) object {
	t.Helper()
	o, ok := find(objs, kind, name)
	if !ok {
		t.Fatalf("no %s %s in the rendered manifests", kind, name)
	}
	return o
}

// kustomizeHash is the content-hash suffix kustomize gives generated
// objects: ten characters of its alphabet (hex with 0, 1, 3, a, e replaced
// by g, h, k, m, t so that no word is spelt).
var kustomizeHash = regexp.MustCompile(`^(.+)-[2456789bcdfghkmt]{10}$`)

// generatedName strips kustomize's content-hash suffix.
func generatedName(name string) string {
	if m := kustomizeHash.FindStringSubmatch(name); m != nil {
		return m[1]
	}
	return name
}

// pod is a pod template found in a workload.
type pod struct {
	Owner  object
	Labels map[string]string
	Annos  map[string]string
	Spec   *corev1.PodSpec
	// Job is the Job spec for Jobs and CronJobs.
	Job *batchv1.JobSpec
}

func (p pod) String() string { return p.Owner.String() }

// pods returns the pod templates of every workload.
func pods(objs []object) []pod {
	var out []pod
	for _, o := range objs {
		switch w := o.Typed.(type) {
		case *appsv1.Deployment:
			out = append(out, pod{o, w.Spec.Template.Labels, w.Spec.Template.Annotations, &w.Spec.Template.Spec, nil})
		case *appsv1.StatefulSet:
			out = append(out, pod{o, w.Spec.Template.Labels, w.Spec.Template.Annotations, &w.Spec.Template.Spec, nil})
		case *appsv1.DaemonSet:
			out = append(out, pod{o, w.Spec.Template.Labels, w.Spec.Template.Annotations, &w.Spec.Template.Spec, nil})
		case *batchv1.Job:
			out = append(out, pod{o, w.Spec.Template.Labels, w.Spec.Template.Annotations, &w.Spec.Template.Spec, &w.Spec})
		case *batchv1.CronJob:
			js := &w.Spec.JobTemplate.Spec
			out = append(out, pod{o, js.Template.Labels, js.Template.Annotations, &js.Template.Spec, js})
		case *corev1.Pod:
			out = append(out, pod{o, w.Labels, w.Annotations, &w.Spec, nil})
		}
	}
	return out
}

// containers returns init and regular containers.
func containers(spec *corev1.PodSpec) []corev1.Container {
	return slices.Concat(spec.InitContainers, spec.Containers)
}

// envValue is an environment variable's literal value in a container,
// looked up in env and then in the envFrom ConfigMaps of the render.
func envValue(objs []object, c corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom == nil {
			return e.Value, true
		}
		if e.Name == name && e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
			return configMapValue(objs, e.ValueFrom.ConfigMapKeyRef.Name, e.ValueFrom.ConfigMapKeyRef.Key)
		}
	}
	// Later envFrom sources win, as in the kubelet.
	for _, ef := range slices.Backward(c.EnvFrom) {
		if ef.ConfigMapRef == nil {
			continue
		}
		if v, ok := configMapValue(objs, ef.ConfigMapRef.Name, name); ok {
			return v, true
		}
	}
	return "", false
}

func configMapValue(objs []object, cmName, key string) (string, bool) {
	for _, o := range objs {
		if cm, ok := o.Typed.(*corev1.ConfigMap); ok && o.Name == cmName {
			v, ok := cm.Data[key]
			return v, ok
		}
	}
	return "", false
}
