package inventory

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/fleetscan/fleetscan/internal/backoff"
	"github.com/fleetscan/fleetscan/internal/logging"
	"github.com/fleetscan/fleetscan/internal/version"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// DefaultPageSize is how many objects one List call returns.
const DefaultPageSize = 500

// KubeSource enumerates a live cluster through the Kubernetes API. Pods,
// nodes, ReplicaSets and Jobs are listed page by page (Limit/Continue), so
// memory holds one page at a time. Owner lookups are cached: the first
// ReplicaSet (or Job) asked for in a namespace lists that namespace's
// ReplicaSets (Jobs) once, keeping only each one's controller. A KubeSource
// serves one Collect at a time.
type KubeSource struct {
	cluster  string
	client   kubernetes.Interface
	pageSize int64
	log      *zap.Logger
	// owners caches controllers by "kind/namespace", then object name.
	owners map[string]map[string]owner
	// Retries of a failed page fetch for transient errors.
	retries int
	wait    time.Duration
}

// owner is a cached controller reference (zero when there is none);
// missing marks an object that was not found.
type owner struct {
	apiVersion, kind, name string
	missing                bool
}

// NewKubeSource returns a source over client. pageSize <= 0 means
// DefaultPageSize.
func NewKubeSource(cluster string, client kubernetes.Interface, pageSize int64, log *zap.Logger) *KubeSource {
	if pageSize <= 0 {
		pageSize = DefaultPageSize
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &KubeSource{
		cluster: cluster, client: client, pageSize: pageSize, log: log.With(logging.Cluster(cluster)),
		owners: map[string]map[string]owner{}, retries: 3, wait: 500 * time.Millisecond,
	}
}

// NewKubeSourceForConfig builds a client for cfg — protobuf on the wire, a
// client-side rate limit suited to paging (50 QPS, bursts of 100) unless
// cfg sets one — and returns a source over it.
func NewKubeSourceForConfig(cluster string, cfg *rest.Config, pageSize int64, log *zap.Logger) (*KubeSource, error) {
	cfg = rest.CopyConfig(cfg)
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 50, 100
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Minute
	}
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cfg.UserAgent = "fleetscan-dispatcher/" + version.Version
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: client for %s: %w", cluster, cfg.Host, err)
	}
	return NewKubeSource(cluster, cs, pageSize, log), nil
}

// Cluster implements Source.
func (s *KubeSource) Cluster() string { return s.cluster }

// EachPod implements Source: it lists pods of all namespaces, pageSize at a
// time, passing the selector to the API server.
func (s *KubeSource) EachPod(ctx context.Context, selector labels.Selector, fn func(*corev1.Pod) error) error {
	opts := metav1.ListOptions{Limit: s.pageSize}
	if selector != nil && !selector.Empty() {
		opts.LabelSelector = selector.String()
	}
	return paginate(ctx, s, "pods", opts, func(ctx context.Context, o metav1.ListOptions) (*corev1.PodList, error) {
		return s.client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, o)
	}, func(l *corev1.PodList) (string, error) {
		for i := range l.Items {
			if err := fn(&l.Items[i]); err != nil {
				return "", err
			}
		}
		return l.Continue, nil
	})
}

// NodePlatforms implements Source.
func (s *KubeSource) NodePlatforms(ctx context.Context) (map[string]contract.Platform, error) {
	out := map[string]contract.Platform{}
	err := paginate(ctx, s, "nodes", metav1.ListOptions{Limit: s.pageSize}, func(ctx context.Context, o metav1.ListOptions) (*corev1.NodeList, error) {
		return s.client.CoreV1().Nodes().List(ctx, o)
	}, func(l *corev1.NodeList) (string, error) {
		for i := range l.Items {
			if p, ok := NodePlatform(&l.Items[i]); ok {
				out[l.Items[i].Name] = p
			}
		}
		return l.Continue, nil
	})
	return out, err
}

// ControllerOf implements Source for ReplicaSets and Jobs.
func (s *KubeSource) ControllerOf(ctx context.Context, kind, namespace, name string) (*metav1.OwnerReference, bool, error) {
	ck := kind + "/" + namespace
	byName, ok := s.owners[ck]
	if !ok {
		var err error
		byName, err = s.listOwners(ctx, kind, namespace)
		if err != nil {
			return nil, false, err
		}
		s.owners[ck] = byName
	}
	o, ok := byName[name]
	if !ok {
		// Created after the namespace was listed, or deleted: get it.
		meta, err := s.getMeta(ctx, kind, namespace, name)
		switch {
		case apierrors.IsNotFound(err):
			o = owner{missing: true}
		case err != nil:
			return nil, false, fmt.Errorf("get %s %s/%s: %w", kind, namespace, name, err)
		default:
			o = controllerOf(meta)
		}
		byName[name] = o
	}
	if o.missing {
		return nil, false, nil
	}
	if o.kind == "" {
		return nil, true, nil
	}
	return &metav1.OwnerReference{APIVersion: o.apiVersion, Kind: o.kind, Name: o.name}, true, nil
}

func controllerOf(meta metav1.Object) owner {
	if ref := metav1.GetControllerOfNoCopy(meta); ref != nil {
		return owner{apiVersion: ref.APIVersion, kind: ref.Kind, name: ref.Name}
	}
	return owner{}
}

func (s *KubeSource) listOwners(ctx context.Context, kind, namespace string) (map[string]owner, error) {
	out := map[string]owner{}
	opts := metav1.ListOptions{Limit: s.pageSize}
	var err error
	switch kind {
	case KindReplicaSet:
		err = paginate(ctx, s, "replicasets", opts, func(ctx context.Context, o metav1.ListOptions) (*ownerPage, error) {
			l, err := s.client.AppsV1().ReplicaSets(namespace).List(ctx, o)
			if err != nil {
				return nil, err
			}
			al := &ownerPage{cont: l.Continue}
			for i := range l.Items {
				al.items = append(al.items, named{l.Items[i].Name, controllerOf(&l.Items[i])})
			}
			return al, nil
		}, collectOwners(out))
	case KindJob:
		err = paginate(ctx, s, "jobs", opts, func(ctx context.Context, o metav1.ListOptions) (*ownerPage, error) {
			l, err := s.client.BatchV1().Jobs(namespace).List(ctx, o)
			if err != nil {
				return nil, err
			}
			al := &ownerPage{cont: l.Continue}
			for i := range l.Items {
				al.items = append(al.items, named{l.Items[i].Name, controllerOf(&l.Items[i])})
			}
			return al, nil
		}, collectOwners(out))
	default:
		return nil, fmt.Errorf("owner lookup of kind %q is not supported", kind)
	}
	if err != nil {
		return nil, fmt.Errorf("list %ss in %s: %w", kind, namespace, err)
	}
	return out, nil
}

// ownerPage is the part of a page of ReplicaSets or Jobs the owner cache
// keeps: names and controllers.
type ownerPage struct {
	items []named
	cont  string
}

type named struct {
	name  string
	owner owner
}

func collectOwners(out map[string]owner) func(*ownerPage) (string, error) {
	return func(l *ownerPage) (string, error) {
		for _, it := range l.items {
			out[it.name] = it.owner
		}
		return l.cont, nil
	}
}

func (s *KubeSource) getMeta(ctx context.Context, kind, namespace, name string) (metav1.Object, error) {
	switch kind {
	case KindReplicaSet:
		return s.client.AppsV1().ReplicaSets(namespace).Get(ctx, name, metav1.GetOptions{})
	case KindJob:
		return s.client.BatchV1().Jobs(namespace).Get(ctx, name, metav1.GetOptions{})
	}
	return nil, fmt.Errorf("owner lookup of kind %q is not supported", kind)
}

// paginate calls list until the server returns no continue token, passing
// every page to each. Transient errors are retried with backoff; an expired
// continue token that comes with a fresh one (the server's "inconsistent
// continue") is followed with a warning, since restarting would hand the
// same pods to each twice.
func paginate[L any](ctx context.Context, s *KubeSource, what string, opts metav1.ListOptions,
	list func(context.Context, metav1.ListOptions) (L, error), each func(L) (string, error)) error {
	for page := 1; ; page++ {
		var (
			l   L
			err error
		)
		for attempt := 1; ; attempt++ {
			l, err = list(ctx, opts)
			if err == nil || attempt > s.retries || !transient(err) || ctx.Err() != nil {
				break
			}
			d := backoff.Exponential(s.wait, 10*time.Second, attempt)
			s.log.Warn("list failed; retrying", zap.String("resource", what), zap.Int("page", page),
				logging.Attempt(attempt), zap.Duration("in", d), zap.Error(err))
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
		if err != nil {
			var st apierrors.APIStatus
			if apierrors.IsResourceExpired(err) && errors.As(err, &st) && st.Status().ListMeta.Continue != "" {
				s.log.Warn("continue token expired; continuing from the server's fresh token (the listing may be inconsistent)",
					zap.String("resource", what), zap.Int("page", page))
				opts.Continue = st.Status().ListMeta.Continue
				continue
			}
			return fmt.Errorf("list %s (page %d): %w", what, page, err)
		}
		next, err := each(l)
		if err != nil {
			return err
		}
		if next == "" {
			return nil
		}
		opts.Continue = next
	}
}

func transient(err error) bool {
	if apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsInternalError(err) || apierrors.IsUnexpectedServerError(err) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
