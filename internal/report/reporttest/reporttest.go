// Package reporttest generates a synthetic fleet for the reporter's
// benchmarks: image results shaped like a worker's, and the inventory
// entries that run them.
package reporttest

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/fleetscan/fleetscan/pkg/contract"
)

// The default synthetic fleet: 2,000 image results with 100 findings each,
// drawn from 5,000 vulnerabilities in 300 packages, across 400 repositories
// (five digests each) in 12 clusters. As in real images, the findings of
// one image cluster in a few packages (25, four vulnerabilities each), and
// strings repeat the way they do in a real fleet.
const (
	// Vulnerabilities is how many distinct vulnerabilities the findings
	// draw from (VulnerabilityIDs).
	Vulnerabilities = 5000
	Images          = 2000
	PerImage        = 100
	Clusters        = 12
)

var severities = []string{"CRITICAL", "HIGH", "HIGH", "MEDIUM", "MEDIUM", "MEDIUM", "LOW", "LOW", "UNKNOWN"}

var platform = contract.Platform{OS: "linux", Architecture: "amd64"}

// Key is the image key of image i.
func Key(i int) contract.ImageKey {
	return contract.ImageKey{Digest: fmt.Sprintf("sha256:%064x", i+1), Platform: platform}
}

// Reference is the normalised reference image i runs under.
func Reference(i int) string {
	return fmt.Sprintf("registry.example.com/team-%d/service-%d:v1.%d", i%40, i%400, i/400)
}

// Result generates the result of image i as a worker would publish it,
// including the descriptions and references that the report drops.
func Result(i int, cycle string, completed time.Time) contract.ScanResult {
	r := contract.ScanResult{
		SchemaVersion: contract.ResultSchemaVersion, RunID: "bench", Cycle: cycle,
		ImageKey: Key(i), Reference: Reference(i), Status: contract.StatusScanned, CompletedAt: completed,
		Scanner:  contract.ScannerInfo{Name: "trivy", Version: "0.74.0"},
		DB:       contract.DBInfo{Version: 2, UpdatedAt: completed.Add(-time.Hour)},
		Findings: make([]contract.Finding, PerImage),
	}
	for j := range r.Findings {
		p := (i*7 + j/4) % 300
		v := (p*17 + (j%4)*1000 + i%5) % Vulnerabilities
		f := contract.Finding{
			VulnerabilityID: fmt.Sprintf("CVE-2024-%05d", v),
			PkgName:         fmt.Sprintf("package-%d", p),
			PkgVersion:      fmt.Sprintf("1.%d.%d-r0", p%7, i%5),
			Severity:        severities[v%len(severities)],
			Title:           fmt.Sprintf("package-%d: vulnerability %d allows something bad via crafted input", p, v),
			Description:     strings.Repeat("A long description of the vulnerability as found in the NVD. ", 6),
			References:      []string{"https://nvd.nist.gov/vuln/detail/CVE-2024-" + strconv.Itoa(v), "https://example.com/advisory/" + strconv.Itoa(v)},
			PrimaryURL:      "https://avd.aquasec.com/nvd/cve-2024-" + strconv.Itoa(v),
			CVSS:            &contract.CVSS{Source: "nvd", Score: float64(v%100) / 10},
		}
		if v%4 != 0 {
			f.FixedVersion, f.Status = fmt.Sprintf("1.%d.%d-r1", p%7, 9), "fixed"
		} else {
			f.Status = "affected"
		}
		if p%10 == 0 {
			f.PkgPath = fmt.Sprintf("app/lib/package-%d.jar", p)
		}
		r.Findings[j] = f
	}
	return r
}

// Entries returns the inventory entries of cluster c (0 ≤ c < Clusters):
// image i runs in clusters i, i+1 and i+2 (mod Clusters) for i%3+1 of them.
func Entries(c int) []contract.InventoryEntry {
	var out []contract.InventoryEntry
	for i := range Images {
		for k := range 1 + i%3 {
			if (i+k)%Clusters != c {
				continue
			}
			out = append(out, contract.InventoryEntry{
				Namespace: fmt.Sprintf("ns-%d", i%60), Pod: fmt.Sprintf("svc-%d-0", i),
				Workload:  contract.Workload{Kind: "Deployment", Name: fmt.Sprintf("svc-%d", i)},
				Container: "main", ContainerKind: contract.ContainerRegular, Image: Reference(i),
				Digest: Key(i).Digest, Platform: platform, Resolution: contract.ResolvedStatus,
			})
		}
	}
	return out
}

// ClusterName names cluster c.
func ClusterName(c int) string { return fmt.Sprintf("cluster-%d", c) }

// VulnerabilityIDs are the IDs of the vulnerabilities the fleet's findings
// draw from, in order (the exploit feeds of benchmarks list them).
func VulnerabilityIDs() []string {
	ids := make([]string, Vulnerabilities)
	for v := range ids {
		ids[v] = fmt.Sprintf("CVE-2024-%05d", v)
	}
	return ids
}
