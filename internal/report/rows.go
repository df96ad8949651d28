package report

import (
	"cmp"
	"iter"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/fleetscan/fleetscan/internal/feeds"
	"github.com/fleetscan/fleetscan/internal/sla"
	"github.com/fleetscan/fleetscan/internal/vex"
)

// Rows are the report's rows in report order. A built report keeps each
// row as a compact record — its image, its vulnerability and what the SLA
// clock decided, 48 bytes — and renders the Finding only when it is read,
// so a fleet's rows cost a record each rather than a rendered row, and the
// writers stream them. Rows made with RowsOf hold rendered Findings (tests,
// small reports).
type Rows struct {
	list []Finding
	recs []rowRec
	tab  *rowTables
	// sp holds the records instead of recs when they were spilled.
	sp *spilled
	// err is why rows are missing (a spill that failed and could not be
	// read back); spillErr why rows that should have been spilled stayed
	// in memory.
	err, spillErr error
}

// RowsOf makes rows of findings, in the order given.
func RowsOf(findings ...Finding) Rows { return Rows{list: findings} }

// Len is the number of rows.
func (r Rows) Len() int {
	if r.sp != nil {
		return r.sp.n
	}
	if r.tab != nil {
		return len(r.recs)
	}
	return len(r.list)
}

// At renders row i (rows made with RowsOf: the row itself).
func (r Rows) At(i int) *Finding {
	if r.tab == nil {
		return &r.list[i]
	}
	f := new(Finding)
	if r.sp != nil {
		rec, err := r.sp.at(i)
		if err != nil {
			r.sp.fail(err)
		}
		r.tab.render(&rec, f)
		return f
	}
	r.tab.render(&r.recs[i], f)
	return f
}

// Err is why rows are missing: a spilled row that could not be read back
// (All ended early), or rows lost when a spill failed. A report whose
// rows have an error must not be delivered.
func (r Rows) Err() error {
	if r.err != nil {
		return r.err
	}
	if r.sp != nil {
		return r.sp.failure()
	}
	return nil
}

// SpillFailure is why rows that Spill should have moved to a file stayed
// in memory (the rows are complete; the report costs more memory).
func (r Rows) SpillFailure() error { return r.spillErr }

// Spilled reports whether the rows are kept in a temporary file.
func (r Rows) Spilled() bool { return r.sp != nil }

// All yields every row in order. The Finding yielded is reused for the
// next row: copy it (*f) to keep it. Several goroutines may range over
// the same rows at once.
func (r Rows) All() iter.Seq[*Finding] {
	return func(yield func(*Finding) bool) {
		if r.tab == nil {
			for i := range r.list {
				if !yield(&r.list[i]) {
					return
				}
			}
			return
		}
		var f Finding
		if r.sp != nil {
			for rec := range r.sp.records() {
				r.tab.render(rec, &f)
				if !yield(&f) {
					return
				}
			}
			return
		}
		for i := range r.recs {
			r.tab.render(&r.recs[i], &f)
			if !yield(&f) {
				return
			}
		}
	}
}

// Slice renders every row: a copy a caller may change (tests, small
// reports; a fleet's writers range over All instead).
func (r Rows) Slice() []Finding {
	out := make([]Finding, 0, r.Len())
	for f := range r.All() {
		out = append(out, *f)
	}
	return out
}

// rowRec is one row, compactly: indexes into the report's rowTables, and
// times as Unix nanoseconds (the report's times are UTC).
type rowRec struct {
	firstSeen, deadline int64
	vuln, img           uint32
	accept, stmt        uint32
	slaDays             int32
	slaRule, rule       uint16
	status, change      uint16
	breached            bool
}

// rowTables hold what a report's rows share: its images, the distinct
// vulnerabilities with what the exploit feeds say of each, the rule,
// status and change names, the acceptances and the VEX statements.
type rowTables struct {
	asOf    time.Time
	images  []*Image
	imgIdx  map[*Image]uint32
	vulns   []vulnEntry
	vulnIdx map[*Vuln]uint32
	strs    []string
	strIdx  map[string]uint32
	accepts []*sla.Acceptance
	accIdx  map[*sla.Acceptance]uint32
	stmts   []*vex.Statement
	stmtIdx map[*vex.Statement]uint32
}

// vulnEntry is a distinct vulnerability-in-package and its exploit data.
type vulnEntry struct {
	v       *Vuln
	exploit feeds.Match
	sevRank int
}

func newRowTables(asOf time.Time, images []*Image) *rowTables {
	t := &rowTables{asOf: asOf, images: images, imgIdx: make(map[*Image]uint32, len(images)),
		vulnIdx: map[*Vuln]uint32{}, strIdx: map[string]uint32{},
		accepts: []*sla.Acceptance{nil}, accIdx: map[*sla.Acceptance]uint32{},
		stmts: []*vex.Statement{nil}, stmtIdx: map[*vex.Statement]uint32{}}
	for i, img := range images {
		t.imgIdx[img] = uint32(i)
	}
	return t
}

// record compacts f (a row of one of t's images).
func (t *rowTables) record(f *Finding) rowRec {
	return rowRec{
		firstSeen: unixNano(f.FirstSeen), deadline: unixNano(f.Deadline),
		vuln: t.vuln(f.Vuln, f.Exploit), img: t.imgIdx[f.Img],
		accept: index(&t.accepts, t.accIdx, f.Acceptance), stmt: index(&t.stmts, t.stmtIdx, f.VEX),
		slaDays: int32(f.SLADays), slaRule: t.str(f.SLARule), rule: t.str(f.DeadlineRule),
		status: t.str(string(f.Status)), change: t.str(string(f.Change)), breached: f.Breached,
	}
}

// render fills f with the row rec records.
func (t *rowTables) render(rec *rowRec, f *Finding) {
	ve := &t.vulns[rec.vuln]
	*f = Finding{
		Vuln: ve.v, Img: t.images[rec.img],
		FirstSeen: fromUnixNano(rec.firstSeen), SLADays: int(rec.slaDays), SLARule: t.strs[rec.slaRule],
		Deadline: fromUnixNano(rec.deadline), DeadlineRule: t.strs[rec.rule], Exploit: ve.exploit,
		Breached: rec.breached, Status: sla.Status(t.strs[rec.status]), Acceptance: t.accepts[rec.accept],
		VEX: t.stmts[rec.stmt], Change: sla.Change(t.strs[rec.change]),
	}
	f.DaysRemaining = daysRemaining(f.Deadline, t.asOf)
}

func (t *rowTables) vuln(v *Vuln, m feeds.Match) uint32 {
	if i, ok := t.vulnIdx[v]; ok {
		return i
	}
	i := uint32(len(t.vulns))
	t.vulns = append(t.vulns, vulnEntry{v: v, exploit: m, sevRank: sla.SeverityRank(v.Severity)})
	t.vulnIdx[v] = i
	return i
}

func (t *rowTables) str(s string) uint16 {
	i := intern(&t.strs, t.strIdx, s)
	if i > math.MaxUint16 {
		panic("report: more than 65536 distinct rule names")
	}
	return uint16(i)
}

// index is p's index in *list (0 is nil), appending it when new.
func index[P comparable](list *[]P, idx map[P]uint32, p P) uint32 {
	var zero P
	if p == zero {
		return 0
	}
	return intern(list, idx, p)
}

// compare orders two records as compareFindings orders their rows.
func (t *rowTables) compare(a, b *rowRec) int {
	va, vb := &t.vulns[a.vuln], &t.vulns[b.vuln]
	return compareRank(
		rank{breached: a.breached, deadline: a.deadline, exploit: &va.exploit, sevRank: va.sevRank, v: va.v, img: t.images[a.img]},
		rank{breached: b.breached, deadline: b.deadline, exploit: &vb.exploit, sevRank: vb.sevRank, v: vb.v, img: t.images[b.img]})
}

// rank is what orders a row.
type rank struct {
	breached bool
	deadline int64
	exploit  *feeds.Match
	sevRank  int
	v        *Vuln
	img      *Image
}

func rankOf(f *Finding) rank {
	return rank{breached: f.Breached, deadline: unixNano(f.Deadline), exploit: &f.Exploit,
		sevRank: sla.SeverityRank(f.Severity), v: f.Vuln, img: f.Img}
}

// compareRank orders rows: breached first; within that, KEV-listed first,
// then the earliest deadline, the higher EPSS score, the worse severity,
// and a stable tail (image, vulnerability, package, path, digest,
// platform).
func compareRank(a, b rank) int {
	if a.breached != b.breached {
		return cmpBool(b.breached, a.breached)
	}
	if ka, kb := a.exploit.InKEV(), b.exploit.InKEV(); ka != kb {
		return cmpBool(kb, ka)
	}
	if c := cmp.Compare(a.deadline, b.deadline); c != 0 {
		return c
	}
	if ea, eb := epssRank(a.exploit), epssRank(b.exploit); ea != eb {
		return cmp.Compare(eb, ea)
	}
	if a.sevRank != b.sevRank {
		return cmp.Compare(a.sevRank, b.sevRank)
	}
	if a.v == b.v && a.img == b.img {
		return 0
	}
	return cmp.Or(
		strings.Compare(a.img.Reference, b.img.Reference),
		strings.Compare(a.v.ID, b.v.ID),
		strings.Compare(a.v.PkgName, b.v.PkgName),
		strings.Compare(a.v.PkgPath, b.v.PkgPath),
		strings.Compare(a.img.Key.Digest, b.img.Key.Digest),
		strings.Compare(a.img.Platform, b.img.Platform),
	)
}

// compareFindings orders rows as the report ranks them (compareRank).
func compareFindings(a, b *Finding) int { return compareRank(rankOf(a), rankOf(b)) }

// epssRank is the EPSS score; -1 without one (below every score).
func epssRank(m *feeds.Match) float64 {
	if !m.HasEPSS {
		return -1
	}
	return m.EPSS.Score
}

// sortRows ranks the records.
func (t *rowTables) sortRows(recs []rowRec) {
	slices.SortFunc(recs, func(a, b rowRec) int { return t.compare(&a, &b) })
}

// daysRemaining is whole days from asOf to the deadline, rounded down.
func daysRemaining(deadline, asOf time.Time) int {
	return int(math.Floor(deadline.Sub(asOf).Hours() / 24))
}

// zeroTime stands for the zero time.Time among Unix nanoseconds.
const zeroTime = math.MinInt64

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return zeroTime
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == zeroTime {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
