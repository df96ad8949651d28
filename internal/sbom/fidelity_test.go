package sbom

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	spdxjson "github.com/spdx/tools-golang/json"
	"go.uber.org/zap/zaptest"

	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/internal/fixture/fixturetest"
	"github.com/fleetscan/fleetscan/internal/layercache"
	"github.com/fleetscan/fleetscan/internal/natsembed/natstest"
	"github.com/fleetscan/fleetscan/internal/scan"
	"github.com/fleetscan/fleetscan/internal/trivydb"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// world is a fixture DB, a registry with the sample images, a shared
// layer cache on JetStream and a Trivy scanner writing to it.
type world struct {
	cacheDir string
	reg      *fixture.Registry
	pushed   map[string]fixture.Pushed
	cache    *layercache.Cache
	scanner  *scan.Trivy
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{cacheDir: t.TempDir(), pushed: map[string]fixture.Pushed{}}
	set, err := fixture.BaseAdvisories()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fixture.BuildDB(w.cacheDir, set, fixture.DBOptions{UpdatedAt: time.Now().Add(-time.Hour).UTC().Truncate(time.Second)}); err != nil {
		t.Fatal(err)
	}
	w.reg = fixturetest.NewRegistry(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pushed, err := fixture.PushSamples(ctx, w.reg.Host, fixture.SampleImages())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pushed {
		w.pushed[p.Spec.Name] = p
	}
	nt := natstest.Start(t)
	if w.cache, err = layercache.New(nt.Res, layercache.Config{TTL: nt.Topo.LayerCacheTTL, LeaseTTL: layercache.DefaultLeaseTTL, Owner: "test"}, zaptest.NewLogger(t)); err != nil {
		t.Fatal(err)
	}
	dbc := trivydb.Defaults()
	dbc.CacheDir = w.cacheDir
	db, err := trivydb.Open(ctx, dbc, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	w.scanner, err = scan.NewTrivy(scan.TrivyConfig{CacheDir: w.cacheDir, ScratchDir: t.TempDir(), SharedCache: w.cache}, db, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.scanner.Close() })
	return w
}

// cliSBOM runs `trivy image --format <format>` on ref, offline, with the
// world's DB directory as its cache.
func cliSBOM(ctx context.Context, t *testing.T, bin, cacheDir, ref string, pl contract.Platform, format string) []byte {
	t.Helper()
	args := []string{"image", "--quiet", "--format", format,
		"--cache-dir", cacheDir, "--cache-backend", "memory",
		"--skip-db-update", "--skip-java-db-update", "--offline-scan", "--skip-version-check",
		"--insecure", "--image-src", "remote", "--platform", pl.String(), ref}
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+filepath.Join(cacheDir, ".no-docker-config"), "TRIVY_NO_PROGRESS=true")
	if err := cmd.Run(); err != nil {
		t.Fatalf("trivy image --format %s %s: %v: %s", format, ref, err, stderr.String())
	}
	return stdout.Bytes()
}

// cdxPackages is a CycloneDX BOM's package set: "type name@version purl"
// per component with a package URL (the OS and application components
// Trivy adds carry none), and the root component's PURL.
func cdxPackages(t *testing.T, data []byte) (pkgs []string, root string, spec cdx.SpecVersion) {
	t.Helper()
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(bytes.NewReader(data), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		t.Fatalf("decode CycloneDX: %v", err)
	}
	if bom.Components != nil {
		for _, c := range *bom.Components {
			if c.PackageURL != "" {
				pkgs = append(pkgs, fmt.Sprintf("%s %s@%s %s", c.Type, c.Name, c.Version, c.PackageURL))
			}
		}
	}
	slices.Sort(pkgs)
	if bom.Metadata != nil && bom.Metadata.Component != nil {
		root = bom.Metadata.Component.PackageURL
	}
	return pkgs, root, bom.SpecVersion
}

// spdxPackages is an SPDX document's package set: "name@version purl".
func spdxPackages(t *testing.T, data []byte) (pkgs []string, version string) {
	t.Helper()
	doc, err := spdxjson.Read(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("decode SPDX JSON: %v", err)
	}
	for _, p := range doc.Packages {
		purl := ""
		for _, r := range p.PackageExternalReferences {
			if r.RefType == "purl" {
				purl = r.Locator
			}
		}
		pkgs = append(pkgs, fmt.Sprintf("%s@%s %s", p.PackageName, p.PackageVersion, purl))
	}
	slices.Sort(pkgs)
	return pkgs, doc.SPDXVersion
}

func diffSets(want, got []string) string {
	count := map[string]int{}
	for _, s := range want {
		count[s]++
	}
	for _, s := range got {
		count[s]--
	}
	var lines []string
	for s, n := range count {
		if n > 0 {
			lines = append(lines, "- "+s)
		}
		if n < 0 {
			lines = append(lines, "+ "+s)
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// TestSBOMFidelityWithTrivyCLI: for every sample image and platform, the
// SBOM built from the image's cached analysis — after the scan, without
// the registry — lists exactly the packages (type, name, version, PURL)
// and the image PURL that `trivy image --format cyclonedx` lists when it
// pulls the image itself; the SPDX document lists the packages of
// `trivy image --format spdx-json`. Ours are CycloneDX 1.6 and SPDX 2.3.
func TestSBOMFidelityWithTrivyCLI(t *testing.T) {
	bin := fixturetest.RequireTrivyCLI(t)
	w := newWorld(t)
	inv := scan.NewInventory(w.cache, zaptest.NewLogger(t))
	for _, spec := range fixture.SampleImages() {
		for _, pl := range spec.Platforms {
			t.Run(spec.Name+"/"+pl.String(), func(t *testing.T) {
				p := w.pushed[spec.Name]
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				key := contract.ImageKey{Digest: p.Digest, Platform: pl}
				if _, err := w.scanner.Scan(ctx, scan.Request{Digest: p.Digest, Platform: pl, References: []string{p.Repository}}); err != nil {
					t.Fatal(err)
				}
				w.reg.ResetStats()
				l, err := inv.List(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				var ours [2]bytes.Buffer
				for i, f := range Formats {
					if err := Write(ctx, &ours[i], f, l.Report, scan.TrivyVersion()); err != nil {
						t.Fatal(err)
					}
				}
				if n := w.reg.Stats().Requests; n != 0 {
					t.Errorf("building the SBOMs made %d registry requests, want 0", n)
				}

				gotPkgs, gotRoot, gotSpec := cdxPackages(t, ours[0].Bytes())
				wantPkgs, wantRoot, _ := cdxPackages(t, cliSBOM(ctx, t, bin, w.cacheDir, p.Ref(), pl, "cyclonedx"))
				if gotSpec != cdx.SpecVersion1_6 || !bytes.Contains(ours[0].Bytes(), []byte(`"specVersion": "1.6"`)) {
					t.Errorf("CycloneDX spec version %v, want 1.6", gotSpec)
				}
				if len(wantPkgs) == 0 && len(spec.Expected) > 0 {
					t.Fatal("the CLI's SBOM lists no package: the comparison would prove nothing")
				}
				if diff := diffSets(wantPkgs, gotPkgs); diff != "" {
					t.Errorf("CycloneDX packages differ from `trivy image --format cyclonedx` (- CLI only, + ours only):\n%s", diff)
				}
				if gotRoot == "" || gotRoot != wantRoot {
					t.Errorf("image PURL %q, the CLI's %q", gotRoot, wantRoot)
				}

				gotSPDX, version := spdxPackages(t, ours[1].Bytes())
				wantSPDX, _ := spdxPackages(t, cliSBOM(ctx, t, bin, w.cacheDir, p.Ref(), pl, "spdx-json"))
				if version != "SPDX-2.3" {
					t.Errorf("SPDX version %q, want SPDX-2.3", version)
				}
				if diff := diffSets(wantSPDX, gotSPDX); diff != "" {
					t.Errorf("SPDX packages differ from `trivy image --format spdx-json` (- CLI only, + ours only):\n%s", diff)
				}
			})
		}
	}
}

func TestFileNameAndFormats(t *testing.T) {
	key := contract.ImageKey{Digest: "sha256:" + strings.Repeat("ab", 32), Platform: contract.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}
	hex := strings.Repeat("ab", 32)
	for _, tt := range []struct {
		perPlatform bool
		f           Format
		want        string
	}{
		{false, CycloneDX, "sha256-" + hex + ".cdx.json"},
		{false, SPDX, "sha256-" + hex + ".spdx.json"},
		{true, CycloneDX, "sha256-" + hex + ".linux-arm64-v8.cdx.json"},
	} {
		if got := FileName(key, tt.perPlatform, tt.f); got != tt.want {
			t.Errorf("FileName(%v, %s) = %s, want %s", tt.perPlatform, tt.f, got, tt.want)
		}
	}
	if got, err := ParseFormats([]string{"cyclonedx,spdx", "CycloneDX"}); err != nil || !slices.Equal(got, []Format{CycloneDX, SPDX}) {
		t.Errorf("ParseFormats = %v, %v", got, err)
	}
	if got, err := ParseFormats(nil); err != nil || len(got) != 0 {
		t.Errorf("ParseFormats(nil) = %v, %v", got, err)
	}
	if _, err := ParseFormats([]string{"cyclonedx,swid"}); err == nil || !strings.Contains(err.Error(), "swid") {
		t.Errorf("ParseFormats(swid) = %v, want an error naming it", err)
	}

}
