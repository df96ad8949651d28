package harness

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// Fleet is a made-up set of clusters — nodes and the pods on them — running
// fixture images, written as the `kubectl get pods -A -o json` and `kubectl
// get nodes -o json` files the dispatcher reads offline. It also knows what
// a correct scan of it must report.
type Fleet struct {
	clusters map[string]*fleetCluster
	order    []string
	// pulled maps each expected key to the image it is.
	pulled map[contract.ImageKey]fixture.Pushed
}

type fleetCluster struct {
	nodes []corev1.Node
	pods  []corev1.Pod
	arch  map[string]contract.Platform
}

// NewFleet returns an empty fleet.
func NewFleet() *Fleet {
	return &Fleet{clusters: map[string]*fleetCluster{}, pulled: map[contract.ImageKey]fixture.Pushed{}}
}

func (f *Fleet) cluster(name string) *fleetCluster {
	c, ok := f.clusters[name]
	if !ok {
		c = &fleetCluster{arch: map[string]contract.Platform{}}
		f.clusters[name] = c
		f.order = append(f.order, name)
	}
	return c
}

// AddNode adds a node of platform p to cluster.
func (f *Fleet) AddNode(cluster, node string, p contract.Platform) {
	c := f.cluster(cluster)
	c.arch[node] = p
	c.nodes = append(c.nodes, corev1.Node{
		TypeMeta:   metav1.TypeMeta{Kind: "Node", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: node, Labels: map[string]string{"kubernetes.io/os": p.OS, "kubernetes.io/arch": p.Architecture}},
		Status:     corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{OperatingSystem: p.OS, Architecture: p.Architecture}},
	})
}

// IDForm is how a container runtime writes a status imageID.
type IDForm int

const (
	// IDContainerd is "registry/repo@sha256:..." (containerd, CRI-O).
	IDContainerd IDForm = iota
	// IDDockerPullable is "docker-pullable://registry/repo@sha256:..."
	// (dockershim / cri-dockerd).
	IDDockerPullable
)

// Deployment adds replicas pods of a Deployment named name in namespace,
// scheduled on node, with one container running img pulled as ref — a
// reference by tag in the repository img was pushed to, with host as the
// registry's in-network name ("registry:5000/fixtures/alpine:3.18").
func (f *Fleet) Deployment(cluster, namespace, name, node string, replicas int, img fixture.Pushed, ref string, form IDForm) {
	c := f.cluster(cluster)
	p, ok := c.arch[node]
	if !ok {
		panic(fmt.Sprintf("fleet: cluster %s has no node %s", cluster, node))
	}
	repo, _, _ := strings.Cut(ref, "@")
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	imageID := repo + "@" + img.Digest
	if form == IDDockerPullable {
		imageID = "docker-pullable://" + imageID
	}
	// Object and container names are DNS labels: "alpine-3.18" → "alpine-3-18".
	name = strings.ReplaceAll(name, ".", "-")
	rs := name + "-" + shortHash(cluster + namespace + name)[:10]
	for i := range replicas {
		pod := corev1.Pod{
			TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
			ObjectMeta: metav1.ObjectMeta{
				Name:      fmt.Sprintf("%s-%s", rs, shortHash(fmt.Sprint(rs, i))[:5]),
				Namespace: namespace,
				Labels:    map[string]string{"app": name},
				OwnerReferences: []metav1.OwnerReference{{
					APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs, Controller: ptr(true),
				}},
			},
			Spec: corev1.PodSpec{
				NodeName:   node,
				Containers: []corev1.Container{{Name: name, Image: ref}},
			},
			Status: corev1.PodStatus{
				Phase: corev1.PodRunning,
				ContainerStatuses: []corev1.ContainerStatus{{
					Name: name, Image: ref, ImageID: imageID, Ready: true,
					State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
				}},
			},
		}
		c.pods = append(c.pods, pod)
	}
	f.pulled[contract.ImageKey{Digest: img.Digest, Platform: p}] = img
}

func ptr[T any](v T) *T { return &v }

func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// Clusters lists the cluster names in the order they were added.
func (f *Fleet) Clusters() []string { return slices.Clone(f.order) }

// Pods counts the pods of a cluster.
func (f *Fleet) Pods(cluster string) int { return len(f.clusters[cluster].pods) }

// ExpectedKeys are the unique digest+platform keys a dispatch must publish.
func (f *Fleet) ExpectedKeys() []contract.ImageKey {
	keys := make([]contract.ImageKey, 0, len(f.pulled))
	for k := range f.pulled {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b contract.ImageKey) int { return strings.Compare(a.String(), b.String()) })
	return keys
}

// Image returns the image behind an expected key.
func (f *Fleet) Image(k contract.ImageKey) (fixture.Pushed, bool) {
	p, ok := f.pulled[k]
	return p, ok
}

// FindingKey identifies one report row.
type FindingKey struct {
	Digest, Platform, VulnerabilityID, PkgName, InstalledVersion string
}

func (k FindingKey) String() string {
	return fmt.Sprintf("%s %s %s %s@%s", k.Digest[:19], k.Platform, k.VulnerabilityID, k.PkgName, k.InstalledVersion)
}

// ExpectedFindings are the report rows a scan with the base fixture DB
// must produce: every expected finding of every image, once per key.
// Images in skip (by digest) are left out (their scans are meant to fail).
func (f *Fleet) ExpectedFindings(skip ...string) map[FindingKey]fixture.Finding {
	return ExpectedFindings(f.pulled, skip...)
}

// ExpectedFindings are the report rows for images by key (see
// Fleet.ExpectedFindings).
func ExpectedFindings(images map[contract.ImageKey]fixture.Pushed, skip ...string) map[FindingKey]fixture.Finding {
	out := map[FindingKey]fixture.Finding{}
	for k, img := range images {
		if slices.Contains(skip, k.Digest) {
			continue
		}
		for _, fd := range img.Spec.Expected {
			out[FindingKey{k.Digest, k.Platform.String(), fd.VulnerabilityID, fd.PkgName, fd.InstalledVersion}] = fd
		}
	}
	return out
}

// WriteFiles writes each cluster's pods and nodes files under dir and
// returns dispatcher arguments naming them as they appear at mountDir inside
// a container (--inventory-file name=path --nodes-file name=path).
func (f *Fleet) WriteFiles(dir, mountDir string) ([]string, error) {
	var args []string
	for _, name := range f.order {
		c := f.clusters[name]
		pods := map[string]any{"apiVersion": "v1", "kind": "List", "metadata": map[string]string{"resourceVersion": ""}, "items": c.pods}
		nodes := map[string]any{"apiVersion": "v1", "kind": "List", "metadata": map[string]string{"resourceVersion": ""}, "items": c.nodes}
		for file, v := range map[string]any{name + "-pods.json": pods, name + "-nodes.json": nodes} {
			b, err := json.MarshalIndent(v, "", "  ")
			if err != nil {
				return nil, fmt.Errorf("fleet %s: %w", name, err)
			}
			if err := os.WriteFile(filepath.Join(dir, file), b, 0o644); err != nil {
				return nil, err
			}
		}
		args = append(args,
			"--inventory-file", name+"="+filepath.Join(mountDir, name+"-pods.json"),
			"--nodes-file", name+"="+filepath.Join(mountDir, name+"-nodes.json"))
	}
	return args, nil
}
