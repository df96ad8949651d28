package report

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/fleetscan/fleetscan/internal/sla"
)

// MarkdownLimit bounds the rows of each Markdown and HTML listing (the CSV
// and JSON always carry everything).
const MarkdownLimit = 50

// severityCounts returns findings and breached findings per severity.
func severityCounts(r *Report) (map[string]int, map[string]int) {
	breached := map[string]int{}
	for f := range r.Findings.All() {
		if f.Gating() {
			breached[f.Severity]++
		}
	}
	return r.Summary.BySeverity, breached
}

// Verdict is the report's one-line standing: the gate and completeness.
func Verdict(r *Report) string {
	var parts []string
	if n := r.Summary.BreachedUnaccepted; n > 0 {
		parts = append(parts, plural(n, "unaccepted SLA breach", "unaccepted SLA breaches"))
	} else {
		parts = append(parts, "no unaccepted SLA breach")
	}
	if r.Complete {
		parts = append(parts, "complete")
	} else {
		parts = append(parts, "INCOMPLETE")
	}
	return strings.Join(parts, " · ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func scopeLine(r *Report) string {
	var b strings.Builder
	switch r.Scope.Mode {
	case "run":
		fmt.Fprintf(&b, "run %s", r.Scope.RunID)
	default:
		fmt.Fprintf(&b, "fleet view")
		if r.Scope.MaxAge != "" {
			fmt.Fprintf(&b, " (inventories within %s)", r.Scope.MaxAge)
		}
	}
	fmt.Fprintf(&b, " · %s", plural(r.Summary.Clusters, "cluster", "clusters"))
	if r.DB != nil {
		fmt.Fprintf(&b, " · vulnerability DB v%d updated %s", r.DB.Version, r.DB.UpdatedAt.UTC().Format("2006-01-02 15:04 MST"))
	}
	return b.String()
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 MST") }

// mdCell escapes a Markdown table cell.
func mdCell(s string) string {
	s = strings.ReplaceAll(s, "\\", "\\\\")
	s = strings.ReplaceAll(s, "|", "\\|")
	s = strings.ReplaceAll(s, "\r", " ")
	return strings.ReplaceAll(s, "\n", " ")
}

func joinLimit(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:n], ", ") + fmt.Sprintf(" +%d more", len(items)-n)
}

type mdWriter struct {
	w   *bufio.Writer
	err error
}

func (m *mdWriter) printf(format string, args ...any) {
	if m.err == nil {
		_, m.err = fmt.Fprintf(m.w, format, args...)
	}
}

func (m *mdWriter) table(head []string, rows [][]string) {
	m.printf("| %s |\n|", strings.Join(head, " | "))
	for range head {
		m.printf("---|")
	}
	m.printf("\n")
	for _, r := range rows {
		for i := range r {
			r[i] = mdCell(r[i])
		}
		m.printf("| %s |\n", strings.Join(r, " | "))
	}
}

func (m *mdWriter) more(total int) {
	if total > MarkdownLimit {
		m.printf("\n… and %d more (see report.csv).\n", total-MarkdownLimit)
	}
}

// WriteMarkdown writes a summary suitable for a chat message, a pull
// request or a wiki page: the verdict, counts per severity, breached
// findings, failures, changes and the top tickets.
func WriteMarkdown(w io.Writer, r *Report) error {
	m := &mdWriter{w: bufio.NewWriter(w)}
	m.printf("# fleetscan vulnerability report\n\n")
	m.printf("As of %s · %s\n\n", stamp(r.AsOf), scopeLine(r))
	m.printf("**%s**\n\n", Verdict(r))
	m.summary(r)
	m.exploits(r)
	m.breaches(r)
	m.expiredAcceptances(r)
	m.vexRows(r)
	m.unreachable(r)
	m.failures(r)
	m.notScanned(r)
	m.diff(r.Diff)
	m.tickets(r)
	m.printf("\n---\nGenerated %s by fleetscan. SLA policy: %s.\n", stamp(r.GeneratedAt), strings.Join(policyLines(r), "; "))
	if m.err != nil {
		return m.err
	}
	return m.w.Flush()
}

// summary writes the counts per severity and the coverage.
func (m *mdWriter) summary(r *Report) {
	s := r.Summary
	m.printf("## Summary\n\n")
	counts, breached := severityCounts(r)
	var rows [][]string
	for _, sev := range r.Policy.Severities {
		rows = append(rows, []string{sev, fmt.Sprint(counts[sev]), fmt.Sprint(breached[sev]),
			fmt.Sprint(r.Policy.Days[sev])})
	}
	rows = append(rows, []string{"**Total**", fmt.Sprint(s.Findings), fmt.Sprint(s.BreachedUnaccepted), ""})
	m.table([]string{"Severity", "Findings", "Breached (unaccepted)", "SLA days"}, rows)
	m.printf("\nAccepted: %d · Acceptance expired: %d · Breached but accepted: %d · Tickets: %d\n\n",
		s.Accepted, s.AcceptanceExpired, s.Breached-s.BreachedUnaccepted, s.Tickets)
	if s.NotAffected+s.VEXFixed > 0 {
		m.printf("VEX: %d not affected · %d fixed (reported, never breached)\n\n", s.NotAffected, s.VEXFixed)
	}
	m.printf("Images: %d expected · %d scanned · %d failed · %d not scanned", s.Images, s.ImagesScanned, s.ImagesFailed, s.ImagesNotScanned)
	if s.UnresolvedContainers > 0 {
		m.printf(" · %s with an unresolved image", plural(s.UnresolvedContainers, "container", "containers"))
	}
	m.printf("\n\nClusters: %d", s.Clusters)
	if s.ClustersUnreachable > 0 {
		m.printf(" (%d unreachable)", s.ClustersUnreachable)
	}
	if s.InferredOwners > 0 {
		m.printf(" · %s", inferredLine(s.InferredOwners))
	}
	m.printf("\n")
}

// inferredLine says how many workloads' owners were inferred.
func inferredLine(n int) string {
	return plural(n, "workload", "workloads") + " attributed by naming convention, not looked up (marked" + InferredSuffix + ")"
}

// breaches lists the gating rows: breached and not accepted.
func (m *mdWriter) breaches(r *Report) {
	var gating []Finding // the first MarkdownLimit
	n := 0
	for f := range r.Findings.All() {
		if !f.Gating() {
			continue
		}
		if n++; n <= MarkdownLimit {
			gating = append(gating, *f)
		}
	}
	if n == 0 {
		return
	}
	m.printf("\n## Breached SLAs (%d)\n\n", n)
	var rows [][]string
	for i := range gating {
		f := &gating[i]
		rows = append(rows, []string{f.Image(), f.Platform(), f.ID, f.Severity, orDash(exploitLabel(f)), f.PkgName, f.PkgVersion,
			orDash(f.FixedVersion), date(f.Deadline), f.DeadlineRule, fmt.Sprint(-f.DaysRemaining), joinLimit(f.Img.WorkloadLabels(), 3)})
	}
	m.table([]string{"Image", "Platform", "Vulnerability", "Severity", "Exploit", "Package", "Installed", "Fixed in", "Deadline", "Rule", "Days overdue", "Workloads"}, rows)
	m.more(n)
}

func (m *mdWriter) expiredAcceptances(r *Report) {
	if len(r.ExpiredAcceptances) == 0 {
		return
	}
	m.printf("\n## Expired acceptances (%d)\n\n", len(r.ExpiredAcceptances))
	var rows [][]string
	for _, a := range r.ExpiredAcceptances {
		expired := date(a.Expires.Time)
		if a.FixAvailable {
			expired = "fix available"
		}
		rows = append(rows, []string{a.Vulnerability, a.Repository, orDash(a.Package), expired, a.Reason, fmt.Sprint(a.Findings)})
	}
	m.table([]string{"Vulnerability", "Repository", "Package", "Expired", "Reason", "Findings"}, rows)
}

// vexRows lists the rows a VEX statement applies to.
func (m *mdWriter) vexRows(r *Report) {
	var rows [][]string
	n := 0
	for f := range r.Findings.All() {
		if f.VEX == nil {
			continue
		}
		if n++; n <= MarkdownLimit {
			rows = append(rows, []string{f.Image(), f.ID, f.PkgName, f.PkgVersion, f.VEXStatus(), orDash(f.VEXJustification()),
				string(f.Status), f.VEXSource()})
		}
	}
	if n == 0 {
		return
	}
	m.printf("\n## VEX statements applied (%d)\n\n", n)
	m.table([]string{"Image", "Vulnerability", "Package", "Installed", "VEX status", "Justification", "Status", "Source"}, rows)
	m.more(n)
}

func (m *mdWriter) unreachable(r *Report) {
	var rows [][]string
	for _, c := range r.Clusters {
		if c.Status == ClusterUnreachable {
			rows = append(rows, []string{c.Name, c.RunID, orDash(c.Error)})
		}
	}
	if len(rows) == 0 {
		return
	}
	m.printf("\n## Unreachable clusters (%d)\n\n", len(rows))
	m.table([]string{"Cluster", "Run", "Error"}, rows)
}

func (m *mdWriter) failures(r *Report) {
	if len(r.Failures) == 0 {
		return
	}
	m.printf("\n## Failed scans (%d)\n\n", len(r.Failures))
	var rows [][]string
	for _, f := range r.Failures[:min(len(r.Failures), MarkdownLimit)] {
		rows = append(rows, []string{f.Image, shortDigest(f.Digest), string(f.Class), f.Reason, joinLimit(f.Workloads, 3)})
	}
	m.table([]string{"Image", "Digest", "Class", "Reason", "Workloads"}, rows)
	m.more(len(r.Failures))
}

func (m *mdWriter) notScanned(r *Report) {
	if len(r.NotScanned) == 0 {
		return
	}
	m.printf("\n## Not scanned (%d)\n\n", len(r.NotScanned))
	var rows [][]string
	for _, n := range r.NotScanned[:min(len(r.NotScanned), MarkdownLimit)] {
		rows = append(rows, []string{n.Image, orDash(shortDigest(n.Digest)), n.Reason, joinLimit(n.Workloads, 3)})
	}
	m.table([]string{"Image", "Digest", "Reason", "Workloads"}, rows)
	m.more(len(r.NotScanned))
}

// diff writes the changes since the previous report.
func (m *mdWriter) diff(d Diff) {
	m.printf("\n## Changes since the previous report\n\nNew: %d (%d reopened) · Still open: %d · Fixed: %d\n", d.New+d.Reopened, d.Reopened, d.StillOpen, d.Fixed)
	if len(d.NewFindings) > 0 {
		m.printf("\n### New\n\n")
		var rows [][]string
		for _, e := range d.NewFindings[:min(len(d.NewFindings), MarkdownLimit)] {
			note := ""
			if e.Reopened {
				note = "reopened"
			}
			rows = append(rows, []string{e.Repository, e.VulnerabilityID, e.Severity, pkgLabel(e.PkgName, e.PkgPath), note})
		}
		m.table([]string{"Repository", "Vulnerability", "Severity", "Package", "Note"}, rows)
		m.more(len(d.NewFindings))
	}
	if len(d.FixedFindings) > 0 {
		m.printf("\n### Fixed\n\n")
		var rows [][]string
		for _, e := range d.FixedFindings[:min(len(d.FixedFindings), MarkdownLimit)] {
			rows = append(rows, []string{e.Repository, e.VulnerabilityID, e.Severity, pkgLabel(e.PkgName, e.PkgPath), date(e.FirstSeen), date(e.ResolvedAt)})
		}
		m.table([]string{"Repository", "Vulnerability", "Severity", "Package", "First seen", "Resolved"}, rows)
		m.more(len(d.FixedFindings))
	}
}

func (m *mdWriter) tickets(r *Report) {
	n := r.Tickets.Len()
	if n == 0 {
		return
	}
	m.printf("\n## Tickets (%d)\n\n", n)
	var rows [][]string
	for t := range r.Tickets.All() {
		if len(rows) == MarkdownLimit {
			break
		}
		rows = append(rows, []string{t.ID, t.Summary, strings.Join(t.Platforms, ", "), t.Severity, kevMark(t.KEV), date(t.Deadline), yesNo(t.Breached), fmt.Sprint(len(t.Workloads))})
	}
	m.table([]string{"Ticket", "Upgrade", "Platforms", "Severity", "KEV", "Deadline", "Breached", "Workloads"}, rows)
	m.more(n)
}

// exploits writes the exploit feeds' state, the KEV findings and the
// end-of-life images.
func (m *mdWriter) exploits(r *Report) {
	s := r.Summary
	m.printf("\n## Known exploited and end-of-life\n\n")
	m.printf("Known exploited (CISA KEV): %d findings, %d breached · End-of-life OS images: %d\n\n", s.KEV, s.KEVBreached, s.EOLImages)
	for _, fs := range r.Feeds {
		m.printf("- %s\n", fs.Description)
	}
	if eol := eolImages(r); len(eol) > 0 {
		m.printf("\n")
		var rows [][]string
		for _, img := range eol[:min(len(eol), MarkdownLimit)] {
			rows = append(rows, []string{img.Reference, shortDigest(img.Key.Digest), img.OS.Family + " " + img.OS.Name, joinLimit(img.Workloads, 3)})
		}
		m.table([]string{"End-of-life image", "Digest", "OS", "Workloads"}, rows)
		m.more(len(eol))
	}
}

// eolImages lists the scanned images whose OS is past its end of life.
func eolImages(r *Report) []*Image {
	var out []*Image
	for _, img := range r.Images {
		if img.EOL() {
			out = append(out, img)
		}
	}
	return out
}

// exploitLabel renders what the feeds know of a row: "KEV due 2023-10-31,
// ransomware · EPSS 0.94 (p0.99)".
func exploitLabel(f *Finding) string {
	var parts []string
	if k := f.Exploit.KEV; k != nil {
		kev := "KEV"
		if !k.DueDate.IsZero() {
			kev += " due " + date(k.DueDate)
		}
		if k.Ransomware() {
			kev += ", ransomware"
		}
		parts = append(parts, kev)
	}
	if f.Exploit.HasEPSS {
		parts = append(parts, fmt.Sprintf("EPSS %s (p%s)", strconv.FormatFloat(f.Exploit.EPSS.Score, 'f', -1, 64),
			strconv.FormatFloat(f.Exploit.EPSS.Percentile, 'f', -1, 64)))
	}
	return strings.Join(parts, " · ")
}

func kevMark(kev bool) string {
	if kev {
		return "KEV"
	}
	return ""
}

// policyLines describes the SLA policy: days, overrides and the
// exploit-aware rules.
func policyLines(r *Report) []string {
	p := sla.Policy{Days: r.Policy.Days, Overrides: r.Policy.Overrides, KEV: r.Policy.KEV, EPSS: r.Policy.EPSS, EOL: r.Policy.EOL}
	return append(p.Describe(), p.DescribeRules()...)
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func pkgLabel(name, path string) string {
	if path == "" {
		return name
	}
	return name + " (" + path + ")"
}

func shortDigest(d string) string {
	if _, hex, ok := strings.Cut(d, ":"); ok && len(hex) > 12 {
		return d[:len(d)-len(hex)] + hex[:12]
	}
	return d
}

// barWidth is the console bar's maximum width.
const barWidth = 30

// WriteConsole prints the summary the tutorial printed — counts per
// severity with bars — plus breaches, acceptances, failures and changes.
func WriteConsole(w io.Writer, r *Report) error {
	m := &mdWriter{w: bufio.NewWriter(w)}
	s := r.Summary
	m.printf("\nVulnerability Summary (%d total)\n", s.Findings)
	top := 0
	for _, n := range s.BySeverity {
		top = max(top, n)
	}
	for _, sev := range r.Policy.Severities {
		n := s.BySeverity[sev]
		bar := 0
		if n > 0 {
			bar = max(1, n*barWidth/top)
		}
		m.printf("  %-10s %5d", sev, n)
		if bar > 0 {
			m.printf("  %s", strings.Repeat("█", bar))
		}
		m.printf("\n")
	}
	m.printf("\nSLA:      %d breached (%d unaccepted) · %d accepted · %d acceptance expired\n",
		s.Breached, s.BreachedUnaccepted, s.Accepted, s.AcceptanceExpired)
	if s.NotAffected+s.VEXFixed > 0 {
		m.printf("VEX:      %d not affected · %d fixed\n", s.NotAffected, s.VEXFixed)
	}
	m.printf("Images:   %d expected · %d scanned · %d failed · %d not scanned", s.Images, s.ImagesScanned, s.ImagesFailed, s.ImagesNotScanned)
	if s.UnresolvedContainers > 0 {
		m.printf(" · %s", plural(s.UnresolvedContainers, "container unresolved", "containers unresolved"))
	}
	m.printf("\nClusters: %d", s.Clusters)
	for _, c := range r.Clusters {
		if c.Status == ClusterUnreachable {
			m.printf(" · %s unreachable (%s)", c.Name, orDash(c.Error))
		}
	}
	if s.InferredOwners > 0 {
		m.printf("\nOwners:   %s", inferredLine(s.InferredOwners))
	}
	m.printf("\nExploits: %d KEV findings (%d breached) · %d end-of-life OS images\n", s.KEV, s.KEVBreached, s.EOLImages)
	for _, fs := range r.Feeds {
		m.printf("Feed:     %s\n", fs.Description)
	}
	d := r.Diff
	m.printf("Changes:  %d new (%d reopened) · %d still open · %d fixed\n", d.New+d.Reopened, d.Reopened, d.StillOpen, d.Fixed)
	if s.FirstSeenPruned > 0 {
		m.printf("Pruned:   %s past --first-seen-retention (findings resolved, or clusters gone, longer ago)\n",
			plural(s.FirstSeenPruned, "first-seen record", "first-seen records"))
	}
	for _, a := range r.ExpiredAcceptances {
		if a.FixAvailable {
			m.printf("Expired acceptance: %s in %s (a fix is available; %s)\n", a.Vulnerability, a.Repository, a.Reason)
			continue
		}
		m.printf("Expired acceptance: %s in %s (expired %s; %s)\n", a.Vulnerability, a.Repository, date(a.Expires.Time), a.Reason)
	}
	for _, f := range r.Failures[:min(len(r.Failures), 10)] {
		m.printf("Failed:   %s %s: %s\n", f.Image, f.Class, f.Reason)
	}
	if len(r.Failures) > 10 {
		m.printf("Failed:   … and %d more\n", len(r.Failures)-10)
	}
	m.printf("Result:   %s\n", Verdict(r))
	if m.err != nil {
		return m.err
	}
	return m.w.Flush()
}
