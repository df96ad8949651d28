package scan

import (
	"context"
	"testing"

	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// TestPlanDetectionPools: OS groups of one release that Trivy's standard
// driver detects are detected together, each distinct package once; a
// group a supplier driver claims (Seal's rebuilt packages) is detected on
// its own, as a scan of its image would be.
func TestPlanDetectionPools(t *testing.T) {
	// A supplier's driver answers the probe with a real detection: the DB
	// must be open.
	cacheDir := t.TempDir()
	set, err := fixture.BaseAdvisories()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fixture.BuildDB(cacheDir, set, fixture.DBOptions{}); err != nil {
		t.Fatal(err)
	}
	openDB(t, cacheDir)
	alpine := &contract.OSInfo{Family: "alpine", Name: "3.18.0"}
	pkg := func(name, version string) contract.Package {
		return contract.Package{Name: name, Version: version, RawVersion: version, Type: "alpine", Class: contract.ClassOSPackages}
	}
	groups := []PackageGroup{
		{Class: contract.ClassOSPackages, OS: alpine, Packages: []contract.Package{pkg("musl", "1.2.4-r0"), pkg("libssl3", "3.1.0-r4")}},
		{Class: contract.ClassOSPackages, OS: alpine, Packages: []contract.Package{pkg("libssl3", "3.1.0-r4"), pkg("curl", "8.3.0-r0")}},
		{Class: contract.ClassOSPackages, OS: alpine, Packages: []contract.Package{pkg("seal-openssl", "3.1.0-r4"), pkg("musl", "1.2.4-r0")}},
		{Class: contract.ClassOSPackages, OS: &contract.OSInfo{Family: "alpine", Name: "3.19.0"}, Packages: []contract.Package{pkg("musl", "1.2.4-r0")}},
		{Class: contract.ClassLangPackages, Type: "node-pkg", Packages: []contract.Package{{Name: "lodash", Version: "4.17.20", Class: contract.ClassLangPackages, Type: "node-pkg"}}},
	}
	jobs := planDetection(context.Background(), groups)
	if len(jobs) != 4 {
		t.Fatalf("%d jobs, want 4: the two standard alpine 3.18 groups pooled; Seal's, 3.19's and npm's alone", len(jobs))
	}
	var pooled *detectJob
	for i := range jobs {
		if len(jobs[i].group.Packages) == 3 {
			pooled = &jobs[i]
		}
	}
	if pooled == nil {
		t.Fatalf("no pooled job of 3 distinct packages: %+v", jobs)
	}
	for i, p := range pooled.group.Packages {
		want := 1
		if p.Name == "libssl3" {
			want = 2 // in both groups: detected once, reported for each
		}
		if len(pooled.members[i]) != want {
			t.Errorf("%s stands for %v, want %d members", p.Name, pooled.members[i], want)
		}
	}
	if !standardDriver(context.Background(), groups[0]) || standardDriver(context.Background(), groups[2]) {
		t.Error("standardDriver: want true for plain Alpine packages, false with a Seal package")
	}
}
