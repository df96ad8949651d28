// Package inventory enumerates what a Kubernetes cluster really runs: every
// container (regular, init and ephemeral) of every pod, the manifest digest
// the kubelet pulled for it, the platform of its node and the workload that
// owns it.
//
// Pods come from a Source: the live API through client-go (in-cluster or
// kubeconfig contexts, listed page by page with Limit/Continue so memory
// stays bounded), or a file holding what `kubectl get pods -A -o json`
// prints. A container's digest comes, in order of preference, from a spec
// image pinned by digest, from the repo digest in its status imageID, or —
// when the status has none (container waiting, local image ID, CRI-O
// internal ID) — from resolving the spec tag against its registry. An entry
// whose digest cannot be determined is kept with its reason, never dropped.
//
// # RBAC
//
// Against a live cluster the dispatcher needs exactly these permissions, in
// a ClusterRole bound to its identity:
//
//   - apiGroups: [""]      resources: [pods]        verbs: [list]
//   - apiGroups: [""]      resources: [nodes]       verbs: [list]
//   - apiGroups: [apps]    resources: [replicasets] verbs: [get, list]
//   - apiGroups: [batch]   resources: [jobs]        verbs: [get, list]
//   - apiGroups: [""]      resources: [namespaces]  verbs: [list]
//
// Pods are listed across all namespaces (namespace filters apply on the
// client); nodes, listed once, give each pod's platform; ReplicaSets and
// Jobs attribute pods to their Deployment or CronJob: listed once per
// namespace, and got by name when one was created or deleted after its
// namespace was listed; namespaces, listed once, give the labels and
// annotations the inventory records of the namespaces its pods run in (a
// refused namespace list only loses those). deploy/'s ClusterRole grants
// exactly these verbs, as a test checks against a real API server's audit
// log.
package inventory

import (
	"context"
	"errors"
	"fmt"
	"path"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/fleetscan/fleetscan/pkg/contract"
)

// Source enumerates the pods of one cluster and answers the lookups needed
// to attribute them.
type Source interface {
	// Cluster names the cluster (the kubeconfig context, --cluster-name, or
	// the inventory file's name).
	Cluster() string
	// EachPod calls fn for every pod whose labels match selector, streaming
	// them page by page. fn must not retain the pod after it returns.
	EachPod(ctx context.Context, selector labels.Selector, fn func(*corev1.Pod) error) error
	// NodePlatforms returns the platform of every known node by name. A
	// source without node information returns an empty map.
	NodePlatforms(ctx context.Context) (map[string]contract.Platform, error)
	// ControllerOf returns the controlling owner of the ReplicaSet or Job
	// kind/namespace/name: ref is nil when the object has no controller.
	// known is false when the object cannot be looked up (deleted since,
	// or a source that has no owners); the caller then infers the owner
	// from naming conventions.
	ControllerOf(ctx context.Context, kind, namespace, name string) (ref *metav1.OwnerReference, known bool, err error)
}

// Filter selects the pods to enumerate.
type Filter struct {
	// IncludeNamespaces are globs (path.Match syntax); empty means all.
	IncludeNamespaces []string
	// ExcludeNamespaces are globs; they win over includes.
	ExcludeNamespaces []string
	// Selector filters pods by label; nil or empty matches every pod.
	Selector labels.Selector
}

// Validate checks the globs.
func (f Filter) Validate() error {
	var errs []error
	for flag, globs := range map[string][]string{"--include-namespace": f.IncludeNamespaces, "--exclude-namespace": f.ExcludeNamespaces} {
		for _, g := range globs {
			if _, err := path.Match(g, ""); err != nil {
				errs = append(errs, fmt.Errorf("%s %q: %w", flag, g, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Namespace reports whether pods of namespace ns are enumerated.
func (f Filter) Namespace(ns string) bool {
	for _, g := range f.ExcludeNamespaces {
		if ok, _ := path.Match(g, ns); ok {
			return false
		}
	}
	if len(f.IncludeNamespaces) == 0 {
		return true
	}
	for _, g := range f.IncludeNamespaces {
		if ok, _ := path.Match(g, ns); ok {
			return true
		}
	}
	return false
}

func (f Filter) selector() labels.Selector {
	if f.Selector == nil {
		return labels.Everything()
	}
	return f.Selector
}

// ClusterFailure is a cluster that could not be enumerated.
type ClusterFailure struct {
	Cluster string
	Err     error
}

func (f ClusterFailure) Error() string { return fmt.Sprintf("cluster %s: %v", f.Cluster, f.Err) }

func (f ClusterFailure) Unwrap() error { return f.Err }

// ContainerError reports a container whose image strings could not be
// parsed. The container is still inventoried, as unresolved.
type ContainerError struct {
	Cluster, Namespace, Pod, Container string
	Err                                error
}

func (e *ContainerError) Error() string {
	cl := ""
	if e.Cluster != "" {
		cl = "cluster " + e.Cluster + ": "
	}
	return fmt.Sprintf("%spod %s/%s container %s: %v", cl, e.Namespace, e.Pod, e.Container, e.Err)
}

func (e *ContainerError) Unwrap() error { return e.Err }
