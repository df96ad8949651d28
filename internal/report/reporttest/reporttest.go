// Package reporttest generates a synthetic fleet for the reporter's
// benchmarks: image results shaped like a worker's, and the inventory
// entries that run them. The package-level functions generate the default
// fleet (200,000 findings); a Fleet value sizes another, such as Large (the
// 1,000,000-finding fleet of issue 20).
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

// Fleet sizes a synthetic fleet. Image i runs under repository
// i % Repositories (teams of ten repositories), in 1 + i%3 clusters; the
// findings of an image lie in PerImage/4 of the Packages, four of the
// Vulns each.
type Fleet struct {
	Images, PerImage, Clusters int
	// Pods is the number of pods across the fleet, spread evenly over the
	// placements of images in clusters (0: one pod per placement).
	Pods                          int
	Vulns, Packages, Repositories int
}

// Default is the default fleet: 200,000 findings, 12 clusters, one pod per
// image and cluster it runs in (3,999 pods).
var Default = Fleet{Images: Images, PerImage: PerImage, Clusters: Clusters, Vulns: Vulnerabilities, Packages: 300, Repositories: 400}

// Large is the fleet of issue 20: 10,000 digests with 1,000,000 findings
// drawn from 25,000 vulnerabilities in 1,500 packages, across 2,000
// repositories in 50 clusters running 500,000 pods.
var Large = Fleet{Images: 10_000, PerImage: 100, Clusters: 50, Pods: 500_000, Vulns: 25_000, Packages: 1500, Repositories: 2000}

// Findings is the number of findings of the fleet.
func (f Fleet) Findings() int { return f.Images * f.PerImage }

var severities = []string{"CRITICAL", "HIGH", "HIGH", "MEDIUM", "MEDIUM", "MEDIUM", "LOW", "LOW", "UNKNOWN"}

var platform = contract.Platform{OS: "linux", Architecture: "amd64"}

// Key is the image key of image i.
func Key(i int) contract.ImageKey {
	return contract.ImageKey{Digest: fmt.Sprintf("sha256:%064x", i+1), Platform: platform}
}

// Key is the image key of image i.
func (f Fleet) Key(i int) contract.ImageKey { return Key(i) }

// Reference is the normalised reference image i of the default fleet runs
// under.
func Reference(i int) string { return Default.Reference(i) }

// Reference is the normalised reference image i runs under.
func (f Fleet) Reference(i int) string {
	repos := max(1, f.Repositories)
	return fmt.Sprintf("registry.example.com/team-%d/service-%d:v1.%d", i%max(1, repos/10), i%repos, i/repos)
}

// Result generates the result of image i of the default fleet.
func Result(i int, cycle string, completed time.Time) contract.ScanResult {
	return Default.Result(i, cycle, completed)
}

// Result generates the result of image i as a worker would publish it,
// including the descriptions and references that the report drops.
func (f Fleet) Result(i int, cycle string, completed time.Time) contract.ScanResult {
	r := contract.ScanResult{
		SchemaVersion: contract.ResultSchemaVersion, RunID: "bench", Cycle: cycle,
		ImageKey: Key(i), Reference: f.Reference(i), Status: contract.StatusScanned, CompletedAt: completed,
		Scanner:  contract.ScannerInfo{Name: "trivy", Version: "0.74.0"},
		DB:       contract.DBInfo{Version: 2, UpdatedAt: completed.Add(-time.Hour)},
		Findings: make([]contract.Finding, f.PerImage),
	}
	for j := range r.Findings {
		r.Findings[j] = f.finding(i, j)
	}
	return r
}

// finding is finding j of image i.
func (f Fleet) finding(i, j int) contract.Finding {
	p := (i*7 + j/4) % f.Packages
	v := (p*17 + (j%4)*(f.Vulns/5) + i%5) % f.Vulns
	out := contract.Finding{
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
		out.FixedVersion, out.Status = fmt.Sprintf("1.%d.%d-r1", p%7, 9), "fixed"
	} else {
		out.Status = "affected"
	}
	if p%10 == 0 {
		out.PkgPath = fmt.Sprintf("app/lib/package-%d.jar", p)
	}
	return out
}

// Entries returns the inventory entries of cluster c of the default fleet.
func Entries(c int) []contract.InventoryEntry { return Default.Entries(c) }

// Entries returns the inventory entries of cluster c (0 ≤ c < Clusters):
// image i runs in clusters i, i+1 and i+2 (mod Clusters) for i%3+1 of them,
// with the replicas Pods spreads over its placements.
func (f Fleet) Entries(c int) []contract.InventoryEntry {
	var out []contract.InventoryEntry
	for i := range f.Images {
		for k := range 1 + i%3 {
			if (i+k)%f.Clusters != c {
				continue
			}
			for r := range f.replicas(placementsBefore(i) + k) {
				out = append(out, contract.InventoryEntry{
					Namespace: fmt.Sprintf("ns-%d", i%60), Pod: fmt.Sprintf("svc-%d-%d", i, r),
					Workload:  contract.Workload{Kind: "Deployment", Name: fmt.Sprintf("svc-%d", i)},
					Container: "main", ContainerKind: contract.ContainerRegular, Image: f.Reference(i),
					Digest: Key(i).Digest, Platform: platform, Resolution: contract.ResolvedStatus,
				})
			}
		}
	}
	return out
}

// placementsBefore counts the placements (image in a cluster) of the
// images before image i: image x has 1 + x%3.
func placementsBefore(i int) int {
	extra := 3 * (i / 3)
	if i%3 == 2 {
		extra++
	}
	return i + extra
}

// replicas is the number of pods of placement n.
func (f Fleet) replicas(n int) int {
	total := placementsBefore(f.Images)
	if f.Pods <= total {
		return 1
	}
	if n < f.Pods%total {
		return f.Pods/total + 1
	}
	return f.Pods / total
}

// PodCount is the number of pods the fleet's inventories list.
func (f Fleet) PodCount() int { return max(f.Pods, placementsBefore(f.Images)) }

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
