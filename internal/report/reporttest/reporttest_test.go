package reporttest

import (
	"testing"
	"time"
)

// TestFleetSizes checks that each fleet's inventories list the pods and
// images it promises, and its results the findings.
func TestFleetSizes(t *testing.T) {
	for _, tc := range []struct {
		name          string
		f             Fleet
		pods, digests int
	}{
		{"default", Default, 3999, 2000},
		{"large", Large, 500_000, 10_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pods, digests := 0, map[string]bool{}
			for c := range tc.f.Clusters {
				for _, e := range tc.f.Entries(c) {
					pods++
					digests[e.Digest] = true
				}
			}
			if pods != tc.pods || pods != tc.f.PodCount() || len(digests) != tc.digests {
				t.Errorf("%d pods (PodCount %d), %d digests; want %d, %d", pods, tc.f.PodCount(), len(digests), tc.pods, tc.digests)
			}
			last := tc.f.Result(tc.f.Images-1, "c1", time.Unix(0, 0))
			if len(last.Findings) != tc.f.PerImage || tc.f.Findings() != tc.f.Images*tc.f.PerImage {
				t.Errorf("%d findings per image", len(last.Findings))
			}
		})
	}
}

// TestDefaultUnchanged pins the default fleet's first image so the
// 200,000-finding benchmarks stay comparable across versions.
func TestDefaultUnchanged(t *testing.T) {
	r := Result(7, "c1", time.Unix(0, 0))
	f := r.Findings[5]
	if r.Reference != "registry.example.com/team-7/service-7:v1.0" || f.VulnerabilityID != "CVE-2024-01852" ||
		f.PkgName != "package-50" || f.PkgVersion != "1.1.2-r0" {
		t.Errorf("%s %s %s %s", r.Reference, f.VulnerabilityID, f.PkgName, f.PkgVersion)
	}
	if e := Entries(8)[0]; e.Pod != "svc-7-0" || e.Image != Reference(7) {
		t.Errorf("%+v", e)
	}
}
