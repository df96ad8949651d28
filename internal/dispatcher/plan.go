package dispatcher

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/fleetscan/fleetscan/internal/inventory"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// Plan is the deduplicated outcome of enumerating the clusters: one job per
// unique (digest, platform) with every reference that runs it, the
// containers left without a digest, and each cluster's status. Clusters are
// added a chunk of entries at a time (Begin, ClusterPlan.Add, Commit): the
// plan keeps compact per-key state, never the entries. The workloads of
// each key and the unresolved containers themselves are kept only for a
// dry run's plan (Detailed).
type Plan struct {
	Cycle string
	// Detailed keeps the workloads of every key and every unresolved
	// container, for PlannedJobs and Unresolved (a dry run's plan).
	Detailed bool

	mu          sync.Mutex
	clusters    map[string]contract.ClusterStatus
	digests     map[string]int // unique keys per cluster
	jobs        map[contract.ImageKey]*planJob
	unresolved  []UnresolvedContainer
	nUnresolved int
	refCache    map[refKey][]string
}

type planJob struct {
	refs      map[string]int
	workloads map[WorkloadRef]struct{}
}

type refKey struct{ image, imageID, digest string }

// WorkloadRef is a container of a workload in a cluster that runs an image.
type WorkloadRef struct {
	Cluster   string `json:"cluster"`
	Namespace string `json:"namespace"`
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Container string `json:"container"`
	// Inferred marks a workload derived from naming conventions.
	Inferred bool `json:"inferred,omitempty"`
}

// PlannedJob is one scan job of the plan.
type PlannedJob struct {
	Digest   string `json:"digest"`
	Platform string `json:"platform"`
	// References are the pullable name@digest references seen for the
	// digest; the job pulls the first (the most used) and falls back to
	// the others.
	References []string      `json:"references"`
	Workloads  []WorkloadRef `json:"workloads"`
}

// UnresolvedContainer is a container no digest could be determined for.
type UnresolvedContainer struct {
	Cluster   string            `json:"cluster"`
	Namespace string            `json:"namespace"`
	Pod       string            `json:"pod"`
	Container string            `json:"container"`
	Workload  contract.Workload `json:"workload"`
	Image     string            `json:"image"`
	ImageID   string            `json:"imageId,omitempty"`
	Reason    string            `json:"reason"`
}

// NewPlan returns an empty plan for cycle.
func NewPlan(cycle string) *Plan {
	return &Plan{
		Cycle:    cycle,
		clusters: map[string]contract.ClusterStatus{},
		digests:  map[string]int{},
		jobs:     map[contract.ImageKey]*planJob{},
		refCache: map[refKey][]string{},
	}
}

// ClusterPlan is what one cluster contributes while it is enumerated; the
// plan takes it in only when the cluster is complete (Commit), so a
// cluster that fails midway contributes nothing. It is used by one
// goroutine.
type ClusterPlan struct {
	plan       *Plan
	cluster    string
	jobs       map[contract.ImageKey]*planJob
	unresolved []UnresolvedContainer
	nUnres     int
}

// Begin starts taking in cluster's entries.
func (p *Plan) Begin(cluster string) *ClusterPlan {
	return &ClusterPlan{plan: p, cluster: cluster, jobs: map[contract.ImageKey]*planJob{}}
}

// Add takes in a chunk of the cluster's entries; it keeps nothing of the
// slice but strings.
func (c *ClusterPlan) Add(entries []contract.InventoryEntry) {
	p := c.plan
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range entries {
		e := &entries[i]
		key, ok := e.Key()
		if !ok {
			c.nUnres++
			if p.Detailed {
				c.unresolved = append(c.unresolved, UnresolvedContainer{
					Cluster: c.cluster, Namespace: e.Namespace, Pod: e.Pod, Container: e.Container,
					Workload: e.Workload, Image: e.Image, ImageID: e.ImageID, Reason: e.Reason,
				})
			}
			continue
		}
		j := c.jobs[key]
		if j == nil {
			j = &planJob{refs: map[string]int{}, workloads: map[WorkloadRef]struct{}{}}
			c.jobs[key] = j
		}
		for _, r := range p.references(e) {
			j.refs[r]++
		}
		if p.Detailed {
			j.workloads[WorkloadRef{
				Cluster: c.cluster, Namespace: e.Namespace, Kind: e.Workload.Kind, Name: e.Workload.Name,
				Container: e.Container, Inferred: e.Workload.Inferred,
			}] = struct{}{}
		}
	}
}

// Commit merges the enumerated cluster into the plan. It is safe for
// concurrent use.
func (p *Plan) Commit(c *ClusterPlan, res inventory.Result) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for key, cj := range c.jobs {
		j := p.jobs[key]
		if j == nil {
			p.jobs[key] = cj
			continue
		}
		for r, n := range cj.refs {
			j.refs[r] += n
		}
		for w := range cj.workloads {
			j.workloads[w] = struct{}{}
		}
	}
	p.unresolved = append(p.unresolved, c.unresolved...)
	p.nUnresolved += c.nUnres
	p.clusters[c.cluster] = contract.ClusterStatus{
		Name: c.cluster, OK: true, Pods: res.Pods, Containers: res.Containers, Unresolved: c.nUnres,
	}
	p.digests[c.cluster] = len(c.jobs)
}

// Add merges one cluster's whole inventory (Begin, Add, Commit).
func (p *Plan) Add(res inventory.Result) {
	c := p.Begin(res.Cluster)
	c.Add(res.Entries)
	if res.Containers == 0 {
		res.Containers = len(res.Entries)
	}
	p.Commit(c, res)
}

// references caches inventory.EntryReferences: a fleet has few distinct
// (image, imageID) pairs and many containers.
func (p *Plan) references(e *contract.InventoryEntry) []string {
	k := refKey{e.Image, e.ImageID, e.Digest}
	if r, ok := p.refCache[k]; ok {
		return r
	}
	r := inventory.EntryReferences(*e)
	p.refCache[k] = r
	return r
}

// Fail records a cluster that could not be enumerated.
func (p *Plan) Fail(cluster string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clusters[cluster] = contract.ClusterStatus{Name: cluster, OK: false, Error: err.Error()}
}

// Clusters returns every cluster's status, by name.
func (p *Plan) Clusters() []contract.ClusterStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]contract.ClusterStatus, 0, len(p.clusters))
	for _, c := range p.clusters {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b contract.ClusterStatus) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// OKClusters counts the clusters enumerated.
func (p *Plan) OKClusters() int {
	n := 0
	for _, c := range p.Clusters() {
		if c.OK {
			n++
		}
	}
	return n
}

// Expected returns the unique image keys, sorted.
func (p *Plan) Expected() []contract.ImageKey {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]contract.ImageKey, 0, len(p.jobs))
	for k := range p.jobs {
		out = append(out, k)
	}
	slices.SortFunc(out, compareKeys)
	return out
}

func compareKeys(a, b contract.ImageKey) int {
	return cmp.Or(cmp.Compare(a.Digest, b.Digest), cmp.Compare(a.Platform.String(), b.Platform.String()))
}

// orderedRefs returns the references of a job, the most used first, ties
// broken alphabetically, so the choice does not depend on cluster order.
func (j *planJob) orderedRefs() []string {
	refs := make([]string, 0, len(j.refs))
	for r := range j.refs {
		refs = append(refs, r)
	}
	sort.Slice(refs, func(a, b int) bool {
		if j.refs[refs[a]] != j.refs[refs[b]] {
			return j.refs[refs[a]] > j.refs[refs[b]]
		}
		return refs[a] < refs[b]
	})
	return refs
}

// Jobs returns one scan job per unique key, sorted by key.
func (p *Plan) Jobs(runID string, now time.Time) []contract.ScanJob {
	keys := p.Expected()
	p.mu.Lock()
	defer p.mu.Unlock()
	jobs := make([]contract.ScanJob, 0, len(keys))
	for _, k := range keys {
		refs := p.jobs[k].orderedRefs()
		ref, alts := "", []string(nil)
		if len(refs) > 0 {
			ref = refs[0]
			if len(refs) > 1 {
				alts = refs[1:]
			}
		}
		jobs = append(jobs, contract.NewScanJob(runID, p.Cycle, k, ref, alts, now))
	}
	return jobs
}

// PlannedJobs returns the jobs with their workloads (a Detailed plan's),
// sorted by key.
func (p *Plan) PlannedJobs() []PlannedJob {
	keys := p.Expected()
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]PlannedJob, 0, len(keys))
	for _, k := range keys {
		j := p.jobs[k]
		wls := make([]WorkloadRef, 0, len(j.workloads))
		for w := range j.workloads {
			wls = append(wls, w)
		}
		slices.SortFunc(wls, func(a, b WorkloadRef) int {
			return cmp.Or(cmp.Compare(a.Cluster, b.Cluster), cmp.Compare(a.Namespace, b.Namespace),
				cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Container, b.Container))
		})
		out = append(out, PlannedJob{Digest: k.Digest, Platform: k.Platform.String(), References: j.orderedRefs(), Workloads: wls})
	}
	return out
}

// UnresolvedCount counts the containers without a digest.
func (p *Plan) UnresolvedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.nUnresolved
}

// Unresolved returns the containers without a digest, sorted by cluster,
// namespace, pod and container (a Detailed plan's; empty otherwise).
func (p *Plan) Unresolved() []UnresolvedContainer {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := slices.Clone(p.unresolved)
	slices.SortFunc(out, func(a, b UnresolvedContainer) int {
		return cmp.Or(cmp.Compare(a.Cluster, b.Cluster), cmp.Compare(a.Namespace, b.Namespace),
			cmp.Compare(a.Pod, b.Pod), cmp.Compare(a.Container, b.Container))
	})
	if out == nil {
		out = []UnresolvedContainer{}
	}
	return out
}

// planDoc is the JSON shape of a dry run's plan.
type planDoc struct {
	Cycle      string                   `json:"cycle"`
	Clusters   []contract.ClusterStatus `json:"clusters"`
	Jobs       []PlannedJob             `json:"jobs"`
	Unresolved []UnresolvedContainer    `json:"unresolved"`
}

// WriteJSON writes the plan as an indented JSON object with the clusters,
// the jobs (digest, platform, references, workloads) and the unresolved
// containers.
func (p *Plan) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(planDoc{Cycle: p.Cycle, Clusters: p.Clusters(), Jobs: p.PlannedJobs(), Unresolved: p.Unresolved()})
}

// WriteSummary writes one line per cluster: pods, containers, unique
// digests and unresolved containers, or why it failed; then the totals.
func (p *Plan) WriteSummary(w io.Writer) error {
	p.mu.Lock()
	digests := maps.Clone(p.digests)
	p.mu.Unlock()
	for _, c := range p.Clusters() {
		var err error
		if c.OK {
			_, err = fmt.Fprintf(w, "cluster %s: %d pods, %d containers, %d unique digests, %d unresolved\n",
				c.Name, c.Pods, c.Containers, digests[c.Name], c.Unresolved)
		} else {
			_, err = fmt.Fprintf(w, "cluster %s: FAILED: %s\n", c.Name, c.Error)
		}
		if err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "total: %d clusters ok of %d, %d jobs (unique digest+platform), %d unresolved containers\n",
		p.OKClusters(), len(p.Clusters()), len(p.Expected()), p.UnresolvedCount())
	return err
}
