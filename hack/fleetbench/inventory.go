package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// writeInventories writes each cluster's pods (`kubectl get pods -A -o
// json`) and nodes into dir, with image references on host (the counting
// proxy), and returns the dispatcher's --inventory-file / --nodes-file
// values.
func (f *fleet) writeInventories(dir, host string) (podsFiles, nodesFiles []string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	ctrl := true
	for _, c := range f.clusters {
		pods := corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "List", APIVersion: "v1"}}
		for di, d := range c.deployments {
			rs := fmt.Sprintf("%s-%08x", d.name, di)
			repo := host + "/" + d.image.Repository
			for i := range d.replicas {
				node := c.nodes[(di+i)%len(c.nodes)]
				pods.Items = append(pods.Items, corev1.Pod{
					TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
					ObjectMeta: metav1.ObjectMeta{
						Name: fmt.Sprintf("%s-%05x", rs, i), Namespace: d.namespace,
						Labels:          map[string]string{"app": d.name},
						OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs, UID: "00000000-0000-0000-0000-000000000000", Controller: &ctrl}},
					},
					Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: repo + ":" + d.tag}}},
					Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{
						Name: "app", Image: repo + ":" + d.tag, ImageID: repo + "@" + d.image.Digest,
						Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
					}}},
				})
			}
		}
		nodes := corev1.NodeList{TypeMeta: metav1.TypeMeta{Kind: "List", APIVersion: "v1"}}
		for _, n := range c.nodes {
			nodes.Items = append(nodes.Items, corev1.Node{
				TypeMeta:   metav1.TypeMeta{Kind: "Node", APIVersion: "v1"},
				ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{corev1.LabelOSStable: "linux", corev1.LabelArchStable: "amd64"}},
			})
		}
		pp := filepath.Join(dir, c.name+".json")
		np := filepath.Join(dir, c.name+"-nodes.json")
		if err := writeJSON(pp, pods); err != nil {
			return nil, nil, err
		}
		if err := writeJSON(np, nodes); err != nil {
			return nil, nil, err
		}
		podsFiles = append(podsFiles, c.name+"="+pp)
		nodesFiles = append(nodesFiles, c.name+"="+np)
	}
	return podsFiles, nodesFiles, nil
}

// tagRefs returns the unique tag references the pods run, sorted: what the
// tutorial's loop scans one by one.
func (f *fleet) tagRefs(host string) map[string]string {
	out := map[string]string{}
	for _, c := range f.clusters {
		for _, d := range c.deployments {
			out[host+"/"+d.image.Repository+":"+d.tag] = d.image.Digest
		}
	}
	return out
}

func writeJSON(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
