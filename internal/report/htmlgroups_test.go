package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// pageData is the HTML page's data document (htmlgroupsdata.go).
type pageData struct {
	AsOf   int                 `json:"asOf"`
	Str    []string            `json:"str"`
	Status []string            `json:"status"`
	Kinds  [][5]int            `json:"kinds"`
	Vex    [][3]int            `json:"vex"`
	Recs   [][5]int            `json:"recs"`
	Vulns  [][]json.RawMessage `json:"vulns"`
	Images [][]json.RawMessage `json:"images"`
	NS     [][]json.RawMessage `json:"ns"`
	Enc    [4]int              `json:"enc"`
	Rows   []string            `json:"rows"`
}

func dataBlob(t testing.TB, page []byte) []byte {
	t.Helper()
	const open = `<script type="application/json" id="fleetscan-data">`
	i := bytes.Index(page, []byte(open))
	if i < 0 {
		t.Fatal("page has no data document")
	}
	blob := page[i+len(open):]
	return blob[:bytes.Index(blob, []byte("</script>"))]
}

func decodePage(t testing.TB, page []byte) *pageData {
	t.Helper()
	var d pageData
	if err := json.Unmarshal(dataBlob(t, page), &d); err != nil {
		t.Fatal(err)
	}
	return &d
}

func raw[T any](t testing.TB, m json.RawMessage) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(m, &v); err != nil {
		t.Fatalf("%s: %v", m, err)
	}
	return v
}

func (d *pageData) num(s string, p, w int) int {
	n := 0
	for i := range w {
		n = n*64 + strings.IndexByte(digits64, s[p+i])
	}
	return n
}

func unixDate(day int) string { return time.Unix(int64(day)*86400, 0).UTC().Format(time.DateOnly) }

// rows decodes every row of the page as the script does, one line each.
func (d *pageData) rows(t *testing.T) []string {
	var out []string
	rw, dw, d0, kw := d.Enc[0], d.Enc[1], d.Enc[2], d.Enc[3]
	for i, s := range d.Rows {
		img := d.Images[i]
		digest, platform := raw[string](t, img[1]), raw[string](t, img[6])
		for p := 0; p < len(s); p += rw + dw + kw {
			rec := d.Recs[d.num(s, p, rw)]
			day := d0 + d.num(s, p+rw, dw)
			k := d.Kinds[d.num(s, p+rw+dw, kw)]
			vexStatus := ""
			if k[2] >= 0 {
				vexStatus = d.Str[d.Vex[k[2]][0]]
			}
			id := d.Str[raw[int](t, d.Vulns[rec[0]][0])]
			out = append(out, strings.Join([]string{digest, platform, id, d.Str[rec[2]], d.Str[rec[3]], d.Str[rec[4]],
				unixDate(day), fmt.Sprint(day - d.AsOf + k[4]), d.Status[k[0]], d.Str[k[1]], vexStatus, fmt.Sprint(k[3] == 1)}, "|"))
		}
	}
	return out
}

func rowLine(f *Finding) string {
	return strings.Join([]string{f.Digest(), f.Platform(), f.ID, pkgLabel(f.PkgName, f.PkgPath), f.PkgVersion, f.FixedVersion,
		date(f.Deadline), fmt.Sprint(f.DaysRemaining), string(f.Status), f.DeadlineRule, f.VEXStatus(), fmt.Sprint(f.Breached)}, "|")
}

// TestHTMLGroupsMatchRows decodes the page's data as its script does: every
// row of the report is there exactly once with its cells, and each
// vulnerability, image and namespace group counts what its rows say.
func TestHTMLGroupsMatchRows(t *testing.T) {
	t.Parallel()
	asOf := ts("2025-03-10T06:00:00Z")
	s := newScaleFleet(300, 12, asOf)
	in := s.input(0, s.n, &Interner{})
	in.Images[7].Vulns[3].Title = `</script><script>alert(1)</script><!--`
	r := Build(in)
	page := render(t, r, WriteHTML)
	if blob := dataBlob(t, page); bytes.ContainsAny(blob, "<>&") {
		t.Fatal("data document has an unescaped <, > or &")
	}
	d := decodePage(t, page)

	want := make([]string, r.Findings.Len())
	for i, f := range r.Findings.Slice() {
		want[i] = rowLine(&f)
	}
	got := d.rows(t)
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("%d rows decoded, %d in the report; first decoded %q, first reported %q", len(got), len(want), got[:1], want[:1])
	}
	checkVulnGroups(t, r, d)
	checkImageGroups(t, r, d)
}

// groupWant is what a group's stats must say.
type groupWant struct {
	findings, breached int
	earliest           string
	images, workloads  map[string]bool
	clusters           map[string]bool
}

func (w *groupWant) add(f *Finding) {
	if w.images == nil {
		w.images, w.workloads, w.clusters = map[string]bool{}, map[string]bool{}, map[string]bool{}
	}
	w.findings++
	if f.Gating() {
		w.breached++
	}
	if dl := date(f.Deadline); counts(f) && (w.earliest == "" || dl < w.earliest) {
		w.earliest = dl
	}
	w.images[f.Digest()+f.Platform()] = true
	for _, wl := range f.Img.Workloads {
		w.workloads[wl] = true
	}
	for _, c := range f.Img.Clusters {
		w.clusters[c] = true
	}
}

func (w *groupWant) check(t *testing.T, name string, st []*int) {
	t.Helper()
	earliest := ""
	if st[3] != nil {
		earliest = unixDate(*st[3])
	}
	if *st[0] != w.findings || *st[1] != w.breached || earliest != w.earliest {
		t.Errorf("%s: findings %d breached %d earliest %q, want %d %d %q", name, *st[0], *st[1], earliest, w.findings, w.breached, w.earliest)
	}
}

func checkVulnGroups(t *testing.T, r *Report, d *pageData) {
	want := map[string]*groupWant{}
	for f := range r.Findings.All() {
		if want[f.ID] == nil {
			want[f.ID] = &groupWant{}
		}
		want[f.ID].add(f)
	}
	if len(d.Vulns) != len(want) {
		t.Fatalf("%d vulnerability groups, want %d", len(d.Vulns), len(want))
	}
	for _, v := range d.Vulns {
		id := d.Str[raw[int](t, v[0])]
		w := want[id]
		w.check(t, id, raw[[]*int](t, v[12]))
		images, workloads, clusters := raw[int](t, v[9]), raw[int](t, v[10]), raw[int](t, v[11])
		if images != len(w.images) || workloads != len(w.workloads) || clusters != len(w.clusters) {
			t.Errorf("%s: %d images %d workloads %d clusters, want %d %d %d", id, images, workloads, clusters,
				len(w.images), len(w.workloads), len(w.clusters))
		}
	}
}

func checkImageGroups(t *testing.T, r *Report, d *pageData) {
	want := map[string]*groupWant{}
	byNS := map[string]map[string]bool{}
	for f := range r.Findings.All() {
		key := f.Digest() + f.Platform()
		if want[key] == nil {
			want[key] = &groupWant{}
		}
		want[key].add(f)
		for _, ns := range f.Img.Namespaces {
			if byNS[ns] == nil {
				byNS[ns] = map[string]bool{}
			}
			byNS[ns][key] = true
		}
	}
	if len(d.Images) != len(want) {
		t.Fatalf("%d image groups, want %d", len(d.Images), len(want))
	}
	for _, img := range d.Images {
		key := raw[string](t, img[1]) + raw[string](t, img[6])
		want[key].check(t, key, raw[[]*int](t, img[5]))
	}
	if len(d.NS) != len(byNS) {
		t.Fatalf("%d namespace groups, want %d", len(d.NS), len(byNS))
	}
	for _, ns := range d.NS {
		name := d.Str[raw[int](t, ns[0])]
		if n := len(raw[[]int](t, ns[3])); n != len(byNS[name]) {
			t.Errorf("namespace %s: %d images, want %d", name, n, len(byNS[name]))
		}
	}
}

// TestHTMLPageSize: the page of the 200,000-finding synthetic fleet (2,000
// images in 50 clusters), aggregated row by row, stays under 3.5 MB, and
// each row costs at most 6 bytes of it. What grows with the fleet is the
// rows (6 bytes each), the images (about 250 bytes each with their string
// table entries) and the vulnerabilities (about 250 bytes each), so
// 1,000,000 rows of 10,000 images stay well under 15 MB —
// BenchmarkHTML1M measures it.
func TestHTMLPageSize(t *testing.T) {
	if testing.Short() {
		t.Skip("200,000 rows")
	}
	t.Parallel()
	asOf := ts("2025-03-10T06:00:00Z")
	s := newScaleFleet(2000, 50, asOf)
	g := NewHTMLGroups(asOf)
	head := s.stream(g)
	var buf bytes.Buffer
	if err := g.WriteHTML(&buf, head); err != nil {
		t.Fatal(err)
	}
	d := decodePage(t, buf.Bytes())
	rows := 0
	for _, s := range d.Rows {
		rows += len(s) / (d.Enc[0] + d.Enc[1] + d.Enc[3])
	}
	if rows != 200_000 || head.Summary.Findings != rows {
		t.Fatalf("%d rows in the page, %d in the summary, want 200,000", rows, head.Summary.Findings)
	}
	if buf.Len() > 3_500_000 {
		t.Errorf("page of 200,000 findings is %d bytes, want < 3.5 MB", buf.Len())
	}
	if w := d.Enc[0] + d.Enc[1] + d.Enc[3]; w > 6 {
		t.Errorf("a row costs %d bytes, want at most 6", w)
	}
	t.Logf("page of %d findings: %d bytes (%.1f per finding)", rows, buf.Len(), float64(buf.Len())/float64(rows))
}
