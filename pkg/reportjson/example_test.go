package reportjson_test

import (
	"errors"
	"fmt"
	"strings"

	"github.com/fleetscan/fleetscan/pkg/reportjson"
)

// report is a small report.json as the reporter writes it.
const report = `{
  "schemaVersion": "1.1",
  "generatedAt": "2026-11-27T06:05:00Z",
  "asOf": "2026-11-27T06:00:00Z",
  "scope": {"mode": "fleet", "maxAge": "36h0m0s"},
  "runs": [], "clusters": [],
  "policy": {"days": {"CRITICAL": 7, "HIGH": 30}, "severities": ["CRITICAL", "HIGH"], "ignoreUnfixed": false},
  "summary": {"findings": 2, "bySeverity": {"CRITICAL": 1, "HIGH": 1}, "breached": 2, "breachedUnaccepted": 1,
    "accepted": 1, "acceptanceExpired": 0, "images": 1, "imagesScanned": 1, "imagesFailed": 0, "imagesNotScanned": 0,
    "unresolvedContainers": 0, "clusters": 1, "clustersUnreachable": 0, "tickets": 1},
  "complete": true,
  "failures": [], "notScanned": [], "expiredAcceptances": [], "images": [],
  "findings": [
    {"image":"ghcr.io/acme/api:v2","digest":"sha256:bbbb","platform":"linux/amd64","vulnerabilityId":"CVE-2024-0001",
     "severity":"CRITICAL","pkgName":"openssl","installedVersion":"3.1.3-r0","fixedVersion":"3.1.4-r0",
     "firstSeen":"2026-11-01T06:00:00Z","slaDays":7,"slaRule":"default","slaDeadline":"2026-11-08T06:00:00Z",
     "daysRemaining":-19,"slaBreached":true,"status":"open","change":"still-open"},
    {"image":"ghcr.io/acme/api:v2","digest":"sha256:bbbb","platform":"linux/amd64","vulnerabilityId":"CVE-2024-0002",
     "severity":"HIGH","pkgName":"curl","installedVersion":"8.5.0-r0",
     "firstSeen":"2026-10-01T06:00:00Z","slaDays":30,"slaRule":"default","slaDeadline":"2026-10-31T06:00:00Z",
     "daysRemaining":-27,"slaBreached":true,"status":"accepted",
     "acceptance":{"vulnerability":"CVE-2024-0002","repository":"ghcr.io/acme/*","expires":"2027-01-01T00:00:00Z","reason":"not reachable"},
     "change":"still-open"}
  ],
  "tickets": [],
  "diff": {"new": 0, "reopened": 0, "stillOpen": 2, "fixed": 0, "newFindings": [], "fixedFindings": []}
}`

// A policy gate lists the findings that trip the reporter's exit status.
func Example() {
	r, err := reportjson.Decode(strings.NewReader(report))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("as of %s: %d unaccepted breaches, complete=%v\n", r.AsOf.Format("2006-01-02"), r.Summary.BreachedUnaccepted, r.Complete)
	for _, f := range r.Findings {
		if f.Gating() {
			fmt.Printf("%s %s in %s (%s), %d days overdue\n", f.Severity, f.VulnerabilityID, f.Image, f.PkgName, -f.DaysRemaining)
		}
	}
	// Output:
	// as of 2026-11-27: 1 unaccepted breaches, complete=true
	// CRITICAL CVE-2024-0001 in ghcr.io/acme/api:v2 (openssl), 19 days overdue
}

// A report of a future major version is refused rather than misread.
func ExampleDecode() {
	_, err := reportjson.Decode(strings.NewReader(`{"schemaVersion": "2.0"}`))
	fmt.Println(errors.Is(err, reportjson.ErrUnsupportedVersion))
	// Output:
	// true
}
