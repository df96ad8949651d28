// Package report is the report model and its writers: it turns scan
// results, inventories and SLA clocks into fleetscan's report — one row per
// image digest × vulnerability × package, ranked by SLA breach, severity and
// deadline — and renders it as CSV, JSON, HTML, Markdown, tracker tickets and
// a console summary. It does no I/O beyond writing the files it is given;
// package reporter runs the reporter around it. The JSON it writes is
// described for other programs by pkg/reportjson.
package report

import (
	"slices"
	"time"

	"github.com/fleetscan/fleetscan/internal/feeds"
	"github.com/fleetscan/fleetscan/internal/sla"
	"github.com/fleetscan/fleetscan/internal/vex"
	"github.com/fleetscan/fleetscan/pkg/contract"
	"github.com/fleetscan/fleetscan/pkg/reportjson"
)

// SchemaVersion is the version of the JSON report (pkg/reportjson).
const SchemaVersion = reportjson.SchemaVersion

// Report is the whole report. Build fills it; the renderers only read it.
type Report struct {
	SchemaVersion string    `json:"schemaVersion"`
	GeneratedAt   time.Time `json:"generatedAt"`
	// AsOf is the time SLAs are evaluated at (--now).
	AsOf  time.Time `json:"asOf"`
	Scope Scope     `json:"scope"`
	// Runs are the dispatcher runs whose inventories the report covers.
	Runs     []Run     `json:"runs"`
	Clusters []Cluster `json:"clusters"`
	// DB is the newest vulnerability database among the results.
	DB      *contract.DBInfo      `json:"db,omitempty"`
	Scanner *contract.ScannerInfo `json:"scanner,omitempty"`
	Policy  Policy                `json:"policy"`
	// Feeds are the exploit feeds (CISA KEV, FIRST EPSS) the report was
	// enriched with, each with its state: fresh, stale, never loaded or
	// unreadable.
	Feeds   []FeedStatus `json:"feeds"`
	Summary Summary      `json:"summary"`
	// Complete is false when an image failed or was not scanned, a
	// cluster was unreachable or an exploit feed is stale or unreadable.
	Complete   bool         `json:"complete"`
	Failures   []Failure    `json:"failures"`
	NotScanned []NotScanned `json:"notScanned"`
	// ExpiredAcceptances are acceptances that matched findings after they
	// expired.
	ExpiredAcceptances []AcceptanceUse `json:"expiredAcceptances"`
	// Images are the scanned images the findings point at, with where they
	// run; findings name them by digest and platform.
	Images   []*Image `json:"images"`
	Findings Rows     `json:"-"`
	Tickets  Tickets  `json:"tickets"`
	Diff     Diff     `json:"diff"`
}

// Scope says what the report covers.
type Scope struct {
	// Mode is "fleet" (latest inventory of every cluster within MaxAge) or
	// "run" (one run).
	Mode   string `json:"mode"`
	MaxAge string `json:"maxAge,omitempty"`
	RunID  string `json:"runId,omitempty"`
}

// Run is a dispatcher run the report draws on.
type Run struct {
	RunID     string    `json:"runId"`
	Cycle     string    `json:"cycle"`
	CreatedAt time.Time `json:"createdAt"`
	Clusters  []string  `json:"clusters"`
}

// Cluster statuses.
const (
	ClusterOK          = "ok"
	ClusterUnreachable = "unreachable"
)

// Cluster is one cluster in the report's scope.
type Cluster struct {
	Name        string    `json:"name"`
	Status      string    `json:"status"`
	Error       string    `json:"error,omitempty"`
	RunID       string    `json:"runId,omitempty"`
	CollectedAt time.Time `json:"collectedAt,omitzero"`
	Pods        int       `json:"pods"`
	Containers  int       `json:"containers"`
}

// Policy records the settings the report was evaluated with.
type Policy struct {
	Days          sla.Days       `json:"days"`
	Overrides     []sla.Override `json:"overrides,omitempty"`
	Severities    []string       `json:"severities"`
	IgnoreUnfixed bool           `json:"ignoreUnfixed"`
	// KEV, EPSS and EOL are the exploit-aware rules (they only bring
	// deadlines forward).
	KEV  sla.KEVRule  `json:"kev"`
	EPSS sla.EPSSRule `json:"epss"`
	EOL  sla.EOLRule  `json:"eol"`
}

// FeedStatus is one exploit feed as the reporter found it.
type FeedStatus struct {
	// Feed is "kev" or "epss".
	Feed  string `json:"feed"`
	Title string `json:"title"`
	// State is fresh, stale, never loaded or unreadable (feeds.State).
	State string `json:"state"`
	// Description is the one-line account the report shows.
	Description string    `json:"description"`
	Version     string    `json:"version,omitempty"`
	Date        time.Time `json:"date,omitzero"`
	Entries     int       `json:"entries,omitempty"`
	Source      string    `json:"source,omitempty"`
	FetchedAt   time.Time `json:"fetchedAt,omitzero"`
	CheckedAt   time.Time `json:"checkedAt,omitzero"`
	// MaxAge is --max-enrichment-age (a Go duration).
	MaxAge string `json:"maxAge,omitempty"`
	Error  string `json:"error,omitempty"`
}

// UpdatedAt is when the copy the report used was last current (the time
// its age counts from, feeds.Meta.FreshAsOf); zero when never loaded.
func (s FeedStatus) UpdatedAt() time.Time {
	if s.FetchedAt.IsZero() && s.Date.IsZero() {
		return time.Time{}
	}
	return feeds.Meta{Feed: feeds.Kind(s.Feed), Date: s.Date, FetchedAt: s.FetchedAt, CheckedAt: s.CheckedAt}.FreshAsOf().UTC()
}

// Degraded reports whether the feed makes the report incomplete.
func (s FeedStatus) Degraded() bool {
	return s.State == string(feeds.StateStale) || s.State == string(feeds.StateUnreadable)
}

// Summary counts the report's findings and coverage.
type Summary struct {
	// Findings is the number of rows after filters.
	Findings   int            `json:"findings"`
	BySeverity map[string]int `json:"bySeverity"`
	// Breached counts rows past their deadline; BreachedUnaccepted those not
	// covered by an active acceptance — the gate (exit status bit 1).
	Breached           int `json:"breached"`
	BreachedUnaccepted int `json:"breachedUnaccepted"`
	Accepted           int `json:"accepted"`
	AcceptanceExpired  int `json:"acceptanceExpired"`
	// NotAffected and VEXFixed count rows a VEX statement took off the
	// gate (status not_affected / fixed).
	NotAffected int `json:"notAffected"`
	VEXFixed    int `json:"vexFixed"`
	// Images counts expected image keys (digest + platform).
	Images           int `json:"images"`
	ImagesScanned    int `json:"imagesScanned"`
	ImagesFailed     int `json:"imagesFailed"`
	ImagesNotScanned int `json:"imagesNotScanned"`
	// UnresolvedContainers ran an image whose digest was never resolved.
	UnresolvedContainers int `json:"unresolvedContainers"`
	Clusters             int `json:"clusters"`
	ClustersUnreachable  int `json:"clustersUnreachable"`
	Tickets              int `json:"tickets"`
	// InferredOwners counts the workloads of the report's images whose
	// owner was inferred from naming conventions instead of looked up
	// (inventory files: see docs/inventory-files.md).
	InferredOwners int `json:"inferredOwners"`
	// KEV counts rows listed in CISA's KEV catalogue, KEVBreached those
	// past their deadline.
	KEV         int `json:"kev"`
	KEVBreached int `json:"kevBreached"`
	// EOLImages counts scanned images whose OS is past its end of life.
	EOLImages int `json:"eolImages"`
	// FeedsDegraded counts exploit feeds that are stale or unreadable
	// (exit status bit 2).
	FeedsDegraded int `json:"feedsDegraded"`
	// FirstSeenPruned counts the first-seen records the report pruned:
	// resolved, or of clusters gone, longer than --first-seen-retention
	// (absent when none).
	FirstSeenPruned int `json:"firstSeenPruned,omitempty"`
}

// Failure is an image whose scan failed.
type Failure struct {
	Digest    string                `json:"digest"`
	Platform  string                `json:"platform"`
	Image     string                `json:"image"`
	Class     contract.FailureClass `json:"class"`
	Reason    string                `json:"reason"`
	Attempts  int                   `json:"attempts,omitempty"`
	Workloads []string              `json:"workloads"`
}

// NotScanned is an image (or a container whose image was never resolved to
// a digest) without a result for the runs in scope.
type NotScanned struct {
	// Digest is empty for an unresolved container.
	Digest    string   `json:"digest,omitempty"`
	Platform  string   `json:"platform,omitempty"`
	Image     string   `json:"image"`
	Reason    string   `json:"reason"`
	Workloads []string `json:"workloads"`
}

// AcceptanceUse is an acceptance and how many findings it decided.
type AcceptanceUse struct {
	sla.Acceptance
	Findings int `json:"findings"`
	// FixAvailable: it ended because a fixed version exists
	// (expire_on_fix) rather than on its date.
	FixAvailable bool `json:"fixAvailable,omitempty"`
}

// Finding is one report row: a vulnerability in a package of one image.
// It points at the shared Vuln and Image instead of copying them, so a
// report with hundreds of thousands of rows stays small.
type Finding struct {
	*Vuln
	Img *Image

	// FirstSeen starts the SLA clock: the earliest first-seen date among
	// the image's repositories.
	FirstSeen time.Time
	SLADays   int
	SLARule   string
	Deadline  time.Time
	// DeadlineRule set Deadline: "severity", an override's name, "kev",
	// "epss" or "eol" (sla.Deadline.Rule).
	DeadlineRule string
	// Exploit is what the KEV and EPSS feeds know of the vulnerability.
	Exploit       feeds.Match
	DaysRemaining int
	Breached      bool

	Status     sla.Status
	Acceptance *sla.Acceptance
	// VEX is the VEX statement that applies to the row (nil: none).
	VEX *vex.Statement
	// Change is new, reopened or still-open against the previous report.
	Change sla.Change
}

// Image is the reference shown for the row's digest.
func (f *Finding) Image() string { return f.Img.Reference }

// Digest is the image manifest digest.
func (f *Finding) Digest() string { return f.Img.Key.Digest }

// Platform is the image's platform ("linux/arm64/v8").
func (f *Finding) Platform() string { return f.Img.Platform }

// Workloads are the workloads running the image.
func (f *Finding) Workloads() []string { return f.Img.Workloads }

// InferredSuffix marks a workload whose owner was inferred from naming
// conventions in the CSV, Markdown and HTML reports.
const InferredSuffix = " (inferred)"

// WorkloadLabels are the image's workloads as the text reports show them:
// those whose owner was inferred end in InferredSuffix.
func (img *Image) WorkloadLabels() []string {
	return markInferred(img.Workloads, img.OwnerInferred)
}

// markInferred appends InferredSuffix to the names that are in inferred
// (both sorted).
func markInferred(names, inferred []string) []string {
	if len(inferred) == 0 {
		return names
	}
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = n
		if _, ok := slices.BinarySearch(inferred, n); ok {
			out[i] = n + InferredSuffix
		}
	}
	return out
}

// Gating reports whether the row trips the gate: breached and not accepted
// (a VEX not_affected or fixed row is never breached).
func (f *Finding) Gating() bool { return f.Breached && f.Status != sla.StatusAccepted }

// VEXStatus, VEXJustification and VEXSource describe the row's VEX
// statement ("" without one). The source is the document and its author.
func (f *Finding) VEXStatus() string {
	if f.VEX == nil {
		return ""
	}
	return string(f.VEX.Status)
}

// VEXJustification is the statement's justification label.
func (f *Finding) VEXJustification() string {
	if f.VEX == nil {
		return ""
	}
	return f.VEX.Justification
}

// VEXSource names the statement's document, and its author when known.
func (f *Finding) VEXSource() string {
	if f.VEX == nil {
		return ""
	}
	if f.VEX.Author != "" {
		return f.VEX.Source + " (" + f.VEX.Author + ")"
	}
	return f.VEX.Source
}

// Ticket is one unit of remediation work: a package of an image repository
// and the upgrade that fixes its vulnerabilities.
type Ticket struct {
	ID         string `json:"id"`
	Repository string `json:"repository"`
	Package    string `json:"package"`
	// Installed lists the installed versions across the repository's images.
	Installed []string `json:"installed"`
	// FixedVersion is the upgrade target; empty when no fix exists yet.
	FixedVersion string `json:"fixedVersion,omitempty"`
	// Summary reads "openssl 3.1.3-r0 → 3.1.4-r0 fixes CVE-A, CVE-B".
	Summary string `json:"summary"`
	// Fixes lists the vulnerabilities the upgrade fixes; Unfixed those
	// without a fixed version.
	Fixes    []string  `json:"fixes"`
	Unfixed  []string  `json:"unfixed"`
	Severity string    `json:"severity"`
	Deadline time.Time `json:"deadline"`
	Breached bool      `json:"breached"`
	Images   []string  `json:"images"`
	// Platforms are the platforms of the images the ticket covers.
	Platforms []string `json:"platforms"`
	Workloads []string `json:"workloads"`
	// OwnerInferred lists the Workloads whose owner was inferred.
	OwnerInferred []string `json:"owner_inferred"`
	// KEV is true when one of its vulnerabilities is in CISA's KEV
	// catalogue; KEVVulnerabilities lists them.
	KEV                bool     `json:"kev"`
	KEVVulnerabilities []string `json:"kevVulnerabilities,omitempty"`
}

// Diff compares this report with the previous one, by SLA identity
// (repository, vulnerability, package, path).
type Diff struct {
	New       int `json:"new"`
	Reopened  int `json:"reopened"`
	StillOpen int `json:"stillOpen"`
	Fixed     int `json:"fixed"`
	// NewFindings lists new and reopened identities; FixedFindings those
	// resolved by this report (each listed once, in the report that saw it
	// disappear).
	NewFindings   []DiffEntry `json:"newFindings"`
	FixedFindings []DiffEntry `json:"fixedFindings"`
}

// DiffEntry is one identity in the diff.
type DiffEntry struct {
	sla.Identity
	Severity   string    `json:"severity"`
	FirstSeen  time.Time `json:"firstSeen"`
	ResolvedAt time.Time `json:"resolvedAt,omitzero"`
	Reopened   bool      `json:"reopened,omitempty"`
}

// Vuln is the part of a contract.Finding the report keeps (descriptions
// and reference lists are dropped to bound memory).
type Vuln struct {
	ID         string
	PkgName    string
	PkgVersion string // installed version
	PkgPath    string
	PkgType    string
	// PURL is the package URL VEX statements match.
	PURL         string
	FixedVersion string
	// FixStatus is Trivy's status (fixed, affected, will_not_fix, ...).
	FixStatus  string
	Severity   string
	Title      string
	PrimaryURL string
	CVSS       float64
	HasCVSS    bool
	Published  time.Time // zero when unknown
}

// Image is one scanned image key: its findings and where it runs.
type Image struct {
	Key contract.ImageKey
	// Platform is Key.Platform rendered once ("linux/amd64").
	Platform string
	// Reference is the most common normalised reference running the digest.
	Reference    string
	Repositories []string
	Clusters     []string
	Namespaces   []string
	Workloads    []string
	// OwnerInferred lists the Workloads whose owner was inferred from
	// naming conventions rather than looked up (sorted).
	OwnerInferred []string
	Scopes        []sla.Scope
	// Vulns are shared between images carrying the same finding (see
	// Interner): do not modify them.
	Vulns []*Vuln
	// VEX are the statements attached to the image in its registry (nil:
	// none).
	VEX *vex.Set
	// OS is the detected operating system (nil when none was detected);
	// OS.EOSL marks an end-of-life distribution.
	OS *contract.OSInfo
}

// EOL reports whether the image's OS is past its end of life.
func (img *Image) EOL() bool { return img.OS != nil && img.OS.EOSL }
