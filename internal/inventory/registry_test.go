package inventory

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/fleetscan/fleetscan/internal/imageref"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// testRegistry is an in-process OCI registry on 127.0.0.1 counting manifest
// HEADs; with user set it demands basic auth.
type testRegistry struct {
	srv   *httptest.Server
	heads atomic.Int32
	host  string
}

func startRegistry(t *testing.T, user, pass string) *testRegistry {
	t.Helper()
	r := &testRegistry{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if user != "" {
			u, p, ok := req.BasicAuth()
			if !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
		}
		if req.Method == http.MethodHead && strings.Contains(req.URL.Path, "/manifests/") {
			r.heads.Add(1)
		}
		reg.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	r.host = strings.TrimPrefix(r.srv.URL, "http://")
	return r
}

// push writes a random image (or a two-platform index) under repo:tag and
// returns its digest.
func (r *testRegistry) push(t *testing.T, repoTag string, index bool, opts ...remote.Option) string {
	t.Helper()
	ref, err := name.NewTag(r.host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	if index {
		idx, err := random.Index(256, 1, 2)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.WriteIndex(ref, idx, opts...); err != nil {
			t.Fatal(err)
		}
		d, _ := idx.Digest()
		return d.String()
	}
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, opts...); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return d.String()
}

func mustRef(t *testing.T, s string) imageref.Reference {
	t.Helper()
	r, err := imageref.NormalizeReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRegistryResolver(t *testing.T) {
	reg := startRegistry(t, "", "")
	imgDigest := reg.push(t, "team/app:1.0", false)
	idxDigest := reg.push(t, "team/multi:2", true)
	r, err := NewRegistryResolver(RegistryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	tests := []struct {
		ref, want, wantErr string
	}{
		{reg.host + "/team/app:1.0", imgDigest, ""},
		{reg.host + "/team/multi:2", idxDigest, ""}, // the index, as runtimes report
		{reg.host + "/team/app:missing", "", "404 Not Found"},
		{reg.host + "/team/nope:1", "", "HEAD " + reg.host + "/team/nope:1"},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			got, err := r.Resolve(ctx, mustRef(t, tt.ref), arm64)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Resolve = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	before := reg.heads.Load()
	for range 3 {
		if _, err := r.Resolve(ctx, mustRef(t, reg.host+"/team/app:1.0"), arm64); err != nil {
			t.Fatal(err)
		}
	}
	if reg.heads.Load() != before {
		t.Fatalf("cached tag looked up again: %d HEADs", reg.heads.Load()-before)
	}
}

func TestRegistryResolverCredentials(t *testing.T) {
	reg := startRegistry(t, "robot", "s3cret")
	digest := reg.push(t, "private/app:1", false, remote.WithAuth(&authn.Basic{Username: "robot", Password: "s3cret"}))
	ref := mustRef(t, reg.host+"/private/app:1")

	anon, err := NewRegistryResolver(RegistryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := anon.Resolve(t.Context(), ref, amd64); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("anonymous lookup: %v, want 401", err)
	}

	cfgPath := filepath.Join(t.TempDir(), "config.json")
	cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{
		reg.host: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte("robot:s3cret"))},
	}})
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	authed, err := NewRegistryResolver(RegistryOptions{ConfigFile: cfgPath})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := authed.Resolve(t.Context(), ref, amd64); err != nil || got != digest {
		t.Fatalf("with --registry-config: %q, %v; want %q", got, err, digest)
	}

	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte("{not json"), 0o600)
	if _, err := NewRegistryResolver(RegistryOptions{ConfigFile: bad}); err == nil || !strings.Contains(err.Error(), "--registry-config "+bad) {
		t.Fatalf("bad config: %v", err)
	}
}

// TestRegistryResolverInsecure reaches a plain-HTTP registry under a host
// name that is not loopback: HTTPS (the default) fails, --insecure-registry
// works.
func TestRegistryResolverInsecure(t *testing.T) {
	reg := startRegistry(t, "", "")
	digest := reg.push(t, "app:1", false)
	dial := &net.Dialer{}
	rt := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return dial.DialContext(ctx, network, reg.host)
	}}
	ref := mustRef(t, "registry.internal:5000/app:1")

	secure, _ := NewRegistryResolver(RegistryOptions{Transport: rt})
	if _, err := secure.Resolve(t.Context(), ref, amd64); err == nil {
		t.Fatal("HTTPS to a plain-HTTP registry succeeded")
	}
	insecure, _ := NewRegistryResolver(RegistryOptions{Transport: rt, Insecure: []string{"registry.internal:5000"}})
	if got, err := insecure.Resolve(t.Context(), ref, amd64); err != nil || got != digest {
		t.Fatalf("insecure: %q, %v; want %q", got, err, digest)
	}
}

// staticSource serves fixed pods (and no nodes).
type staticSource struct {
	cluster string
	pods    []*corev1.Pod
}

func (s staticSource) Cluster() string { return s.cluster }
func (s staticSource) EachPod(_ context.Context, _ labels.Selector, fn func(*corev1.Pod) error) error {
	for _, p := range s.pods {
		if err := fn(p); err != nil {
			return err
		}
	}
	return nil
}
func (s staticSource) NodePlatforms(context.Context) (map[string]contract.Platform, error) {
	return map[string]contract.Platform{}, nil
}
func (s staticSource) ControllerOf(context.Context, string, string, string) (*metav1.OwnerReference, bool, error) {
	return nil, false, nil
}

func TestCollectResolvesTags(t *testing.T) {
	reg := startRegistry(t, "", "")
	digest := reg.push(t, "team/app:1.0", false)
	reg.heads.Store(0) // the push HEADs too
	waiting := func(name, image, imageID string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}},
			Status:     corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "c", ImageID: imageID}}},
		}
	}
	src := staticSource{cluster: "c", pods: []*corev1.Pod{
		waiting("a", reg.host+"/team/app:1.0", ""),
		waiting("b", reg.host+"/team/app:1.0", "sha256:"+strings.Repeat("ab", 32)),
		waiting("c", reg.host+"/team/app:2.0", ""),
	}}
	// Chunks of one entry: the tag app:1.0 of pods a and b is looked up
	// once for the cluster, though their entries are handed over apart.
	for _, chunk := range []int{0, 1} {
		reg.heads.Store(0)
		checkResolvedTags(t, reg, src, digest, chunk)
	}
}

func checkResolvedTags(t *testing.T, reg *testRegistry, src Source, digest string, chunk int) {
	t.Helper()
	res, err := (&Collector{Resolver: mustResolver(t), ChunkSize: chunk, Log: zaptest.NewLogger(t)}).Collect(t.Context(), src)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct {
		digest     string
		resolution contract.Resolution
		reason     string
	}{
		{digest, contract.ResolvedFromTag, ReasonNoID},
		{digest, contract.ResolvedFromTag, ReasonLocalID},
		{"", contract.Unresolved, ReasonNoID + "; resolving the tag: HEAD " + reg.host + "/team/app:2.0"},
	} {
		e := res.Entries[i]
		if e.Digest != want.digest || e.Resolution != want.resolution || !strings.HasPrefix(e.Reason, want.reason) {
			t.Errorf("entry %s: %q %q %q, want %q %q %q…", e.Pod, e.Digest, e.Resolution, e.Reason, want.digest, want.resolution, want.reason)
		}
	}
	if res.FromTag != 2 || reg.heads.Load() != 2 {
		t.Fatalf("chunk %d: from tag %d, HEADs %d: want 2 and 2 (one per unique tag)", chunk, res.FromTag, reg.heads.Load())
	}
}

func mustResolver(t *testing.T) *RegistryResolver {
	r, err := NewRegistryResolver(RegistryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}
