package sla

import (
	"strings"
	"testing"
)

func TestParseDays(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    Days
		wantErr string
	}{
		{in: "CRITICAL=3,HIGH=14", want: Days{Critical: 3, High: 14}},
		{in: " critical = 1 , unknown=3650 ", want: Days{Critical: 1, Unknown: 3650}},
		{in: "CRITICAL", wantErr: "want SEVERITY=DAYS"},
		{in: "SEVERE=3", wantErr: `unknown severity "SEVERE"`},
		{in: "HIGH=-1", wantErr: "between 1 and 3650, got -1"},
		{in: "HIGH=0", wantErr: "between 1 and 3650, got 0"},
		{in: "HIGH=1.5", wantErr: "whole number between 1 and 3650"},
		// 106752 days overflow time.Duration (deadlines in 1734).
		{in: "CRITICAL=106752", wantErr: "between 1 and 3650, got 106752"},
		{in: "CRITICAL=3651", wantErr: "between 1 and 3650"},
		// Duplicates were last-wins.
		{in: "CRITICAL=3,HIGH=5,critical=30", wantErr: "CRITICAL is given twice"},
		{in: ",", wantErr: "no SEVERITY=DAYS pair"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDays(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != tt.want.String() || len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseSeverities(t *testing.T) {
	t.Parallel()
	got, err := ParseSeverities([]string{"low,critical", "HIGH", "LOW"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "CRITICAL,HIGH,LOW" {
		t.Fatalf("got %v", got)
	}
	if _, err := ParseSeverities([]string{"HIGH,BAD"}); err == nil || !strings.Contains(err.Error(), `"BAD"`) {
		t.Fatalf("err = %v", err)
	}
	if _, err := ParseSeverities(nil); err == nil {
		t.Fatal("empty list accepted")
	}
}

const policyYAML = `
days:
  critical: 5
  UNKNOWN: 400
overrides:
  - name: prod payments
    clusters: ["prod-*"]
    namespaces: ["payments", "billing-*"]
    days: {CRITICAL: 2, HIGH: 10}
  - clusters: ["prod-*"]
    days: {CRITICAL: 4}
  - namespaces: ["sandbox"]
    days: {CRITICAL: 60}
`

func TestPolicyDaysFor(t *testing.T) {
	t.Parallel()
	p, err := ParsePolicy([]byte(policyYAML))
	if err != nil {
		t.Fatal(err)
	}
	p = p.WithDays(Days{High: 20})
	tests := []struct {
		name     string
		severity string
		scopes   []Scope
		days     int
		rule     string
	}{
		{"no scope uses base from file", Critical, nil, 5, DefaultRule},
		{"default kept for unlisted severity", Medium, nil, 90, DefaultRule},
		{"--sla overrides base", High, []Scope{{"dev", "web"}}, 20, DefaultRule},
		{"UNKNOWN configurable", Unknown, nil, 400, DefaultRule},
		{"first matching override wins", Critical, []Scope{{"prod-eu", "payments"}}, 2, "prod payments"},
		{"glob namespace", High, []Scope{{"prod-us", "billing-api"}}, 10, "prod payments"},
		{"later override when first does not set severity", Critical, []Scope{{"prod-us", "web"}}, 4, "overrides[1]"},
		{"override without severity falls back to base", Medium, []Scope{{"prod-us", "payments"}}, 90, DefaultRule},
		{"strictest scope wins", Critical, []Scope{{"dev", "sandbox"}, {"prod-eu", "web"}}, 4, "overrides[1]"},
		{"lenient override applies alone", Critical, []Scope{{"dev", "sandbox"}}, 60, "overrides[2]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			days, rule := p.DaysFor(tt.severity, tt.scopes)
			if days != tt.days || rule != tt.rule {
				t.Fatalf("DaysFor(%s, %v) = %d, %q; want %d, %q", tt.severity, tt.scopes, days, rule, tt.days, tt.rule)
			}
		})
	}
}

func TestParsePolicyErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml, want string
	}{
		{"typo in field", "dayz: {CRITICAL: 3}", "dayz"},
		{"unknown severity", "days: {SEVERE: 3}", `unknown severity "SEVERE"`},
		{"negative days", "overrides: [{name: x, days: {HIGH: -2}}]", "x: days: HIGH: days must be between 1 and 3650, got -2"},
		{"days overflowing a duration", "days: {CRITICAL: 106752}", "days: CRITICAL: days must be between 1 and 3650"},
		{"duplicate key", "days: {HIGH: 3, HIGH: 5}", "HIGH"},
		{"duplicate key in two spellings", "days: {high: 3, HIGH: 5}", "days: HIGH is given twice"},
		{"duplicate key in an override", "overrides: [{name: x, days: {low: 3, Low: 5}}]", "x: days: LOW is given twice"},
		{"override without days", "overrides: [{clusters: [a]}]", "overrides[0]: days: at least one"},
		{"empty pattern", "overrides: [{clusters: [''], days: {HIGH: 1}}]", "overrides[0]: empty pattern"},
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

func TestLoadPolicyNamesFile(t *testing.T) {
	t.Parallel()
	_, err := LoadPolicy("/nonexistent/sla.yaml")
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/sla.yaml") {
		t.Fatalf("err = %v", err)
	}
}

func TestGlob(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "anything/at/all", true},
		{"prod-*", "prod-eu", true},
		{"prod-*", "staging", false},
		{"ghcr.io/acme/*", "ghcr.io/acme/team/app", true},
		{"ghcr.io/acme/*", "ghcr.io/other/app", false},
		{"*/nginx", "docker.io/library/nginx", true},
		{"n?inx", "nginx", true},
		{"n?inx", "nginxx", false},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"exact", "exact", true},
		{"", "", true},
	}
	for _, tt := range tests {
		if got := Glob(tt.pattern, tt.s); got != tt.want {
			t.Errorf("Glob(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

func TestRepository(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"docker.io/library/nginx:1.25":             "docker.io/library/nginx",
		"docker.io/library/nginx@sha256:0123":      "docker.io/library/nginx",
		"docker.io/library/nginx:1.25@sha256:0123": "docker.io/library/nginx",
		"localhost:5000/app":                       "localhost:5000/app",
		"localhost:5000/app:v2":                    "localhost:5000/app",
		"registry.k8s.io/coredns/coredns:v1.11.1":  "registry.k8s.io/coredns/coredns",
		"ghcr.io/acme/app":                         "ghcr.io/acme/app",
	}
	for in, want := range tests {
		if got := Repository(in); got != want {
			t.Errorf("Repository(%q) = %q, want %q", in, got, want)
		}
	}
}
