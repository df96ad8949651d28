package sla

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParsePolicyRules(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		kev  KEVRule
		epss EPSSRule
		eol  EOLRule
	}{
		{"defaults: KEV on with the due date, EPSS and EOL off", "days: {HIGH: 20}", KEVRule{Enabled: true}, EPSSRule{}, EOLRule{}},
		{"empty kev block keeps it on", "kev: {}", KEVRule{Enabled: true}, EPSSRule{}, EOLRule{}},
		{"kev days", "kev: {enabled: true, days: 14}", KEVRule{Enabled: true, Days: 14}, EPSSRule{}, EOLRule{}},
		{"kev off", "kev: {enabled: false}", KEVRule{}, EPSSRule{}, EOLRule{}},
		{"epss on when given", "epss: {percentile: 0.95, days: 30}", KEVRule{Enabled: true}, EPSSRule{Enabled: true, Percentile: 0.95, Days: 30}, EOLRule{}},
		{"epss percentile bounds are inclusive", "epss: {percentile: 1, days: 3650}", KEVRule{Enabled: true}, EPSSRule{Enabled: true, Percentile: 1, Days: 3650}, EOLRule{}},
		{"epss switched off without settings", "epss: {enabled: false}", KEVRule{Enabled: true}, EPSSRule{}, EOLRule{}},
		{"eol", "eol: {days: 60}", KEVRule{Enabled: true}, EPSSRule{}, EOLRule{Enabled: true, Days: 60}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePolicy([]byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if p.KEV != tt.kev || p.EPSS != tt.epss || p.EOL != tt.eol {
				t.Fatalf("rules %+v %+v %+v, want %+v %+v %+v", p.KEV, p.EPSS, p.EOL, tt.kev, tt.epss, tt.eol)
			}
			// --sla keeps the rules.
			if q := p.WithDays(Days{Critical: 1}); q.KEV != p.KEV || q.EPSS != p.EPSS || q.EOL != p.EOL {
				t.Fatalf("WithDays dropped the rules: %+v", q)
			}
		})
	}
	if d := DefaultPolicy(); !d.KEV.Enabled || d.KEV.Days != 0 || d.EPSS.Enabled || d.EOL.Enabled {
		t.Fatalf("DefaultPolicy rules %+v %+v %+v", d.KEV, d.EPSS, d.EOL)
	}
}

func TestParsePolicyRuleErrors(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"percentile above 1", "epss: {percentile: 1.5, days: 10}", "epss.percentile: 1.5: want 0 to 1"},
		{"negative percentile", "epss: {percentile: -0.1, days: 10}", "epss.percentile: -0.1: want 0 to 1"},
		{"percentile missing", "epss: {days: 10}", "epss.percentile: required"},
		{"epss days missing", "epss: {percentile: 0.9}", "epss.days: required"},
		{"epss days zero", "epss: {percentile: 0.9, days: 0}", "epss.days: 0: want 1 to 3650"},
		{"kev days zero", "kev: {days: 0}", "kev.days: 0: want 1 to 3650"},
		{"kev days too many", "kev: {days: 3651}", "kev.days: 3651: want 1 to 3650"},
		{"eol days missing", "eol: {}", "eol.days: required"},
		{"eol days negative", "eol: {days: -3}", "eol.days: -3: want 1 to 3650"},
		{"percentile is not a kev setting", "kev: {percentile: 0.5}", "kev: percentile"},
		{"typo in a rule", "kev: {dayz: 3}", "dayz"},
		{"days not a number", "kev: {days: soon}", "kev"},
		{"override named like a rule", "overrides: [{name: kev, days: {HIGH: 1}}]", `name "kev" is reserved`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePolicy([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want containing %q", err, tt.want)
			}
		})
	}
}

// TestLoadPolicyNamesTheFlag: the error of a bad policy file names
// --sla-config and the file, so the commands' exit-4 message is actionable.
func TestLoadPolicyNamesTheFlag(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sla.yaml")
	if err := os.WriteFile(path, []byte("epss: {percentile: 2, days: 7}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{ValidatePolicyFile(path), ValidatePolicyFile(path + ".missing")} {
		if err == nil || !strings.HasPrefix(err.Error(), "--sla-config "+path) {
			t.Errorf("err = %v, want it to start with --sla-config %s", err, path)
		}
	}
	if err := ValidatePolicyFile(""); err != nil {
		t.Errorf("no file: %v", err)
	}
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := ParseTime(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestDeadlineRules evaluates findings at --now-style times. The KEV facts
// are CVE-2023-44487's and CVE-2023-4911's real catalogue dates.
func TestDeadlineRules(t *testing.T) {
	rapidReset := Exposure{InKEV: true, KEVAdded: mustTime(t, "2023-10-10"), KEVDue: mustTime(t, "2023-10-31")}
	looneyTunables := Exposure{InKEV: true, KEVAdded: mustTime(t, "2023-11-21"), KEVDue: mustTime(t, "2023-12-12")}
	kevDays := DefaultPolicy()
	kevDays.KEV.Days = 7
	epss := DefaultPolicy()
	epss.EPSS = EPSSRule{Enabled: true, Percentile: 0.95, Days: 14}
	eol := DefaultPolicy()
	eol.EOL = EOLRule{Enabled: true, Days: 30}
	kevOff := DefaultPolicy()
	kevOff.KEV.Enabled = false
	withOverride, err := ParsePolicy([]byte(`overrides: [{name: prod, clusters: ["prod-*"], days: {MEDIUM: 45}}]`))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		policy    Policy
		severity  string
		scopes    []Scope
		firstSeen string
		now       string
		x         Exposure
		rule      string
		deadline  string // RFC 3339
		breached  bool
	}{
		{name: "no exposure: the severity's days", policy: DefaultPolicy(), severity: High,
			firstSeen: "2023-09-01T06:00:00Z", now: "2023-09-02", rule: RuleSeverity, deadline: "2023-10-01T06:00:00Z"},
		{name: "an override is named as today", policy: withOverride, severity: Medium, scopes: []Scope{{"prod-eu", "web"}},
			firstSeen: "2023-09-01T06:00:00Z", now: "2023-09-02", rule: "prod", deadline: "2023-10-16T06:00:00Z"},
		{name: "KEV listed after first seen: before the listing day the severity clock runs", policy: kevDays, severity: Medium,
			firstSeen: "2023-09-01T06:00:00Z", now: "2023-10-09T23:00:00Z", x: rapidReset, rule: RuleSeverity, deadline: "2023-11-30T06:00:00Z"},
		{name: "KEV listed after first seen: from the listing day the deadline moves earlier", policy: kevDays, severity: Medium,
			firstSeen: "2023-09-01T06:00:00Z", now: "2023-10-10", x: rapidReset, rule: RuleKEV, deadline: "2023-10-17T00:00:00Z"},
		{name: "KEV due date without days", policy: DefaultPolicy(), severity: Medium,
			firstSeen: "2023-09-01T06:00:00Z", now: "2023-10-10", x: rapidReset, rule: RuleKEV, deadline: "2023-10-31T23:59:59Z"},
		{name: "KEV due date: the whole day is in time", policy: DefaultPolicy(), severity: Medium,
			firstSeen: "2023-09-01T06:00:00Z", now: "2023-10-31T23:00:00Z", x: rapidReset, rule: RuleKEV, deadline: "2023-10-31T23:59:59Z"},
		{name: "KEV due date passed: breached", policy: DefaultPolicy(), severity: Medium,
			firstSeen: "2023-09-01T06:00:00Z", now: "2023-11-01", x: rapidReset, rule: RuleKEV, deadline: "2023-10-31T23:59:59Z", breached: true},
		{name: "KEV due date already past at first sight: breached at once", policy: DefaultPolicy(), severity: High,
			firstSeen: "2024-01-15T06:00:00Z", now: "2024-01-15T06:00:00Z", x: looneyTunables, rule: RuleKEV, deadline: "2023-12-12T23:59:59Z", breached: true},
		{name: "KEV days count from first seen when it was listed before", policy: kevDays, severity: Low,
			firstSeen: "2023-10-20T06:00:00Z", now: "2023-10-21", x: rapidReset, rule: RuleKEV, deadline: "2023-10-27T06:00:00Z"},
		{name: "KEV would move a CRITICAL deadline later: ignored", policy: kevDays, severity: Critical,
			firstSeen: "2023-10-20T06:00:00Z", now: "2023-10-21", x: Exposure{InKEV: true, KEVAdded: mustTime(t, "2023-10-19"), KEVDue: mustTime(t, "2023-11-09")},
			rule: RuleSeverity, deadline: "2023-10-27T06:00:00Z"},
		{name: "KEV rule off", policy: kevOff, severity: Medium,
			firstSeen: "2023-09-01T06:00:00Z", now: "2023-11-01", x: rapidReset, rule: RuleSeverity, deadline: "2023-11-30T06:00:00Z"},
		{name: "EPSS at the threshold", policy: epss, severity: Medium,
			firstSeen: "2024-03-01T06:00:00Z", now: "2024-03-02", x: Exposure{HasEPSS: true, EPSSPercentile: 0.95}, rule: RuleEPSS, deadline: "2024-03-15T06:00:00Z"},
		{name: "EPSS above the threshold, breached", policy: epss, severity: Low,
			firstSeen: "2024-03-01T06:00:00Z", now: "2024-03-16", x: Exposure{HasEPSS: true, EPSSPercentile: 0.99}, rule: RuleEPSS, deadline: "2024-03-15T06:00:00Z", breached: true},
		{name: "EPSS below the threshold", policy: epss, severity: Medium,
			firstSeen: "2024-03-01T06:00:00Z", now: "2024-03-16", x: Exposure{HasEPSS: true, EPSSPercentile: 0.9499}, rule: RuleSeverity, deadline: "2024-05-30T06:00:00Z"},
		{name: "EPSS off by default", policy: DefaultPolicy(), severity: Medium,
			firstSeen: "2024-03-01T06:00:00Z", now: "2024-03-16", x: Exposure{HasEPSS: true, EPSSPercentile: 1}, rule: RuleSeverity, deadline: "2024-05-30T06:00:00Z"},
		{name: "EPSS would move a CRITICAL deadline later: ignored", policy: epss, severity: Critical,
			firstSeen: "2024-03-01T06:00:00Z", now: "2024-03-02", x: Exposure{HasEPSS: true, EPSSPercentile: 0.99}, rule: RuleSeverity, deadline: "2024-03-08T06:00:00Z"},
		{name: "EOL image", policy: eol, severity: Low,
			firstSeen: "2024-03-01T06:00:00Z", now: "2024-03-02", x: Exposure{EOL: true}, rule: RuleEOL, deadline: "2024-03-31T06:00:00Z"},
		{name: "EOL off by default", policy: DefaultPolicy(), severity: Low,
			firstSeen: "2024-03-01T06:00:00Z", now: "2024-03-02", x: Exposure{EOL: true}, rule: RuleSeverity, deadline: "2024-08-28T06:00:00Z"},
		{name: "the earliest rule wins", policy: func() Policy { p := epss; p.EOL = eol.EOL; p.KEV.Days = 3; return p }(), severity: Low,
			firstSeen: "2024-03-01T06:00:00Z", now: "2024-03-02", x: Exposure{InKEV: true, KEVAdded: mustTime(t, "2024-02-01"), KEVDue: mustTime(t, "2024-06-01"),
				HasEPSS: true, EPSSPercentile: 0.97, EOL: true}, rule: RuleKEV, deadline: "2024-03-04T06:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := mustTime(t, tt.now)
			d := tt.policy.Deadline(DeadlineInput{Severity: tt.severity, Scopes: tt.scopes, FirstSeen: mustTime(t, tt.firstSeen), AsOf: now, Exposure: tt.x})
			if d.Rule != tt.rule || !d.At.Equal(mustTime(t, tt.deadline)) {
				t.Fatalf("deadline %s by %q, want %s by %q", d.At.Format(time.RFC3339), d.Rule, tt.deadline, tt.rule)
			}
			if got := now.After(d.At); got != tt.breached {
				t.Fatalf("breached %v at %s, want %v", got, tt.now, tt.breached)
			}
			base, baseRule := tt.policy.DaysFor(tt.severity, tt.scopes)
			if baseRule == DefaultRule {
				baseRule = RuleSeverity
			}
			if d.Days != base || d.DaysRule != baseRule {
				t.Fatalf("base %d by %q, want %d by %q", d.Days, d.DaysRule, base, baseRule)
			}
		})
	}
}

func TestDescribeRules(t *testing.T) {
	p, err := ParsePolicy([]byte("kev: {days: 14}\nepss: {percentile: 0.95, days: 30}\neol: {days: 60}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := "kev: CISA KEV due date, and at most 14 days after listing; epss: percentile >= 0.95: at most 30 days; eol: end-of-life OS images: at most 60 days"
	if got := strings.Join(p.DescribeRules(), "; "); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if got := strings.Join(DefaultPolicy().DescribeRules(), "; "); got != "kev: CISA KEV due date; epss: off; eol: off" {
		t.Fatalf("defaults: %s", got)
	}
}
