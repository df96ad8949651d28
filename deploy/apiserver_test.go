package deploy

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/fleetscan/fleetscan/internal/kubeapitest"
)

// warnings collects the API server's Warning headers (PodSecurity
// violations of workloads, deprecated APIs, ignored fields).
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, msg)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.msgs
	w.msgs = nil
	return m
}

// dryRunner applies objects server-side with dryRun=All.
type dryRunner struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
	warn   *warnings
}

func newDryRunner(t *testing.T, srv *kubeapitest.Server) *dryRunner {
	t.Helper()
	w := &warnings{}
	cfg := rest.CopyConfig(srv.Config)
	cfg.WarningHandler = w
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &dryRunner{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc)), warn: w}
}

// apply server-side applies raw (YAML), for real or as a dry run, and
// returns the error and the warnings it caused.
func (d *dryRunner) apply(ctx context.Context, raw []byte, dryRun bool) ([]string, error) {
	var u unstructured.Unstructured
	if err := yaml.Unmarshal(raw, &u.Object); err != nil {
		return nil, err
	}
	gvk := u.GroupVersionKind()
	m, err := d.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, err
	}
	opts := metav1.ApplyOptions{FieldManager: "fleetscan-deploy-test", Force: true}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	var ri dynamic.ResourceInterface = d.dyn.Resource(m.Resource)
	if ns := u.GetNamespace(); ns != "" {
		ri = d.dyn.Resource(m.Resource).Namespace(ns)
	}
	_, err = ri.Apply(ctx, u.GetName(), &u, opts)
	return d.warn.take(), err
}

// TestServerSideDryRun applies the rendered manifests to a real
// kube-apiserver (server-side apply, dryRun=All) after creating the
// namespace for real, so every built-in object passes the API server's
// schema (unknown fields are rejected), defaulting, validation and
// admission — including the restricted Pod Security Standard the
// namespace enforces, whose warnings for workloads fail the test too.
// KEDA's ScaledObject is applied against a stand-in of KEDA's CRD
// (testdata/keda-scaledobject-crd.yaml), whose schema reports unknown fields.
// Every kustomize build and every Helm shape is applied.
func TestServerSideDryRun(t *testing.T) {
	srv := kubeapitest.Start(t)
	d := newDryRunner(t, srv)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	installKEDACRD(ctx, t, d)
	installMonitoringCRDs(ctx, t, d)

	ns := mustFind(t, render(t, baseDir), "Namespace", "platform-ops")
	if w, err := d.apply(ctx, ns.Raw, false); err != nil || len(w) > 0 {
		t.Fatalf("create namespace: %v (warnings %v)", err, w)
	}

	for _, dir := range builds {
		t.Run(dir, func(t *testing.T) {
			var applied int
			for _, o := range render(t, dir) {
				if o.Typed == nil && o.GVK != scaledObjectGVK && monitoringKinds[o.GVK] == nil {
					t.Errorf("%s: not a built-in kind", o)
					continue
				}
				w, err := d.apply(ctx, o.Raw, true)
				if err != nil {
					t.Errorf("%s: server-side dry run: %v", o, err)
				}
				for _, msg := range w {
					t.Errorf("%s: API server warning: %s", o, msg)
				}
				applied++
			}
			t.Logf("%d objects passed the dry run", applied)
		})
	}

	// The checks above can fail: a worker that may run as root is refused
	// by the namespace's Pod Security admission (a warning for the
	// Deployment), and a misspelt field is refused by the schema.
	t.Run("detects violations", func(t *testing.T) {
		objs := render(t, baseDir)
		dep := mustFind(t, objs, "Deployment", "fleetscan-worker")
		var u unstructured.Unstructured
		if err := yaml.Unmarshal(dep.Raw, &u.Object); err != nil {
			t.Fatal(err)
		}
		unstructured.RemoveNestedField(u.Object, "spec", "template", "spec", "securityContext", "runAsNonRoot")
		unstructured.RemoveNestedField(u.Object, "spec", "template", "spec", "securityContext", "runAsUser")
		raw, _ := yaml.Marshal(u.Object)
		w, err := d.apply(ctx, raw, true)
		if err != nil || !strings.Contains(strings.Join(w, "\n"), "restricted") {
			t.Errorf("a worker that may run as root: error %v, warnings %q; want a restricted Pod Security warning", err, w)
		}

		cj := mustFind(t, objs, "CronJob", "fleetscan-reporter")
		bad := strings.Replace(string(cj.Raw), "backoffLimit: 0", "backofLimit: 0", 1)
		if bad == string(cj.Raw) {
			t.Fatal("the reporter CronJob has no backoffLimit: 0 to misspell")
		}
		if _, err := d.apply(ctx, []byte(bad), true); err == nil || !strings.Contains(err.Error(), "backofLimit") {
			t.Errorf("a misspelt field: error %v, want it refused", err)
		}

		so := mustFind(t, objs, "ScaledObject", "fleetscan-worker")
		badSO := strings.Replace(string(so.Raw), "maxReplicaCount:", "maxReplicas:", 1)
		w, err = d.apply(ctx, []byte(badSO), true)
		if err == nil && !strings.Contains(strings.Join(w, "\n"), "maxReplicas") {
			t.Errorf("a ScaledObject with a misspelt field: error %v, warnings %q; want it reported", err, w)
		}
	})
}

// installKEDACRD creates the stand-in of KEDA's ScaledObject CRD and waits
// until the API server serves it.
func installKEDACRD(ctx context.Context, t *testing.T, d *dryRunner) {
	t.Helper()
	crd, err := os.ReadFile("testdata/keda-scaledobject-crd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if w, err := d.apply(ctx, crd, false); err != nil || len(w) > 0 {
		t.Fatalf("create the ScaledObject CRD: %v (warnings %v)", err, w)
	}
	for {
		d.mapper.Reset()
		if _, err := d.mapper.RESTMapping(scaledObjectGVK.GroupKind(), scaledObjectGVK.Version); err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("the ScaledObject CRD is not served")
		case <-time.After(200 * time.Millisecond):
		}
	}
}
