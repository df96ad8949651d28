// Package sla holds fleetscan's remediation policy: how many days each
// severity may stay open (with overrides per cluster and namespace), the
// first-seen clock that starts those days and survives across runs in
// JetStream KV, and risk acceptances that exempt findings from the gate until
// they expire.
package sla

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// Severity names, in the order Trivy ranks them.
const (
	Critical = "CRITICAL"
	High     = "HIGH"
	Medium   = "MEDIUM"
	Low      = "LOW"
	Unknown  = "UNKNOWN"
)

// Severities lists every severity from worst to least.
var Severities = []string{Critical, High, Medium, Low, Unknown}

// NormalizeSeverity upper-cases s and maps anything unrecognised to UNKNOWN.
func NormalizeSeverity(s string) string {
	u := strings.ToUpper(strings.TrimSpace(s))
	for _, k := range Severities {
		if u == k {
			return k
		}
	}
	return Unknown
}

// SeverityRank orders severities: 0 for CRITICAL up to 4 for UNKNOWN.
func SeverityRank(s string) int {
	switch s {
	case Critical:
		return 0
	case High:
		return 1
	case Medium:
		return 2
	case Low:
		return 3
	}
	return 4
}

// ParseSeverities parses a comma-separated severity list ("CRITICAL,HIGH")
// with Trivy's names. The result is ordered worst first, without duplicates.
func ParseSeverities(list []string) ([]string, error) {
	seen := map[string]bool{}
	for _, item := range list {
		for _, s := range strings.Split(item, ",") {
			s = strings.ToUpper(strings.TrimSpace(s))
			if s == "" {
				continue
			}
			if NormalizeSeverity(s) != s {
				return nil, fmt.Errorf("severity %q: want one of %s", s, strings.Join(Severities, ", "))
			}
			seen[s] = true
		}
	}
	if len(seen) == 0 {
		return nil, errors.New("no severity given")
	}
	out := make([]string, 0, len(seen))
	for _, s := range Severities {
		if seen[s] {
			out = append(out, s)
		}
	}
	return out, nil
}

// Days maps a severity to the number of days a finding may stay open.
type Days map[string]int

// DefaultDays returns the default remediation windows. UNKNOWN gets a year,
// the fallback the original tutorial used for any unlisted severity.
func DefaultDays() Days {
	return Days{Critical: 7, High: 30, Medium: 90, Low: 180, Unknown: 365}
}

// ParseDays parses "CRITICAL=3,HIGH=14".
func ParseDays(s string) (Days, error) {
	d := Days{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, val, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("%q: want SEVERITY=DAYS", part)
		}
		sev := strings.ToUpper(strings.TrimSpace(name))
		if NormalizeSeverity(sev) != sev {
			return nil, fmt.Errorf("%q: unknown severity %q (want one of %s)", part, name, strings.Join(Severities, ", "))
		}
		n, err := strconv.Atoi(strings.TrimSpace(val))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%q: days must be a whole number >= 0", part)
		}
		d[sev] = n
	}
	if len(d) == 0 {
		return nil, fmt.Errorf("%q: no SEVERITY=DAYS pair", s)
	}
	return d, nil
}

// String renders the days in severity order ("CRITICAL=7,HIGH=30").
func (d Days) String() string {
	var parts []string
	for _, s := range Severities {
		if n, ok := d[s]; ok {
			parts = append(parts, fmt.Sprintf("%s=%d", s, n))
		}
	}
	return strings.Join(parts, ",")
}

func (d Days) validate() error {
	for sev, n := range d {
		if NormalizeSeverity(sev) != sev {
			return fmt.Errorf("unknown severity %q (want one of %s)", sev, strings.Join(Severities, ", "))
		}
		if n < 0 {
			return fmt.Errorf("%s: days must be >= 0, got %d", sev, n)
		}
	}
	return nil
}

// Override replaces some severities' days for workloads in matching clusters
// and namespaces. Empty lists match everything. Patterns are globs: '*'
// matches any run of characters, '?' one character.
type Override struct {
	Name       string   `json:"name,omitempty"`
	Clusters   []string `json:"clusters,omitempty"`
	Namespaces []string `json:"namespaces,omitempty"`
	Days       Days     `json:"days"`
}

func (o Override) matches(s Scope) bool {
	return matchAny(o.Clusters, s.Cluster) && matchAny(o.Namespaces, s.Namespace)
}

func (o Override) label(i int) string {
	if o.Name != "" {
		return o.Name
	}
	return fmt.Sprintf("overrides[%d]", i)
}

// Policy is the remediation policy: base days per severity plus
// overrides, and the exploit-aware rules that can only bring a deadline
// forward (see Deadline).
type Policy struct {
	Days      Days       `json:"days"`
	Overrides []Override `json:"overrides,omitempty"`
	KEV       KEVRule    `json:"kev"`
	EPSS      EPSSRule   `json:"epss"`
	EOL       EOLRule    `json:"eol"`
}

// DefaultPolicy returns the default days, no overrides, the KEV rule on
// (CISA's due date) and the EPSS and end-of-life rules off.
func DefaultPolicy() Policy { return Policy{Days: DefaultDays(), KEV: KEVRule{Enabled: true}} }

// Scope is where a finding runs: one cluster and namespace.
type Scope struct {
	Cluster   string
	Namespace string
}

// DefaultRule names the base days in DaysFor's answer.
const DefaultRule = "default"

// DaysFor returns the days allowed for a finding of severity that runs in
// scopes, and the rule that set them. The first override (in file order)
// that matches a scope and sets the severity applies to that scope; a
// finding running in several scopes gets the strictest (fewest days) of
// them. Without scopes the base days apply.
func (p Policy) DaysFor(severity string, scopes []Scope) (int, string) {
	base, ok := p.Days[severity]
	if !ok {
		base = DefaultDays()[NormalizeSeverity(severity)]
	}
	if len(scopes) == 0 || len(p.Overrides) == 0 {
		return base, DefaultRule
	}
	best, rule := -1, DefaultRule
	for _, s := range scopes {
		days, r := base, DefaultRule
		for i, o := range p.Overrides {
			if n, ok := o.Days[severity]; ok && o.matches(s) {
				days, r = n, o.label(i)
				break
			}
		}
		if best < 0 || days < best {
			best, rule = days, r
		}
	}
	return best, rule
}

// WithDays returns a copy of p whose base days are replaced for the
// severities in d (the --sla flag). Overrides still apply on top.
func (p Policy) WithDays(d Days) Policy {
	out := p
	out.Days = Days{}
	for k, v := range p.Days {
		out.Days[k] = v
	}
	for k, v := range d {
		out.Days[k] = v
	}
	return out
}

// Validate checks severities, day counts and patterns.
func (p Policy) Validate() error {
	var errs []error
	if err := p.Days.validate(); err != nil {
		errs = append(errs, fmt.Errorf("days: %w", err))
	}
	for i, o := range p.Overrides {
		if isRuleName(o.Name) {
			errs = append(errs, fmt.Errorf("overrides[%d]: name %q is reserved for a rule (%s)", i, o.Name, strings.Join(ruleNames, ", ")))
		}
		if len(o.Days) == 0 {
			errs = append(errs, fmt.Errorf("%s: days: at least one SEVERITY: DAYS entry is required", o.label(i)))
		}
		if err := o.Days.validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: days: %w", o.label(i), err))
		}
		for _, pat := range append(append([]string{}, o.Clusters...), o.Namespaces...) {
			if strings.TrimSpace(pat) == "" {
				errs = append(errs, fmt.Errorf("%s: empty pattern", o.label(i)))
			}
		}
	}
	errs = append(errs, p.validateRules()...)
	return errors.Join(errs...)
}

// policyDoc is the YAML document; pointers tell a key left out from a
// zero.
type policyDoc struct {
	Days      Days       `json:"days"`
	Overrides []Override `json:"overrides,omitempty"`
	KEV       *ruleDoc   `json:"kev,omitempty"`
	EPSS      *ruleDoc   `json:"epss,omitempty"`
	EOL       *ruleDoc   `json:"eol,omitempty"`
}

type ruleDoc struct {
	Enabled    *bool    `json:"enabled,omitempty"`
	Days       *int     `json:"days,omitempty"`
	Percentile *float64 `json:"percentile,omitempty"`
}

// ParsePolicy reads a policy YAML document. Severities it does not list keep
// their default days; rules it does not list keep their defaults (KEV on,
// EPSS and EOL off). Unknown fields are errors, so a typo cannot silently
// fall back to a default.
//
//	days: {CRITICAL: 7, HIGH: 30, MEDIUM: 90, LOW: 180, UNKNOWN: 365}
//	overrides:
//	  - name: production payments
//	    clusters: ["prod-*"]
//	    namespaces: ["payments", "billing-*"]
//	    days: {CRITICAL: 3, HIGH: 14}
//	kev: {enabled: true, days: 14}      # CISA due date, and at most 14 days after listing
//	epss: {percentile: 0.95, days: 30}  # top 5 % by EPSS: at most 30 days
//	eol: {days: 60}                     # end-of-life OS images: at most 60 days
func ParsePolicy(data []byte) (Policy, error) {
	var doc policyDoc
	if err := yaml.UnmarshalStrict(data, &doc); err != nil {
		return Policy{}, err
	}
	for i := range doc.Overrides {
		doc.Overrides[i].Days = upperKeys(doc.Overrides[i].Days)
	}
	p := DefaultPolicy().WithDays(upperKeys(doc.Days))
	p.Overrides = doc.Overrides
	var errs []error
	if doc.KEV != nil {
		p.KEV, errs = doc.KEV.kev(errs)
	}
	if doc.EPSS != nil {
		p.EPSS, errs = doc.EPSS.epss(errs)
	}
	if doc.EOL != nil {
		p.EOL, errs = doc.EOL.eol(errs)
	}
	if len(errs) > 0 {
		return Policy{}, errors.Join(errs...)
	}
	if err := p.Validate(); err != nil {
		return Policy{}, err
	}
	return p, nil
}

// LoadPolicy reads a policy file; errors name the flag and the file.
func LoadPolicy(path string) (Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Policy{}, fmt.Errorf("--sla-config %s: %w", path, err)
	}
	p, err := ParsePolicy(data)
	if err != nil {
		return Policy{}, fmt.Errorf("--sla-config %s: %w", path, err)
	}
	return p, nil
}

// ValidatePolicyFile loads a policy file to check it (no file: nil), so a
// command can refuse a bad --sla-config before doing any work.
func ValidatePolicyFile(path string) error {
	if path == "" {
		return nil
	}
	_, err := LoadPolicy(path)
	return err
}

func upperKeys(d Days) Days {
	if d == nil {
		return nil
	}
	out := make(Days, len(d))
	for k, v := range d {
		out[strings.ToUpper(strings.TrimSpace(k))] = v
	}
	return out
}

// Describe renders the policy for reports: base days then overrides.
func (p Policy) Describe() []string {
	lines := []string{"default: " + p.Days.String()}
	for i, o := range p.Overrides {
		var where []string
		if len(o.Clusters) > 0 {
			where = append(where, "clusters "+strings.Join(o.Clusters, ","))
		}
		if len(o.Namespaces) > 0 {
			where = append(where, "namespaces "+strings.Join(o.Namespaces, ","))
		}
		if len(where) == 0 {
			where = append(where, "everywhere")
		}
		lines = append(lines, fmt.Sprintf("%s (%s): %s", o.label(i), strings.Join(where, ", "), o.Days.String()))
	}
	return lines
}

// matchAny reports whether s matches one of patterns; no patterns match all.
func matchAny(patterns []string, s string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if Glob(p, s) {
			return true
		}
	}
	return false
}

// Glob matches s against pattern, where '*' matches any run of characters
// (including '/') and '?' exactly one character. Everything else matches
// itself.
func Glob(pattern, s string) bool {
	p, str := []rune(pattern), []rune(s)
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(str) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == str[si]):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// sortedUnique sorts and deduplicates in place.
func sortedUnique(in []string) []string {
	sort.Strings(in)
	out := in[:0]
	for i, s := range in {
		if i == 0 || s != in[i-1] {
			out = append(out, s)
		}
	}
	return out
}
