package report

import (
	"slices"
	"strings"
	"time"

	"github.com/fleetscan/fleetscan/internal/sla"
	"github.com/fleetscan/fleetscan/internal/vex"
)

// The HTML page does not list every row: it groups them by vulnerability,
// by image and by namespace, and embeds what an expanded group shows in a
// compact form the page's script decodes on demand. HTMLGroups is that
// aggregation. It is fed one row at a time (Add) and keeps no pointer to a
// row, a Vuln or an Image (except the few breached rows the page lists in
// full), so a reporter that streams its rows can build the page without
// holding them: strings are interned once and each row costs 12 bytes.

// statuses are the row statuses, in the order the page counts them.
var statuses = []sla.Status{sla.StatusOpen, sla.StatusAccepted, sla.StatusAcceptanceExpired, sla.StatusNotAffected, sla.StatusFixed}

// vexStatuses are the VEX statement statuses, in the order the page counts
// them.
var vexStatuses = []vex.Status{vex.NotAffected, vex.Affected, vex.Fixed, vex.UnderInvestigation}

// noDay marks "no deadline" in groupStats.earliest.
const noDay = int32(1<<31 - 1)

// groupStats are the counts a group row shows.
type groupStats struct {
	sev      [5]int32 // rows per severity, sla.Severities order
	status   [5]int32 // rows per status, statuses order
	vex      [4]int32 // rows per VEX status, vexStatuses order
	breached int32    // past the deadline and not accepted (Finding.Gating)
	kev      int32    // rows listed in CISA's KEV catalogue
	earliest int32    // earliest deadline (Unix day) of a row that still counts; noDay without
}

// rowFacts is what the groups count of one row, worked out once.
type rowFacts struct {
	sev, status, vex int // indexes into the stats arrays; -1: none
	gating, kev      bool
	counts           bool
	day              int32
}

func factsOf(f *Finding, day int32) rowFacts {
	x := rowFacts{sev: sla.SeverityRank(f.Severity), status: slices.Index(statuses, f.Status), vex: -1,
		gating: f.Gating(), kev: f.Exploit.InKEV(), counts: counts(f), day: day}
	if f.VEX != nil {
		x.vex = slices.Index(vexStatuses, f.VEX.Status)
	}
	return x
}

func (s *groupStats) add(x *rowFacts) {
	s.sev[x.sev]++
	if x.status >= 0 {
		s.status[x.status]++
	}
	if x.vex >= 0 {
		s.vex[x.vex]++
	}
	if x.gating {
		s.breached++
	}
	if x.kev {
		s.kev++
	}
	if x.counts && x.day < s.earliest {
		s.earliest = x.day
	}
}

func (s *groupStats) merge(o *groupStats) {
	for i := range s.sev {
		s.sev[i] += o.sev[i]
	}
	for i := range s.status {
		s.status[i] += o.status[i]
	}
	for i := range s.vex {
		s.vex[i] += o.vex[i]
	}
	s.breached += o.breached
	s.kev += o.kev
	s.earliest = min(s.earliest, o.earliest)
}

func (s *groupStats) findings() int32 {
	var n int32
	for _, c := range s.sev {
		n += c
	}
	return n
}

// counts reports whether a row's deadline still counts: it is neither
// accepted nor taken off the gate by a VEX statement.
func counts(f *Finding) bool {
	return f.Status != sla.StatusAccepted && f.Status != sla.StatusNotAffected && f.Status != sla.StatusFixed
}

// strTable numbers strings: the page's string table.
type strTable struct {
	ids  map[string]int32
	strs []string
}

func (t *strTable) id(s string) int32 {
	if id, ok := t.ids[s]; ok {
		return id
	}
	if t.ids == nil {
		t.ids = map[string]int32{}
	}
	id := int32(len(t.strs))
	t.ids[s] = id
	t.strs = append(t.strs, s)
	return id
}

// vulnGroup is one vulnerability across the fleet.
type vulnGroup struct {
	id, title, url, kevDue int32 // string ids (-1: no KEV due date)
	kev                    int8  // 0 not listed, 1 listed, 2 listed with known ransomware use
	sev                    int8  // worst severity rank among the rows
	hasEPSS, hasCVSS       bool
	epss, pct, cvss        float64
	stats                  groupStats
	images                 []int32 // images of its rows (duplicates removed at Write)
}

// imageGroup is one image key and its rows.
type imageGroup struct {
	ref       int32
	digest    string
	platform  string
	eol       bool
	labels    []int32 // the first workload labels (string ids)
	nWork     int32   // workloads in all
	workloads []int32 // workload ids
	scopes    [][2]int32
	stats     groupStats
	rows      []rowCode
}

// rowCode is one row of an image: its package record, deadline (Unix day)
// and kind (status, rule, VEX statement, breached, days-remaining offset).
type rowCode struct {
	rec, day, kind int32
}

// recKey identifies a package record: a vulnerability in one installed
// version of a package.
type recKey struct {
	vuln                      int32
	sev                       int8
	pkg, path, version, fixed string
}

// rowKind is what varies per row beyond its package and deadline.
type rowKind struct {
	status   int8
	breached bool
	delta    int8  // DaysRemaining minus the days to the deadline's date
	rule     int32 // string id
	vex      int32 // VEX statement id, -1 without
}

// vexKey is a VEX statement as the page shows it.
type vexKey struct{ status, justification, source int32 }

// HTMLGroups aggregates report rows for the HTML page. Feed it every row
// with Add, then write the page with WriteHTMLGroups.
type HTMLGroups struct {
	asOf    time.Time
	asOfDay int32
	str     strTable
	vulnIDs map[string]int32
	vulns   []vulnGroup
	recIDs  map[recKey]int32
	recs    []recKey
	kindIDs map[rowKind]int32
	kinds   []rowKind
	vexIDs  map[vexKey]int32
	vexes   []vexKey
	imgIDs  map[string][]int32 // by digest: one image per platform
	images  []imageGroup
	lastImg *Image
	// byPtr finds images by pointer when rows come in any order and every
	// image stays in memory anyway (WriteHTML of a whole Report); a
	// streaming reporter's rows come image by image and need only lastImg.
	byPtr   map[*Image]int32
	lastID  int32
	work    strTable // workload labels
	workNS  []int32  // namespace string id per workload
	nsIDs   strTable // namespaces
	cluster strTable
	total   groupStats
	buckets [deadlineN + 2][5]int
	gating  []Finding
	gateN   int
	// gateBySev counts breached, unaccepted rows per severity rank.
	gateBySev [5]int
}

// NewHTMLGroups starts an empty aggregation for a report as of asOf.
func NewHTMLGroups(asOf time.Time) *HTMLGroups {
	return &HTMLGroups{asOf: asOf.UTC(), asOfDay: unixDay(asOf), vulnIDs: map[string]int32{}, recIDs: map[recKey]int32{},
		kindIDs: map[rowKind]int32{}, vexIDs: map[vexKey]int32{}, imgIDs: map[string][]int32{}, lastID: -1,
		total: groupStats{earliest: noDay}}
}

// unixDay is t's UTC calendar day, counted from 1970-01-01.
func unixDay(t time.Time) int32 {
	return int32(t.UTC().Truncate(24*time.Hour).Unix() / 86400)
}

// Add aggregates one row. f is not retained (unless it is among the first
// breached rows the page lists in full, which are copied).
func (g *HTMLGroups) Add(f *Finding) {
	day := unixDay(f.Deadline)
	img := g.image(f.Img)
	v := g.vuln(f)
	rec := g.rec(v, f)
	x := factsOf(f, day)
	g.images[img].rows = append(g.images[img].rows, rowCode{rec: rec, day: day, kind: g.kind(f, &x)})
	g.images[img].stats.add(&x)
	vg := &g.vulns[v]
	vg.stats.add(&x)
	if n := len(vg.images); n == 0 || vg.images[n-1] != img {
		vg.images = append(vg.images, img)
	}
	g.total.add(&x)
	g.bucket(f, &x)
	if x.gating {
		g.gate(f, &x)
	}
}

// bucket counts the row in the deadline chart.
func (g *HTMLGroups) bucket(f *Finding, x *rowFacts) {
	if !x.counts {
		return
	}
	idx := 0
	if !f.Breached {
		idx = 1 + int(f.Deadline.Sub(g.asOf)/(7*24*time.Hour))
		idx = min(idx, deadlineN+1)
	}
	g.buckets[idx][x.sev]++
}

// gate keeps the first breached, unaccepted rows in report order.
func (g *HTMLGroups) gate(f *Finding, x *rowFacts) {
	g.gateN++
	g.gateBySev[x.sev]++
	limit := MarkdownLimit * 2
	if len(g.gating) == limit && compareFindings(f, &g.gating[limit-1]) >= 0 {
		return
	}
	i, _ := slices.BinarySearchFunc(g.gating, f, func(a Finding, b *Finding) int { return compareFindings(&a, b) })
	g.gating = slices.Insert(g.gating, i, *f)
	if len(g.gating) > limit {
		g.gating = g.gating[:limit]
	}
}

// image returns the group of img, starting it on first sight.
func (g *HTMLGroups) image(img *Image) int32 {
	if img == g.lastImg {
		return g.lastID
	}
	if id, ok := g.byPtr[img]; ok {
		g.lastImg, g.lastID = img, id
		return id
	}
	id := int32(-1)
	for _, i := range g.imgIDs[img.Key.Digest] {
		if g.images[i].platform == img.Platform {
			id = i
		}
	}
	if id < 0 {
		id = int32(len(g.images))
		g.imgIDs[img.Key.Digest] = append(g.imgIDs[img.Key.Digest], id)
		g.images = append(g.images, g.newImage(img))
	}
	g.lastImg, g.lastID = img, id
	if g.byPtr != nil {
		g.byPtr[img] = id
	}
	return id
}

// imageLabels is how many workload labels the page carries per image (the
// full list is in report.csv and report.json).
const imageLabels = 3

func (g *HTMLGroups) newImage(img *Image) imageGroup {
	ig := imageGroup{ref: g.str.id(img.Reference), digest: img.Key.Digest, platform: img.Platform, eol: img.EOL(),
		nWork: int32(len(img.Workloads)), stats: groupStats{earliest: noDay}}
	for i, label := range img.WorkloadLabels() {
		if i < imageLabels {
			ig.labels = append(ig.labels, g.str.id(label))
		}
		ig.workloads = append(ig.workloads, g.workload(img.Workloads[i]))
	}
	for _, s := range img.Scopes {
		ig.scopes = append(ig.scopes, [2]int32{g.cluster.id(s.Cluster), g.nsIDs.id(s.Namespace)})
	}
	if len(img.Scopes) == 0 {
		for _, ns := range img.Namespaces {
			ig.scopes = append(ig.scopes, [2]int32{-1, g.nsIDs.id(ns)})
		}
	}
	return ig
}

// workload numbers a workload ("cluster/namespace/Kind/name") and records
// its namespace.
func (g *HTMLGroups) workload(name string) int32 {
	n := len(g.work.strs)
	id := g.work.id(name)
	if int(id) == n {
		parts := strings.Split(name, "/")
		ns := ""
		if len(parts) >= 4 {
			ns = parts[len(parts)-3]
		}
		g.workNS = append(g.workNS, g.nsIDs.id(ns))
	}
	return id
}

// vuln returns the group of the row's vulnerability, starting it on first
// sight.
func (g *HTMLGroups) vuln(f *Finding) int32 {
	rank := int8(sla.SeverityRank(f.Severity))
	if id, ok := g.vulnIDs[f.ID]; ok {
		vg := &g.vulns[id]
		vg.sev = min(vg.sev, rank)
		if !vg.hasCVSS && f.HasCVSS {
			vg.hasCVSS, vg.cvss = true, f.CVSS
		}
		return id
	}
	vg := vulnGroup{id: g.str.id(f.ID), title: g.str.id(f.Title), url: g.str.id(f.PrimaryURL), kevDue: -1, sev: rank,
		hasCVSS: f.HasCVSS, cvss: f.CVSS, stats: groupStats{earliest: noDay}}
	if k := f.Exploit.KEV; k != nil {
		vg.kev, vg.kevDue = 1, g.str.id(date(k.DueDate))
		if k.Ransomware() {
			vg.kev = 2
		}
	}
	if f.Exploit.HasEPSS {
		vg.hasEPSS, vg.epss, vg.pct = true, f.Exploit.EPSS.Score, f.Exploit.EPSS.Percentile
	}
	id := int32(len(g.vulns))
	g.vulnIDs[f.ID] = id
	g.vulns = append(g.vulns, vg)
	return id
}

func (g *HTMLGroups) rec(v int32, f *Finding) int32 {
	k := recKey{vuln: v, sev: int8(sla.SeverityRank(f.Severity)), pkg: f.PkgName, path: f.PkgPath,
		version: f.PkgVersion, fixed: f.FixedVersion}
	if id, ok := g.recIDs[k]; ok {
		return id
	}
	id := int32(len(g.recs))
	g.recIDs[k] = id
	g.recs = append(g.recs, k)
	return id
}

func (g *HTMLGroups) kind(f *Finding, x *rowFacts) int32 {
	k := rowKind{status: int8(x.status), breached: f.Breached,
		delta: int8(f.DaysRemaining - int(x.day-g.asOfDay)), rule: g.str.id(f.DeadlineRule), vex: -1}
	if f.VEX != nil {
		vk := vexKey{g.str.id(f.VEXStatus()), g.str.id(f.VEXJustification()), g.str.id(f.VEXSource())}
		id, ok := g.vexIDs[vk]
		if !ok {
			id = int32(len(g.vexes))
			g.vexIDs[vk] = id
			g.vexes = append(g.vexes, vk)
		}
		k.vex = id
	}
	if id, ok := g.kindIDs[k]; ok {
		return id
	}
	id := int32(len(g.kinds))
	g.kindIDs[k] = id
	g.kinds = append(g.kinds, k)
	return id
}

// namespaces counts the namespaces that run an image with rows.
func (g *HTMLGroups) namespaces() int {
	s := newDistinct(len(g.nsIDs.strs))
	s.next()
	for i := range g.images {
		for _, sc := range g.images[i].scopes {
			s.mark(sc[1])
		}
	}
	return s.n
}
