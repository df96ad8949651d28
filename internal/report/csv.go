package report

import (
	"bufio"
	"encoding/csv"
	"io"
	"strconv"
	"strings"
	"time"
)

// CSVColumns are the report CSV's columns. The first eight are exactly the
// original tutorial's, in its order, with its value formats (dates as
// YYYY-MM-DD, "no fix", True/False), so existing consumers keep working;
// columns are only ever appended.
var CSVColumns = []string{
	"image", "cve_id", "severity", "pkg_name", "installed", "fixed_in", "sla_deadline", "sla_breached",
	"digest", "platform", "first_seen", "days_remaining", "title", "cvss_score", "published", "status",
	"clusters", "namespaces", "workloads",
	"kev", "kev_due_date", "ransomware", "epss", "epss_percentile", "sla_rule", "os_eol",
	"vex_status", "vex_justification", "vex_source",
}

// TicketCSVColumns are the tickets CSV's columns.
var TicketCSVColumns = []string{
	"ticket_id", "repository", "package", "installed", "fixed_version", "summary", "severity",
	"deadline", "breached", "fixes", "unfixed", "images", "platforms", "workloads", "kev", "kev_vulnerabilities",
}

// listSep joins multi-valued cells.
const listSep = ";"

// csvText neutralises a text cell a spreadsheet would run as a formula
// (OWASP "CSV injection"): a cell starting with = + - @ tab or carriage
// return gets a leading single quote, which spreadsheets show as text and do
// not evaluate. Plain numbers ("-3", "+1.5") are left alone: they are not
// formulas, and a negative days_remaining must stay a number.
func csvText(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		if !isPlainNumber(s) {
			return "'" + s
		}
	}
	return s
}

// isPlainNumber reports whether s is [+-]digits[.digits].
func isPlainNumber(s string) bool {
	if s[0] == '+' || s[0] == '-' {
		s = s[1:]
	}
	if s == "" {
		return false
	}
	dot := false
	for i, c := range s {
		switch {
		case c >= '0' && c <= '9':
		case c == '.' && !dot && i > 0 && i < len(s)-1:
			dot = true
		default:
			return false
		}
	}
	return true
}

// csvRow neutralises every text cell of row in place (WriteCSV knows
// which cells are numbers and leaves them out).
func csvRow(row []string) []string {
	for i := range row {
		row[i] = csvText(row[i])
	}
	return row
}

func date(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.DateOnly)
}

func pyBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

// WriteCSV writes the findings, one row each, in report order.
func WriteCSV(w io.Writer, r *Report) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	cw := csv.NewWriter(bw)
	if err := cw.Write(CSVColumns); err != nil {
		return err
	}
	row := make([]string, len(CSVColumns))
	ex := newExploitText()
	// Rows of one image share these cells; join them once per image.
	var last *Image
	var clusters, namespaces, workloads string
	for f := range r.Findings.All() {
		if f.Img != last {
			last = f.Img
			clusters = strings.Join(last.Clusters, listSep)
			namespaces = strings.Join(last.Namespaces, listSep)
			workloads = strings.Join(last.WorkloadLabels(), listSep)
		}
		fixed := f.FixedVersion
		if fixed == "" {
			fixed = "no fix"
		}
		cvss := ""
		if f.HasCVSS {
			cvss = strconv.FormatFloat(f.CVSS, 'f', -1, 64)
		}
		// days_remaining and cvss_score are numbers; every other cell is
		// text a registry, a cluster or an advisory controls.
		row = append(row[:0],
			csvText(f.Img.Reference), csvText(f.ID), csvText(f.Severity), csvText(f.PkgName), csvText(f.PkgVersion), csvText(fixed),
			date(f.Deadline), pyBool(f.Breached),
			csvText(f.Img.Key.Digest), csvText(f.Img.Platform), date(f.FirstSeen), strconv.Itoa(f.DaysRemaining), csvText(f.Title), cvss, date(f.Published),
			csvText(string(f.Status)), csvText(clusters), csvText(namespaces), csvText(workloads),
		)
		row = appendExploitCells(row, f, ex)
		row = append(row, csvText(f.VEXStatus()), csvText(f.VEXJustification()), csvText(f.VEXSource()))
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	return bw.Flush()
}

// appendExploitCells appends the exploit columns (kev … os_eol): KEV
// listing and due date, ransomware use, EPSS score and percentile (rendered
// once per vulnerability by ex), the rule that set the deadline and the
// image's end-of-life flag.
func appendExploitCells(row []string, f *Finding, ex *exploitText) []string {
	c := ex.of(f)
	return append(row, c.kev, c.due, c.ransomware, c.epss, c.percentile,
		csvText(f.DeadlineRule), strconv.FormatBool(f.Img.EOL()))
}

// WriteTicketsCSV writes one row per ticket.
func WriteTicketsCSV(w io.Writer, r *Report) error {
	bw := bufio.NewWriter(w)
	cw := csv.NewWriter(bw)
	if err := cw.Write(TicketCSVColumns); err != nil {
		return err
	}
	for t := range r.Tickets.All() {
		if err := cw.Write(csvRow([]string{
			t.ID, t.Repository, t.Package, strings.Join(t.Installed, listSep), t.FixedVersion, t.Summary,
			t.Severity, date(t.Deadline), pyBool(t.Breached), strings.Join(t.Fixes, listSep),
			strings.Join(t.Unfixed, listSep), strings.Join(t.Images, listSep), strings.Join(t.Platforms, listSep),
			strings.Join(markInferred(t.Workloads, t.OwnerInferred), listSep),
			strconv.FormatBool(t.KEV), strings.Join(t.KEVVulnerabilities, listSep),
		})); err != nil {
			return err
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	return bw.Flush()
}
