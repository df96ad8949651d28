// Package reportjson is the Go form of report.json, the document the
// fleetscan reporter writes (and uploads) on every run: the findings ranked
// by SLA breach with their first-seen dates and deadlines, the images and
// where they run, failures and gaps, tickets, the diff against the previous
// report and the summary whose counts decide the exit status. Programs that
// consume the report — dashboards, ticket bots, policy gates — decode it with
// Decode instead of copying the field names from the schema.
//
// Schema is the JSON Schema (draft 2020-12) of the same document, for
// consumers in other languages.
//
// # Stability
//
// This is a public package. Within major version 1 of the report
// (schemaVersion "1.x") and of this module:
//
//   - the document only grows: fields are added as optional ones with a
//     minor version bump and are never renamed, retyped or removed; Decode
//     accepts every 1.x document and ignores fields it does not know yet;
//   - exported identifiers are not removed or changed incompatibly; fields,
//     constants and functions may be added;
//   - enumerated values (severities, statuses, changes, failure classes)
//     may gain members; a consumer should treat an unknown one as it treats
//     the most severe it knows.
//
// A change an existing reader would misread raises the major version, which
// Decode rejects with ErrUnsupportedVersion.
package reportjson

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/fleetscan/fleetscan/pkg/contract"
)

// SchemaVersion is the version of report.json this package describes and
// the reporter writes.
const SchemaVersion = "1.2" // 1.2: findings[].vex and pkgPurl, summary.notAffected/vexFixed, statuses not_affected/fixed, acceptance scope, expire_on_fix and VEX fields

// SupportedMajor is the only major version Decode reads.
const SupportedMajor = 1

// Schema is the JSON Schema (draft 2020-12) of report.json.
//
//go:embed report.schema.json
var Schema []byte

// ErrUnsupportedVersion is wrapped by Decode's error when the document's
// schemaVersion has a major version other than SupportedMajor.
var ErrUnsupportedVersion = errors.New("unsupported report schema version")

// Decode reads a report.json document.
func Decode(r io.Reader) (*Report, error) {
	var rep Report
	if err := json.NewDecoder(r).Decode(&rep); err != nil {
		return nil, fmt.Errorf("decode report.json: %w", err)
	}
	major, _, _ := strings.Cut(rep.SchemaVersion, ".")
	if n, err := strconv.Atoi(major); err != nil || rep.SchemaVersion == "" {
		return nil, fmt.Errorf("decode report.json: schemaVersion %q: want MAJOR.MINOR", rep.SchemaVersion)
	} else if n != SupportedMajor {
		return nil, fmt.Errorf("decode report.json: schemaVersion %q: %w (this build reads %d.x)", rep.SchemaVersion, ErrUnsupportedVersion, SupportedMajor)
	}
	return &rep, nil
}

// Report is the whole document.
type Report struct {
	SchemaVersion string    `json:"schemaVersion"`
	GeneratedAt   time.Time `json:"generatedAt"`
	// AsOf is the time SLAs are evaluated at (the reporter's --now).
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
	// enriched with and their state (since 1.1).
	Feeds   []Feed  `json:"feeds,omitempty"`
	Summary Summary `json:"summary"`
	// Complete is false when an image failed or was not scanned, a cluster
	// was unreachable or an exploit feed is stale or unreadable (exit
	// status bit 2).
	Complete   bool         `json:"complete"`
	Failures   []Failure    `json:"failures"`
	NotScanned []NotScanned `json:"notScanned"`
	// ExpiredAcceptances are risk acceptances that matched findings after
	// they expired.
	ExpiredAcceptances []AcceptanceUse `json:"expiredAcceptances"`
	// Images are the scanned images, with where they run; findings name
	// them by digest and platform.
	Images []Image `json:"images"`
	// Findings are the rows: one per image digest × vulnerability ×
	// package, breached first; within that KEV-listed first, then by
	// deadline, EPSS score (higher first) and severity.
	Findings []Finding `json:"findings"`
	Tickets  []Ticket  `json:"tickets"`
	Diff     Diff      `json:"diff"`
}

// Scope modes.
const (
	// ScopeFleet: the latest inventory of every cluster within MaxAge.
	ScopeFleet = "fleet"
	// ScopeRun: one dispatcher run.
	ScopeRun = "run"
)

// Scope says what the report covers.
type Scope struct {
	Mode string `json:"mode"`
	// MaxAge is a Go duration ("36h0m0s"), fleet mode.
	MaxAge string `json:"maxAge,omitempty"`
	// RunID is the run, run mode.
	RunID string `json:"runId,omitempty"`
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
	// Days are the remediation windows per severity.
	Days      map[string]int `json:"days"`
	Overrides []Override     `json:"overrides,omitempty"`
	// Severities are the severities reported and gated.
	Severities    []string `json:"severities"`
	IgnoreUnfixed bool     `json:"ignoreUnfixed"`
	// KEV, EPSS and EOL are the exploit-aware rules, which only bring
	// deadlines forward (since 1.1).
	KEV  *KEVRule  `json:"kev,omitempty"`
	EPSS *EPSSRule `json:"epss,omitempty"`
	EOL  *EOLRule  `json:"eol,omitempty"`
}

// KEVRule: findings in CISA's KEV catalogue are due by its due date and,
// with Days, at most Days after the later of first seen and the listing.
type KEVRule struct {
	Enabled bool `json:"enabled"`
	Days    int  `json:"days,omitempty"`
}

// EPSSRule: findings at or above the EPSS Percentile are due at most Days
// after first seen.
type EPSSRule struct {
	Enabled    bool    `json:"enabled"`
	Percentile float64 `json:"percentile,omitempty"`
	Days       int     `json:"days,omitempty"`
}

// EOLRule: findings of end-of-life OS images are due at most Days after
// first seen.
type EOLRule struct {
	Enabled bool `json:"enabled"`
	Days    int  `json:"days,omitempty"`
}

// Feed states.
const (
	FeedFresh       = "fresh"
	FeedStale       = "stale"
	FeedNeverLoaded = "never loaded"
	FeedUnreadable  = "unreadable"
)

// Feed is one exploit feed as the reporter found it. A stale or unreadable
// feed makes the report incomplete; one never loaded is only stated.
type Feed struct {
	// Feed is "kev" or "epss".
	Feed        string    `json:"feed"`
	Title       string    `json:"title"`
	State       string    `json:"state"`
	Description string    `json:"description"`
	Version     string    `json:"version,omitempty"`
	Date        time.Time `json:"date,omitzero"`
	Entries     int       `json:"entries,omitempty"`
	Source      string    `json:"source,omitempty"`
	FetchedAt   time.Time `json:"fetchedAt,omitzero"`
	CheckedAt   time.Time `json:"checkedAt,omitzero"`
	// MaxAge is the reporter's --max-enrichment-age (a Go duration).
	MaxAge string `json:"maxAge,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Override sets other windows for workloads in matching clusters and
// namespaces (globs).
type Override struct {
	Name       string         `json:"name,omitempty"`
	Clusters   []string       `json:"clusters,omitempty"`
	Namespaces []string       `json:"namespaces,omitempty"`
	Days       map[string]int `json:"days"`
}

// Summary counts the report's findings and coverage.
type Summary struct {
	// Findings is the number of rows after filters.
	Findings   int            `json:"findings"`
	BySeverity map[string]int `json:"bySeverity"`
	// Breached counts rows past their deadline; BreachedUnaccepted those not
	// covered by an active acceptance: the gate (exit status bit 1).
	Breached           int `json:"breached"`
	BreachedUnaccepted int `json:"breachedUnaccepted"`
	Accepted           int `json:"accepted"`
	AcceptanceExpired  int `json:"acceptanceExpired"`
	// NotAffected and VEXFixed count rows a VEX statement took off the
	// gate (1.2).
	NotAffected int `json:"notAffected"`
	VEXFixed    int `json:"vexFixed"`
	// Images counts expected image keys (digest + platform).
	Images           int `json:"images"`
	ImagesScanned    int `json:"imagesScanned"`
	ImagesFailed     int `json:"imagesFailed"`
	ImagesNotScanned int `json:"imagesNotScanned"`
	// UnresolvedContainers ran an image never resolved to a digest.
	UnresolvedContainers int `json:"unresolvedContainers"`
	Clusters             int `json:"clusters"`
	ClustersUnreachable  int `json:"clustersUnreachable"`
	Tickets              int `json:"tickets"`
	// InferredOwners counts the images' workloads whose owner was inferred
	// from naming conventions rather than looked up (since 1.1).
	InferredOwners int `json:"inferredOwners"`
	// KEV counts rows in CISA's KEV catalogue, KEVBreached those past
	// their deadline; EOLImages the images with an end-of-life OS;
	// FeedsDegraded the stale or unreadable exploit feeds (since 1.1).
	KEV           int `json:"kev"`
	KEVBreached   int `json:"kevBreached"`
	EOLImages     int `json:"eolImages"`
	FeedsDegraded int `json:"feedsDegraded"`
	// FirstSeenPruned counts the first-seen records the report pruned:
	// findings resolved, or clusters gone, longer than the reporter's
	// --first-seen-retention. Absent when none were.
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

// NotScanned is an image key without a result for the runs in scope, or
// (without Digest) a container whose image was never resolved to a digest.
type NotScanned struct {
	Digest    string   `json:"digest,omitempty"`
	Platform  string   `json:"platform,omitempty"`
	Image     string   `json:"image"`
	Reason    string   `json:"reason"`
	Workloads []string `json:"workloads"`
}

// Acceptance is a risk acceptance: a vulnerability accepted in matching
// repositories until it expires.
type Acceptance struct {
	Vulnerability string `json:"vulnerability"`
	// Repository is a glob over image repositories.
	Repository string    `json:"repository"`
	Package    string    `json:"package,omitempty"`
	Expires    time.Time `json:"expires"`
	Reason     string    `json:"reason"`
	ApprovedBy string    `json:"approvedBy,omitempty"`
	Ticket     string    `json:"ticket,omitempty"`
	// Clusters, Namespaces and Workloads scope the acceptance (globs, 1.2).
	Clusters   []string `json:"clusters,omitempty"`
	Namespaces []string `json:"namespaces,omitempty"`
	Workloads  []string `json:"workloads,omitempty"`
	// ExpireOnFix ends the acceptance once a fixed version exists (1.2).
	ExpireOnFix bool `json:"expire_on_fix,omitempty"`
	// VEXStatus and VEXJustification are exported as OpenVEX (1.2).
	VEXStatus        string `json:"vex_status,omitempty"`
	VEXJustification string `json:"vex_justification,omitempty"`
}

// AcceptanceUse is an acceptance and how many findings it matched.
type AcceptanceUse struct {
	Acceptance
	Findings int `json:"findings"`
	// FixAvailable: it ended because a fixed version exists (1.2).
	FixAvailable bool `json:"fixAvailable,omitempty"`
}

// VEX is the VEX statement applied to a finding (1.2).
type VEX struct {
	// Status is not_affected, fixed, affected or under_investigation.
	Status        string `json:"status"`
	Justification string `json:"justification,omitempty"`
	Impact        string `json:"impact,omitempty"`
	// Source is the document: a file, a VEX repository URL or an image
	// attestation reference.
	Source string `json:"source"`
	Author string `json:"author,omitempty"`
	// Format is openvex, cyclonedx or csaf.
	Format    string    `json:"format"`
	Timestamp time.Time `json:"timestamp,omitzero"`
}

// Image is one scanned image key and where it runs.
type Image struct {
	Digest   string `json:"digest"`
	Platform string `json:"platform"`
	// Image is the most common normalised reference running the digest.
	Image string `json:"image"`
	// Repositories are every repository (without tag) the digest runs
	// under; each keeps its own first-seen clock.
	Repositories []string `json:"repositories"`
	Clusters     []string `json:"clusters"`
	Namespaces   []string `json:"namespaces"`
	// Workloads are "cluster/namespace/Kind/name".
	Workloads []string `json:"workloads"`
	// OwnerInferred lists the Workloads whose owner (Kind/name) was
	// inferred from naming conventions — a pod of a Job named
	// "<name>-<8+ digits>" attributed to CronJob <name> — because it could
	// not be looked up, as in inventories read from files (since 1.1).
	OwnerInferred []string `json:"owner_inferred"`
	// Vulnerabilities counts its findings before the report's filters.
	Vulnerabilities int `json:"vulnerabilities"`
	// OS is the detected operating system; OSEOL is true when it is past
	// its end of life (since 1.1).
	OS    *contract.OSInfo `json:"os,omitempty"`
	OSEOL bool             `json:"osEol"`
}

// Finding statuses.
const (
	StatusOpen              = "open"
	StatusAccepted          = "accepted"
	StatusAcceptanceExpired = "acceptance-expired"
	// StatusNotAffected and StatusFixed: a VEX statement says the image is
	// not affected / has it fixed; never breached (1.2).
	StatusNotAffected = "not_affected"
	StatusFixed       = "fixed"
)

// Finding changes against the previous report.
const (
	ChangeNew       = "new"
	ChangeReopened  = "reopened"
	ChangeStillOpen = "still-open"
)

// Finding is one row: a vulnerability in a package of one image.
type Finding struct {
	Image           string `json:"image"`
	Digest          string `json:"digest"`
	Platform        string `json:"platform"`
	VulnerabilityID string `json:"vulnerabilityId"`
	Severity        string `json:"severity"`
	PkgName         string `json:"pkgName"`
	PkgPath         string `json:"pkgPath,omitempty"`
	PkgType         string `json:"pkgType,omitempty"`
	// PkgPURL is the package URL VEX statements match (1.2).
	PkgPURL          string   `json:"pkgPurl,omitempty"`
	InstalledVersion string   `json:"installedVersion"`
	FixedVersion     string   `json:"fixedVersion,omitempty"`
	FixStatus        string   `json:"fixStatus,omitempty"`
	Title            string   `json:"title,omitempty"`
	PrimaryURL       string   `json:"primaryUrl,omitempty"`
	CVSSScore        *float64 `json:"cvssScore,omitempty"`
	// Published is when the vulnerability was published (zero: unknown).
	Published time.Time `json:"published,omitzero"`
	// FirstSeen starts the SLA clock: the earliest first sighting among the
	// image's repositories.
	FirstSeen time.Time `json:"firstSeen"`
	SLADays   int       `json:"slaDays"`
	// SLARule is "default" or the name of the override that set SLADays.
	SLARule string `json:"slaRule"`
	// Deadline is the earliest of first seen + SLADays and what the
	// exploit-aware rules give; DeadlineRule names the rule that set it:
	// "severity", an override's name, "kev", "epss" or "eol" (since 1.1).
	Deadline     time.Time `json:"slaDeadline"`
	DeadlineRule string    `json:"slaDeadlineRule,omitempty"`
	// DaysRemaining is negative when overdue.
	DaysRemaining int         `json:"daysRemaining"`
	Breached      bool        `json:"slaBreached"`
	Status        string      `json:"status"`
	Acceptance    *Acceptance `json:"acceptance,omitempty"`
	Change        string      `json:"change"`
	// KEV is true when the vulnerability is in CISA's Known Exploited
	// Vulnerabilities catalogue, listed on KEVDateAdded and due by
	// KEVDueDate; Ransomware when CISA knows of ransomware use (since 1.1).
	KEV          bool      `json:"kev"`
	KEVDateAdded time.Time `json:"kevDateAdded,omitzero"`
	KEVDueDate   time.Time `json:"kevDueDate,omitzero"`
	Ransomware   bool      `json:"ransomware,omitempty"`
	// EPSS and EPSSPercentile are FIRST's score; absent when not scored.
	EPSS           *float64 `json:"epss,omitempty"`
	EPSSPercentile *float64 `json:"epssPercentile,omitempty"`
	// OSEOL is true when the image's OS is past its end of life.
	OSEOL bool `json:"osEol"`
	// VEX is the statement that applies (1.2).
	VEX *VEX `json:"vex,omitempty"`
}

// Gating reports whether the row trips the reporter's gate (exit status
// bit 1): past its deadline and not covered by an active acceptance.
func (f Finding) Gating() bool { return f.Breached && f.Status != StatusAccepted }

// Ticket is one unit of remediation work: a package of an image repository
// and the upgrade that fixes its vulnerabilities.
type Ticket struct {
	// ID is stable per (repository, package): "FS-" and 10 hex digits.
	ID         string   `json:"id"`
	Repository string   `json:"repository"`
	Package    string   `json:"package"`
	Installed  []string `json:"installed"`
	// FixedVersion is the upgrade target; empty when no fix exists.
	FixedVersion string    `json:"fixedVersion,omitempty"`
	Summary      string    `json:"summary"`
	Fixes        []string  `json:"fixes"`
	Unfixed      []string  `json:"unfixed"`
	Severity     string    `json:"severity"`
	Deadline     time.Time `json:"deadline"`
	Breached     bool      `json:"breached"`
	// Images are digests.
	Images []string `json:"images"`
	// Platforms are the platforms of the images the ticket covers
	// ("linux/amd64", "linux/arm64/v8"; since 1.1).
	Platforms []string `json:"platforms"`
	Workloads []string `json:"workloads"`
	// OwnerInferred lists the Workloads whose owner was inferred (since 1.1).
	OwnerInferred []string `json:"owner_inferred"`
	// KEV is true when one of its vulnerabilities is in CISA's KEV
	// catalogue; KEVVulnerabilities lists them (since 1.1).
	KEV                bool     `json:"kev"`
	KEVVulnerabilities []string `json:"kevVulnerabilities,omitempty"`
}

// Diff compares this report with the previous recorded one, by
// (repository, vulnerability, package, path).
type Diff struct {
	New       int `json:"new"`
	Reopened  int `json:"reopened"`
	StillOpen int `json:"stillOpen"`
	Fixed     int `json:"fixed"`
	// NewFindings lists new and reopened identities; FixedFindings those
	// resolved by this report (each listed once).
	NewFindings   []DiffEntry `json:"newFindings"`
	FixedFindings []DiffEntry `json:"fixedFindings"`
}

// DiffEntry is one identity in the diff.
type DiffEntry struct {
	Repository      string    `json:"repository"`
	VulnerabilityID string    `json:"vulnerabilityId"`
	PkgName         string    `json:"pkgName"`
	PkgPath         string    `json:"pkgPath,omitempty"`
	Severity        string    `json:"severity"`
	FirstSeen       time.Time `json:"firstSeen"`
	ResolvedAt      time.Time `json:"resolvedAt,omitzero"`
	Reopened        bool      `json:"reopened,omitempty"`
}
