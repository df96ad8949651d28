package scan

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/internal/fixture/fixturetest"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

func TestScanSampleImages(t *testing.T) {
	e := newEnv(t, TrivyConfig{})
	for _, spec := range fixture.SampleImages() {
		for _, pl := range spec.Platforms {
			t.Run(spec.Name+"/"+pl.String(), func(t *testing.T) {
				p := e.pushed[spec.Name]
				ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
				defer cancel()
				rep, err := e.scanner.Scan(ctx, Request{Digest: p.Digest, Platform: pl, References: []string{p.Repository}})
				if err != nil {
					t.Fatalf("scan: %v", err)
				}
				want := spec.ExpectedWith(1)
				fixturetest.SortFindings(want)
				if diff := fixturetest.DiffFindings(want, tuples(rep.Findings)); diff != "" {
					t.Errorf("findings differ from the advisories:\n%s", diff)
				}
				if rep.Reference != p.Repository+"@"+p.Digest {
					t.Errorf("reference = %q, want %q", rep.Reference, p.Repository+"@"+p.Digest)
				}
				if rep.DB != e.db.Info() || rep.DB.UpdatedAt.IsZero() {
					t.Errorf("DB info = %+v, want %+v", rep.DB, e.db.Info())
				}
				if rep.Scanner.Name != "trivy" || rep.Scanner.Version == "" || rep.Scanner.Options == "" {
					t.Errorf("scanner info = %+v", rep.Scanner)
				}
				for _, f := range rep.Findings {
					if f.Severity == "" || f.PkgType == "" || f.PkgClass == "" || f.Target == "" {
						t.Errorf("finding lacks fields: %+v", f)
					}
				}
			})
		}
	}
}

func TestScanFindingFields(t *testing.T) {
	e := newEnv(t, TrivyConfig{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	rep, err := e.scanner.Scan(ctx, e.request(t, "alpine-curl"))
	if err != nil {
		t.Fatal(err)
	}
	if rep.OS == nil || rep.OS.Family != "alpine" || rep.OS.Name == "" {
		t.Errorf("OS = %+v, want alpine", rep.OS)
	}
	set, err := fixture.BaseAdvisories()
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, f := range rep.Findings {
		if f.VulnerabilityID != "CVE-2023-38545" || f.PkgName != "curl" {
			continue
		}
		found = true
		v, ok := set.Vulnerability(f.VulnerabilityID)
		if !ok {
			t.Fatalf("advisory %s missing from the fixture", f.VulnerabilityID)
		}
		if f.Title != v.Title {
			t.Errorf("title = %q, want %q", f.Title, v.Title)
		}
		if f.CVSS == nil || f.CVSS.Score <= 0 || f.CVSS.Vector == "" || f.CVSS.Source == "" {
			t.Errorf("CVSS = %+v, want a scored vector with its source", f.CVSS)
		}
		if f.PublishedDate == nil || f.PublishedDate.IsZero() {
			t.Errorf("published date missing")
		}
		if f.Status != "fixed" || f.FixedVersion != "8.4.0-r0" {
			t.Errorf("status/fixed = %q/%q", f.Status, f.FixedVersion)
		}
		if f.PkgType != "alpine" || f.PkgClass != "os-pkgs" {
			t.Errorf("type/class = %q/%q", f.PkgType, f.PkgClass)
		}
		if f.LayerDigest == "" {
			t.Errorf("layer digest missing")
		}
		if f.SeveritySource == "" {
			t.Errorf("severity source missing")
		}
	}
	if !found {
		t.Fatal("CVE-2023-38545 in curl not found")
	}
}

func TestScanPicksPlatformOfIndex(t *testing.T) {
	var log pathLog
	e := newEnv(t, TrivyConfig{}, fixture.WithMiddleware(log.middleware))
	p := e.pushed["node-app"]
	if len(p.Manifests) < 2 {
		t.Fatalf("node-app should be multi-arch, has %v", p.Manifests)
	}
	for pl, manifest := range p.Manifests {
		log.take()
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		_, err := e.scanner.Scan(ctx, Request{Digest: p.Digest, Platform: pl, References: []string{p.Repository}})
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", pl, err)
		}
		paths := log.take()
		var gotChild, gotOther bool
		for _, path := range paths {
			if strings.HasSuffix(path, "/manifests/"+manifest) {
				gotChild = true
			}
			for other, m := range p.Manifests {
				if other != pl && strings.HasSuffix(path, "/manifests/"+m) {
					gotOther = true
				}
			}
		}
		if !gotChild || gotOther {
			t.Errorf("%s: scan fetched %v; want the %s manifest %s only", pl, paths, pl, manifest)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, err := e.scanner.Scan(ctx, Request{Digest: p.Digest, Platform: contract.Platform{OS: "linux", Architecture: "s390x"}, References: []string{p.Repository}})
	assertClass(t, err, contract.FailureNotFound, false)
}
