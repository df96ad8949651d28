package inventory

import (
	"context"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fleetscan/fleetscan/pkg/contract"
)

// NamespaceSource is implemented by sources that know their namespaces'
// labels and annotations. A source without it records none.
type NamespaceSource interface {
	// Namespaces returns the metadata of every namespace the source knows,
	// by name.
	Namespaces(ctx context.Context) (map[string]contract.Namespace, error)
}

// lastApplied is the annotation kubectl apply stores the whole object in:
// large, and never what a reader of namespace metadata wants.
const lastApplied = corev1.LastAppliedConfigAnnotation

// NamespaceMeta is what an inventory records of a namespace: every label,
// and every annotation but kubectl's last-applied-configuration and values
// longer than contract.MaxAnnotationValue bytes.
func NamespaceMeta(name string, labels, annotations map[string]string) contract.Namespace {
	ns := contract.Namespace{Name: name}
	if len(labels) > 0 {
		ns.Labels = maps.Clone(labels)
	}
	for k, v := range annotations {
		if k == lastApplied || len(v) > contract.MaxAnnotationValue {
			continue
		}
		if ns.Annotations == nil {
			ns.Annotations = map[string]string{}
		}
		ns.Annotations[k] = v
	}
	return ns
}

// Namespaces implements NamespaceSource: one paginated list of the
// cluster's namespaces (no GET).
func (s *KubeSource) Namespaces(ctx context.Context) (map[string]contract.Namespace, error) {
	out := map[string]contract.Namespace{}
	err := paginate(ctx, s, "namespaces", metav1.ListOptions{Limit: s.pageSize}, func(ctx context.Context, o metav1.ListOptions) (*corev1.NamespaceList, error) {
		return s.client.CoreV1().Namespaces().List(ctx, o)
	}, func(l *corev1.NamespaceList) (string, error) {
		for i := range l.Items {
			m := &l.Items[i].ObjectMeta
			out[m.Name] = NamespaceMeta(m.Name, m.Labels, m.Annotations)
		}
		return l.Continue, nil
	})
	return out, err
}

// usedNamespaces keeps, in name order, the metadata of the used
// namespaces: an inventory carries no namespace it has no pod in.
func usedNamespaces(all map[string]contract.Namespace, used map[string]bool) []contract.Namespace {
	var out []contract.Namespace
	for name, ns := range all {
		if used[name] {
			out = append(out, ns)
		}
	}
	slices.SortFunc(out, func(a, b contract.Namespace) int { return strings.Compare(a.Name, b.Name) })
	return out
}
