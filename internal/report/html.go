package report

import (
	"bufio"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
	"iter"
	"strconv"
	"strings"
	"time"

	"github.com/fleetscan/fleetscan/internal/sla"
)

//go:embed html.tmpl
var htmlSource string

// htmlScript is the page's script: static, so the page's Content Security
// Policy allows exactly it (by hash) and nothing else.
//
//go:embed html.js
var htmlScript string

// htmlScriptHash is the CSP source of htmlScript.
var htmlScriptHash = func() string {
	sum := sha256.Sum256([]byte(htmlScript))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}()

var htmlTemplates = template.Must(template.New("report").Funcs(template.FuncMap{
	"date":   date,
	"stamp":  stamp,
	"short":  shortDigest,
	"join":   func(s []string, n int) string { return joinLimit(s, n) },
	"dash":   orDash,
	"pkg":    pkgLabel,
	"lower":  strings.ToLower,
	"yesno":  yesNo,
	"neg":    func(n int) int { return -n },
	"plural": plural,
	"epss":   epssText,
}).Parse(htmlSource))

// severityColors are the chart colours per severity.
var severityColors = map[string]string{
	sla.Critical: "#b3261e", sla.High: "#e8710a", sla.Medium: "#f2b705", sla.Low: "#4a90d9", sla.Unknown: "#8a8f98",
}

type htmlBar struct {
	Label    string
	Count    int
	Breached int
	Color    string
	Y, W     int
}

type htmlSegment struct {
	X, Y, W, H int
	Color      string
	Title      string
}

type htmlColumn struct {
	Label    string
	X        int
	Total    int
	Segments []htmlSegment
}

type htmlView struct {
	R          *Report
	Verdict    string
	Scope      string
	Class      string // ok, breach, incomplete
	Bars       []htmlBar
	ChartH     int
	Columns    []htmlColumn
	DeadlineH  int
	Legend     []htmlBar
	Gating     []*Finding
	GatingMore int
	Unreach    []Cluster
	Failures   []Failure
	FailMore   int
	NotScanned []NotScanned
	NSMore     int
	NewList    []DiffEntry
	NewMore    int
	FixedList  []DiffEntry
	FixedMore  int
	Tickets    []Ticket
	TicketMore int
	Policy     []string
	EOL        []*Image
	EOLMore    int
	// MultiPlatform: the fleet runs images of more than one platform, so
	// the tables show each row's platform.
	MultiPlatform bool
	// Script is the page's script; ScriptHash its CSP source.
	Script     template.JS
	ScriptHash string
	// Vulns, Images and Namespaces count the groups of each view.
	Vulns, Images, Namespaces int
}

const (
	barChartW  = 300
	colChartH  = 160
	colWidth   = 34
	colSpacing = 8
	deadlineN  = 12 // weekly buckets after the overdue one
)

// buildHTMLView is the page's view of the report: r gives everything but
// the rows (r.Findings is not read), g what is drawn from the rows.
func buildHTMLView(r *Report, g *HTMLGroups) *htmlView {
	v := &htmlView{R: r, Verdict: Verdict(r), Scope: scopeLine(r),
		Policy: policyLines(r), Script: template.JS(htmlScript), ScriptHash: htmlScriptHash}
	switch {
	case r.Summary.BreachedUnaccepted > 0:
		v.Class = "breach"
	case !r.Complete:
		v.Class = "incomplete"
	default:
		v.Class = "ok"
	}
	v.MultiPlatform = multiPlatform(r, g)
	v.severityBars(r, g)
	v.deadlineColumns(r, g.deadlineBuckets())
	for i := range g.gating {
		v.Gating = append(v.Gating, &g.gating[i])
	}
	v.GatingMore = g.gateN - len(g.gating)
	for _, c := range r.Clusters {
		if c.Status == ClusterUnreachable {
			v.Unreach = append(v.Unreach, c)
		}
	}
	v.Failures, v.FailMore = head(r.Failures, MarkdownLimit*2)
	v.NotScanned, v.NSMore = head(r.NotScanned, MarkdownLimit*2)
	v.NewList, v.NewMore = head(r.Diff.NewFindings, MarkdownLimit*2)
	v.FixedList, v.FixedMore = head(r.Diff.FixedFindings, MarkdownLimit*2)
	v.Tickets, v.TicketMore = headSeq(r.Tickets.All(), r.Tickets.Len(), MarkdownLimit*2)
	v.EOL, v.EOLMore = head(eolImages(r), MarkdownLimit*2)
	v.Vulns, v.Images, v.Namespaces = len(g.vulns), len(g.images), g.namespaces()
	return v
}

// multiPlatform reports whether the report's images run on more than one
// platform.
func multiPlatform(r *Report, g *HTMLGroups) bool {
	for _, img := range r.Images {
		if img.Platform != r.Images[0].Platform {
			return true
		}
	}
	for i := range g.images {
		if g.images[i].platform != g.images[0].platform {
			return true
		}
	}
	return false
}

// severityBars is the bar chart of findings per severity.
func (v *htmlView) severityBars(r *Report, g *HTMLGroups) {
	counts, breached := r.Summary.BySeverity, map[string]int{}
	for rank, n := range g.gateBySev {
		if n > 0 {
			breached[sla.Severities[rank]] = n
		}
	}
	top := 1
	for _, sev := range r.Policy.Severities {
		top = max(top, counts[sev])
	}
	for i, sev := range r.Policy.Severities {
		v.Bars = append(v.Bars, htmlBar{Label: sev, Count: counts[sev], Breached: breached[sev],
			Color: severityColors[sev], Y: i * 30, W: counts[sev] * barChartW / top})
		v.Legend = append(v.Legend, htmlBar{Label: sev, Color: severityColors[sev], Y: i * 110})
	}
	v.ChartH = len(v.Bars) * 30
}

// deadlineBucket counts findings per severity whose deadline falls in it.
type deadlineBucket struct {
	label  string
	counts map[string]int
}

// deadlineBuckets are the upcoming deadlines of the rows that still count
// (counted by Add): overdue, then one bucket per week from as-of, then
// everything later.
func (g *HTMLGroups) deadlineBuckets() []deadlineBucket {
	buckets := make([]deadlineBucket, deadlineN+2)
	buckets[0].label = "overdue"
	for i := 1; i <= deadlineN; i++ {
		buckets[i].label = g.asOf.Add(time.Duration(i-1) * 7 * 24 * time.Hour).Format("01-02")
	}
	buckets[deadlineN+1].label = "later"
	for i := range buckets {
		buckets[i].counts = map[string]int{}
		for rank, n := range g.buckets[i] {
			if n > 0 {
				buckets[i].counts[sla.Severities[rank]] = n
			}
		}
	}
	return buckets
}

// deadlineColumns is the stacked column chart of the deadline buckets.
func (v *htmlView) deadlineColumns(r *Report, buckets []deadlineBucket) {
	colTop := 1
	for _, b := range buckets {
		t := 0
		for _, n := range b.counts {
			t += n
		}
		colTop = max(colTop, t)
	}
	for i, b := range buckets {
		c := htmlColumn{Label: b.label, X: i * (colWidth + colSpacing)}
		y := colChartH
		for _, sev := range r.Policy.Severities {
			n := b.counts[sev]
			if n == 0 {
				continue
			}
			h := max(1, n*colChartH/colTop)
			y -= h
			c.Total += n
			c.Segments = append(c.Segments, htmlSegment{X: c.X, Y: y, W: colWidth, H: h, Color: severityColors[sev],
				Title: fmt.Sprintf("%s: %d %s", b.label, n, sev)})
		}
		v.Columns = append(v.Columns, c)
	}
	v.DeadlineH = colChartH
}

// epssText renders a row's EPSS score and percentile ("0.94 (p0.99)"), or
// "" without one.
func epssText(f *Finding) string {
	if !f.Exploit.HasEPSS {
		return ""
	}
	return strconv.FormatFloat(f.Exploit.EPSS.Score, 'f', -1, 64) + " (p" + strconv.FormatFloat(f.Exploit.EPSS.Percentile, 'f', -1, 64) + ")"
}

// headSeq is head of the count items seq yields: copies of the first n.
func headSeq[T any](seq iter.Seq[*T], count, n int) ([]T, int) {
	var out []T
	for item := range seq {
		if len(out) == n {
			break
		}
		out = append(out, *item)
	}
	return out, count - len(out)
}

// head is the first n of s, and how many more there are.
func head[T any](s []T, n int) ([]T, int) {
	if len(s) <= n {
		return s, 0
	}
	return s[:n], len(s) - n
}

// WriteHTML writes one self-contained HTML page (inline CSS, JavaScript and
// SVG; nothing is fetched): verdict, severity chart, upcoming deadlines,
// breached findings, failures, changes, tickets, and the findings grouped
// by vulnerability, by image and by namespace, each group expanding on
// demand to its rows. It aggregates r.Findings with HTMLGroups.
func WriteHTML(w io.Writer, r *Report) error {
	g := NewHTMLGroups(r.AsOf)
	g.byPtr = make(map[*Image]int32, len(r.Images))
	for f := range r.Findings.All() {
		g.Add(f)
	}
	return g.WriteHTML(w, r)
}

// WriteHTML writes the page of r with the rows g aggregated; r.Findings is
// not read, so a reporter that streams its rows passes a Report without
// them.
func (g *HTMLGroups) WriteHTML(w io.Writer, r *Report) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	v := buildHTMLView(r, g)
	if err := htmlTemplates.ExecuteTemplate(bw, "head", v); err != nil {
		return err
	}
	if err := g.writeData(bw, r.Policy.Severities); err != nil {
		return err
	}
	if err := htmlTemplates.ExecuteTemplate(bw, "tail", v); err != nil {
		return err
	}
	return bw.Flush()
}
