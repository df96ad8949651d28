package inventory

import (
	"context"
	"fmt"
	"sync"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"

	"github.com/fleetscan/fleetscan/internal/imageref"
	"github.com/fleetscan/fleetscan/internal/logging"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// TagResolver resolves the tag of a reference to the manifest digest it
// points at now, for the given platform.
type TagResolver interface {
	Resolve(ctx context.Context, ref imageref.Reference, platform contract.Platform) (string, error)
}

// Collector enumerates a cluster into inventory entries.
type Collector struct {
	Filter Filter
	// Resolver resolves the spec tag of entries the status gives no digest
	// for; nil leaves them unresolved.
	Resolver TagResolver
	// ResolveConcurrency bounds concurrent registry lookups (default 8).
	ResolveConcurrency int
	Log                *zap.Logger
}

// Result is what a Collector found in one cluster.
type Result struct {
	Cluster string
	// Pods counts the pods that passed the filter.
	Pods    int
	Entries []contract.InventoryEntry
	// Namespaces are the labels and annotations of the namespaces Entries
	// run in, when the source knows them (see NamespaceMeta).
	Namespaces []contract.Namespace
	// ContainerErrors counts containers whose image or imageID did not
	// parse (they are in Entries, unresolved or resolved from the status).
	ContainerErrors int
	// FromTag counts entries resolved through a registry lookup.
	FromTag int
	// UnknownPlatform counts pods whose node platform was unknown, so
	// contract.DefaultPlatform was assumed.
	UnknownPlatform int
}

// Unresolved counts entries without a digest.
func (r Result) Unresolved() int {
	n := 0
	for i := range r.Entries {
		if r.Entries[i].Digest == "" {
			n++
		}
	}
	return n
}

// maxLoggedContainerErrors bounds per-cluster warnings about unparsable
// images (one bad image in a DaemonSet would otherwise log once per node).
const maxLoggedContainerErrors = 10

// Collect enumerates src: nodes first (their platforms), then every pod
// page by page, then — when a Resolver is set — the spec tags of the
// entries that got no digest from their status, each unique tag once.
func (c *Collector) Collect(ctx context.Context, src Source) (Result, error) {
	log := c.Log
	if log == nil {
		log = zap.NewNop()
	}
	log = log.With(logging.Cluster(src.Cluster()))
	res := Result{Cluster: src.Cluster()}

	nodes, err := src.NodePlatforms(ctx)
	if err != nil {
		return res, fmt.Errorf("cluster %s: node platforms: %w", src.Cluster(), err)
	}
	b := newEntryBuilder(src.Cluster())
	attr := &attributor{lookup: src, onErr: func(kind, ns string, err error) {
		log.Warn("cannot look up owners; attributing pods by naming convention",
			zap.String("kind", kind), zap.String("namespace", ns), zap.Error(err))
	}}
	var pending []pendingTag
	err = src.EachPod(ctx, c.Filter.selector(), func(pod *corev1.Pod) error {
		if !c.Filter.Namespace(pod.Namespace) {
			return nil
		}
		res.Pods++
		platform, known := podPlatform(pod, nodes)
		if !known {
			res.UnknownPlatform++
		}
		wl := attr.workload(ctx, pod)
		wl.Name = b.intern(wl.Name)
		start := len(res.Entries)
		var (
			p    []pendingTag
			perr error
		)
		res.Entries, p, perr = b.podEntries(res.Entries, pod, platform, wl)
		for i := start; i < len(res.Entries); i++ {
			e := &res.Entries[i]
			e.Namespace, e.Node, e.Container = b.intern(e.Namespace), b.intern(e.Node), b.intern(e.Container)
		}
		pending = append(pending, p...)
		if perr != nil {
			for _, err := range unjoin(perr) {
				if res.ContainerErrors < maxLoggedContainerErrors {
					log.Warn("container image not parsable; inventoried as unresolved", zap.Error(err))
				}
				res.ContainerErrors++
			}
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("cluster %s: list pods: %w", src.Cluster(), err)
	}
	res.Namespaces = namespacesOf(ctx, src, res.Entries, log)
	if res.ContainerErrors > maxLoggedContainerErrors {
		log.Warn("more containers with unparsable images", zap.Int("total", res.ContainerErrors))
	}
	if res.UnknownPlatform > 0 {
		log.Info("pods on nodes of unknown platform; assumed "+contract.DefaultPlatform.String(),
			zap.Int("pods", res.UnknownPlatform), zap.Int("nodes_known", len(nodes)))
	}
	if len(pending) > 0 {
		if c.Resolver == nil {
			for _, p := range pending {
				res.Entries[p.index].Reason += "; tag resolution disabled"
			}
		} else {
			res.FromTag = c.resolve(ctx, log, res.Entries, pending)
		}
	}
	return res, ctx.Err()
}

// namespacesOf is the metadata of the namespaces entries run in, from a
// source that knows them. A listing that fails (namespaces list not
// granted) is a warning, not a failed cluster: the inventory then carries
// no namespace metadata and readers fall back to their other sources.
func namespacesOf(ctx context.Context, src Source, entries []contract.InventoryEntry, log *zap.Logger) []contract.Namespace {
	ns, ok := src.(NamespaceSource)
	if !ok {
		return nil
	}
	all, err := ns.Namespaces(ctx)
	if err != nil {
		log.Warn("cannot list namespaces; the inventory records no namespace labels or annotations", zap.Error(err))
		return nil
	}
	return usedNamespaces(all, entries)
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// resolve looks up each unique (tag, platform) of pending once, with bounded
// concurrency, and patches the entries. It returns how many were resolved.
func (c *Collector) resolve(ctx context.Context, log *zap.Logger, entries []contract.InventoryEntry, pending []pendingTag) int {
	type key struct {
		ref      string
		platform contract.Platform
	}
	type lookup struct {
		ref     imageref.Reference
		indexes []int
		digest  string
		err     error
	}
	byKey := map[key]*lookup{}
	var order []*lookup
	for _, p := range pending {
		k := key{p.ref.String(), entries[p.index].Platform}
		l := byKey[k]
		if l == nil {
			l = &lookup{ref: p.ref}
			byKey[k] = l
			order = append(order, l)
		}
		l.indexes = append(l.indexes, p.index)
	}
	n := c.ResolveConcurrency
	if n <= 0 {
		n = 8
	}
	work := make(chan *lookup)
	var wg sync.WaitGroup
	for range min(n, len(order)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for l := range work {
				l.digest, l.err = c.Resolver.Resolve(ctx, l.ref, entries[l.indexes[0]].Platform)
				if l.err == nil && !contract.ValidDigest(l.digest) {
					l.err = fmt.Errorf("registry returned %q, not a digest", l.digest)
				}
			}
		}()
	}
feed:
	for _, l := range order {
		select {
		case work <- l:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()

	resolved, failed := 0, 0
	for _, l := range order {
		for _, i := range l.indexes {
			e := &entries[i]
			switch {
			case l.err != nil:
				e.Reason += "; resolving the tag: " + l.err.Error()
			case l.digest == "":
				e.Reason += "; resolving the tag: not attempted (cancelled)"
			default:
				e.Digest, e.Resolution = l.digest, contract.ResolvedFromTag
				resolved++
			}
		}
		if l.err != nil {
			failed++
			log.Warn("cannot resolve image tag; entries stay unresolved", zap.String("image", l.ref.String()),
				zap.Int("containers", len(l.indexes)), zap.Error(l.err))
		}
	}
	log.Info("resolved image tags against their registries", zap.Int("tags", len(order)),
		zap.Int("failed", failed), zap.Int("containers", resolved))
	return resolved
}
