package report

import (
	"fmt"
	"hash/fnv"
	"time"

	"github.com/fleetscan/fleetscan/internal/report/reporttest"
	"github.com/fleetscan/fleetscan/internal/sla"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// The HTML page's own sized fleet (kept apart from package reporttest,
// which the reporter's benchmarks extend): images results of reporttest
// (100 findings each), run by clusters and workloads spread like a large
// multi-cluster fleet, with first-seen clocks spread over 400 days so
// deadlines fall everywhere from long breached to months ahead.

// hashLedger answers every identity with a first-seen date derived from a
// hash of the identity: deterministic, no memory per identity.
type hashLedger struct{ asOf time.Time }

func (l hashLedger) Lookup(id sla.Identity) (time.Time, sla.Change, bool) {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id.Repository + "\x00" + id.VulnerabilityID + "\x00" + id.PkgName))
	return l.asOf.Add(-time.Duration(h.Sum32()%400) * 24 * time.Hour), sla.ChangeStillOpen, true
}

// scaleFleet is a fleet of n images in clusters clusters: image i runs in
// 1 + i%3 clusters, in namespace ns-(i%60), as three Deployments per
// cluster.
type scaleFleet struct {
	n, clusters int
	asOf        time.Time
	fleet       *Fleet
	// added is the time spent in HTMLGroups.Add by stream.
	added time.Duration
}

func newScaleFleet(n, clusters int, asOf time.Time) *scaleFleet {
	s := &scaleFleet{n: n, clusters: clusters, asOf: asOf, fleet: NewFleet()}
	platform := reporttest.Key(0).Platform
	for i := range n {
		for k := range 1 + i%3 {
			for w := range 3 {
				s.fleet.Add(fmt.Sprintf("cluster-%d", (i+k)%clusters), contract.InventoryEntry{
					Namespace: fmt.Sprintf("ns-%d", i%60), Pod: fmt.Sprintf("svc-%d-%d-0", i, w),
					Workload:  contract.Workload{Kind: "Deployment", Name: fmt.Sprintf("svc-%d-%d", i, w)},
					Container: "main", ContainerKind: contract.ContainerRegular, Image: reporttest.Reference(i),
					Digest: reporttest.Key(i).Digest, Platform: platform, Resolution: contract.ResolvedStatus,
				})
			}
		}
	}
	return s
}

// input is the report input of images [from, to).
func (s *scaleFleet) input(from, to int, in *Interner) Input {
	images := make([]*Image, 0, to-from)
	for i := from; i < to; i++ {
		res := reporttest.Result(i, "c1", s.asOf)
		img := s.fleet.Image(res.ImageKey, res.Reference)
		img.Vulns = Compact(res.Findings, in)
		images = append(images, img)
	}
	return Input{GeneratedAt: s.asOf, AsOf: s.asOf, Scope: Scope{Mode: "fleet"}, Images: images,
		Policy: sla.DefaultPolicy(), Ledger: hashLedger{s.asOf}}
}

// stream feeds every row to g one image at a time, as a streaming reporter
// would, and returns the report's header (everything but the rows) with the
// summary counted from the rows.
func (s *scaleFleet) stream(g *HTMLGroups) *Report {
	in := &Interner{}
	head := Build(Input{GeneratedAt: s.asOf, AsOf: s.asOf, Scope: Scope{Mode: "fleet"}, Policy: sla.DefaultPolicy()})
	for i := range s.n {
		r := Build(s.input(i, i+1, in))
		start := time.Now()
		for f := range r.Findings.All() {
			g.Add(f)
		}
		s.added += time.Since(start)
		head.Summary.Findings += r.Summary.Findings
		head.Summary.Breached += r.Summary.Breached
		head.Summary.BreachedUnaccepted += r.Summary.BreachedUnaccepted
		head.Summary.Images++
		head.Summary.ImagesScanned++
		for sev, n := range r.Summary.BySeverity {
			head.Summary.BySeverity[sev] += n
		}
	}
	head.Summary.Clusters = s.clusters
	return head
}
