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
	// ChunkSize is about how many entries Stream hands over at a time
	// (default contract.DefaultInventoryChunk).
	ChunkSize int
	Log       *zap.Logger
}

// Result is what a Collector found in one cluster.
type Result struct {
	Cluster string
	// Pods counts the pods that passed the filter.
	Pods int
	// Entries are the entries Collect found (Stream hands them over
	// instead and leaves Entries empty).
	Entries []contract.InventoryEntry
	// Containers counts the entries; NoDigest those without a digest.
	Containers, NoDigest int
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
func (r Result) Unresolved() int { return r.NoDigest }

// maxLoggedContainerErrors bounds per-cluster warnings about unparsable
// images (one bad image in a DaemonSet would otherwise log once per node).
const maxLoggedContainerErrors = 10

// Collect enumerates src into a Result holding every entry (Stream does
// the same without holding them).
func (c *Collector) Collect(ctx context.Context, src Source) (Result, error) {
	var entries []contract.InventoryEntry
	res, err := c.Stream(ctx, src, func(chunk []contract.InventoryEntry) error {
		entries = append(entries, chunk...)
		return nil
	})
	res.Entries = entries
	return res, err
}

// Stream enumerates src: nodes first (their platforms), then every pod
// page by page, handing the entries to emit a chunk at a time, in pod
// order. Before a chunk is handed over — when a Resolver is set — the spec
// tags of its entries that got no digest from their status are resolved,
// each unique tag once per cluster. Memory is bounded by a chunk, the
// parse caches and the tags looked up, not by the cluster. emit must not
// retain the slice; its error stops the enumeration and is returned.
func (c *Collector) Stream(ctx context.Context, src Source, emit func([]contract.InventoryEntry) error) (Result, error) {
	log := c.Log
	if log == nil {
		log = zap.NewNop()
	}
	log = log.With(logging.Cluster(src.Cluster()))
	nodes, err := src.NodePlatforms(ctx)
	if err != nil {
		return Result{Cluster: src.Cluster()}, fmt.Errorf("cluster %s: node platforms: %w", src.Cluster(), err)
	}
	s := newStreamer(c, src, log, emit)
	attr := &attributor{lookup: src, onErr: func(kind, ns string, err error) {
		log.Warn("cannot look up owners; attributing pods by naming convention",
			zap.String("kind", kind), zap.String("namespace", ns), zap.Error(err))
	}}
	err = src.EachPod(ctx, c.Filter.selector(), func(pod *corev1.Pod) error {
		if !c.Filter.Namespace(pod.Namespace) {
			return nil
		}
		return s.pod(ctx, pod, nodes, attr)
	})
	if err == nil {
		err = s.flush(ctx)
	}
	switch {
	case s.emitErr != nil:
		return s.res, s.emitErr
	case err != nil:
		return s.res, fmt.Errorf("cluster %s: list pods: %w", src.Cluster(), err)
	}
	s.logSummary(len(nodes))
	return s.res, ctx.Err()
}

// streamer is the state of one Stream.
type streamer struct {
	c       *Collector
	log     *zap.Logger
	res     Result
	b       *entryBuilder
	size    int
	buf     []contract.InventoryEntry
	pending []pendingTag
	tags    map[tagKey]*tagLookup
	emit    func([]contract.InventoryEntry) error
	emitErr error
}

func newStreamer(c *Collector, src Source, log *zap.Logger, emit func([]contract.InventoryEntry) error) *streamer {
	size := c.ChunkSize
	if size <= 0 {
		size = contract.DefaultInventoryChunk
	}
	return &streamer{c: c, log: log, res: Result{Cluster: src.Cluster()}, b: newEntryBuilder(src.Cluster()), size: size,
		buf: make([]contract.InventoryEntry, 0, size+8), tags: map[tagKey]*tagLookup{}, emit: emit}
}

// pod appends the entries of one pod, handing the chunk over when full.
func (s *streamer) pod(ctx context.Context, pod *corev1.Pod, nodes map[string]contract.Platform, attr *attributor) error {
	s.res.Pods++
	platform, known := podPlatform(pod, nodes)
	if !known {
		s.res.UnknownPlatform++
	}
	wl := attr.workload(ctx, pod)
	wl.Name = s.b.intern(wl.Name)
	start := len(s.buf)
	var (
		p    []pendingTag
		perr error
	)
	s.buf, p, perr = s.b.podEntries(s.buf, pod, platform, wl)
	for i := start; i < len(s.buf); i++ {
		e := &s.buf[i]
		e.Namespace, e.Node, e.Container = s.b.intern(e.Namespace), s.b.intern(e.Node), s.b.intern(e.Container)
	}
	s.pending = append(s.pending, p...)
	if perr != nil {
		for _, err := range unjoin(perr) {
			if s.res.ContainerErrors < maxLoggedContainerErrors {
				s.log.Warn("container image not parsable; inventoried as unresolved", zap.Error(err))
			}
			s.res.ContainerErrors++
		}
	}
	if len(s.buf) >= s.size {
		return s.flush(ctx)
	}
	return nil
}

// flush resolves the chunk's pending tags and hands the chunk over.
func (s *streamer) flush(ctx context.Context) error {
	if len(s.pending) > 0 {
		if s.c.Resolver == nil {
			for _, p := range s.pending {
				s.buf[p.index].Reason += "; tag resolution disabled"
			}
		} else {
			s.res.FromTag += s.c.resolve(ctx, s.buf, s.pending, s.tags)
		}
		s.pending = s.pending[:0]
	}
	if len(s.buf) == 0 {
		return nil
	}
	for i := range s.buf {
		if s.buf[i].Digest == "" {
			s.res.NoDigest++
		}
	}
	s.res.Containers += len(s.buf)
	if err := s.emit(s.buf); err != nil {
		s.emitErr = err
		return err
	}
	clear(s.buf)
	s.buf = s.buf[:0]
	return nil
}

// logSummary logs what the cluster's enumeration left uncertain.
func (s *streamer) logSummary(nodesKnown int) {
	if s.res.ContainerErrors > maxLoggedContainerErrors {
		s.log.Warn("more containers with unparsable images", zap.Int("total", s.res.ContainerErrors))
	}
	if s.res.UnknownPlatform > 0 {
		s.log.Info("pods on nodes of unknown platform; assumed "+contract.DefaultPlatform.String(),
			zap.Int("pods", s.res.UnknownPlatform), zap.Int("nodes_known", nodesKnown))
	}
	if len(s.tags) == 0 {
		return
	}
	failed := 0
	for _, l := range s.tags {
		if l.err != nil {
			failed++
			s.log.Warn("cannot resolve image tag; entries stay unresolved", zap.String("image", l.ref.String()),
				zap.Int("containers", l.containers), zap.Error(l.err))
		}
	}
	s.log.Info("resolved image tags against their registries", zap.Int("tags", len(s.tags)),
		zap.Int("failed", failed), zap.Int("containers", s.res.FromTag))
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// tagKey is a spec tag looked up for a platform.
type tagKey struct {
	ref      string
	platform contract.Platform
}

// tagLookup is the outcome of looking a tag up, kept for the cluster.
type tagLookup struct {
	ref        imageref.Reference
	platform   contract.Platform
	digest     string
	err        error
	containers int
}

// resolve looks up each (tag, platform) of pending not looked up before in
// this cluster (tags), with bounded concurrency, and patches the entries.
// It returns how many were resolved.
func (c *Collector) resolve(ctx context.Context, entries []contract.InventoryEntry, pending []pendingTag, tags map[tagKey]*tagLookup) int {
	var todo []*tagLookup
	for _, p := range pending {
		k := tagKey{p.ref.String(), entries[p.index].Platform}
		if tags[k] == nil {
			tags[k] = &tagLookup{ref: p.ref, platform: k.platform}
			todo = append(todo, tags[k])
		}
	}
	c.lookup(ctx, todo)
	resolved := 0
	for _, p := range pending {
		e := &entries[p.index]
		l := tags[tagKey{p.ref.String(), e.Platform}]
		l.containers++
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
	return resolved
}

// lookup resolves todo against the registries, ResolveConcurrency at once.
func (c *Collector) lookup(ctx context.Context, todo []*tagLookup) {
	n := c.ResolveConcurrency
	if n <= 0 {
		n = 8
	}
	work := make(chan *tagLookup)
	var wg sync.WaitGroup
	for range min(n, len(todo)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for l := range work {
				l.digest, l.err = c.Resolver.Resolve(ctx, l.ref, l.platform)
				if l.err == nil && !contract.ValidDigest(l.digest) {
					l.err = fmt.Errorf("registry returned %q, not a digest", l.digest)
				}
			}
		}()
	}
feed:
	for _, l := range todo {
		select {
		case work <- l:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
}
