package sla

import (
	"strings"
	"testing"
	"time"
)

const acceptYAML = `
acceptances:
  - vulnerability: CVE-2024-0001
    repository: docker.io/library/nginx
    expires: 2025-03-01
    reason: TLS terminates at the ingress
  - vulnerability: cve-2024-0002
    repository: "ghcr.io/acme/*"
    package: openssl
    expires: "2025-06-01T12:00:00Z"
    reason: vendor patch pending
    approvedBy: security@example.com
  - vulnerability: CVE-2024-0003
    repository: "*"
    expires: 2025-01-01
    reason: old acceptance
  - vulnerability: CVE-2024-0003
    repository: "*"
    expires: 2025-12-31
    reason: renewed
`

func TestAcceptancesDecide(t *testing.T) {
	t.Parallel()
	a, err := ParseAcceptances([]byte(acceptYAML), "accept.yaml")
	if err != nil {
		t.Fatal(err)
	}
	day := func(s string) time.Time {
		t.Helper()
		tm, err := ParseTime(s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	nginx := []string{"docker.io/library/nginx"}
	acme := []string{"docker.io/library/nginx", "ghcr.io/acme/team/api"}
	tests := []struct {
		name       string
		vuln, pkg  string
		repos      []string
		asOf       string
		want       Status
		wantReason string
	}{
		{"accepted before expiry", "CVE-2024-0001", "zlib", nginx, "2025-02-28T23:59:59Z", StatusAccepted, "TLS terminates"},
		{"expired at midnight of the expiry date", "CVE-2024-0001", "zlib", nginx, "2025-03-01", StatusAcceptanceExpired, "TLS terminates"},
		{"other repository not covered", "CVE-2024-0001", "zlib", []string{"docker.io/library/redis"}, "2025-01-01", StatusOpen, ""},
		{"ID is case-insensitive, repo glob, package narrows", "CVE-2024-0002", "openssl", acme, "2025-06-01T11:00:00Z", StatusAccepted, "vendor patch"},
		{"package mismatch", "CVE-2024-0002", "libcrypto", acme, "2025-01-01", StatusOpen, ""},
		{"RFC 3339 expiry", "CVE-2024-0002", "openssl", acme, "2025-06-01T12:00:00Z", StatusAcceptanceExpired, "vendor patch"},
		{"renewed acceptance wins over expired one", "CVE-2024-0003", "x", nginx, "2025-05-01", StatusAccepted, "renewed"},
		{"both expired: latest expiry is reported", "CVE-2024-0003", "x", nginx, "2026-01-01", StatusAcceptanceExpired, "renewed"},
		{"unlisted vulnerability", "CVE-2024-9999", "x", nginx, "2025-01-01", StatusOpen, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := a.Decide(tt.vuln, tt.pkg, tt.repos, day(tt.asOf))
			if d.Status != tt.want {
				t.Fatalf("status = %s, want %s", d.Status, tt.want)
			}
			if tt.wantReason == "" {
				if d.Acceptance != nil {
					t.Fatalf("unexpected acceptance %+v", d.Acceptance)
				}
				return
			}
			if d.Acceptance == nil || !strings.Contains(d.Acceptance.Reason, tt.wantReason) {
				t.Fatalf("acceptance = %+v, want reason %q", d.Acceptance, tt.wantReason)
			}
		})
	}
	var none *Acceptances
	if d := none.Decide("CVE-2024-0001", "zlib", nginx, day("2025-01-01")); d.Status != StatusOpen {
		t.Fatalf("nil acceptances: %s", d.Status)
	}
}

func TestParseAcceptancesErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"missing expiry and reason", "acceptances: [{vulnerability: CVE-1, repository: '*'}]",
			[]string{"a.yaml: entry 1 (CVE-1): expires is required", "entry 1 (CVE-1): reason is required"}},
		{"missing repository", "acceptances: [{vulnerability: CVE-1, expires: 2025-01-01, reason: r}]",
			[]string{"repository is required"}},
		{"missing vulnerability", "acceptances: [{repository: x, expires: 2025-01-01, reason: r}]",
			[]string{"entry 1: vulnerability is required"}},
		{"bad date", "acceptances: [{vulnerability: CVE-1, repository: x, expires: next week, reason: r}]",
			[]string{"expires", "next week"}},
		{"typo", "acceptances: [{vulnerability: CVE-1, repository: x, expiry: 2025-01-01, reason: r}]",
			[]string{"expiry"}},
		// Globs that can never match a (fully qualified, tag-less, lower
		// case) repository: the acceptance would silently never apply.
		{"short name", "acceptances: [{vulnerability: CVE-1, repository: nginx, expires: 2025-01-01, reason: r}]",
			[]string{`repository "nginx": matches nothing`, "docker.io/library/nginx"}},
		{"tag", "acceptances: [{vulnerability: CVE-1, repository: 'ghcr.io/acme/api:1.2', expires: 2025-01-01, reason: r}]",
			[]string{"has a tag", "ghcr.io/acme/api"}},
		{"digest", "acceptances: [{vulnerability: CVE-1, repository: 'ghcr.io/acme/api@sha256:ab', expires: 2025-01-01, reason: r}]",
			[]string{"has a digest"}},
		{"upper case", "acceptances: [{vulnerability: CVE-1, repository: 'ghcr.io/Acme/*', expires: 2025-01-01, reason: r}]",
			[]string{"upper-case"}},
		{"wildcard short name", "acceptances: [{vulnerability: CVE-1, repository: 'nginx*', expires: 2025-01-01, reason: r}]",
			[]string{"matches nothing", "*/nginx*"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseAcceptances([]byte(tt.yaml), "a.yaml")
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want containing %q", err, w)
				}
			}
		})
	}
}

// TestAcceptanceScopeAndExpireOnFix: a scoped acceptance covers an image
// only when every workload running it is in scope; expire_on_fix ends it
// once a fixed version exists (acceptance-expired), whatever its date.
func TestAcceptanceScopeAndExpireOnFix(t *testing.T) {
	t.Parallel()
	acc, err := ParseAcceptances([]byte(`
acceptances:
  - vulnerability: CVE-2024-1
    repository: docker.io/library/nginx
    clusters: [staging-*]
    namespaces: [web]
    expires: 2030-01-01
    reason: staging web only
  - vulnerability: CVE-2024-2
    repository: "*"
    workloads: ["prod/payments/Deployment/api"]
    package: pkg:apk/alpine/openssl
    expire_on_fix: true
    expires: 2030-01-01
    reason: until a fix ships
    vex_status: not_affected
    vex_justification: vulnerable_code_not_in_execute_path
`), "a.yaml")
	if err != nil {
		t.Fatal(err)
	}
	asOf := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	nginx := []string{"docker.io/library/nginx"}
	api := []string{"ghcr.io/acme/api"}
	tests := []struct {
		name string
		sub  Subject
		want Status
	}{
		{"in scope", Subject{Vulnerability: "CVE-2024-1", Repositories: nginx, Workloads: []string{"staging-eu/web/Deployment/a", "staging-us/web/Deployment/b"}}, StatusAccepted},
		{"also runs in prod", Subject{Vulnerability: "CVE-2024-1", Repositories: nginx, Workloads: []string{"staging-eu/web/Deployment/a", "prod/web/Deployment/a"}}, StatusOpen},
		{"other namespace", Subject{Vulnerability: "CVE-2024-1", Repositories: nginx, Workloads: []string{"staging-eu/batch/Job/x"}}, StatusOpen},
		{"no known workload", Subject{Vulnerability: "CVE-2024-1", Repositories: nginx}, StatusOpen},
		{"workload, no fix yet", Subject{Vulnerability: "CVE-2024-2", PURL: "pkg:apk/alpine/openssl@3.1.0-r0?distro=3.18.0", Repositories: api,
			Workloads: []string{"prod/payments/Deployment/api"}}, StatusAccepted},
		{"workload, fix available", Subject{Vulnerability: "CVE-2024-2", PURL: "pkg:apk/alpine/openssl@3.1.0-r0", Repositories: api,
			Workloads: []string{"prod/payments/Deployment/api"}, FixedVersion: "3.1.4-r0"}, StatusAcceptanceExpired},
		{"other package", Subject{Vulnerability: "CVE-2024-2", PURL: "pkg:apk/alpine/libssl3@3.1.0-r0", Repositories: api,
			Workloads: []string{"prod/payments/Deployment/api"}}, StatusOpen},
		{"other workload", Subject{Vulnerability: "CVE-2024-2", PURL: "pkg:apk/alpine/openssl@3.1.0-r0", Repositories: api,
			Workloads: []string{"prod/payments/Deployment/worker"}}, StatusOpen},
	}
	for _, tt := range tests {
		if got := acc.DecideFor(tt.sub, asOf).Status; got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestAcceptanceVEXFieldsValidated(t *testing.T) {
	t.Parallel()
	for name, entry := range map[string]string{
		"unknown status":          "vex_status: maybe",
		"not_affected no reason":  "vex_status: not_affected",
		"bad justification":       "vex_status: not_affected\n    vex_justification: because",
		"justification no status": "vex_justification: component_not_present",
		"bad workload":            "workloads: [api]",
		"bad purl":                "package: pkg:nothing",
	} {
		doc := "acceptances:\n  - vulnerability: CVE-1\n    repository: \"*\"\n    expires: 2030-01-01\n    reason: r\n    " + entry + "\n"
		if _, err := ParseAcceptances([]byte(doc), "a.yaml"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
