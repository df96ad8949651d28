package report

import (
	"bufio"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/fleetscan/fleetscan/internal/sla"
)

//go:embed html.tmpl
var htmlSource string

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
}

const (
	barChartW  = 300
	colChartH  = 160
	colWidth   = 34
	colSpacing = 8
	deadlineN  = 12 // weekly buckets after the overdue one
)

func buildHTMLView(r *Report) *htmlView {
	v := &htmlView{R: r, Verdict: Verdict(r), Scope: scopeLine(r),
		Policy: policyLines(r)}
	switch {
	case r.Summary.BreachedUnaccepted > 0:
		v.Class = "breach"
	case !r.Complete:
		v.Class = "incomplete"
	default:
		v.Class = "ok"
	}
	v.MultiPlatform = multiPlatform(r)
	v.severityBars(r)
	v.deadlineColumns(r, deadlineBuckets(r))
	for i := range r.Findings {
		if r.Findings[i].Gating() {
			if len(v.Gating) < MarkdownLimit*2 {
				v.Gating = append(v.Gating, &r.Findings[i])
			} else {
				v.GatingMore++
			}
		}
	}
	for _, c := range r.Clusters {
		if c.Status == ClusterUnreachable {
			v.Unreach = append(v.Unreach, c)
		}
	}
	v.Failures, v.FailMore = head(r.Failures, MarkdownLimit*2)
	v.NotScanned, v.NSMore = head(r.NotScanned, MarkdownLimit*2)
	v.NewList, v.NewMore = head(r.Diff.NewFindings, MarkdownLimit*2)
	v.FixedList, v.FixedMore = head(r.Diff.FixedFindings, MarkdownLimit*2)
	v.Tickets, v.TicketMore = head(r.Tickets, MarkdownLimit*2)
	v.EOL, v.EOLMore = head(eolImages(r), MarkdownLimit*2)
	return v
}

// multiPlatform reports whether the report's images run on more than one
// platform.
func multiPlatform(r *Report) bool {
	for _, img := range r.Images {
		if img.Platform != r.Images[0].Platform {
			return true
		}
	}
	return false
}

// severityBars is the bar chart of findings per severity.
func (v *htmlView) severityBars(r *Report) {
	counts, breached := severityCounts(r)
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

// deadlineBuckets sorts the upcoming deadlines of findings that still
// count: overdue, then one bucket per week from as-of, then everything
// later.
func deadlineBuckets(r *Report) []deadlineBucket {
	buckets := make([]deadlineBucket, deadlineN+2)
	buckets[0].label = "overdue"
	for i := 1; i <= deadlineN; i++ {
		buckets[i].label = r.AsOf.Add(time.Duration(i-1) * 7 * 24 * time.Hour).Format("01-02")
	}
	buckets[deadlineN+1].label = "later"
	for i := range buckets {
		buckets[i].counts = map[string]int{}
	}
	for i := range r.Findings {
		f := &r.Findings[i]
		if f.Status == sla.StatusAccepted || f.Status == sla.StatusNotAffected || f.Status == sla.StatusFixed {
			continue
		}
		idx := 0
		if !f.Breached {
			idx = 1 + int(f.Deadline.Sub(r.AsOf)/(7*24*time.Hour))
			idx = min(idx, deadlineN+1)
		}
		buckets[idx].counts[f.Severity]++
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

func head[T any](s []T, n int) ([]T, int) {
	if len(s) <= n {
		return s, 0
	}
	return s[:n], len(s) - n
}

// WriteHTML writes one self-contained HTML page (inline CSS, JavaScript and
// SVG; nothing is fetched): verdict, severity chart, upcoming deadlines,
// breached findings, failures, changes, tickets and a filterable table of
// every finding.
func WriteHTML(w io.Writer, r *Report) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	v := buildHTMLView(r)
	if err := htmlTemplates.ExecuteTemplate(bw, "head", v); err != nil {
		return err
	}
	if err := writeTableData(bw, r); err != nil {
		return err
	}
	if err := htmlTemplates.ExecuteTemplate(bw, "tail", v); err != nil {
		return err
	}
	return bw.Flush()
}

// appendExploitData appends a table row's exploit cells: KEV (0/1), KEV
// due date, ransomware (0/1), EPSS score and percentile (null without),
// the deadline's rule.
func appendExploitData(b []byte, f *Finding) []byte {
	kev, due, ransom := byte('0'), "", byte('0')
	if k := f.Exploit.KEV; k != nil {
		kev, due = '1', date(k.DueDate)
		if k.Ransomware() {
			ransom = '1'
		}
	}
	b = append(b, ',', kev, ',')
	b = appendJSONString(b, due, true)
	b = append(b, ',', ransom, ',')
	if f.Exploit.HasEPSS {
		b = strconv.AppendFloat(b, f.Exploit.EPSS.Score, 'f', -1, 64)
		b = append(b, ',')
		b = strconv.AppendFloat(b, f.Exploit.EPSS.Percentile, 'f', -1, 64)
	} else {
		b = append(b, "null,null"...)
	}
	b = append(b, ',')
	return appendJSONString(b, f.DeadlineRule, true)
}

// writeTableData embeds the findings for the filterable table as compact
// JSON inside a <script type="application/json"> element. Strings are
// encoded with '<', '>' and '&' escaped, so no value can close the element.
// Images are listed once; rows refer to them by index.
func writeTableData(w *bufio.Writer, r *Report) error {
	index := map[*Image]int{}
	b := []byte(`<script type="application/json" id="fleetscan-data">{"images":[`)
	for i := range r.Findings {
		img := r.Findings[i].Img
		if _, ok := index[img]; ok {
			continue
		}
		if len(index) > 0 {
			b = append(b, ',')
		}
		index[img] = len(index)
		b = append(b, '[')
		b = appendJSONString(b, img.Reference, true)
		b = append(b, ',')
		b = appendJSONString(b, img.Key.Digest, true)
		b = append(b, ',')
		b = appendJSONString(b, strings.Join(img.WorkloadLabels(), " "), true)
		b = append(b, ',')
		b = appendJSONString(b, img.Platform, true)
		b = append(b, ']')
		if len(b) > 64<<10 {
			if _, err := w.Write(b); err != nil {
				return err
			}
			b = b[:0]
		}
	}
	b = append(b, `],"rows":[`...)
	for i := range r.Findings {
		f := &r.Findings[i]
		if i > 0 {
			b = append(b, ',', '\n')
		}
		b = append(b, '[')
		b = strconv.AppendInt(b, int64(index[f.Img]), 10)
		for _, s := range []string{f.ID, f.Severity, pkgLabel(f.PkgName, f.PkgPath), f.PkgVersion, f.FixedVersion, date(f.Deadline)} {
			b = append(b, ',')
			b = appendJSONString(b, s, true)
		}
		b = append(b, ',')
		if f.Breached {
			b = append(b, '1')
		} else {
			b = append(b, '0')
		}
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(f.DaysRemaining), 10)
		b = append(b, ',')
		b = appendJSONString(b, string(f.Status), true)
		b = append(b, ',')
		b = appendJSONString(b, f.Title, true)
		b = append(b, ',')
		if f.HasCVSS {
			b = strconv.AppendFloat(b, f.CVSS, 'f', -1, 64)
		} else {
			b = append(b, "null"...)
		}
		b = append(b, ',')
		b = appendJSONString(b, f.PrimaryURL, true)
		b = appendExploitData(b, f)
		for _, s := range []string{f.VEXStatus(), f.VEXJustification(), f.VEXSource()} {
			b = append(b, ',')
			b = appendJSONString(b, s, true)
		}
		b = append(b, ']')
		if len(b) > 64<<10 {
			if _, err := w.Write(b); err != nil {
				return err
			}
			b = b[:0]
		}
	}
	b = append(b, "]}</script>\n"...)
	_, err := w.Write(b)
	return err
}
