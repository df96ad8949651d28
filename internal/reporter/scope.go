package reporter

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/logging"
	"github.com/fleetscan/fleetscan/internal/notify"
	"github.com/fleetscan/fleetscan/internal/report"
	"github.com/fleetscan/fleetscan/internal/sla"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// Store is what the reporter reads from the shared state (*store.Store).
type Store interface {
	Runs(ctx context.Context) (map[string]time.Time, error)
	Manifest(ctx context.Context, runID string) (contract.RunManifest, error)
	Clusters(ctx context.Context) (map[string]time.Time, error)
	// InventoryHeader reads a cluster's inventory through without decoding
	// its entries: its header and counts, once it is known complete.
	InventoryHeader(ctx context.Context, cluster string) (contract.InventoryHeader, contract.InventoryEnd, error)
	// OpenInventory reads a cluster's inventory chunk by chunk.
	OpenInventory(ctx context.Context, cluster string) (*store.InventoryReader, error)
	// Result, EachResult and WatchResults read results; the collector
	// decodes them with report.DecodeResult (store.DecodeWith).
	Result(ctx context.Context, key contract.ImageKey, opts ...store.ReadOption) (contract.ScanResult, error)
	// EachResult streams the latest result of every key; the first pass
	// uses it instead of one request per key.
	EachResult(ctx context.Context, fn func(contract.ScanResult) error, opts ...store.ReadOption) error
	// WatchResults delivers results stored after it is opened: the wait
	// reacts to each instead of polling.
	WatchResults(ctx context.Context, opts ...store.ReadOption) (*store.ResultWatch, error)
}

// requirement is what makes a key's result current: the run that expects
// it. A result counts when it belongs to the run's cycle or completed after
// the run started — or, for a key the run's dispatcher found already
// answered (the manifest's reusedKeys), whatever stored result it has.
type requirement struct {
	runID     string
	cycle     string
	createdAt time.Time
	reused    bool
}

func (q requirement) satisfiedBy(r contract.ScanResult) bool {
	return q.reused || r.Cycle == q.cycle || !r.CompletedAt.Before(q.createdAt)
}

// reusedKeys is the set of a manifest's reused keys (nil when none).
func reusedKeys(m contract.RunManifest) map[contract.ImageKey]bool {
	if len(m.ReusedKeys) == 0 {
		return nil
	}
	out := make(map[contract.ImageKey]bool, len(m.ReusedKeys))
	for _, k := range m.ReusedKeys {
		out[k] = true
	}
	return out
}

// scope is what a report covers and what it waits for.
type scope struct {
	mode     report.Scope
	runs     []report.Run
	clusters []report.Cluster
	// observed are the clusters whose inventory the report covers.
	observed []string
	// coversFleet: fleet view with every known cluster reached.
	coversFleet bool
	fleet       *report.Fleet
	// req is every expected image key and the run it must be current for.
	req map[contract.ImageKey]requirement
	// unresolved are containers whose image never got a digest.
	unresolved      []report.NotScanned
	unresolvedRepos []string
	// newestRun names the report in S3 keys.
	newestRun string
	// namespaces are the inventories' namespace labels and annotations.
	namespaces notify.Namespaces
}

type scopeBuilder struct {
	sc         *scope
	runs       map[string]*report.Run
	unresolved map[[2]string]*report.NotScanned
}

func newScopeBuilder(mode report.Scope) *scopeBuilder {
	return &scopeBuilder{
		sc: &scope{mode: mode, fleet: report.NewFleet(), req: map[contract.ImageKey]requirement{},
			namespaces: notify.Namespaces{}},
		runs:       map[string]*report.Run{},
		unresolved: map[[2]string]*report.NotScanned{},
	}
}

// storedInventory is a cluster's stored inventory as the first pass read
// it: its header and counts, checked complete, without its entries.
type storedInventory struct {
	contract.InventoryHeader
	end contract.InventoryEnd
}

// addInventory takes a cluster's inventory into the report, reading its
// entries chunk by chunk; q is the run its keys must be current for,
// reused the keys that run reused. The inventory must still be the one
// the first pass checked.
func (b *scopeBuilder) addInventory(ctx context.Context, st Store, inv storedInventory, q requirement, reused map[contract.ImageKey]bool) error {
	r, err := st.OpenInventory(ctx, inv.Cluster)
	if err != nil {
		return fmt.Errorf("read inventory of cluster %s: %w", inv.Cluster, err)
	}
	defer r.Close()
	if h := r.Header(); h.RunID != inv.RunID || !h.CollectedAt.Equal(inv.CollectedAt) {
		return fmt.Errorf("inventory of cluster %s: replaced by run %s while the report was read; run the reporter again", inv.Cluster, h.RunID)
	}
	containers := 0
	for {
		entries, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read inventory of cluster %s: %w", inv.Cluster, err)
		}
		containers += len(entries)
		for i := range entries {
			b.addEntry(inv.Cluster, entries[i], q, reused)
		}
	}
	b.sc.clusters = append(b.sc.clusters, report.Cluster{
		Name: inv.Cluster, Status: report.ClusterOK, RunID: inv.RunID, CollectedAt: inv.CollectedAt.UTC(),
		Pods: r.End().Pods, Containers: containers,
	})
	b.sc.observed = append(b.sc.observed, inv.Cluster)
	b.sc.namespaces.Add(inv.Cluster, r.Namespaces())
	b.addRun(q, inv.Cluster)
	return nil
}

// addEntry takes one container of cluster into the report.
func (b *scopeBuilder) addEntry(cluster string, e contract.InventoryEntry, q requirement, reused map[contract.ImageKey]bool) {
	key, ok := e.Key()
	if !ok {
		k := [2]string{e.Image, e.Reason}
		ns := b.unresolved[k]
		if ns == nil {
			reason := "not scanned: " + e.Reason
			if e.Reason == "" {
				reason = "not scanned: the image was never resolved to a digest"
			}
			ns = &report.NotScanned{Image: e.Image, Reason: reason}
			b.unresolved[k] = ns
		}
		w := report.WorkloadName(cluster, e)
		if !slices.Contains(ns.Workloads, w) {
			ns.Workloads = append(ns.Workloads, w)
		}
		return
	}
	b.sc.fleet.Add(cluster, e)
	if prev, ok := b.sc.req[key]; !ok || q.createdAt.After(prev.createdAt) {
		kq := q
		kq.reused = reused[key]
		b.sc.req[key] = kq
	}
}

func (b *scopeBuilder) addRun(q requirement, cluster string) {
	r := b.runs[q.runID]
	if r == nil {
		r = &report.Run{RunID: q.runID, Cycle: q.cycle, CreatedAt: q.createdAt.UTC()}
		b.runs[q.runID] = r
	}
	if cluster != "" && !slices.Contains(r.Clusters, cluster) {
		r.Clusters = append(r.Clusters, cluster)
	}
}

func (b *scopeBuilder) unreachable(name, runID, reason string) {
	b.sc.clusters = append(b.sc.clusters, report.Cluster{Name: name, Status: report.ClusterUnreachable, RunID: runID, Error: reason})
}

func (b *scopeBuilder) finish() *scope {
	sc := b.sc
	for _, r := range b.runs {
		slices.Sort(r.Clusters)
		sc.runs = append(sc.runs, *r)
	}
	slices.SortFunc(sc.runs, func(a, b report.Run) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.RunID, b.RunID))
	})
	if n := len(sc.runs); n > 0 {
		sc.newestRun = sc.runs[n-1].RunID
	}
	slices.SortFunc(sc.clusters, func(a, b report.Cluster) int { return strings.Compare(a.Name, b.Name) })
	slices.Sort(sc.observed)
	repos := map[string]bool{}
	for _, ns := range b.unresolved {
		slices.Sort(ns.Workloads)
		sc.unresolved = append(sc.unresolved, *ns)
		if ns.Image != "" {
			repos[sla.Repository(ns.Image)] = true
		}
	}
	slices.SortFunc(sc.unresolved, func(a, b report.NotScanned) int {
		return cmp.Or(strings.Compare(a.Image, b.Image), strings.Compare(a.Reason, b.Reason))
	})
	for r := range repos {
		sc.unresolvedRepos = append(sc.unresolvedRepos, r)
	}
	slices.Sort(sc.unresolvedRepos)
	return sc
}

// fleetScope is the default view: the latest inventory of every cluster
// collected within maxAge, each with its own run. A cluster whose latest
// mention in a recent run manifest failed, and that has no fresh inventory,
// is unreachable.
func fleetScope(ctx context.Context, st Store, maxAge time.Duration, wall time.Time, log *zap.Logger) (*scope, error) {
	b := newScopeBuilder(report.Scope{Mode: "fleet", MaxAge: maxAge.String()})
	fresh, unreadable, err := freshInventories(ctx, st, maxAge, wall, log)
	if err != nil {
		return nil, err
	}
	manifests, err := recentManifests(ctx, st, maxAge, wall, fresh)
	if err != nil {
		return nil, err
	}
	for _, name := range sortedNames(fresh) {
		inv := fresh[name]
		q := requirement{runID: inv.RunID, cycle: inv.Cycle, createdAt: inv.CollectedAt}
		var reused map[contract.ImageKey]bool
		if m, ok := manifests[inv.RunID]; ok {
			q = requirement{runID: m.RunID, cycle: m.Cycle, createdAt: m.CreatedAt}
			reused = reusedKeys(m)
		} else {
			log.Warn("no run manifest for an inventory; results must be newer than the inventory",
				logging.Cluster(name), logging.RunID(inv.RunID))
		}
		if err := b.addInventory(ctx, st, inv, q, reused); err != nil {
			return nil, err
		}
	}
	latest := missingClusters(manifests, fresh, maxAge, wall)
	for _, name := range sortedNames(unreadable) {
		delete(latest, name)
		b.unreachable(name, "", "stored inventory unreadable: "+unreadable[name])
	}
	for _, name := range sortedNames(latest) {
		mn := latest[name]
		reason := mn.cs.Error
		if mn.cs.OK {
			reason = "run " + mn.m.RunID + " enumerated it, but no inventory of it is stored"
		} else if reason == "" {
			reason = "could not be enumerated"
		}
		b.unreachable(name, mn.m.RunID, reason)
		b.addRun(requirement{runID: mn.m.RunID, cycle: mn.m.Cycle, createdAt: mn.m.CreatedAt}, name)
	}
	sc := b.finish()
	sc.coversFleet = len(latest) == 0 && len(unreadable) == 0
	return sc, nil
}

// freshInventories reads the header of the latest inventory of every
// cluster, checking it is complete, and keeps those collected within
// maxAge; unreadable ones — incomplete included — are returned apart
// (their clusters are unreachable: one corrupt object must not hide the
// rest of the fleet). The entries are read later, one cluster at a time.
func freshInventories(ctx context.Context, st Store, maxAge time.Duration, wall time.Time, log *zap.Logger) (fresh map[string]storedInventory, unreadable map[string]string, err error) {
	names, err := st.Clusters(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("list cluster inventories: %w", err)
	}
	fresh, unreadable = map[string]storedInventory{}, map[string]string{}
	for _, name := range sortedNames(names) {
		var inv storedInventory
		inv.InventoryHeader, inv.end, err = st.InventoryHeader(ctx, name)
		var bad *contract.DecodeError
		switch {
		case errors.Is(err, store.ErrNotFound):
			continue
		case errors.As(err, &bad):
			log.Error("stored inventory unreadable; cluster reported unreachable", logging.Cluster(name), zap.Error(err))
			unreadable[name] = err.Error()
			continue
		case err != nil:
			return nil, nil, err
		}
		if age := wall.Sub(inv.CollectedAt); age > maxAge {
			log.Info("cluster left out: inventory older than --max-age", logging.Cluster(name),
				zap.Duration("age", age.Round(time.Minute)), logging.RunID(inv.RunID))
			continue
		}
		fresh[name] = inv
	}
	return fresh, unreadable, nil
}

// recentManifests reads the manifests of the runs stored within maxAge and
// of the runs the fresh inventories belong to.
func recentManifests(ctx context.Context, st Store, maxAge time.Duration, wall time.Time, fresh map[string]storedInventory) (map[string]contract.RunManifest, error) {
	runs, err := st.Runs(ctx)
	if err != nil {
		return nil, fmt.Errorf("list run manifests: %w", err)
	}
	want := map[string]bool{}
	for id, stored := range runs {
		if wall.Sub(stored) <= maxAge {
			want[id] = true
		}
	}
	for _, inv := range fresh {
		want[inv.RunID] = true
	}
	manifests := map[string]contract.RunManifest{}
	for _, id := range sortedNames(want) {
		m, err := st.Manifest(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			continue // still being dispatched, or expired
		}
		if err != nil {
			return nil, err
		}
		manifests[id] = m
	}
	return manifests, nil
}

// mention is a cluster's status in a run manifest.
type mention struct {
	m  contract.RunManifest
	cs contract.ClusterStatus
}

// missingClusters is the latest recent mention of every cluster without a
// fresh inventory.
func missingClusters(manifests map[string]contract.RunManifest, fresh map[string]storedInventory, maxAge time.Duration, wall time.Time) map[string]mention {
	latest := map[string]mention{}
	for _, m := range manifests {
		if wall.Sub(m.CreatedAt) > maxAge {
			continue
		}
		for _, cs := range m.Clusters {
			if _, ok := fresh[cs.Name]; ok {
				continue
			}
			if prev, ok := latest[cs.Name]; !ok || m.CreatedAt.After(prev.m.CreatedAt) {
				latest[cs.Name] = mention{m, cs}
			}
		}
	}
	return latest
}

// runScope covers one run: its manifest's expected keys, its clusters'
// inventories where they still belong to the run, and its failed clusters.
func runScope(ctx context.Context, st Store, runID string, log *zap.Logger) (*scope, error) {
	m, err := st.Manifest(ctx, runID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("--run %s: no run manifest with this id (manifests expire with the topology's inventory max age)", runID)
	}
	if err != nil {
		return nil, err
	}
	b := newScopeBuilder(report.Scope{Mode: "run", RunID: runID})
	q := requirement{runID: m.RunID, cycle: m.Cycle, createdAt: m.CreatedAt}
	reused := reusedKeys(m)
	b.addRun(q, "")
	for _, cs := range m.Clusters {
		if !cs.OK {
			reason := cs.Error
			if reason == "" {
				reason = "could not be enumerated"
			}
			b.unreachable(cs.Name, m.RunID, reason)
			b.addRun(q, cs.Name)
			continue
		}
		var inv storedInventory
		inv.InventoryHeader, inv.end, err = st.InventoryHeader(ctx, cs.Name)
		switch {
		case err == nil && inv.RunID == runID:
			if err := b.addInventory(ctx, st, inv, q, reused); err != nil {
				return nil, err
			}
			continue
		case err == nil:
			log.Warn("the cluster's inventory now belongs to a later run; its workloads are unknown for this run",
				logging.Cluster(cs.Name), logging.RunID(runID), zap.String("inventory_run_id", inv.RunID))
		case errors.Is(err, store.ErrNotFound):
			log.Warn("no inventory stored for the cluster; its workloads are unknown", logging.Cluster(cs.Name))
		default:
			return nil, err
		}
		b.sc.clusters = append(b.sc.clusters, report.Cluster{Name: cs.Name, Status: report.ClusterOK, RunID: runID,
			Pods: cs.Pods, Containers: cs.Containers})
		b.sc.observed = append(b.sc.observed, cs.Name)
		b.addRun(q, cs.Name)
	}
	for _, k := range m.Expected {
		kq := q
		kq.reused = reused[k]
		b.sc.req[k] = kq
	}
	return b.finish(), nil
}

func sortedNames[T any](m map[string]T) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
