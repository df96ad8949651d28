package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
)

// TestManifestsDecodeStrictly decodes every YAML file in deploy/: the
// kustomizations into kustomize's own types, every other document into
// client-go's types (KEDA's ScaledObject into local types), all with unknown
// and duplicate fields rejected.
func TestManifestsDecodeStrictly(t *testing.T) {
	files := yamlFiles(t, ".")
	if len(files) < 20 {
		t.Fatalf("found only %d YAML files under deploy/; run the test from the package directory", len(files))
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if isKustomization(f) {
				k, err := decodeKustomization(data)
				if err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				if k.Kind != "Kustomization" && k.Kind != "Component" {
					t.Fatalf("%s: kind %q, want Kustomization or Component", f, k.Kind)
				}
				return
			}
			docs, err := splitYAML(data)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(docs) == 0 {
				t.Fatalf("%s: no YAML document", f)
			}
			for _, doc := range docs {
				if _, err := decodeObject(f, doc); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// TestStrictDecodingRejects shows that the decoding above can fail: each
// document has one mistake of the kind strict decoding exists to catch.
func TestStrictDecodingRejects(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{
			name: "unknown field",
			doc: `apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  replica: 2
  selector: {matchLabels: {a: b}}
  template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: i}]}}
`,
			want: `unknown field "spec.replica"`,
		},
		{
			name: "field at the wrong level",
			doc: `apiVersion: batch/v1
kind: CronJob
metadata: {name: x}
spec:
  schedule: "0 6 * * *"
  restartPolicy: Never
  jobTemplate: {spec: {template: {spec: {containers: [{name: c, image: i}]}}}}
`,
			want: `unknown field "spec.restartPolicy"`,
		},
		{
			name: "duplicate field",
			doc: `apiVersion: v1
kind: ServiceAccount
metadata: {name: x}
automountServiceAccountToken: false
automountServiceAccountToken: true
`,
			want: `key "automountServiceAccountToken" already set`,
		},
		{
			name: "unknown kind",
			doc: `apiVersion: v1
kind: Deploymnet
metadata: {name: x}
`,
			want: `no kind "Deploymnet"`,
		},
		{
			name: "ScaledObject with a misspelt key",
			doc: `apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: x}
spec:
  scaleTargetRef: {name: w}
  minReplicas: 0
  triggers: []
`,
			want: `unknown field "minReplicas"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeObject("test", []byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}

	t.Run("nats-jetstream trigger metadata with a misspelt key", func(t *testing.T) {
		tr := scaleTrigger{Type: "nats-jetstream", Metadata: map[string]string{"stream": "S", "consumers": "c"}}
		if _, err := tr.natsJetStream(); err == nil || !strings.Contains(err.Error(), `unknown field "consumers"`) {
			t.Fatalf("error = %v, want unknown field consumers", err)
		}
	})
	t.Run("kustomization with a misspelt key", func(t *testing.T) {
		_, err := decodeKustomization([]byte("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresource: [a]\n"))
		if err == nil || !strings.Contains(err.Error(), `unknown field "resource"`) {
			t.Fatalf("error = %v, want unknown field resource", err)
		}
	})
}

// TestKustomizeBuild renders every overlay (and the base) with kustomize's
// Go API, as `kubectl apply -k` would, and decodes the output strictly.
func TestKustomizeBuild(t *testing.T) {
	clusterScoped := map[string]bool{"Namespace": true, "ClusterRole": true, "ClusterRoleBinding": true}
	for _, dir := range builds {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			if len(objs) == 0 {
				t.Fatal("rendered nothing")
			}
			for _, o := range objs {
				if clusterScoped[o.GVK.Kind] {
					if o.NS != "" {
						t.Errorf("%s: cluster-scoped object has a namespace", o)
					}
					continue
				}
				if o.NS != "platform-ops" {
					t.Errorf("%s: namespace %q, want platform-ops", o, o.NS)
				}
				if o.Typed != nil {
					if m, err := meta.Accessor(o.Typed); err != nil || m.GetLabels()["app.kubernetes.io/part-of"] != "fleetscan" {
						t.Errorf("%s: missing label app.kubernetes.io/part-of=fleetscan", o)
					}
				}
			}
		})
	}
}

// TestEveryComponentIsBuilt keeps the all-components build complete: a new
// component is rendered (and so policy-checked) as soon as it exists.
func TestEveryComponentIsBuilt(t *testing.T) {
	dirs, err := filepath.Glob("components/*/kustomization.yaml")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no components found: %v", err)
	}
	for _, d := range dirs {
		ref := "../../" + filepath.ToSlash(filepath.Dir(d))
		if !strings.Contains(allComponentsKustomization, "- "+ref+"\n") {
			t.Errorf("component %s is not in the all-components build", filepath.Dir(d))
		}
	}
	overlays, _ := filepath.Glob("overlays/*/kustomization.yaml")
	for _, o := range overlays {
		dir := filepath.ToSlash(filepath.Dir(o))
		found := false
		for _, b := range builds {
			found = found || b == dir
		}
		if !found {
			t.Errorf("overlay %s is not in builds", dir)
		}
	}
}
