package harness

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/internal/inventory"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

func pushed(name string, n int, platforms ...contract.Platform) fixture.Pushed {
	return fixture.Pushed{
		Spec:       fixture.ImageSpec{Name: name, Platforms: platforms, Expected: []fixture.Finding{{VulnerabilityID: "CVE-1", PkgName: "pkg-" + name, InstalledVersion: "1"}}},
		Repository: "127.0.0.1:5000/fixtures/" + name,
		Digest:     fmt.Sprintf("sha256:%064x", n),
	}
}

// TestFleetFilesReadByDispatcherSource writes a fleet's kubectl files and
// reads them back with the dispatcher's own file source: they must be valid
// `kubectl get pods -A -o json` / `kubectl get nodes -o json` output.
func TestFleetFilesReadByDispatcherSource(t *testing.T) {
	amd, arm := contract.Platform{OS: "linux", Architecture: "amd64"}, contract.Platform{OS: "linux", Architecture: "arm64"}
	app, multi := pushed("app", 1, amd), pushed("multi", 2, amd, arm)
	f := NewFleet()
	f.AddNode("eu", "n1", amd)
	f.AddNode("eu", "n2", arm)
	f.AddNode("us", "n3", amd)
	f.Deployment("eu", "apps", "app", "n1", 2, app, "registry:5000/fixtures/app:1.0", IDContainerd)
	f.Deployment("eu", "apps", "multi", "n2", 1, multi, "registry:5000/fixtures/multi:2", IDContainerd)
	f.Deployment("us", "apps", "multi", "n3", 3, multi, "registry:5000/fixtures/multi:2", IDDockerPullable)

	dir := t.TempDir()
	args, err := f.WriteFiles(dir, "/inventory")
	if err != nil {
		t.Fatal(err)
	}
	if want := "--inventory-file eu=/inventory/eu-pods.json --nodes-file eu=/inventory/eu-nodes.json --inventory-file us=/inventory/us-pods.json --nodes-file us=/inventory/us-nodes.json"; strings.Join(args, " ") != want {
		t.Errorf("args = %q\nwant %q", args, want)
	}
	for cluster, want := range map[string]struct {
		pods     int
		imageIDs []string
		nodes    map[string]contract.Platform
	}{
		"eu": {3, []string{"registry:5000/fixtures/app@" + app.Digest, "registry:5000/fixtures/multi@" + multi.Digest}, map[string]contract.Platform{"n1": amd, "n2": arm}},
		"us": {3, []string{"docker-pullable://registry:5000/fixtures/multi@" + multi.Digest}, map[string]contract.Platform{"n3": amd}},
	} {
		src := inventory.NewFileSource(cluster, filepath.Join(dir, cluster+"-pods.json"), filepath.Join(dir, cluster+"-nodes.json"))
		ids := map[string]bool{}
		pods := 0
		err := src.EachPod(t.Context(), nil, func(p *corev1.Pod) error {
			pods++
			if len(p.OwnerReferences) != 1 || p.OwnerReferences[0].Kind != "ReplicaSet" || p.Spec.NodeName == "" {
				t.Errorf("%s/%s: node %q, owners %+v; want a node and a ReplicaSet owner", p.Namespace, p.Name, p.Spec.NodeName, p.OwnerReferences)
			}
			for _, cs := range p.Status.ContainerStatuses {
				ids[cs.ImageID] = true
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", cluster, err)
		}
		if pods != want.pods || pods != f.Pods(cluster) {
			t.Errorf("%s: %d pods read, Pods() = %d, want %d", cluster, pods, f.Pods(cluster), want.pods)
		}
		for _, id := range want.imageIDs {
			if !ids[id] {
				t.Errorf("%s: no container with imageID %s (have %v)", cluster, id, ids)
			}
		}
		nodes, err := src.NodePlatforms(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(nodes) != fmt.Sprint(want.nodes) {
			t.Errorf("%s: node platforms %v, want %v", cluster, nodes, want.nodes)
		}
	}

	keys := f.ExpectedKeys()
	if len(keys) != 3 {
		t.Errorf("expected keys %v, want app/amd64, multi/amd64, multi/arm64", keys)
	}
	if got := f.ExpectedFindings(); len(got) != 3 {
		t.Errorf("expected findings %v, want one per key", got)
	}
	if got := f.ExpectedFindings(multi.Digest); len(got) != 1 {
		t.Errorf("expected findings without multi: %v, want app's only", got)
	}
}

func TestRenderDockerfile(t *testing.T) {
	got := renderDockerfile(ImageSpec{Entrypoint: []string{"/registry", "serve", "/etc/config.yml"}, User: "65532", Expose: []string{"5000/tcp"}})
	want := "FROM scratch\nCOPY rootfs/ /\nEXPOSE 5000/tcp\nUSER 65532\nENTRYPOINT [\"/registry\",\"serve\",\"/etc/config.yml\"]\n"
	if got != want {
		t.Errorf("Dockerfile:\n%s\nwant:\n%s", got, want)
	}
}

// TestStaticBinaries: images are FROM scratch, so a dynamically linked tool
// must be refused with advice, and the harness's own build must be static.
func TestStaticBinaries(t *testing.T) {
	if err := checkStatic("/bin/sh"); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Errorf("checkStatic(/bin/sh) = %v, want a dynamic-linking error", err)
	}
	if err := checkStatic(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("checkStatic of a missing file succeeded")
	}
	t.Setenv("FLEETSCAN_TOOLS", t.TempDir())
	if _, err := StaticBinary("nats-server", "tools"); err == nil || !strings.Contains(err.Error(), "make tools") {
		t.Errorf("StaticBinary of a missing tool = %v, want advice to run make tools", err)
	}
	bin, err := BuildModuleBinary("./cmd/faultproxy")
	if err != nil {
		t.Fatal(err)
	}
	if err := checkStatic(bin); err != nil {
		t.Errorf("faultproxy build: %v", err)
	}
}
