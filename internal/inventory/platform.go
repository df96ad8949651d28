package inventory

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/fleetscan/fleetscan/pkg/contract"
)

// Node labels read for a node's platform. Kubernetes has no well-known label
// for the CPU variant (arm/v7, arm64/v8): fleetscan reads VariantLabel when
// an operator sets it and never assumes a variant otherwise.
const (
	LabelOS       = corev1.LabelOSStable   // kubernetes.io/os
	LabelArch     = corev1.LabelArchStable // kubernetes.io/arch
	labelOSBeta   = "beta.kubernetes.io/os"
	labelArchBeta = "beta.kubernetes.io/arch"
	VariantLabel  = "fleetscan.io/arch-variant"
)

// NodePlatform derives a node's platform from its labels, falling back to
// the OS and architecture the kubelet reports in the node status. ok is
// false when neither names an architecture.
func NodePlatform(node *corev1.Node) (p contract.Platform, ok bool) {
	p.OS = firstNonEmpty(node.Labels[LabelOS], node.Labels[labelOSBeta])
	p.Architecture = firstNonEmpty(node.Labels[LabelArch], node.Labels[labelArchBeta])
	p.OS = firstNonEmpty(p.OS, node.Status.NodeInfo.OperatingSystem)
	p.Architecture = firstNonEmpty(p.Architecture, node.Status.NodeInfo.Architecture)
	if p.Architecture == "" {
		return contract.Platform{}, false
	}
	if p.OS == "" {
		p.OS = contract.DefaultPlatform.OS
	}
	p.Variant = node.Labels[VariantLabel]
	return p, true
}

// podPlatform is the platform of the pod's node; for a pod not scheduled yet
// or on a node the source does not know, the kubernetes.io/os and
// kubernetes.io/arch in its nodeSelector, else contract.DefaultPlatform.
// known is false when the default was used.
func podPlatform(pod *corev1.Pod, nodes map[string]contract.Platform) (p contract.Platform, known bool) {
	if pod.Spec.NodeName != "" {
		if p, ok := nodes[pod.Spec.NodeName]; ok {
			return p, true
		}
	}
	if arch := pod.Spec.NodeSelector[LabelArch]; arch != "" {
		os := firstNonEmpty(pod.Spec.NodeSelector[LabelOS], contract.DefaultPlatform.OS)
		return contract.Platform{OS: os, Architecture: arch, Variant: pod.Spec.NodeSelector[VariantLabel]}, true
	}
	return contract.DefaultPlatform, false
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
