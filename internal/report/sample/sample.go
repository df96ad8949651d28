// Package sample is a small report for the tests of packages that read
// reports (metrics, notifications, tickets, the deploy dashboards): a
// breached CRITICAL, a finding within its SLA, an unfixed one, an accepted
// one, an expired acceptance, a reopened and a new finding under a stricter
// override, a failed scan, a missing result, an unresolved container, an
// unreachable cluster and a fixed finding, across two clusters and four
// namespaces.
package sample

import (
	"strings"
	"time"

	"github.com/fleetscan/fleetscan/internal/report"
	"github.com/fleetscan/fleetscan/internal/sla"
	"github.com/fleetscan/fleetscan/internal/vex"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// AsOf is the sample report's evaluation time.
var AsOf = ts("2025-03-10T06:00:00Z")

const accept = `
acceptances:
  - vulnerability: CVE-2023-9999
    repository: docker.io/library/*
    package: busybox
    expires: 2025-06-30
    reason: busybox applets are not reachable in this image
  - vulnerability: CVE-2024-0004
    repository: docker.io/library/nginx
    expires: 2025-03-01
    reason: waiting for upstream curl release
`

const policy = `
overrides:
  - name: payments
    clusters: ["prod-*"]
    namespaces: ["payments"]
    days: {CRITICAL: 3}
`

type ledger map[sla.Identity]struct {
	first  time.Time
	change sla.Change
}

func (m ledger) Lookup(id sla.Identity) (time.Time, sla.Change, bool) {
	e, ok := m[id]
	return e.first, e.change, ok
}

func ts(s string) time.Time {
	t, err := sla.ParseTime(s)
	if err != nil {
		panic(err)
	}
	return t
}

// Digest is a fake digest made of c.
func Digest(c byte) string { return "sha256:" + strings.Repeat(string(c), 64) }

var amd64 = contract.Platform{OS: "linux", Architecture: "amd64"}

func entry(ns, kind, name, image, dig string) contract.InventoryEntry {
	return contract.InventoryEntry{
		Namespace: ns, Pod: name + "-0", Workload: contract.Workload{Kind: kind, Name: name}, Container: "main",
		ContainerKind: contract.ContainerRegular, Image: image, Digest: dig, Platform: amd64, Resolution: contract.ResolvedStatus,
	}
}

// Report builds the sample report.
func Report() *report.Report { return report.Build(Input()) }

// Input is the sample report's input.
func Input() report.Input {
	nginxImg, apiImg := images()
	led := ledger{}
	set := func(repo string, v *report.Vuln, first time.Time, c sla.Change) {
		led[sla.Identity{Repository: repo, VulnerabilityID: v.ID, PkgName: v.PkgName, PkgPath: v.PkgPath}] = struct {
			first  time.Time
			change sla.Change
		}{first, c}
	}
	first := map[string]string{"CVE-2024-0001": "2025-02-20T06:00:00Z", "CVE-2024-0002": "2025-03-01T06:00:00Z",
		"CVE-2024-0003": "2025-01-15T06:00:00Z", "CVE-2023-9999": "2024-06-01T06:00:00Z", "CVE-2024-0004": "2025-01-01T06:00:00Z"}
	for _, v := range nginxImg.Vulns {
		set("docker.io/library/nginx", v, ts(first[v.ID]), sla.ChangeStillOpen)
		set("mirror.example.com/library/nginx", v, ts(first[v.ID]).AddDate(0, 0, 3), sla.ChangeStillOpen)
	}
	set("ghcr.io/acme/api", apiImg.Vulns[0], ts("2025-03-05T06:00:00Z"), sla.ChangeReopened)
	set("ghcr.io/acme/api", apiImg.Vulns[1], AsOf, sla.ChangeNew)
	pol, err := sla.ParsePolicy([]byte(policy))
	if err != nil {
		panic(err)
	}
	acc, err := sla.ParseAcceptances([]byte(accept), "accept.yaml")
	if err != nil {
		panic(err)
	}
	in := coverage()
	in.Images = []*report.Image{nginxImg, apiImg}
	in.Policy, in.Acceptances, in.Ledger = pol, acc, led
	in.Fixed = []sla.Record{{Identity: sla.Identity{Repository: "docker.io/library/nginx", VulnerabilityID: "CVE-2024-0100", PkgName: "libxml2"},
		Severity: "HIGH", FirstSeen: ts("2025-02-01T06:00:00Z"), State: sla.StateResolved, ResolvedAt: AsOf}}
	return in
}

// images are the two scanned images and their vulnerabilities.
func images() (nginxImg, apiImg *report.Image) {
	nginx, api := Digest('a'), Digest('b')
	fleet := report.NewFleet()
	fleet.Add("prod-eu", entry("web", "Deployment", "frontend", "docker.io/library/nginx:1.25", nginx))
	fleet.Add("prod-eu", entry("payments", "StatefulSet", "api", "ghcr.io/acme/api:v2", api))
	fleet.Add("staging", entry("web", "Deployment", "frontend", "mirror.example.com/library/nginx:1.25", nginx))
	fleet.Add("staging", entry("edge", "DaemonSet", "proxy", "docker.io/library/nginx:1.25", nginx))
	nginxImg = fleet.Image(contract.ImageKey{Digest: nginx, Platform: amd64}, "")
	nginxImg.Vulns = report.Compact([]contract.Finding{
		{VulnerabilityID: "CVE-2024-0001", PkgName: "openssl", PkgVersion: "3.1.3-r0", FixedVersion: "3.1.4-r0", Status: "fixed", Severity: "CRITICAL", Title: "openssl: buffer overread"},
		{VulnerabilityID: "CVE-2024-0002", PkgName: "openssl", PkgVersion: "3.1.3-r0", FixedVersion: "3.1.5-r0", Status: "fixed", Severity: "HIGH"},
		{VulnerabilityID: "CVE-2024-0003", PkgName: "zlib", PkgVersion: "1.3-r2", Status: "affected", Severity: "MEDIUM"},
		{VulnerabilityID: "CVE-2023-9999", PkgName: "busybox", PkgVersion: "1.36.1-r5", FixedVersion: "1.36.1-r6", Status: "fixed", Severity: "LOW"},
		{VulnerabilityID: "CVE-2024-0004", PkgName: "curl", PkgVersion: "8.5.0-r0", FixedVersion: "8.6.0-r0", Status: "fixed", Severity: "CRITICAL"},
	}, nil)
	apiImg = fleet.Image(contract.ImageKey{Digest: api, Platform: amd64}, "")
	apiImg.Vulns = report.Compact([]contract.Finding{
		{VulnerabilityID: "GHSA-4v7x-pqxf-cx7m", PkgName: "golang.org/x/net", PkgVersion: "v0.17.0", FixedVersion: "0.23.0", PkgPath: "app/bin/api", PkgType: "gobinary", Severity: "HIGH"},
		{VulnerabilityID: "CVE-2024-0005", PkgName: "stdlib", PkgVersion: "v1.21.5", FixedVersion: "1.21.9", PkgPath: "app/bin/api", PkgType: "gobinary", Severity: "CRITICAL"},
	}, nil)
	return nginxImg, apiImg
}

// coverage is the header and the coverage gaps: an unreachable cluster, a
// failed scan, a missing result and an unresolved container.
func coverage() report.Input {
	return report.Input{
		GeneratedAt: AsOf.Add(5 * time.Minute),
		AsOf:        AsOf,
		Scope:       report.Scope{Mode: "fleet", MaxAge: "36h0m0s"},
		Runs:        []report.Run{{RunID: "run-1", Cycle: "2025-03-10", CreatedAt: ts("2025-03-10T05:00:00Z"), Clusters: []string{"prod-eu", "prod-us", "staging"}}},
		Clusters: []report.Cluster{
			{Name: "prod-eu", Status: report.ClusterOK, RunID: "run-1", Pods: 2, Containers: 2},
			{Name: "prod-us", Status: report.ClusterUnreachable, RunID: "run-1", Error: "list pods: connection refused"},
			{Name: "staging", Status: report.ClusterOK, RunID: "run-1", Pods: 2, Containers: 2},
		},
		Failures: []report.Failure{{Digest: Digest('c'), Platform: "linux/amd64", Image: "docker.io/library/redis:7", Class: contract.FailureUnauthorized,
			Reason: "pull: 401 Unauthorized", Attempts: 1, Workloads: []string{"staging/cache/StatefulSet/redis"}}},
		NotScanned: []report.NotScanned{
			{Digest: Digest('d'), Platform: "linux/arm64", Image: "quay.io/prometheus/node-exporter:v1.7.0", Reason: "no result for this run",
				Workloads: []string{"prod-eu/monitoring/DaemonSet/node-exporter"}},
			{Image: "private.example.com/batch:latest", Reason: "image pull back-off, no digest", Workloads: []string{"prod-eu/jobs/CronJob/nightly"}},
		},
		DB:      &contract.DBInfo{Version: 2, UpdatedAt: ts("2025-03-10T00:00:00Z")},
		Scanner: &contract.ScannerInfo{Name: "trivy", Version: "0.74.0"},
	}
}

// NotAffected is a VEX set (OpenVEX) saying every package of repository's
// images is not affected by vulnerability.
func NotAffected(vulnerability, repository string) *vex.Set {
	name := repository[strings.LastIndex(repository, "/")+1:]
	doc := `{"@context": "https://openvex.dev/ns/v0.2.0", "@id": "https://example.com/vex/sample",
  "author": "Sample", "timestamp": "2025-03-01T00:00:00Z", "version": 1,
  "statements": [{"vulnerability": {"name": "` + vulnerability + `"},
    "products": [{"@id": "pkg:oci/` + name + `?repository_url=` + repository + `"}],
    "status": "not_affected", "justification": "vulnerable_code_not_in_execute_path"}]}`
	stmts, err := vex.Parse([]byte(doc), "sample.openvex.json")
	if err != nil {
		panic(err)
	}
	set := vex.NewSet()
	set.Add(stmts...)
	return set
}
