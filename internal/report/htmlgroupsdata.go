package report

import (
	"bufio"
	"slices"
	"strconv"
	"strings"

	"github.com/fleetscan/fleetscan/internal/sla"
)

// The page's data is one JSON document inside <script type="application/json"
// id="fleetscan-data">, every string encoded with '<', '>' and '&' escaped
// so no value can close the element. Strings that repeat (references,
// titles, packages, versions, workload labels) are numbered in one string
// table ("str"); groups are arrays of string ids and counts; the rows of an
// image are one string ("rows") of fixed-width base-64 digits — package
// record, deadline day, kind — that the page decodes when a group is
// expanded.

// digits64 are the base-64 digits of the rows strings (no character that
// JSON or HTML would escape).
const digits64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// width64 is the number of base-64 digits that hold 0..n.
func width64(n int) int {
	w := 1
	for ; n >= 64; n /= 64 {
		w++
	}
	return w
}

func append64(b []byte, n, w int) []byte {
	for i := w - 1; i >= 0; i-- {
		b = append(b, digits64[(n>>(6*i))&63])
	}
	return b
}

// dataWriter appends the document to a buffer and flushes it in chunks.
type dataWriter struct {
	w   *bufio.Writer
	b   []byte
	err error
}

func (d *dataWriter) flush(force bool) {
	if d.err == nil && (force || len(d.b) > 64<<10) {
		_, d.err = d.w.Write(d.b)
		d.b = d.b[:0]
	}
}

func (d *dataWriter) raw(s string) { d.b = append(d.b, s...) }

func (d *dataWriter) int(n int) { d.b = strconv.AppendInt(d.b, int64(n), 10) }

func (d *dataWriter) str(s string) { d.b = appendJSONString(d.b, s, true) }

func (d *dataWriter) sep(i int) {
	if i > 0 {
		d.b = append(d.b, ',')
	}
}

func (d *dataWriter) float(ok bool, f float64) {
	if !ok {
		d.raw("null")
		return
	}
	d.b = strconv.AppendFloat(d.b, f, 'f', -1, 64)
}

func (d *dataWriter) day(day int32) {
	if day == noDay {
		d.raw("null")
		return
	}
	d.int(int(day))
}

func (d *dataWriter) ids(ids []int32) {
	d.raw("[")
	for i, id := range ids {
		d.sep(i)
		d.int(int(id))
	}
	d.raw("]")
}

// stats appends a group's counts: [findings, breached, kev, earliest
// deadline day, rows per severity ×5, per status ×5, per VEX status ×4].
func (d *dataWriter) stats(s *groupStats) {
	d.raw("[")
	d.int(int(s.findings()))
	d.raw(",")
	d.int(int(s.breached))
	d.raw(",")
	d.int(int(s.kev))
	d.raw(",")
	d.day(s.earliest)
	for _, arr := range [][]int32{s.sev[:], s.status[:], s.vex[:]} {
		for _, n := range arr {
			d.raw(",")
			d.int(int(n))
		}
	}
	d.raw("]")
}

// writeData writes the page's data document.
func (g *HTMLGroups) writeData(w *bufio.Writer, shown []string) error {
	d := &dataWriter{w: w}
	d.raw(`<script type="application/json" id="fleetscan-data">{"asOf":`)
	d.int(int(g.asOfDay))
	d.raw(`,"sev":["CRITICAL","HIGH","MEDIUM","LOW","UNKNOWN"],"shown":[`)
	for i, s := range shown {
		d.sep(i)
		d.int(sla.SeverityRank(s))
	}
	d.raw(`],"status":["open","accepted","acceptance-expired","not_affected","fixed"],"vexStatus":["not_affected","affected","fixed","under_investigation"]`)
	g.writeKinds(d)
	g.writeRecs(d)
	g.writeVulns(d)
	g.writeImages(d)
	g.writeNamespaces(d)
	g.writeRows(d)
	d.raw(`,"str":[`)
	for i, s := range g.str.strs {
		d.sep(i)
		d.str(s)
		d.flush(false)
	}
	d.raw("]}</script>\n")
	d.flush(true)
	return d.err
}

// writeKinds: "kinds" [status, rule, VEX statement (-1: none), breached,
// days-remaining offset] and "vex" [status, justification, source].
func (g *HTMLGroups) writeKinds(d *dataWriter) {
	d.raw(`,"kinds":[`)
	for i, k := range g.kinds {
		d.sep(i)
		d.raw("[")
		d.int(int(k.status))
		d.raw(",")
		d.int(int(k.rule))
		d.raw(",")
		d.int(int(k.vex))
		d.raw(",")
		d.int(int(boolInt(k.breached)))
		d.raw(",")
		d.int(int(k.delta))
		d.raw("]")
	}
	d.raw(`],"vex":[`)
	for i, v := range g.vexes {
		d.sep(i)
		d.ids([]int32{v.status, v.justification, v.source})
	}
	d.raw("]")
}

func boolInt(b bool) int32 {
	if b {
		return 1
	}
	return 0
}

// writeRecs: "recs" [vulnerability, severity, package, installed, fixed in].
func (g *HTMLGroups) writeRecs(d *dataWriter) {
	d.raw(`,"recs":[`)
	for i, r := range g.recs {
		d.sep(i)
		d.ids([]int32{r.vuln, int32(r.sev), g.str.id(pkgLabel(r.pkg, r.path)), g.str.id(r.version), g.str.id(r.fixed)})
		d.flush(false)
	}
	d.raw("]")
}

// writeVulns: "vulns" [id, title, url, kev (0, 1, 2: ransomware), KEV due
// (-1: none), EPSS, percentile, CVSS, worst severity, images, workloads,
// clusters, stats].
func (g *HTMLGroups) writeVulns(d *dataWriter) {
	d.raw(`,"vulns":[`)
	cl := newDistinct(len(g.cluster.strs))
	wl := newDistinct(len(g.work.strs))
	for i := range g.vulns {
		v := &g.vulns[i]
		slices.Sort(v.images)
		v.images = slices.Compact(v.images)
		cl.next()
		wl.next()
		for _, img := range v.images {
			for _, s := range g.images[img].scopes {
				cl.mark(s[0])
			}
			for _, w := range g.images[img].workloads {
				wl.mark(w)
			}
		}
		d.sep(i)
		d.ids([]int32{v.id, v.title, v.url, int32(v.kev), v.kevDue})
		d.b[len(d.b)-1] = ','
		d.float(v.hasEPSS, v.epss)
		d.raw(",")
		d.float(v.hasEPSS, v.pct)
		d.raw(",")
		d.float(v.hasCVSS, v.cvss)
		for _, n := range []int{int(v.sev), len(v.images), wl.n, cl.n} {
			d.raw(",")
			d.int(n)
		}
		d.raw(",")
		d.stats(&v.stats)
		d.raw("]")
		v.images = nil
		d.flush(false)
	}
	d.raw("]")
}

// distinct counts distinct small integers, reusable across sets without
// clearing.
type distinct struct {
	seen []int32
	gen  int32
	n    int
}

func newDistinct(n int) *distinct { return &distinct{seen: make([]int32, n)} }

func (s *distinct) next() { s.gen, s.n = s.gen+1, 0 }

func (s *distinct) mark(id int32) {
	if id >= 0 && s.seen[id] != s.gen {
		s.seen[id] = s.gen
		s.n++
	}
}

// writeImages: "images" [reference, digest, first workload labels,
// workloads, end-of-life OS (0/1), stats, platform].
func (g *HTMLGroups) writeImages(d *dataWriter) {
	d.raw(`,"images":[`)
	for i := range g.images {
		img := &g.images[i]
		d.sep(i)
		d.raw("[")
		d.int(int(img.ref))
		d.raw(",")
		d.str(img.digest)
		d.raw(",")
		d.ids(img.labels)
		d.raw(",")
		d.int(int(img.nWork))
		d.raw(",")
		d.int(int(boolInt(img.eol)))
		d.raw(",")
		d.stats(&img.stats)
		d.raw(",")
		d.str(img.platform)
		d.raw("]")
		d.flush(false)
	}
	d.raw("]")
}

// writeNamespaces: "ns" [name, clusters, workloads, images, stats], the
// namespaces sorted by name.
func (g *HTMLGroups) writeNamespaces(d *dataWriter) {
	n := len(g.nsIDs.strs)
	images := make([][]int32, n)
	stats := make([]groupStats, n)
	clusters := make([]*distinct, n)
	for i := range n {
		stats[i].earliest = noDay
		clusters[i] = newDistinct(len(g.cluster.strs))
		clusters[i].next()
	}
	for i := range g.images {
		img := &g.images[i]
		for _, s := range img.scopes {
			ns := s[1]
			clusters[ns].mark(s[0])
			if k := len(images[ns]); k == 0 || images[ns][k-1] != int32(i) {
				images[ns] = append(images[ns], int32(i))
				stats[ns].merge(&img.stats)
			}
		}
	}
	wl := newDistinct(len(g.work.strs))
	order := make([]int32, 0, n)
	for i := range n {
		if len(images[i]) > 0 {
			order = append(order, int32(i))
		}
	}
	slices.SortFunc(order, func(a, b int32) int { return strings.Compare(g.nsIDs.strs[a], g.nsIDs.strs[b]) })
	d.raw(`,"ns":[`)
	for k, ns := range order {
		wl.next()
		for _, img := range images[ns] {
			for _, w := range g.images[img].workloads {
				if g.workNS[w] == ns {
					wl.mark(w)
				}
			}
		}
		d.sep(k)
		d.raw("[")
		d.int(int(g.str.id(g.nsIDs.strs[ns])))
		d.raw(",")
		d.int(clusters[ns].n)
		d.raw(",")
		d.int(wl.n)
		d.raw(",")
		d.ids(images[ns])
		d.raw(",")
		d.stats(&stats[ns])
		d.raw("]")
		d.flush(false)
	}
	d.raw("]")
}

// writeRows: "enc" [record digits, day digits, first day, kind digits] and
// "rows", one string per image.
func (g *HTMLGroups) writeRows(d *dataWriter) {
	lo, hi := g.asOfDay, g.asOfDay
	for i := range g.images {
		for _, r := range g.images[i].rows {
			lo, hi = min(lo, r.day), max(hi, r.day)
		}
	}
	rw, dw, kw := width64(len(g.recs)), width64(int(hi-lo)), width64(len(g.kinds))
	d.raw(`,"enc":[`)
	for i, n := range []int{rw, dw, int(lo), kw} {
		d.sep(i)
		d.int(n)
	}
	d.raw(`],"rows":[`)
	for i := range g.images {
		d.sep(i)
		d.raw(`"`)
		for _, r := range g.images[i].rows {
			d.b = append64(d.b, int(r.rec), rw)
			d.b = append64(d.b, int(r.day-lo), dw)
			d.b = append64(d.b, int(r.kind), kw)
		}
		d.raw(`"`)
		d.flush(false)
	}
	d.raw("]")
}
