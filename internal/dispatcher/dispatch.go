// Package dispatcher runs the dispatcher: it enumerates every configured
// cluster (inventory.Source), deduplicates the running images by manifest
// digest and platform across pods, tags, repositories and clusters, and
// publishes one scan job per unique key to JetStream with the Nats-Msg-Id of
// its key and cycle — so several dispatchers of one cycle (one per cluster,
// say) store each job once. It stores each cluster's inventory snapshot —
// streamed to the store a chunk at a time while the cluster is listed, so
// memory is bounded by the clusters in flight, not by their size — and a
// run manifest listing the expected keys and which clusters succeeded.
//
// A cluster that cannot be enumerated (unreachable, forbidden) is recorded
// in the manifest and the others continue. Run fails only when no cluster
// could be enumerated or when publishing or storing failed.
//
// Before publishing, Run asks Deps.Reuse which keys already have the result
// a worker would produce now (scanned with the workers' scanner, options and
// DB): no job is published for them and the manifest lists them as reused,
// so a daily run over an unchanged fleet queues nothing and wakes no worker.
// --rescan publishes every key with the job's Rescan flag instead.
//
// A dry run publishes and stores nothing: it writes the plan as JSON and a
// summary line per cluster.
package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/inventory"
	"github.com/fleetscan/fleetscan/internal/logging"
	"github.com/fleetscan/fleetscan/internal/queue"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// ErrNoCluster is returned when not a single cluster could be enumerated.
var ErrNoCluster = errors.New("no cluster could be enumerated")

// Publisher publishes scan jobs (queue.Publisher).
type Publisher interface {
	Publish(ctx context.Context, jobs []contract.ScanJob) (queue.PublishStats, error)
}

// Store keeps inventories and run manifests (store.Store). WriteInventory
// stores a cluster's inventory as fill streams its entries in.
type Store interface {
	WriteInventory(ctx context.Context, h contract.InventoryHeader, fill store.InventoryFill) error
	PutManifest(ctx context.Context, m contract.RunManifest) error
}

// Reuser finds which expected keys already have the result a scan would
// produce now (store.Store).
type Reuser interface {
	Reusable(ctx context.Context, keys []contract.ImageKey, now time.Time) (store.Reuse, error)
}

// Deps are what a run works with.
type Deps struct {
	// Sources are the clusters to enumerate.
	Sources []inventory.Source
	// Failed are clusters whose source could not even be opened; they are
	// recorded as failed.
	Failed []inventory.ClusterFailure
	// Resolver resolves spec tags; nil leaves containers without a status
	// digest unresolved.
	Resolver inventory.TagResolver
	// Publisher and Store are unused by a dry run.
	Publisher Publisher
	Store     Store
	// Reuse, when set, lets the run skip keys whose stored result is
	// current (nil: publish every key; workers still reuse on their side).
	Reuse Reuser
	Log   *zap.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (d Deps) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

func (d Deps) log() *zap.Logger {
	if d.Log != nil {
		return d.Log
	}
	return zap.NewNop()
}

// Collect enumerates every source, cfg.ClusterConcurrency at a time, into a
// plan. With a store (deps.Store, cfg.RunID), each cluster's inventory is
// stored as it is enumerated, a chunk at a time, so memory is bounded by
// the clusters in flight, not the fleet; a dry run's plan (no store) is
// Detailed instead. Errors storing inventories are joined into the
// returned error, which is otherwise ErrNoCluster when no cluster
// succeeded.
func Collect(ctx context.Context, cfg Config, deps Deps) (*Plan, error) {
	log := deps.log()
	filter, err := cfg.Sources.Filter()
	if err != nil {
		return nil, err
	}
	plan := NewPlan(cfg.Cycle)
	plan.Detailed = deps.Store == nil
	for _, f := range deps.Failed {
		log.Error("cluster unavailable; continuing with the others", logging.Cluster(f.Cluster), zap.Error(f.Err))
		plan.Fail(f.Cluster, f.Err)
	}

	var (
		wg      sync.WaitGroup
		errMu   sync.Mutex
		errs    []error
		workers = max(cfg.ClusterConcurrency, 1)
		sem     = make(chan struct{}, workers)
	)
	for _, src := range deps.Sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				plan.Fail(src.Cluster(), ctx.Err())
				return
			}
			defer func() { <-sem }()
			c := &inventory.Collector{Filter: filter, Resolver: deps.Resolver, Log: log}
			if err := collectCluster(ctx, cfg, deps, plan, c, src); err != nil {
				errMu.Lock()
				errs = append(errs, err)
				errMu.Unlock()
			}
		}()
	}
	wg.Wait()
	if plan.OKClusters() == 0 {
		errs = append(errs, ErrNoCluster)
	}
	return plan, errors.Join(errs...)
}

// storeError marks an error of the store while a cluster was streamed in.
type storeError struct{ err error }

func (e *storeError) Error() string { return e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

// collectCluster enumerates one cluster into the plan and, with a store,
// its inventory. A cluster that cannot be enumerated is recorded as
// failed and its previous inventory stays the latest; so is one whose
// inventory could not be stored, and that error is returned.
func collectCluster(ctx context.Context, cfg Config, deps Deps, plan *Plan, c *inventory.Collector, src inventory.Source) error {
	log, start := deps.log(), time.Now()
	cp := plan.Begin(src.Cluster())
	var (
		res        inventory.Result
		collectErr error
		storeErr   error
	)
	stream := func(emit func([]contract.InventoryEntry) error) (int, error) {
		res, collectErr = c.Stream(ctx, src, func(chunk []contract.InventoryEntry) error {
			cp.Add(chunk)
			if err := emit(chunk); err != nil {
				return &storeError{err}
			}
			return nil
		})
		return res.Pods, collectErr
	}
	if deps.Store == nil {
		_, collectErr = stream(func([]contract.InventoryEntry) error { return nil })
	} else {
		h := contract.InventoryHeader{RunID: cfg.RunID, Cycle: cfg.Cycle, Cluster: src.Cluster(), CollectedAt: deps.now().UTC()}
		storeErr = deps.Store.WriteInventory(ctx, h, func(enc *contract.InventoryEncoder) (int, error) {
			return stream(func(chunk []contract.InventoryEntry) error { return enc.Add(chunk...) })
		})
	}
	var se *storeError
	switch {
	case collectErr != nil && !errors.As(collectErr, &se):
		log.Error("cluster could not be enumerated; continuing with the others",
			logging.Cluster(src.Cluster()), zap.Error(collectErr))
		plan.Fail(src.Cluster(), collectErr)
		return nil
	case storeErr != nil:
		log.Error("cluster inventory could not be stored; cluster recorded as failed", logging.Cluster(src.Cluster()), zap.Error(storeErr))
		plan.Fail(src.Cluster(), storeErr)
		return storeErr
	}
	plan.Commit(cp, res)
	log.Info("cluster enumerated", logging.Cluster(res.Cluster), zap.Int("pods", res.Pods),
		zap.Int("containers", res.Containers), zap.Int("unresolved", res.Unresolved()),
		zap.Int("resolved_from_tag", res.FromTag), logging.Took(time.Since(start)))
	return nil
}

// Run enumerates, stores each cluster's inventory, publishes one job per
// unique key and stores the run manifest, which it returns. The manifest is
// not stored when publishing failed (a rerun of the same cycle publishes
// only what is missing). cfg.Cycle and cfg.RunID are generated when empty.
func Run(ctx context.Context, cfg Config, deps Deps) (contract.RunManifest, error) {
	log := deps.log()
	if deps.Publisher == nil || deps.Store == nil {
		return contract.RunManifest{}, errors.New("dispatch: a run needs a publisher and a store (use DryRun otherwise)")
	}
	started := deps.now()
	cfg.Complete(started)
	log = log.With(logging.RunID(cfg.RunID), logging.Cycle(cfg.Cycle))
	deps.Log = log
	log.Info("dispatch started", zap.Int("clusters", len(deps.Sources)+len(deps.Failed)))

	plan, collectErr := Collect(ctx, cfg, deps)
	m := contract.RunManifest{
		SchemaVersion: contract.ManifestSchemaVersion, RunID: cfg.RunID, Cycle: cfg.Cycle,
		CreatedAt: started.UTC(),
	}
	if plan == nil {
		return m, collectErr
	}
	m.Clusters, m.Expected = plan.Clusters(), plan.Expected()
	for _, c := range m.Clusters {
		if !c.OK {
			log.Error("cluster missing from this run", logging.Cluster(c.Name), zap.String("error", c.Error))
		}
	}

	var errs []error
	if collectErr != nil {
		errs = append(errs, collectErr)
	}
	jobs := plan.Jobs(cfg.RunID, deps.now())
	switch {
	case cfg.Rescan:
		for i := range jobs {
			jobs[i].Rescan = true
		}
		log.Info("--rescan: every image is scanned again in full", zap.Int("jobs", len(jobs)))
	case deps.Reuse != nil && len(jobs) > 0:
		jobs = skipReusable(ctx, deps, &m, jobs, log)
	}
	if len(jobs) > 0 {
		pubStart := time.Now()
		st, err := deps.Publisher.Publish(ctx, jobs)
		m.Published, m.Duplicates = st.Stored, st.Duplicates
		if err != nil {
			log.Error("publishing jobs failed; run manifest not stored", zap.Int("published", st.Stored), zap.Int("jobs", len(jobs)), zap.Error(err))
			return m, errors.Join(append(errs, fmt.Errorf("publish %d jobs: %w", len(jobs), err))...)
		}
		log.Info("jobs published", zap.Int("jobs", len(jobs)), zap.Int("stored", st.Stored),
			zap.Int("duplicates", st.Duplicates), logging.Took(time.Since(pubStart)))
	}
	if err := deps.Store.PutManifest(ctx, m); err != nil {
		errs = append(errs, fmt.Errorf("store run manifest %s: %w", cfg.RunID, err))
	}
	log.Info("dispatch finished", zap.Int("clusters_ok", plan.OKClusters()), zap.Int("clusters", len(m.Clusters)),
		zap.Int("expected", len(m.Expected)), zap.Int("reused", m.Reused), zap.Int("published", m.Published), zap.Int("duplicates", m.Duplicates),
		zap.Int("unresolved", plan.UnresolvedCount()), logging.Took(deps.now().Sub(started)))
	return m, errors.Join(errs...)
}

// skipReusable drops the jobs whose key already has a current result and
// records those keys in the manifest as reused. Reuse is an optimisation:
// when it cannot be decided, every job is published.
func skipReusable(ctx context.Context, deps Deps, m *contract.RunManifest, jobs []contract.ScanJob, log *zap.Logger) []contract.ScanJob {
	start := time.Now()
	r, err := deps.Reuse.Reusable(ctx, m.Expected, deps.now())
	switch {
	case err != nil:
		log.Warn("could not check stored results for reuse; publishing every job", zap.Error(err))
		return jobs
	case r.Skipped != "":
		log.Info("stored results not reused: "+r.Skipped, zap.Int("jobs", len(jobs)))
		return jobs
	}
	reused := make(map[contract.ImageKey]bool, len(r.Keys))
	for _, k := range r.Keys {
		reused[k] = true
	}
	kept := jobs[:0]
	for _, j := range jobs {
		if !reused[j.ImageKey] {
			kept = append(kept, j)
		}
	}
	m.ReusedKeys, m.Reused = r.Keys, len(r.Keys)
	log.Info("stored results reused: same scanner, options and DB as the workers'", zap.Int("reused", m.Reused),
		zap.Int("to_scan", len(kept)), zap.String("scanner", r.Identity.Scanner.Version),
		logging.DBUpdatedAt(r.Identity.DB.UpdatedAt), logging.Took(time.Since(start)))
	return kept
}

// DryRun enumerates without publishing or storing anything, writes the plan
// as JSON to out and a summary line per cluster to summary, and returns the
// plan. It returns ErrNoCluster when no cluster could be enumerated (the
// plan is written all the same).
func DryRun(ctx context.Context, cfg Config, deps Deps, out, summary io.Writer) (*Plan, error) {
	cfg.Complete(deps.now())
	deps.Store = nil
	plan, err := Collect(ctx, cfg, deps)
	if plan == nil {
		return nil, err
	}
	if werr := plan.WriteJSON(out); werr != nil {
		return plan, errors.Join(err, fmt.Errorf("write plan: %w", werr))
	}
	if werr := plan.WriteSummary(summary); werr != nil {
		return plan, errors.Join(err, fmt.Errorf("write summary: %w", werr))
	}
	return plan, err
}
