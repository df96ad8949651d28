package demo

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fleetscan/fleetscan/internal/fixture"
)

// images maps a sample's name to where it was pushed.
type images map[string]fixture.Pushed

func (im images) get(name string) fixture.Pushed {
	p, ok := im[name]
	if !ok {
		panic("demo: sample image " + name + " not pushed")
	}
	return p
}

// imageID renders what a runtime reports in containerStatuses[].imageID.
type runtimeForm int

const (
	dockerPullable runtimeForm = iota // docker-pullable://repo@sha256:… (dockershim / cri-dockerd)
	containerd                        // repo@sha256:… (containerd, CRI-O)
	localImageID                      // docker://sha256:<config digest>: a local ID, not pullable
	waiting                           // "": the container has not started
)

// container describes one container of a demo pod.
type container struct {
	name  string
	image string // sample name
	tag   string // "" pins the spec by digest
	form  runtimeForm
}

// podSpec describes a demo workload's pod.
type podSpec struct {
	namespace string
	kind      string // Deployment, StatefulSet, DaemonSet, CronJob, Pod
	name      string
	replicas  int
	node      string
	init      []container
	main      []container
	ephemeral []container
}

// clusterSpec is one demo cluster and its nodes (name → arch).
type clusterSpec struct {
	name  string
	nodes map[string]string
	pods  []podSpec
}

// fleet returns the demo's three clusters. withPython adds the workload that
// pass 2 deploys (its findings are new, so not yet breached).
func fleet(withPython bool) []clusterSpec {
	web := podSpec{namespace: "web", kind: "Deployment", name: "storefront", replicas: 3, node: "eu-1",
		init: []container{{name: "migrate", image: "alpine-3.18", tag: "3.18", form: dockerPullable}},
		main: []container{{name: "app", image: "node-app", tag: "1.0.0", form: containerd}}}
	prodEU := clusterSpec{name: "prod-eu", nodes: map[string]string{"eu-1": "amd64", "eu-arm-1": "arm64"}, pods: []podSpec{
		web,
		{namespace: "web", kind: "Deployment", name: "storefront-arm", replicas: 2, node: "eu-arm-1",
			main: []container{{name: "app", image: "node-app", tag: "1.0.0", form: containerd}}},
		{namespace: "payments", kind: "StatefulSet", name: "ledger", replicas: 2, node: "eu-1",
			main:      []container{{name: "db", image: "debian-12", tag: "12.1", form: dockerPullable}},
			ephemeral: []container{{name: "debugger", image: "alpine-curl", tag: "8.3.0", form: containerd}}},
		{namespace: "monitoring", kind: "DaemonSet", name: "node-agent", replicas: 2, node: "eu-1",
			main: []container{{name: "agent", image: "go-agent", tag: "", form: containerd}}},
		{namespace: "web", kind: "Deployment", name: "static", replicas: 2, node: "eu-1",
			main: []container{{name: "nginx", image: "static-site", tag: "", form: containerd}}},
	}}
	prodUS := clusterSpec{name: "prod-us", nodes: map[string]string{"us-1": "amd64"}, pods: []podSpec{
		{namespace: "web", kind: "Deployment", name: "storefront", replicas: 4, node: "us-1",
			init: []container{{name: "migrate", image: "alpine-3.18", tag: "3.18.0", form: containerd}},
			main: []container{{name: "app", image: "node-app", tag: "1.0.0", form: containerd}}},
		{namespace: "batch", kind: "CronJob", name: "nightly-export", replicas: 1, node: "us-1",
			main: []container{{name: "export", image: "alpine-curl", tag: "8.3.0", form: localImageID}}},
		{namespace: "kube-system", kind: "DaemonSet", name: "node-agent", replicas: 1, node: "us-1",
			main: []container{{name: "agent", image: "go-agent", tag: "", form: dockerPullable}}},
	}}
	staging := clusterSpec{name: "staging", nodes: map[string]string{"stg-1": "amd64"}, pods: []podSpec{
		{namespace: "web", kind: "Deployment", name: "storefront", replicas: 1, node: "stg-1",
			main: []container{{name: "app", image: "node-app", tag: "1.0.0", form: dockerPullable}}},
		{namespace: "tools", kind: "Pod", name: "toolbox", replicas: 1, node: "stg-1",
			main: []container{{name: "shell", image: "alpine-3.18", tag: "3.18", form: waiting}}},
		{namespace: "data", kind: "StatefulSet", name: "warehouse", replicas: 1, node: "stg-1",
			main: []container{{name: "db", image: "debian-12", tag: "12.1", form: containerd}}},
	}}
	if withPython {
		api := podSpec{namespace: "payments", kind: "Deployment", name: "risk-api", replicas: 2, node: "eu-1",
			main: []container{{name: "api", image: "python-app", tag: "2.0.0", form: containerd}}}
		prodEU.pods = append(prodEU.pods, api)
		api.node = "stg-1"
		api.replicas = 1
		staging.pods = append(staging.pods, api)
	}
	return []clusterSpec{prodEU, prodUS, staging}
}

// writeInventory writes cluster's pods (kubectl get pods -A -o json) and
// nodes (kubectl get nodes -o json) into dir and returns their paths.
func writeInventory(dir string, c clusterSpec, im images) (podsPath, nodesPath string, err error) {
	pods := corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "List", APIVersion: "v1"}}
	for _, ps := range c.pods {
		for i := range ps.replicas {
			pods.Items = append(pods.Items, pod(c, ps, i, im))
		}
	}
	nodes := corev1.NodeList{TypeMeta: metav1.TypeMeta{Kind: "List", APIVersion: "v1"}}
	for name, arch := range c.nodes {
		nodes.Items = append(nodes.Items, corev1.Node{
			TypeMeta:   metav1.TypeMeta{Kind: "Node", APIVersion: "v1"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelOSStable: "linux", corev1.LabelArchStable: arch}},
		})
	}
	podsPath = filepath.Join(dir, c.name+".json")
	nodesPath = filepath.Join(dir, c.name+"-nodes.json")
	if err := writeJSON(podsPath, pods); err != nil {
		return "", "", err
	}
	if err := writeJSON(nodesPath, nodes); err != nil {
		return "", "", err
	}
	return podsPath, nodesPath, nil
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func pod(c clusterSpec, ps podSpec, i int, im images) corev1.Pod {
	name := fmt.Sprintf("%s-%d", ps.name, i)
	meta := metav1.ObjectMeta{Namespace: ps.namespace, Labels: map[string]string{"app": ps.name}}
	ctrl := true
	owner := func(apiVersion, kind, name string) []metav1.OwnerReference {
		return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, UID: "00000000-0000-0000-0000-000000000000", Controller: &ctrl}}
	}
	switch ps.kind {
	case "Deployment":
		hash := "7d9f8b6c5"
		rs := ps.name + "-" + hash
		name = fmt.Sprintf("%s-%05x", rs, 0xa1b2c+i)
		meta.Labels["pod-template-hash"] = hash
		meta.OwnerReferences = owner("apps/v1", "ReplicaSet", rs)
	case "StatefulSet":
		meta.OwnerReferences = owner("apps/v1", "StatefulSet", ps.name)
	case "DaemonSet":
		name = fmt.Sprintf("%s-%05x", ps.name, 0xd4e5f+i)
		meta.OwnerReferences = owner("apps/v1", "DaemonSet", ps.name)
	case "CronJob":
		job := ps.name + "-29412360"
		name = fmt.Sprintf("%s-%05x", job, 0xb7c8d+i)
		meta.OwnerReferences = owner("batch/v1", "Job", job)
	}
	meta.Name = name
	p := corev1.Pod{
		TypeMeta:   metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: meta,
		Spec:       corev1.PodSpec{NodeName: ps.node},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, ct := range ps.init {
		spec, st := containerOf(ct, im, true)
		p.Spec.InitContainers = append(p.Spec.InitContainers, spec)
		p.Status.InitContainerStatuses = append(p.Status.InitContainerStatuses, st)
	}
	for _, ct := range ps.main {
		spec, st := containerOf(ct, im, false)
		p.Spec.Containers = append(p.Spec.Containers, spec)
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, st)
	}
	for _, ct := range ps.ephemeral {
		spec, st := containerOf(ct, im, false)
		p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: spec.Name, Image: spec.Image}})
		p.Status.EphemeralContainerStatuses = append(p.Status.EphemeralContainerStatuses, st)
	}
	return p
}

func containerOf(ct container, im images, init bool) (corev1.Container, corev1.ContainerStatus) {
	pushed := im.get(ct.image)
	ref := pushed.Repository + "@" + pushed.Digest
	if ct.tag != "" {
		ref = pushed.Repository + ":" + ct.tag
	}
	st := corev1.ContainerStatus{Name: ct.name, Image: ref}
	switch ct.form {
	case dockerPullable:
		st.ImageID = "docker-pullable://" + pushed.Repository + "@" + pushed.Digest
	case containerd:
		st.ImageID = pushed.Repository + "@" + pushed.Digest
	case localImageID:
		// A local image ID names the image config, not the manifest: the
		// dispatcher must not scan it and resolves the tag instead.
		st.ImageID = "docker://sha256:" + strings.Repeat("5e", 32)
	case waiting:
		st.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
	}
	if ct.form != waiting {
		if init {
			st.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}}
		} else {
			st.Ready, st.Started = true, ptr(true)
			st.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
		}
	}
	return corev1.Container{Name: ct.name, Image: ref}, st
}

func ptr[T any](v T) *T { return &v }
