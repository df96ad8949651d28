package sla

import (
	"fmt"
	"strconv"
	"time"
)

// Rule names: which rule set a finding's deadline. An override that
// applied is named by its name (or overrides[i]).
const (
	// RuleSeverity: the base days of the finding's severity.
	RuleSeverity = "severity"
	// RuleKEV: CISA's KEV due date, or dateAdded + kev.days.
	RuleKEV = "kev"
	// RuleEPSS: the EPSS percentile threshold's days.
	RuleEPSS = "epss"
	// RuleEOL: the end-of-life OS days.
	RuleEOL = "eol"
)

// ruleNames may not name an override.
var ruleNames = []string{RuleSeverity, RuleKEV, RuleEPSS, RuleEOL, DefaultRule}

func isRuleName(s string) bool {
	for _, r := range ruleNames {
		if s == r {
			return true
		}
	}
	return false
}

// MaxRuleDays bounds the days a rule may give (ten years).
const MaxRuleDays = 3650

// KEVRule gives findings listed in CISA's Known Exploited Vulnerabilities
// catalogue the catalogue's due date (BOD 22-01) and, with Days, at most
// Days after the later of first seen and the listing date.
type KEVRule struct {
	Enabled bool `json:"enabled"`
	// Days is 0 for the due date alone.
	Days int `json:"days,omitempty"`
}

// EPSSRule gives findings whose EPSS percentile is at or above Percentile
// at most Days after first seen.
type EPSSRule struct {
	Enabled    bool    `json:"enabled"`
	Percentile float64 `json:"percentile,omitempty"`
	Days       int     `json:"days,omitempty"`
}

// EOLRule gives the findings of images whose OS is past its end of life
// at most Days after first seen.
type EOLRule struct {
	Enabled bool `json:"enabled"`
	Days    int  `json:"days,omitempty"`
}

func (r *ruleDoc) enabled() bool { return r.Enabled == nil || *r.Enabled }

func (r *ruleDoc) kev(errs []error) (KEVRule, []error) {
	if r.Percentile != nil {
		errs = append(errs, fmt.Errorf("kev: percentile: not a KEV setting (epss has one)"))
	}
	k := KEVRule{Enabled: r.enabled()}
	if r.Days != nil {
		k.Days = *r.Days
		errs = append(errs, checkDays("kev.days", *r.Days)...)
	}
	return k, errs
}

func (r *ruleDoc) epss(errs []error) (EPSSRule, []error) {
	e := EPSSRule{Enabled: r.enabled()}
	if !e.Enabled && r.Percentile == nil && r.Days == nil {
		return e, errs
	}
	if r.Percentile == nil {
		errs = append(errs, fmt.Errorf("epss.percentile: required (0 to 1, e.g. 0.95 for the top 5 %%)"))
	} else {
		e.Percentile = *r.Percentile
	}
	if r.Days == nil {
		errs = append(errs, fmt.Errorf("epss.days: required (1 to %d)", MaxRuleDays))
	} else {
		e.Days = *r.Days
	}
	return e, errs
}

func (r *ruleDoc) eol(errs []error) (EOLRule, []error) {
	if r.Percentile != nil {
		errs = append(errs, fmt.Errorf("eol: percentile: not an EOL setting (epss has one)"))
	}
	e := EOLRule{Enabled: r.enabled()}
	if !e.Enabled && r.Days == nil {
		return e, errs
	}
	if r.Days == nil {
		errs = append(errs, fmt.Errorf("eol.days: required (1 to %d)", MaxRuleDays))
	} else {
		e.Days = *r.Days
	}
	return e, errs
}

func checkDays(field string, n int) []error {
	if n < 1 || n > MaxRuleDays {
		return []error{fmt.Errorf("%s: %d: want 1 to %d", field, n, MaxRuleDays)}
	}
	return nil
}

// validateRules checks the rules' ranges (a policy built in code as well
// as one parsed).
func (p Policy) validateRules() []error {
	var errs []error
	if p.KEV.Days != 0 {
		errs = append(errs, checkDays("kev.days", p.KEV.Days)...)
	}
	if p.EPSS.Enabled || p.EPSS.Days != 0 || p.EPSS.Percentile != 0 {
		if !(p.EPSS.Percentile >= 0 && p.EPSS.Percentile <= 1) { // also NaN
			errs = append(errs, fmt.Errorf("epss.percentile: %v: want 0 to 1", p.EPSS.Percentile))
		}
		errs = append(errs, checkDays("epss.days", p.EPSS.Days)...)
	}
	if p.EOL.Enabled || p.EOL.Days != 0 {
		errs = append(errs, checkDays("eol.days", p.EOL.Days)...)
	}
	return errs
}

// Exposure is what the exploit-aware rules know about one finding. The
// reporter fills it from the feeds (feeds.Match.Exposure) and the image's
// scan result (contract.OSInfo.EOSL).
type Exposure struct {
	// InKEV: listed in CISA's KEV catalogue on KEVAdded (a day, midnight
	// UTC), to be remediated by KEVDue (a day; the whole day counts).
	InKEV    bool
	KEVAdded time.Time
	KEVDue   time.Time
	// HasEPSS: EPSSPercentile is the vulnerability's EPSS percentile (0…1).
	HasEPSS        bool
	EPSSPercentile float64
	// EOL: the image's OS is past its end of life.
	EOL bool
}

// DeadlineInput is one finding as Deadline needs it.
type DeadlineInput struct {
	Severity string
	// Scopes are where the finding runs (for overrides).
	Scopes []Scope
	// FirstSeen starts the clock.
	FirstSeen time.Time
	// AsOf is the evaluation time (--now): the KEV rule applies only from
	// the day the vulnerability was listed. Zero applies every rule.
	AsOf     time.Time
	Exposure Exposure
}

// Deadline is a finding's remediation deadline and the rule that set it.
type Deadline struct {
	// At is the deadline; a finding is breached when the evaluation time is
	// after it.
	At time.Time
	// Rule set At: RuleSeverity, an override's name, RuleKEV, RuleEPSS or
	// RuleEOL.
	Rule string
	// Days and DaysRule are the severity (or override) days and their
	// source — the deadline before the exploit-aware rules.
	Days     int
	DaysRule string
}

// Deadline computes a finding's deadline: the severity (or override)
// deadline, first seen + days, brought forward by the rules that apply —
// never pushed back:
//
//   - kev (listed, rule enabled, evaluated on or after the listing day):
//     the end of the KEV due date, and with kev.days, max(first seen,
//     listing day) + days. A due date already past at first sight is
//     breached at once, as BOD 22-01 means.
//   - epss (percentile at or above the threshold): first seen + days.
//   - eol (the image's OS is end-of-life): first seen + days.
//
// The earliest wins; on a tie the rule listed first keeps it.
func (p Policy) Deadline(in DeadlineInput) Deadline {
	days, rule := p.DaysFor(in.Severity, in.Scopes)
	if rule == DefaultRule {
		rule = RuleSeverity
	}
	d := Deadline{At: in.FirstSeen.Add(time.Duration(days) * 24 * time.Hour), Rule: rule, Days: days, DaysRule: rule}
	earlier := func(t time.Time, r string) {
		if t.Before(d.At) {
			d.At, d.Rule = t, r
		}
	}
	x := in.Exposure
	if p.KEV.Enabled && x.InKEV && (in.AsOf.IsZero() || !in.AsOf.Before(x.KEVAdded)) {
		if !x.KEVDue.IsZero() {
			earlier(endOfDay(x.KEVDue), RuleKEV)
		}
		if p.KEV.Days > 0 {
			start := in.FirstSeen
			if x.KEVAdded.After(start) {
				start = x.KEVAdded
			}
			earlier(start.Add(time.Duration(p.KEV.Days)*24*time.Hour), RuleKEV)
		}
	}
	if p.EPSS.Enabled && x.HasEPSS && x.EPSSPercentile >= p.EPSS.Percentile {
		earlier(in.FirstSeen.Add(time.Duration(p.EPSS.Days)*24*time.Hour), RuleEPSS)
	}
	if p.EOL.Enabled && x.EOL {
		earlier(in.FirstSeen.Add(time.Duration(p.EOL.Days)*24*time.Hour), RuleEOL)
	}
	return d
}

// endOfDay is the last second of a day given as its midnight (UTC): a due
// date is met by remediating on that day.
func endOfDay(day time.Time) time.Time {
	y, m, dd := day.UTC().Date()
	return time.Date(y, m, dd+1, 0, 0, 0, 0, time.UTC).Add(-time.Second)
}

// DescribeRules renders the exploit-aware rules for reports, one line each.
func (p Policy) DescribeRules() []string {
	kev := "kev: off"
	if p.KEV.Enabled {
		kev = "kev: CISA KEV due date"
		if p.KEV.Days > 0 {
			kev += fmt.Sprintf(", and at most %d days after listing", p.KEV.Days)
		}
	}
	epss := "epss: off"
	if p.EPSS.Enabled {
		epss = fmt.Sprintf("epss: percentile >= %s: at most %d days", strconv.FormatFloat(p.EPSS.Percentile, 'f', -1, 64), p.EPSS.Days)
	}
	eol := "eol: off"
	if p.EOL.Enabled {
		eol = fmt.Sprintf("eol: end-of-life OS images: at most %d days", p.EOL.Days)
	}
	return []string{kev, epss, eol}
}
