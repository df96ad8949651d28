package report

import (
	"strings"
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/feeds"
	"github.com/fleetscan/fleetscan/internal/sla"
	"github.com/fleetscan/fleetscan/internal/vex"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// mapLedger answers clock lookups from a map, standing in for the KV-backed
// sla.Ledger (which internal/sla tests against real JetStream).
type mapLedger map[sla.Identity]ledgerEntry

type ledgerEntry struct {
	firstSeen time.Time
	change    sla.Change
}

func (m mapLedger) Lookup(id sla.Identity) (time.Time, sla.Change, bool) {
	e, ok := m[id]
	return e.firstSeen, e.change, ok
}

func (m mapLedger) set(id sla.Identity, firstSeen time.Time, c sla.Change) {
	m[id] = ledgerEntry{firstSeen, c}
}

func ts(s string) time.Time {
	t, err := sla.ParseTime(s)
	if err != nil {
		panic(err)
	}
	return t
}

func digest(c byte) string { return "sha256:" + strings.Repeat(string(c), 64) }

var amd64 = contract.Platform{OS: "linux", Architecture: "amd64"}

func entry(ns, kind, name, image, dig string) contract.InventoryEntry {
	return contract.InventoryEntry{
		Namespace: ns, Pod: name + "-0", Workload: contract.Workload{Kind: kind, Name: name}, Container: "main",
		ContainerKind: contract.ContainerRegular, Image: image, Digest: dig, Platform: amd64, Resolution: contract.ResolvedStatus,
	}
}

func cvss(score float64) *contract.CVSS { return &contract.CVSS{Source: "nvd", Score: score} }

func tp(s string) *time.Time {
	t := ts(s)
	return &t
}

const fixtureAccept = `
acceptances:
  - vulnerability: CVE-2023-9999
    repository: docker.io/library/*
    package: busybox
    expires: 2025-06-30
    reason: busybox applets are not reachable in this image
    approvedBy: security@example.com
  - vulnerability: CVE-2024-0004
    repository: docker.io/library/nginx
    expires: 2025-03-01
    reason: waiting for upstream curl release
  - vulnerability: CVE-2024-0002
    repository: docker.io/library/nginx
    clusters: [staging]
    expires: 2025-12-31
    reason: staging only; prod still runs the image, so the row stays open
  - vulnerability: CVE-2024-0005
    repository: ghcr.io/acme/*
    package: stdlib
    expires: 2025-12-31
    expire_on_fix: true
    reason: no Go release fixed it yet
    vex_status: affected
`

// fixtureVEX takes the api image's golang.org/x/net finding off the gate
// and annotates nginx's zlib finding.
const fixtureVEX = `{
  "@context": "https://openvex.dev/ns/v0.2.0",
  "@id": "https://example.com/vex/fixture",
  "author": "Acme Security",
  "timestamp": "2025-03-01T00:00:00Z",
  "version": 1,
  "statements": [
    {"vulnerability": {"name": "GHSA-4v7x-pqxf-cx7m"},
     "products": [{"@id": "pkg:oci/api@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb?repository_url=ghcr.io/acme/api",
       "subcomponents": [{"@id": "pkg:golang/golang.org/x/net@v0.17.0"}]}],
     "status": "not_affected", "justification": "vulnerable_code_not_in_execute_path"},
    {"vulnerability": {"name": "CVE-2024-0003"},
     "products": [{"@id": "pkg:oci/nginx?repository_url=index.docker.io/library/nginx",
       "subcomponents": [{"@id": "pkg:apk/alpine/zlib"}]}],
     "status": "under_investigation"}
  ]
}`

const fixturePolicy = `
epss: {percentile: 0.95, days: 14}
overrides:
  - name: payments
    clusters: ["prod-*"]
    namespaces: ["payments"]
    days: {CRITICAL: 3}
`

// fixtureKEV lists CVE-2024-0002 (listed after it was first seen, due
// before its severity deadline, known ransomware use) in CISA's format.
const fixtureKEV = `{
  "title": "CISA Catalog of Known Exploited Vulnerabilities", "catalogVersion": "2025.03.09",
  "dateReleased": "2025-03-09T17:00:00.000Z", "count": 1,
  "vulnerabilities": [{"cveID": "CVE-2024-0002", "vendorProject": "OpenSSL", "product": "OpenSSL",
    "vulnerabilityName": "OpenSSL Timing Side Channel", "dateAdded": "2025-03-05",
    "shortDescription": "...", "requiredAction": "Apply updates per vendor instructions.",
    "dueDate": "2025-03-26", "knownRansomwareCampaignUse": "Known", "notes": "", "cwes": []}]
}`

// fixtureEPSS scores CVE-2024-0003 above the policy's 0.95 percentile (its
// deadline moves from 90 days to 14), CVE-2024-0005 too (its 3-day
// override stays: a rule never moves a deadline later), the rest below.
const fixtureEPSS = `#model_version:v2025.03.14,score_date:2025-03-09T00:00:00+0000
cve,epss,percentile
CVE-2024-0001,0.41,0.949
CVE-2024-0002,0.2,0.93
CVE-2024-0003,0.62,0.97
CVE-2024-0005,0.9,0.999
`

// fixtureEnrichment is the fixture's exploit feeds, fetched the day before
// the report.
func fixtureEnrichment(t testing.TB, fetchedAt time.Time) *feeds.Enrichment {
	t.Helper()
	kev, err := feeds.ParseKEV(strings.NewReader(fixtureKEV))
	if err != nil {
		t.Fatal(err)
	}
	epss, err := feeds.ParseEPSS(strings.NewReader(fixtureEPSS))
	if err != nil {
		t.Fatal(err)
	}
	return feeds.New(kev, epss, fetchedAt, feeds.DefaultMaxAge)
}

// fixture is a small fleet exercising every part of the report: a breached
// CRITICAL, a finding within its SLA, an unfixed one, an accepted one, an
// expired acceptance, a reopened and a new finding under a stricter
// override, a failed scan, a missing result, an unresolved container, an
// unreachable cluster, a fixed finding, a KEV-listed and an EPSS-ranked
// finding and an end-of-life image.
func fixture(t testing.TB) Input {
	t.Helper()
	asOf := ts("2025-03-10T06:00:00Z")
	nginx, api := digest('a'), digest('b')

	fleet := NewFleet()
	for _, e := range []contract.InventoryEntry{
		entry("web", "Deployment", "frontend", "docker.io/library/nginx:1.25", nginx),
		entry("web", "Deployment", "frontend", "docker.io/library/nginx:1.25", nginx),
		entry("web", "Deployment", "frontend", "docker.io/library/nginx:1.25", nginx),
		entry("payments", "StatefulSet", "api", "ghcr.io/acme/api:v2", api),
	} {
		fleet.Add("prod-eu", e)
	}
	fleet.Add("staging", entry("web", "Deployment", "frontend", "mirror.example.com/library/nginx:1.25", nginx))
	fleet.Add("staging", entry("edge", "DaemonSet", "proxy", "docker.io/library/nginx:1.25", nginx))

	nginxImg := fleet.Image(contract.ImageKey{Digest: nginx, Platform: amd64}, "")
	nginxImg.Vulns = Compact([]contract.Finding{
		{VulnerabilityID: "CVE-2024-0001", PkgName: "openssl", PkgVersion: "3.1.3-r0", FixedVersion: "3.1.4-r0", Status: "fixed",
			Severity: "CRITICAL", Title: "openssl: buffer overread | in X.509", CVSS: cvss(9.8), PublishedDate: tp("2025-02-10"),
			PrimaryURL: "https://avd.aquasec.com/nvd/cve-2024-0001"},
		{VulnerabilityID: "CVE-2024-0002", PkgName: "openssl", PkgVersion: "3.1.3-r0", FixedVersion: "3.0.12-r0, 3.1.5-r0", Status: "fixed",
			Severity: "HIGH", Title: "openssl: timing side channel", CVSS: cvss(7.5)},
		{VulnerabilityID: "CVE-2024-0003", PkgName: "zlib", PkgVersion: "1.3-r2", Status: "affected", Severity: "MEDIUM",
			PkgPURL: "pkg:apk/alpine/zlib@1.3-r2?arch=x86_64&distro=3.19.1",
			Title:   "zlib: \"inflate\" overflow, with a comma"},
		{VulnerabilityID: "CVE-2023-9999", PkgName: "busybox", PkgVersion: "1.36.1-r5", FixedVersion: "1.36.1-r6", Status: "fixed", Severity: "LOW"},
		{VulnerabilityID: "CVE-2024-0004", PkgName: "curl", PkgVersion: "8.5.0-r0", FixedVersion: "8.6.0-r0", Status: "fixed", Severity: "critical"},
	}, nil)

	nginxImg.OS = &contract.OSInfo{Family: "alpine", Name: "3.15.11", EOSL: true}

	apiImg := fleet.Image(contract.ImageKey{Digest: api, Platform: amd64}, "")
	apiImg.Vulns = Compact([]contract.Finding{
		{VulnerabilityID: "GHSA-4v7x-pqxf-cx7m", PkgName: "golang.org/x/net", PkgVersion: "v0.17.0", FixedVersion: "0.23.0",
			PkgPath: "app/bin/api", PkgType: "gobinary", Severity: "HIGH", Title: "net/http: memory exhaustion"},
		{VulnerabilityID: "CVE-2024-0005", PkgName: "stdlib", PkgVersion: "v1.21.5", FixedVersion: "1.21.9, 1.22.2",
			PkgPath: "app/bin/api", PkgType: "gobinary", Severity: "CRITICAL", Title: "net/mail: header injection", CVSS: cvss(9.1)},
	}, nil)

	led := mapLedger{}
	nginxRepos := []string{"docker.io/library/nginx", "mirror.example.com/library/nginx"}
	first := map[string]string{"CVE-2024-0001": "2025-02-20T06:00:00Z", "CVE-2024-0002": "2025-03-01T06:00:00Z",
		"CVE-2024-0003": "2025-01-15T06:00:00Z", "CVE-2023-9999": "2024-06-01T06:00:00Z", "CVE-2024-0004": "2025-01-01T06:00:00Z"}
	for _, v := range nginxImg.Vulns {
		led.set(identity(nginxRepos[0], v), ts(first[v.ID]), sla.ChangeStillOpen)
		// The mirror saw it later: the row keeps the earlier clock.
		led.set(identity(nginxRepos[1], v), ts(first[v.ID]).AddDate(0, 0, 3), sla.ChangeStillOpen)
	}
	led.set(identity("ghcr.io/acme/api", apiImg.Vulns[0]), ts("2025-03-05T06:00:00Z"), sla.ChangeReopened)
	led.set(identity("ghcr.io/acme/api", apiImg.Vulns[1]), asOf, sla.ChangeNew)

	policy, err := sla.ParsePolicy([]byte(fixturePolicy))
	if err != nil {
		t.Fatal(err)
	}
	acc, err := sla.ParseAcceptances([]byte(fixtureAccept), "accept.yaml")
	if err != nil {
		t.Fatal(err)
	}
	stmts, err := vex.Parse([]byte(fixtureVEX), "vex/acme.openvex.json")
	if err != nil {
		t.Fatal(err)
	}
	vexSet := vex.NewSet()
	vexSet.Add(stmts...)
	db := &contract.DBInfo{Version: 2, UpdatedAt: ts("2025-03-10T00:00:00Z")}
	return Input{
		GeneratedAt: asOf.Add(5 * time.Minute),
		AsOf:        asOf,
		Scope:       Scope{Mode: "fleet", MaxAge: "36h0m0s"},
		Runs: []Run{{RunID: "run-eu-1", Cycle: "2025-03-10", CreatedAt: ts("2025-03-10T05:00:00Z"), Clusters: []string{"prod-eu", "prod-us"}},
			{RunID: "run-stg-1", Cycle: "2025-03-10", CreatedAt: ts("2025-03-10T05:10:00Z"), Clusters: []string{"staging"}}},
		Clusters: []Cluster{
			{Name: "prod-eu", Status: ClusterOK, RunID: "run-eu-1", CollectedAt: ts("2025-03-10T05:00:00Z"), Pods: 4, Containers: 4},
			{Name: "prod-us", Status: ClusterUnreachable, RunID: "run-eu-1", Error: "list pods: connection refused"},
			{Name: "staging", Status: ClusterOK, RunID: "run-stg-1", CollectedAt: ts("2025-03-10T05:10:00Z"), Pods: 3, Containers: 3},
		},
		Images: []*Image{nginxImg, apiImg},
		Failures: []Failure{{Digest: digest('c'), Platform: "linux/amd64", Image: "docker.io/library/redis:7", Class: contract.FailureUnauthorized,
			Reason: "pull: 401 Unauthorized", Attempts: 1, Workloads: []string{"staging/cache/StatefulSet/redis"}}},
		NotScanned: []NotScanned{
			{Digest: digest('d'), Platform: "linux/arm64", Image: "quay.io/prometheus/node-exporter:v1.7.0", Reason: "no result for this run",
				Workloads: []string{"prod-eu/monitoring/DaemonSet/node-exporter"}},
			{Image: "private.example.com/batch:latest", Reason: "not scanned: image pull back-off, no digest",
				Workloads: []string{"prod-eu/jobs/CronJob/nightly"}},
		},
		Policy:      policy,
		Acceptances: acc,
		VEX:         vexSet,
		Ledger:      led,
		Fixed: []sla.Record{{Identity: sla.Identity{Repository: "docker.io/library/nginx", VulnerabilityID: "CVE-2024-0100", PkgName: "libxml2"},
			Severity: "HIGH", FirstSeen: ts("2025-02-01T06:00:00Z"), State: sla.StateResolved, ResolvedAt: asOf}},
		DB:         db,
		Scanner:    &contract.ScannerInfo{Name: "trivy", Version: "0.74.0"},
		Enrichment: fixtureEnrichment(t, asOf.Add(-24*time.Hour)),
	}
}
