package report

import (
	"cmp"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/fleetscan/fleetscan/internal/feeds"
	"github.com/fleetscan/fleetscan/internal/sla"
	"github.com/fleetscan/fleetscan/internal/vex"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// Filter selects findings with Trivy's meaning of --severity and
// --ignore-unfixed.
type Filter struct {
	// Severities to report and gate; empty means all.
	Severities []string
	// IgnoreUnfixed keeps only findings whose status is "fixed" (as Trivy
	// does); a finding without a status is kept when it has a fixed version.
	IgnoreUnfixed bool
}

// Keep reports whether v passes the filter.
func (f Filter) Keep(v *Vuln) bool {
	if len(f.Severities) > 0 && !slices.Contains(f.Severities, v.Severity) {
		return false
	}
	if f.IgnoreUnfixed {
		switch v.FixStatus {
		case "fixed":
		case "":
			return v.FixedVersion != ""
		default:
			return false
		}
	}
	return true
}

// Ledger answers the first-seen clock of an identity (sla.Ledger).
type Ledger interface {
	Lookup(id sla.Identity) (firstSeen time.Time, change sla.Change, ok bool)
}

// Input is everything Build needs.
type Input struct {
	GeneratedAt time.Time
	AsOf        time.Time
	Scope       Scope
	Runs        []Run
	Clusters    []Cluster
	// Images are the keys with a scanned result.
	Images     []*Image
	Failures   []Failure
	NotScanned []NotScanned
	Policy     sla.Policy
	// Acceptances may be nil.
	Acceptances *sla.Acceptances
	// VEX are the statements of --vex and --vex-repo (nil: none); each
	// image's own attestations are in Image.VEX.
	VEX    *vex.Set
	Filter Filter
	// Ledger may be nil: every finding is then first seen at AsOf.
	Ledger Ledger
	// Fixed are the records the clock resolved in this report.
	Fixed []sla.Record
	// FirstSeenPruned counts the first-seen records pruned past the
	// retention.
	FirstSeenPruned int
	DB              *contract.DBInfo
	Scanner         *contract.ScannerInfo
	// Enrichment is the loaded exploit feeds (nil: none loaded; the report
	// says so).
	Enrichment *feeds.Enrichment
	// Spill keeps a fleet's ranked rows in a temporary file (zero: in
	// memory).
	Spill Spill
}

// Sightings yields every (repository, vulnerability, package, path) of
// the images with the clusters running it, before filters, for the clock.
func Sightings(images []*Image) iter.Seq[sla.Sighting] {
	return func(yield func(sla.Sighting) bool) {
		for _, img := range images {
			for _, v := range img.Vulns {
				for _, repo := range img.Repositories {
					if !yield(sla.Sighting{Identity: identity(repo, v), Severity: v.Severity, Clusters: img.Clusters}) {
						return
					}
				}
			}
		}
	}
}

func identity(repo string, v *Vuln) sla.Identity {
	return sla.Identity{Repository: repo, VulnerabilityID: v.ID, PkgName: v.PkgName, PkgPath: v.PkgPath}
}

// Build assembles the report: rows with their SLA clock, deadline and
// acceptance, sorted breached first, then by severity and deadline; tickets;
// the diff; and the summary.
func Build(in Input) *Report {
	severities := in.Filter.Severities
	if len(severities) == 0 {
		severities = sla.Severities
	}
	r := newReport(in, severities)
	rows := newRowBuilder(in)
	r.Findings = rows.build(r.Images)
	r.Summary = summarize(r, severities)
	r.Summary.FirstSeenPruned = in.FirstSeenPruned
	r.Complete = r.Summary.complete()
	r.ExpiredAcceptances = rows.expiredAcceptances()
	r.Diff = rows.diff(in.Fixed, severities)
	r.Tickets = BuildTickets(r.Findings.All())
	r.Summary.Tickets = r.Tickets.Len()
	return r
}

// newReport starts the report from its input: the header, the policy and
// the images (sorted by reference), every list non-nil so the JSON report
// has [] rather than null.
func newReport(in Input, severities []string) *Report {
	r := &Report{
		SchemaVersion: SchemaVersion,
		GeneratedAt:   in.GeneratedAt.UTC(),
		AsOf:          in.AsOf.UTC(),
		Scope:         in.Scope,
		Runs:          nonNil(in.Runs),
		Clusters:      nonNil(in.Clusters),
		DB:            in.DB,
		Scanner:       in.Scanner,
		Policy: Policy{
			Days: in.Policy.Days, Overrides: in.Policy.Overrides,
			Severities: severities, IgnoreUnfixed: in.Filter.IgnoreUnfixed,
			KEV: in.Policy.KEV, EPSS: in.Policy.EPSS, EOL: in.Policy.EOL,
		},
		Feeds:      feedStatuses(in.Enrichment, in.AsOf.UTC()),
		Failures:   nonNil(in.Failures),
		NotScanned: nonNil(in.NotScanned),
	}
	for i := range r.Failures {
		r.Failures[i].Workloads = nonNil(r.Failures[i].Workloads)
	}
	for i := range r.NotScanned {
		r.NotScanned[i].Workloads = nonNil(r.NotScanned[i].Workloads)
	}
	for i := range r.Runs {
		r.Runs[i].Clusters = nonNil(r.Runs[i].Clusters)
	}
	for _, img := range in.Images {
		img.Repositories = nonNil(img.Repositories)
		img.Clusters = nonNil(img.Clusters)
		img.Namespaces = nonNil(img.Namespaces)
		img.Workloads = nonNil(img.Workloads)
		img.OwnerInferred = nonNil(img.OwnerInferred)
		if img.Platform == "" {
			img.Platform = img.Key.Platform.String()
		}
	}
	r.Images = nonNil(in.Images)
	slices.SortFunc(r.Images, func(a, b *Image) int {
		return cmp.Or(strings.Compare(a.Reference, b.Reference), strings.Compare(a.Key.Digest, b.Key.Digest),
			strings.Compare(a.Platform, b.Platform))
	})
	return r
}

// rowBuilder makes the report's rows, and on the way collects the SLA
// identities they show (for the diff) and the expired acceptances they hit.
type rowBuilder struct {
	in    Input
	asOf  time.Time
	feeds *feeds.Memo
	// ids are the SLA identities the rows show, each with its first row's
	// severity (compactly: a fleet has one per identity), so the
	// clock and change are looked up again for the diff rather than kept.
	ids     *identitySet
	expired map[*sla.Acceptance]int
	// byFix marks expired acceptances that ended on a fix (expire_on_fix).
	byFix map[*sla.Acceptance]bool
}

func newRowBuilder(in Input) *rowBuilder {
	return &rowBuilder{in: in, asOf: in.AsOf.UTC(), feeds: in.Enrichment.Memo(), ids: newIdentitySet(),
		expired: map[*sla.Acceptance]int{}, byFix: map[*sla.Acceptance]bool{}}
}

// build makes one row per vulnerability of each image that passes the
// filter, compactly, and ranks them: in memory, or in runs spilled to a
// temporary file (Input.Spill) merged into one ranked file.
func (b *rowBuilder) build(images []*Image) Rows {
	n := 0
	for _, img := range images {
		n += len(img.Vulns)
	}
	tab := newRowTables(b.asOf, images)
	sink := newRowSink(tab, b.in.Spill, n)
	var f Finding
	for _, img := range images {
		for _, v := range img.Vulns {
			if b.in.Filter.Keep(v) {
				b.row(img, v, &f)
				sink.add(tab.record(&f))
			}
		}
	}
	return sink.rows()
}

// row fills f with v in img, its SLA clock, deadline and acceptance.
func (b *rowBuilder) row(img *Image, v *Vuln, f *Finding) {
	*f = Finding{Vuln: v, Img: img}
	f.FirstSeen, f.Change = b.clock(img, v)
	f.Exploit = b.feeds.Lookup(v.ID)
	dl := b.in.Policy.Deadline(sla.DeadlineInput{
		Severity: v.Severity, Scopes: img.Scopes, FirstSeen: f.FirstSeen, AsOf: b.asOf,
		Exposure: f.Exploit.Exposure(img.EOL()),
	})
	f.SLADays, f.SLARule, f.Deadline, f.DeadlineRule = dl.Days, dl.DaysRule, dl.At, dl.Rule
	if f.SLARule == sla.RuleSeverity {
		f.SLARule = sla.DefaultRule // slaRule keeps its meaning: the days' source
	}
	f.Breached = b.asOf.After(f.Deadline)
	f.DaysRemaining = daysRemaining(f.Deadline, b.asOf)

	// A VEX not_affected or fixed statement decides the row; affected and
	// under_investigation annotate it and leave it to the acceptances.
	if f.VEX = b.vex(img, v); f.VEX != nil && f.VEX.Status.Suppresses() {
		f.Status, f.Breached = sla.Status(f.VEX.Status), false
		return
	}
	d := b.in.Acceptances.DecideFor(sla.Subject{
		Vulnerability: v.ID, Package: v.PkgName, PURL: v.PURL, Repositories: img.Repositories,
		Workloads: img.Workloads, FixedVersion: v.FixedVersion,
	}, b.asOf)
	f.Status, f.Acceptance = d.Status, d.Acceptance
	if d.Status == sla.StatusAcceptanceExpired {
		b.expired[d.Acceptance]++
		if d.Acceptance.Active(b.asOf) {
			b.byFix[d.Acceptance] = true
		}
	}
}

// vex is the statement that applies to v in img: the newest among the
// image's attestations and the report's documents.
func (b *rowBuilder) vex(img *Image, v *Vuln) *vex.Statement {
	if b.in.VEX.Len() == 0 && img.VEX.Len() == 0 {
		return nil
	}
	sub := vex.Subject{Vulnerability: v.ID, PURL: v.PURL, Repositories: img.Repositories,
		Digest: img.Key.Digest, Arch: img.Key.Platform.Architecture}
	a, c := b.in.VEX.Decide(sub), img.VEX.Decide(sub)
	if a == nil || (c != nil && c.Timestamp.After(a.Timestamp)) {
		return c
	}
	return a
}

// clock returns the row's first-seen time and change. The row's clock is
// the earliest of its repositories' clocks; it is new only when every
// repository sees it for the first time. Each repository's identity is
// recorded for the diff.
func (b *rowBuilder) clock(img *Image, v *Vuln) (time.Time, sla.Change) {
	var firstSeen time.Time
	seenNew, seenReopened, seenOpen := false, false, false
	for _, repo := range img.Repositories {
		id := identity(repo, v)
		first, ch := b.lookup(id)
		if firstSeen.IsZero() || first.Before(firstSeen) {
			firstSeen = first
		}
		switch ch {
		case sla.ChangeStillOpen:
			seenOpen = true
		case sla.ChangeReopened:
			seenReopened = true
		default:
			seenNew = true
		}
		b.ids.add(repo, v)
	}
	if firstSeen.IsZero() {
		firstSeen = b.asOf
	}
	change := sla.ChangeNew
	switch {
	case seenOpen:
		change = sla.ChangeStillOpen
	case seenReopened:
		change = sla.ChangeReopened
	case seenNew:
		change = sla.ChangeNew
	}
	return firstSeen, change
}

// lookup is id's first-seen clock; an identity the ledger does not know is
// new as of the report.
func (b *rowBuilder) lookup(id sla.Identity) (time.Time, sla.Change) {
	if b.in.Ledger != nil {
		if first, ch, ok := b.in.Ledger.Lookup(id); ok {
			return first, ch
		}
	}
	return b.asOf, sla.ChangeNew
}

// expiredAcceptances lists the expired acceptances the rows hit, most
// findings first.
func (b *rowBuilder) expiredAcceptances() []AcceptanceUse {
	var out []AcceptanceUse
	for a, n := range b.expired {
		out = append(out, AcceptanceUse{Acceptance: *a, Findings: n, FixAvailable: b.byFix[a]})
	}
	slices.SortFunc(out, func(a, b AcceptanceUse) int {
		return cmp.Or(cmp.Compare(b.Findings, a.Findings), strings.Compare(a.Vulnerability, b.Vulnerability),
			strings.Compare(a.Repository, b.Repository), a.Expires.Compare(b.Expires.Time))
	})
	return nonNil(out)
}

// summarize counts the report's rows and coverage (all but Tickets).
func summarize(r *Report, severities []string) Summary {
	s := Summary{BySeverity: map[string]int{}}
	for _, sev := range severities {
		s.BySeverity[sev] = 0
	}
	for f := range r.Findings.All() {
		s.BySeverity[f.Severity]++
		if f.Breached {
			s.Breached++
		}
		if f.Gating() {
			s.BreachedUnaccepted++
		}
		switch f.Status {
		case sla.StatusAccepted:
			s.Accepted++
		case sla.StatusAcceptanceExpired:
			s.AcceptanceExpired++
		case sla.StatusNotAffected:
			s.NotAffected++
		case sla.StatusFixed:
			s.VEXFixed++
		}
		if f.Exploit.InKEV() {
			s.KEV++
			if f.Breached {
				s.KEVBreached++
			}
		}
	}
	s.Findings = r.Findings.Len()
	s.ImagesScanned = len(r.Images)
	for _, img := range r.Images {
		if img.EOL() {
			s.EOLImages++
		}
	}
	for _, fs := range r.Feeds {
		if fs.Degraded() {
			s.FeedsDegraded++
		}
	}
	s.ImagesFailed = len(r.Failures)
	for _, ns := range r.NotScanned {
		if ns.Digest != "" {
			s.ImagesNotScanned++
		} else {
			s.UnresolvedContainers += max(1, len(ns.Workloads))
		}
	}
	s.Images = s.ImagesScanned + s.ImagesFailed + s.ImagesNotScanned
	s.InferredOwners = countInferred(r.Images)
	s.Clusters = len(r.Clusters)
	for _, c := range r.Clusters {
		if c.Status == ClusterUnreachable {
			s.ClustersUnreachable++
		}
	}
	return s
}

// complete reports whether every expected image has a scanned result,
// every cluster was reached and no exploit feed is stale or unreadable.
func (s Summary) complete() bool {
	return s.ImagesFailed == 0 && s.ImagesNotScanned == 0 && s.UnresolvedContainers == 0 && s.ClustersUnreachable == 0 &&
		s.FeedsDegraded == 0
}

// diff compares the identities of this report's rows with the previous
// report (their ledger changes) and lists the fixed ones.
func (b *rowBuilder) diff(fixed []sla.Record, severities []string) Diff {
	d := Diff{NewFindings: []DiffEntry{}, FixedFindings: []DiffEntry{}}
	for id, sev := range b.ids.all() {
		first, change := b.lookup(id)
		switch change {
		case sla.ChangeStillOpen:
			d.StillOpen++
			continue
		case sla.ChangeReopened:
			d.Reopened++
		default:
			d.New++
		}
		d.NewFindings = append(d.NewFindings, DiffEntry{Identity: id, Severity: sev, FirstSeen: first,
			Reopened: change == sla.ChangeReopened})
	}
	slices.SortFunc(d.NewFindings, compareDiff)
	for _, rec := range fixed {
		if !slices.Contains(severities, sla.NormalizeSeverity(rec.Severity)) {
			continue
		}
		d.FixedFindings = append(d.FixedFindings, DiffEntry{
			Identity: rec.Identity, Severity: sla.NormalizeSeverity(rec.Severity),
			FirstSeen: rec.FirstSeen, ResolvedAt: rec.ResolvedAt,
		})
	}
	slices.SortFunc(d.FixedFindings, compareDiff)
	d.Fixed = len(d.FixedFindings)
	return d
}

// countInferred counts the distinct workloads whose owner was inferred.
func countInferred(images []*Image) int {
	seen := map[string]bool{}
	for _, img := range images {
		for _, w := range img.OwnerInferred {
			seen[w] = true
		}
	}
	return len(seen)
}

// feedStatuses describes each exploit feed at asOf, for the report.
func feedStatuses(e *feeds.Enrichment, asOf time.Time) []FeedStatus {
	out := make([]FeedStatus, 0, len(feeds.Kinds))
	for _, st := range e.Statuses() {
		fs := FeedStatus{Feed: string(st.Feed), Title: st.Feed.Title(), State: string(st.State(asOf)), Description: st.Describe(asOf)}
		if st.MaxAge > 0 {
			fs.MaxAge = st.MaxAge.String()
		}
		if st.Err != nil {
			fs.Error = st.Err.Error()
		}
		if st.Loaded {
			m := st.Meta
			fs.Version, fs.Date, fs.Entries, fs.Source = m.Version, m.Date.UTC(), m.Entries, m.Source
			fs.FetchedAt, fs.CheckedAt = m.FetchedAt.UTC(), m.CheckedAt.UTC()
		}
		out = append(out, fs)
	}
	return out
}

func compareDiff(a, b DiffEntry) int {
	return cmp.Or(
		cmp.Compare(sla.SeverityRank(a.Severity), sla.SeverityRank(b.Severity)),
		strings.Compare(a.Repository, b.Repository),
		strings.Compare(a.VulnerabilityID, b.VulnerabilityID),
		strings.Compare(a.PkgName, b.PkgName),
		strings.Compare(a.PkgPath, b.PkgPath),
	)
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
