package scan

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/internal/fixture/fixturetest"
	"github.com/fleetscan/fleetscan/internal/layercache"
	"github.com/fleetscan/fleetscan/internal/natsembed/natstest"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// sharedEnv is a scan env whose scanner uses a JetStream layer cache.
func sharedEnv(t *testing.T) (*env, *layercache.Cache) {
	t.Helper()
	nt := natstest.Start(t)
	cache, err := layercache.New(nt.Res, layercache.Config{TTL: nt.Topo.LayerCacheTTL, LeaseTTL: layercache.DefaultLeaseTTL, Owner: "test"}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return newEnv(t, TrivyConfig{SharedCache: cache}), cache
}

// groupsOf splits a package record the way a fleet query does: the OS
// packages with the image's OS, the language packages by type.
func groupsOf(rec *contract.ImagePackages) []PackageGroup {
	osg := PackageGroup{Class: contract.ClassOSPackages, OS: rec.OS, OSExtended: rec.OSExtended, OSSupplier: rec.OSSupplier, Repository: rec.Repository}
	lang := map[string]*PackageGroup{}
	var types []string
	for _, p := range rec.Packages {
		if p.Class == contract.ClassOSPackages {
			osg.Packages = append(osg.Packages, p)
			continue
		}
		g := lang[p.Type]
		if g == nil {
			g = &PackageGroup{Class: contract.ClassLangPackages, Type: p.Type}
			lang[p.Type] = g
			types = append(types, p.Type)
		}
		g.Packages = append(g.Packages, p)
	}
	out := []PackageGroup{osg}
	slices.Sort(types)
	for _, t := range types {
		out = append(out, *lang[t])
	}
	return out
}

// TestScanRecordsPackages: every scan lists all the image's packages, with
// PURLs and versions, whether or not they are vulnerable; the listing from
// the layer cache alone (no registry) is the same; a multi-arch index
// records each platform's own manifest digest.
func TestScanRecordsPackages(t *testing.T) {
	e, cache := sharedEnv(t)
	inv := NewInventory(cache, testLogger(t))
	manifests := map[string]bool{}
	for _, spec := range fixture.SampleImages() {
		for _, pl := range spec.Platforms {
			t.Run(spec.Name+"/"+pl.String(), func(t *testing.T) {
				p := e.pushed[spec.Name]
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				key := contract.ImageKey{Digest: p.Digest, Platform: pl}
				rep, err := e.scanner.Scan(ctx, Request{Digest: p.Digest, Platform: pl, References: []string{p.Repository}})
				if err != nil {
					t.Fatal(err)
				}
				rec := rep.Packages
				if rec == nil {
					t.Fatal("scan report without packages")
				}
				want := map[string]bool{}
				for _, l := range spec.Layers {
					for _, name := range layerPackageNames(l.Name) {
						want[name] = true
					}
				}
				have := map[string]contract.Package{}
				for _, pkg := range rec.Packages {
					have[pkg.Name] = pkg
					if pkg.Type == "" || pkg.Class == "" || !strings.HasPrefix(pkg.PURL, "pkg:") {
						t.Errorf("package lacks fields: %+v", pkg)
					}
					// A Go binary's main module has no version (Trivy
					// lists it all the same).
					if pkg.Relationship != "root" && (pkg.Version == "" || !strings.Contains(pkg.PURL, "@")) {
						t.Errorf("package %s: version %q, PURL %q; want both with the version", pkg.Name, pkg.Version, pkg.PURL)
					}
				}
				for _, f := range spec.Expected {
					if _, ok := have[f.PkgName]; !ok {
						t.Errorf("vulnerable package %s missing from the record", f.PkgName)
					}
				}
				if spec.Name == "alpine-3.18" {
					if len(rec.Packages) != 15 || have["zlib"].Version != "1.2.13-r1" || have["libssl3"].SrcName != "openssl" {
						t.Errorf("alpine record: %d packages, zlib %+v, libssl3 %+v", len(rec.Packages), have["zlib"], have["libssl3"])
					}
					if rec.OS == nil || rec.OS.Family != "alpine" {
						t.Errorf("OS = %+v", rec.OS)
					}
				}
				if spec.Name == "debian-12" && have["zlib1g"].Version != "1:1.2.13.dfsg-1" {
					t.Errorf("zlib1g version %q, want Trivy's rendering with the epoch", have["zlib1g"].Version)
				}
				if spec.MultiArch() {
					if rec.ManifestDigest == "" || rec.ManifestDigest == p.Digest {
						t.Errorf("index platform manifest digest %q (index %s)", rec.ManifestDigest, p.Digest)
					}
					manifests[rec.ManifestDigest] = true
				} else if rec.ManifestDigest != "" {
					t.Errorf("single image: manifest digest %q, want none", rec.ManifestDigest)
				}

				l, err := inv.List(ctx, key)
				if err != nil {
					t.Fatalf("listing from the layer cache: %v", err)
				}
				if l.Packages.ImageKey != key || l.Packages.ManifestDigest != rec.ManifestDigest {
					t.Errorf("listing key %v manifest %q", l.Packages.ImageKey, l.Packages.ManifestDigest)
				}
				if diff := diffPackages(rec.Packages, l.Packages.Packages); diff != "" {
					t.Errorf("listing from the cache differs from the scan's record:\n%s", diff)
				}
			})
		}
	}
	if len(manifests) != 2 {
		t.Errorf("multi-arch platform manifests: %v, want two distinct", manifests)
	}
	if _, err := inv.List(context.Background(), contract.ImageKey{Digest: "sha256:" + strings.Repeat("0", 64), Platform: contract.DefaultPlatform}); err == nil {
		t.Error("listing an image never analysed succeeded")
	}
}

// layerPackageNames names some packages a sample layer installs (by the
// layer's name), to check the record lists non-vulnerable packages too.
func layerPackageNames(layer string) []string {
	switch {
	case strings.HasPrefix(layer, "alpine"):
		return []string{"alpine-keys", "zlib"}
	case strings.HasPrefix(layer, "debian"):
		return []string{"tzdata", "bash"}
	case strings.HasPrefix(layer, "npm"):
		return []string{"express", "semver"}
	case strings.HasPrefix(layer, "python"):
		return []string{"MarkupSafe"}
	}
	return nil
}

func diffPackages(want, got []contract.Package) string {
	key := func(p contract.Package) string {
		return strings.Join([]string{p.Class, p.Type, p.Name, p.Version, p.PURL, p.Path, p.SrcName, p.SrcVersion}, "|")
	}
	count := map[string]int{}
	for _, p := range want {
		count[key(p)]++
	}
	for _, p := range got {
		count[key(p)]--
	}
	var lines []string
	for k, n := range count {
		if n > 0 {
			lines = append(lines, "- "+k)
		}
		if n < 0 {
			lines = append(lines, "+ "+k)
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// TestDetectPackagesMatchesScan: Trivy's detection over an image's stored
// package record, as `fleetscan query --cve` runs it, finds exactly what
// the scan of the image found — with the first DB and after an update.
func TestDetectPackagesMatchesScan(t *testing.T) {
	e, _ := sharedEnv(t)
	for gen := 1; gen <= 2; gen++ {
		if gen == 2 {
			e.rebuildDB(t)
			if changed, err := e.scanner.RefreshDB(context.Background()); err != nil || !changed {
				t.Fatalf("RefreshDB = %v, %v", changed, err)
			}
		}
		for _, spec := range fixture.SampleImages() {
			for _, pl := range spec.Platforms {
				t.Run(spec.Name+"/"+pl.String()+"/db"+string(rune('0'+gen)), func(t *testing.T) {
					p := e.pushed[spec.Name]
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					defer cancel()
					rep, err := e.scanner.Scan(ctx, Request{Digest: p.Digest, Platform: pl, References: []string{p.Repository}})
					if err != nil {
						t.Fatal(err)
					}
					groups := groupsOf(rep.Packages)
					found, err := DetectPackages(ctx, groups, 2, testLogger(t))
					if err != nil {
						t.Fatal(err)
					}
					got := make([]fixture.Finding, 0, len(found))
					for _, v := range found {
						pkg := groups[v.Group].Packages[v.Package]
						got = append(got, fixture.Finding{VulnerabilityID: v.VulnerabilityID, PkgName: pkg.Name, InstalledVersion: pkg.Version,
							FixedVersion: v.FixedVersion, Severity: v.Severity, Status: v.Status})
					}
					fixturetest.SortFindings(got)
					if diff := fixturetest.DiffFindings(tuples(rep.Findings), got); diff != "" {
						t.Errorf("detection over the stored packages differs from the scan (- scan only, + detection only):\n%s", diff)
					}
					if len(rep.Findings) != len(spec.ExpectedWith(gen)) {
						t.Errorf("scan found %d, the fixture expects %d", len(rep.Findings), len(spec.ExpectedWith(gen)))
					}
				})
			}
		}
	}
}
