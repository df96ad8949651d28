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
// YYYY-MM-DD, "no fix", True/False), so existing consumers keep working.
var CSVColumns = []string{
	"image", "cve_id", "severity", "pkg_name", "installed", "fixed_in", "sla_deadline", "sla_breached",
	"digest", "first_seen", "days_remaining", "title", "cvss_score", "published", "status",
	"clusters", "namespaces", "workloads",
}

// TicketCSVColumns are the tickets CSV's columns.
var TicketCSVColumns = []string{
	"ticket_id", "repository", "package", "installed", "fixed_version", "summary", "severity",
	"deadline", "breached", "fixes", "unfixed", "images", "workloads",
}

// listSep joins multi-valued cells.
const listSep = ";"

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
	// Rows of one image share these cells; join them once per image.
	var last *Image
	var clusters, namespaces, workloads string
	for i := range r.Findings {
		f := &r.Findings[i]
		if f.Img != last {
			last = f.Img
			clusters = strings.Join(last.Clusters, listSep)
			namespaces = strings.Join(last.Namespaces, listSep)
			workloads = strings.Join(last.Workloads, listSep)
		}
		fixed := f.FixedVersion
		if fixed == "" {
			fixed = "no fix"
		}
		cvss := ""
		if f.HasCVSS {
			cvss = strconv.FormatFloat(f.CVSS, 'f', -1, 64)
		}
		row = append(row[:0],
			f.Img.Reference, f.ID, f.Severity, f.PkgName, f.PkgVersion, fixed,
			date(f.Deadline), pyBool(f.Breached),
			f.Img.Key.Digest, date(f.FirstSeen), strconv.Itoa(f.DaysRemaining), f.Title, cvss, date(f.Published),
			string(f.Status), clusters, namespaces, workloads,
		)
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

// WriteTicketsCSV writes one row per ticket.
func WriteTicketsCSV(w io.Writer, r *Report) error {
	bw := bufio.NewWriter(w)
	cw := csv.NewWriter(bw)
	if err := cw.Write(TicketCSVColumns); err != nil {
		return err
	}
	for _, t := range r.Tickets {
		if err := cw.Write([]string{
			t.ID, t.Repository, t.Package, strings.Join(t.Installed, listSep), t.FixedVersion, t.Summary,
			t.Severity, date(t.Deadline), pyBool(t.Breached), strings.Join(t.Fixes, listSep),
			strings.Join(t.Unfixed, listSep), strings.Join(t.Images, listSep), strings.Join(t.Workloads, listSep),
		}); err != nil {
			return err
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	return bw.Flush()
}
