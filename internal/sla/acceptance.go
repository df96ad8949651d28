package sla

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
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
)

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
}

// Matches reports whether a covers vuln in pkg of any of repos (ignoring
// expiry).
func (a Acceptance) Matches(vuln, pkg string, repos []string) bool {
	if !strings.EqualFold(a.Vulnerability, vuln) {
		return false
	}
	if a.Package != "" && a.Package != pkg {
		return false
	}
	for _, r := range repos {
		if Glob(a.Repository, r) {
			return true
		}
	}
	return false
}

// Active reports whether a is still in force at asOf.
func (a Acceptance) Active(asOf time.Time) bool { return asOf.Before(a.Expires.Time) }

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
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Acceptances{Source: source, Items: doc.Acceptances}, nil
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
	if a == nil {
		return Decision{Status: StatusOpen}
	}
	var active, expired *Acceptance
	for i := range a.Items {
		it := &a.Items[i]
		if !it.Matches(vuln, pkg, repos) {
			continue
		}
		if it.Active(asOf) {
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
