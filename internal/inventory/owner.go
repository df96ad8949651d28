package inventory

import (
	"context"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fleetscan/fleetscan/pkg/contract"
)

// Workload kinds.
const (
	KindPod         = "Pod"
	KindReplicaSet  = "ReplicaSet"
	KindDeployment  = "Deployment"
	KindStatefulSet = "StatefulSet"
	KindDaemonSet   = "DaemonSet"
	KindJob         = "Job"
	KindCronJob     = "CronJob"
)

// ownerLookup is the part of a Source attribution needs.
type ownerLookup interface {
	ControllerOf(ctx context.Context, kind, namespace, name string) (*metav1.OwnerReference, bool, error)
}

// attributor attributes pods to workloads. Lookups that fail are reported
// once per kind and namespace through onErr, then answered by inference.
type attributor struct {
	lookup ownerLookup
	onErr  func(kind, namespace string, err error)
	failed map[string]bool
}

// workload returns the workload owning pod: the Deployment of its
// ReplicaSet, the CronJob of its Job, its StatefulSet or DaemonSet (or any
// other controller) directly, or the pod itself when it has no controller.
func (a *attributor) workload(ctx context.Context, pod *corev1.Pod) contract.Workload {
	ref := metav1.GetControllerOf(pod)
	if ref == nil {
		return contract.Workload{Kind: KindPod, Name: pod.Name}
	}
	switch {
	case ref.Kind == KindReplicaSet && isGroup(ref.APIVersion, "apps"):
		return a.parent(ctx, pod, ref.Kind, ref.Name, inferDeployment)
	case ref.Kind == KindJob && isGroup(ref.APIVersion, "batch"):
		return a.parent(ctx, pod, ref.Kind, ref.Name, inferCronJob)
	}
	return contract.Workload{Kind: ref.Kind, Name: ref.Name}
}

func (a *attributor) parent(ctx context.Context, pod *corev1.Pod, kind, name string, infer func(*corev1.Pod, string) (contract.Workload, bool)) contract.Workload {
	if a.lookup != nil && !a.failed[kind+"/"+pod.Namespace] {
		owner, known, err := a.lookup.ControllerOf(ctx, kind, pod.Namespace, name)
		switch {
		case err != nil:
			if a.failed == nil {
				a.failed = map[string]bool{}
			}
			a.failed[kind+"/"+pod.Namespace] = true
			if a.onErr != nil {
				a.onErr(kind, pod.Namespace, err)
			}
		case known && owner != nil:
			return contract.Workload{Kind: owner.Kind, Name: owner.Name}
		case known:
			return contract.Workload{Kind: kind, Name: name}
		}
	}
	if wl, ok := infer(pod, name); ok {
		return wl
	}
	return contract.Workload{Kind: kind, Name: name}
}

func isGroup(apiVersion, group string) bool {
	g, _, found := strings.Cut(apiVersion, "/")
	return found && g == group
}

// INFERENCE FROM NAMING CONVENTIONS — used only when the ReplicaSet or Job
// cannot be looked up (inventory files carry pods only, or the object was
// deleted). The results are marked Inferred.

// inferDeployment: the Deployment controller names a ReplicaSet
// "<deployment>-<pod-template-hash>" and labels its pods with that hash, so
// a ReplicaSet whose name ends in "-<the pod's hash>" belongs to the
// Deployment named by the rest.
func inferDeployment(pod *corev1.Pod, rs string) (contract.Workload, bool) {
	hash := pod.Labels["pod-template-hash"]
	if hash == "" || !strings.HasSuffix(rs, "-"+hash) || len(rs) == len(hash)+1 {
		return contract.Workload{}, false
	}
	return contract.Workload{Kind: KindDeployment, Name: strings.TrimSuffix(rs, "-"+hash), Inferred: true}, true
}

// minCronSuffix is the least number of digits of a CronJob's Job suffix: the
// CronJob controller names Jobs "<cronjob>-<scheduled time in minutes since
// the Unix epoch>", eight digits since 1970-07 (and until 2160).
const minCronSuffix = 8

// inferCronJob: a Job named "<name>-<8+ digits>" was created by the CronJob
// <name>. A Job with a shorter numeric suffix ("migrate-2") is left a Job.
func inferCronJob(_ *corev1.Pod, job string) (contract.Workload, bool) {
	i := strings.LastIndexByte(job, '-')
	if i <= 0 || len(job)-i-1 < minCronSuffix {
		return contract.Workload{}, false
	}
	for _, c := range job[i+1:] {
		if c < '0' || c > '9' {
			return contract.Workload{}, false
		}
	}
	return contract.Workload{Kind: KindCronJob, Name: job[:i], Inferred: true}, true
}
