package sla

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/fleetscan/fleetscan/internal/imageref"
)

// Status is a finding's standing against the gate.
type Status string

const (
	// StatusOpen: not accepted; trips the gate once breached.
	StatusOpen Status = "open"
	// StatusAccepted: covered by an unexpired risk acceptance; reported but
	// never trips the gate.
	StatusAccepted Status = "accepted"
	// StatusAcceptanceExpired: was accepted, the acceptance has expired; it
	// is treated like open and called out so the owner renews or fixes it.
	StatusAcceptanceExpired Status = "acceptance-expired"
	// StatusNotAffected: a VEX statement says the image is not affected;
	// reported with the statement, never breached, never trips the gate.
	StatusNotAffected Status = "not_affected"
	// StatusFixed: a VEX statement says the vulnerability is fixed in the
	// image; reported with the statement, never breached.
	StatusFixed Status = "fixed"
)

// VEX statuses an acceptance may carry (OpenVEX's).
var acceptanceVEXStatuses = []string{"not_affected", "affected", "fixed", "under_investigation"}

// OpenVEX justifications (required with not_affected).
var vexJustifications = []string{
	"component_not_present", "vulnerable_code_not_present", "vulnerable_code_not_in_execute_path",
	"vulnerable_code_cannot_be_controlled_by_adversary", "inline_mitigations_already_exist",
}

// Expiry is an acceptance's expiry: a date (YYYY-MM-DD, expiring at 00:00
// UTC that day) or an RFC 3339 time.
type Expiry struct{ time.Time }

// UnmarshalJSON accepts "2025-03-01" or "2025-03-01T12:00:00Z".
func (e *Expiry) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("expires: want a date like 2025-03-01, got %s", b)
	}
	t, err := ParseTime(s)
	if err != nil {
		return fmt.Errorf("expires: %w", err)
	}
	e.Time = t
	return nil
}

// MarshalJSON renders the time in RFC 3339.
func (e Expiry) MarshalJSON() ([]byte, error) { return json.Marshal(e.Time.UTC().Format(time.RFC3339)) }

// ParseTime parses an RFC 3339 time or a date (midnight UTC).
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%q: want a date (2006-01-02) or an RFC 3339 time (2006-01-02T15:04:05Z)", s)
}

// Acceptance accepts the risk of one vulnerability in matching images until
// it expires.
type Acceptance struct {
	// Vulnerability is the ID as Trivy reports it (CVE-2024-1234, GHSA-...).
	Vulnerability string `json:"vulnerability"`
	// Repository is a glob over image repositories without tag or digest
	// ("docker.io/library/nginx", "ghcr.io/acme/*", "*").
	Repository string `json:"repository"`
	// Package optionally narrows the acceptance to one package name.
	Package string `json:"package,omitempty"`
	// Expires is mandatory: acceptances are reviewed, not forgotten.
	Expires Expiry `json:"expires"`
	// Reason is mandatory: why the risk is acceptable.
	Reason string `json:"reason"`
	// ApprovedBy and Ticket are optional bookkeeping.
	ApprovedBy string `json:"approvedBy,omitempty"`
	Ticket     string `json:"ticket,omitempty"`
	// Clusters, Namespaces and Workloads optionally scope the acceptance
	// (globs; workloads are "cluster/namespace/Kind/name"). A scoped
	// acceptance covers an image only when every workload running it is in
	// scope: the same digest running elsewhere stays open.
	Clusters   []string `json:"clusters,omitempty"`
	Namespaces []string `json:"namespaces,omitempty"`
	Workloads  []string `json:"workloads,omitempty"`
	// ExpireOnFix ends the acceptance as soon as a fixed version of the
	// package exists (the finding then reads acceptance-expired).
	ExpireOnFix bool `json:"expire_on_fix,omitempty"`
	// VEXStatus and VEXJustification, when set, are exported as an OpenVEX
	// statement (fleetscan vex export, reporter --vex-out).
	VEXStatus        string `json:"vex_status,omitempty"`
	VEXJustification string `json:"vex_justification,omitempty"`
}

// Subject is one finding an acceptance is matched against: a
// vulnerability in a package of an image and where the image runs.
type Subject struct {
	Vulnerability string
	Package       string
	// PURL is the package's PURL (an acceptance's package may be one).
	PURL         string
	Repositories []string
	// Workloads are "cluster/namespace/Kind/name".
	Workloads []string
	// FixedVersion is the version that fixes it ("" when none exists).
	FixedVersion string
}

// Matches reports whether a covers vuln in pkg of any of repos (ignoring
// expiry and scope).
func (a Acceptance) Matches(vuln, pkg string, repos []string) bool {
	return a.Covers(Subject{Vulnerability: vuln, Package: pkg, Repositories: repos})
}

// Covers reports whether a covers sub: vulnerability, package (a name, or
// a PURL matched without its version when it has none), repository and
// scope; expiry is not considered.
func (a Acceptance) Covers(sub Subject) bool {
	if !strings.EqualFold(a.Vulnerability, sub.Vulnerability) || !a.coversPackage(sub) {
		return false
	}
	if !slices.ContainsFunc(sub.Repositories, func(r string) bool { return Glob(a.Repository, r) }) {
		return false
	}
	return a.inScope(sub.Workloads)
}

func (a Acceptance) coversPackage(sub Subject) bool {
	switch {
	case a.Package == "":
		return true
	case strings.HasPrefix(a.Package, "pkg:"):
		return purlCovers(a.Package, sub.PURL)
	}
	return a.Package == sub.Package
}

// Scoped reports whether the acceptance names clusters, namespaces or
// workloads.
func (a Acceptance) Scoped() bool {
	return len(a.Clusters)+len(a.Namespaces)+len(a.Workloads) > 0
}

// inScope reports whether every workload is within the acceptance's scope
// (always, when it has none; never, for an image with no known workload).
func (a Acceptance) inScope(workloads []string) bool {
	if !a.Scoped() {
		return true
	}
	if len(workloads) == 0 {
		return false
	}
	for _, w := range workloads {
		parts := strings.SplitN(w, "/", 3)
		if len(parts) < 3 {
			return false
		}
		if !anyGlob(a.Clusters, parts[0]) || !anyGlob(a.Namespaces, parts[1]) || !anyGlob(a.Workloads, w) {
			return false
		}
	}
	return true
}

// anyGlob: no patterns match everything.
func anyGlob(patterns []string, s string) bool {
	return len(patterns) == 0 || slices.ContainsFunc(patterns, func(p string) bool { return Glob(p, s) })
}

// purlCovers compares type, namespace, name and (when the acceptance has
// one) version of two package URLs, ignoring qualifiers.
func purlCovers(accept, purl string) bool {
	base := func(p string) (string, string) {
		p, _, _ = strings.Cut(p, "?")
		p, _, _ = strings.Cut(p, "#")
		name, ver, _ := strings.Cut(p, "@")
		return strings.ToLower(name), ver
	}
	an, av := base(accept)
	pn, pv := base(purl)
	return an == pn && (av == "" || av == pv)
}

// Active reports whether a is still in force at asOf.
func (a Acceptance) Active(asOf time.Time) bool { return asOf.Before(a.Expires.Time) }

// ActiveFor reports whether a is in force at asOf for a finding whose
// fixed version is fixed: expire_on_fix ends it once a fix exists.
func (a Acceptance) ActiveFor(asOf time.Time, fixed string) bool {
	return a.Active(asOf) && !(a.ExpireOnFix && fixed != "")
}

// Acceptances is a validated set of risk acceptances.
type Acceptances struct {
	Source string
	Items  []Acceptance
}

// ParseAcceptances reads an acceptances YAML document; source names it in
// errors. Every entry needs vulnerability, repository, expires and reason.
//
//	acceptances:
//	  - vulnerability: CVE-2024-1234
//	    repository: docker.io/library/nginx
//	    package: openssl            # optional
//	    expires: 2025-03-01
//	    reason: not reachable: TLS terminates at the ingress
//	    approvedBy: security@example.com
//	    clusters: [prod-*]          # optional scope (globs)
//	    namespaces: [payments]
//	    workloads: ["prod-eu/payments/Deployment/api"]
//	    expire_on_fix: true         # ends when a fixed version exists
//	    vex_status: not_affected    # exported as OpenVEX
//	    vex_justification: vulnerable_code_not_in_execute_path
func ParseAcceptances(data []byte, source string) (*Acceptances, error) {
	var doc struct {
		Acceptances []Acceptance `json:"acceptances"`
	}
	if err := yaml.UnmarshalStrict(data, &doc); err != nil {
		return nil, fmt.Errorf("acceptances %s: %w", source, err)
	}
	var errs []error
	for i, a := range doc.Acceptances {
		where := fmt.Sprintf("acceptances %s: entry %d", source, i+1)
		if a.Vulnerability != "" {
			where += " (" + a.Vulnerability + ")"
		}
		if strings.TrimSpace(a.Vulnerability) == "" {
			errs = append(errs, fmt.Errorf("%s: vulnerability is required", where))
		}
		if strings.TrimSpace(a.Repository) == "" {
			errs = append(errs, fmt.Errorf("%s: repository is required (use \"*\" for every image)", where))
		} else if err := checkRepositoryGlob(a.Repository); err != nil {
			errs = append(errs, fmt.Errorf("%s: repository %q: %w", where, a.Repository, err))
		}
		if a.Expires.IsZero() {
			errs = append(errs, fmt.Errorf("%s: expires is required (a date like 2025-03-01)", where))
		}
		if strings.TrimSpace(a.Reason) == "" {
			errs = append(errs, fmt.Errorf("%s: reason is required", where))
		}
		errs = append(errs, checkAcceptanceExtras(a, where)...)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Acceptances{Source: source, Items: doc.Acceptances}, nil
}

// checkAcceptanceExtras validates the scope globs, the package PURL and
// the VEX status and justification.
func checkAcceptanceExtras(a Acceptance, where string) []error {
	var errs []error
	for field, globs := range map[string][]string{"clusters": a.Clusters, "namespaces": a.Namespaces, "workloads": a.Workloads} {
		for _, g := range globs {
			if strings.TrimSpace(g) == "" || strings.TrimSpace(g) != g {
				errs = append(errs, fmt.Errorf("%s: %s: %q: empty or surrounded by white space", where, field, g))
			}
		}
	}
	for _, w := range a.Workloads {
		if strings.Count(w, "/") < 3 && !strings.Contains(w, "*") {
			errs = append(errs, fmt.Errorf("%s: workloads: %q: want cluster/namespace/Kind/name (globs allowed)", where, w))
		}
	}
	if strings.HasPrefix(a.Package, "pkg:") && !strings.Contains(strings.TrimPrefix(a.Package, "pkg:"), "/") {
		errs = append(errs, fmt.Errorf("%s: package %q: not a package URL (pkg:type/name)", where, a.Package))
	}
	if a.VEXStatus == "" {
		if a.VEXJustification != "" {
			errs = append(errs, fmt.Errorf("%s: vex_justification needs vex_status", where))
		}
		return errs
	}
	if !slices.Contains(acceptanceVEXStatuses, a.VEXStatus) {
		errs = append(errs, fmt.Errorf("%s: vex_status %q: want one of %s", where, a.VEXStatus, strings.Join(acceptanceVEXStatuses, ", ")))
	}
	switch {
	case a.VEXStatus == "not_affected" && a.VEXJustification == "":
		errs = append(errs, fmt.Errorf("%s: vex_status not_affected needs vex_justification (one of %s)", where, strings.Join(vexJustifications, ", ")))
	case a.VEXJustification != "" && !slices.Contains(vexJustifications, a.VEXJustification):
		errs = append(errs, fmt.Errorf("%s: vex_justification %q: want one of %s", where, a.VEXJustification, strings.Join(vexJustifications, ", ")))
	}
	return errs
}

// checkRepositoryGlob rejects a repository glob that can never match: the
// repositories it is matched against are fully qualified
// (docker.io/library/nginx), lower case, without tag or digest.
func checkRepositoryGlob(g string) error {
	wild := strings.ContainsAny(g, "*?")
	last := g[strings.LastIndexByte(g, '/')+1:]
	switch {
	case strings.TrimSpace(g) != g || strings.ContainsAny(g, " \t\n"):
		return errors.New("white space: repositories have none")
	case strings.Contains(g, "@"):
		return errors.New("has a digest: repositories are matched without tag or digest")
	case strings.Contains(last, ":"):
		return fmt.Errorf("has a tag: repositories are matched without tag or digest (%s)", Repository(g))
	case strings.ToLower(g) != g:
		return errors.New("has upper-case letters: repositories are lower case")
	case wild:
		if !strings.HasPrefix(g, "*") && !strings.Contains(g, "/") {
			return fmt.Errorf("matches nothing: repositories are fully qualified (docker.io/library/nginx); write */%s or the full name", g)
		}
		return nil
	}
	ref, err := imageref.NormalizeReference(g)
	if err != nil {
		return err
	}
	if ref.Name != g {
		return fmt.Errorf("matches nothing: repositories are fully qualified; write %s", ref.Name)
	}
	return nil
}

// LoadAcceptances reads an acceptances file.
func LoadAcceptances(path string) (*Acceptances, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("acceptances %s: %w", path, err)
	}
	return ParseAcceptances(data, path)
}

// Decision is the acceptance standing of one finding.
type Decision struct {
	Status Status
	// Acceptance is the acceptance that decided: the active one expiring
	// last, or else the expired one that expired last. Nil when open.
	Acceptance *Acceptance
}

// Decide finds the acceptances covering vuln in pkg of repos at asOf. A nil
// receiver accepts nothing.
func (a *Acceptances) Decide(vuln, pkg string, repos []string, asOf time.Time) Decision {
	return a.DecideFor(Subject{Vulnerability: vuln, Package: pkg, Repositories: repos}, asOf)
}

// DecideFor finds the acceptances covering sub at asOf: the active one
// expiring last, else the expired one (by date, or by a fix under
// expire_on_fix) that expired last. A nil receiver accepts nothing.
func (a *Acceptances) DecideFor(sub Subject, asOf time.Time) Decision {
	if a == nil {
		return Decision{Status: StatusOpen}
	}
	var active, expired *Acceptance
	for i := range a.Items {
		it := &a.Items[i]
		if !it.Covers(sub) {
			continue
		}
		if it.ActiveFor(asOf, sub.FixedVersion) {
			if active == nil || it.Expires.After(active.Expires.Time) {
				active = it
			}
		} else if expired == nil || it.Expires.After(expired.Expires.Time) {
			expired = it
		}
	}
	switch {
	case active != nil:
		return Decision{Status: StatusAccepted, Acceptance: active}
	case expired != nil:
		return Decision{Status: StatusAcceptanceExpired, Acceptance: expired}
	}
	return Decision{Status: StatusOpen}
}
