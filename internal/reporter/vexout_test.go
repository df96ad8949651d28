package reporter

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/purl"
	"github.com/aquasecurity/trivy/pkg/sbom/core"
	ttypes "github.com/aquasecurity/trivy/pkg/types"
	trivyvex "github.com/aquasecurity/trivy/pkg/vex"

	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/internal/fixture/fixturetest"
	"github.com/fleetscan/fleetscan/internal/vex"
)

// cliFinding is a finding of `trivy image --format json` with its PURL.
type cliFinding = fixturetest.PURLFinding

// TestVEXExportRoundTrip: the OpenVEX document `fleetscan vex export`
// writes from an acceptance is read by Trivy's own VEX parser and, given to
// the Trivy CLI (--vex) scanning the same fixture image, suppresses exactly
// the findings fleetscan takes off the gate with it.
func TestVEXExportRoundTrip(t *testing.T) {
	bin := fixturetest.RequireTrivyCLI(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	reg := fixturetest.NewRegistry(t)
	spec, err := fixture.SampleImage("alpine-curl")
	if err != nil {
		t.Fatal(err)
	}
	pushed, err := fixture.PushSamples(ctx, reg.Host, []fixture.ImageSpec{spec})
	if err != nil {
		t.Fatal(err)
	}
	cacheDir := t.TempDir()
	base, err := fixture.BaseAdvisories()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fixture.BuildDB(cacheDir, base, fixture.DBOptions{}); err != nil {
		t.Fatal(err)
	}
	repo := reg.Host + "/fixtures/curl"
	accept := filepath.Join(t.TempDir(), "accept.yaml")
	writeFile(t, accept, `acceptances:
  - vulnerability: CVE-2023-38545
    repository: `+repo+`
    package: pkg:apk/alpine/curl
    expires: 2030-01-01
    reason: curl is never run with a SOCKS5 proxy here
    vex_status: not_affected
    vex_justification: vulnerable_code_not_in_execute_path
  - vulnerability: CVE-2023-46218
    repository: `+repo+`
    expires: 2020-01-01
    reason: expired, not exported
    vex_status: not_affected
    vex_justification: component_not_present
`)
	out := filepath.Join(t.TempDir(), "fleetscan.openvex.json")
	var stderr bytes.Buffer
	cfg := VEXExportConfig{AcceptFile: accept, Out: out, Now: "2026-01-01", Author: VEXAuthor}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := RunVEXExport(cfg, time.Time{}, &bytes.Buffer{}, &stderr); err != nil {
		t.Fatal(err)
	}

	without := fixturetest.CLIPURLFindings(t, ctx, bin, cacheDir, pushed[0].Ref())
	with := fixturetest.CLIPURLFindings(t, ctx, bin, cacheDir, pushed[0].Ref(), "--vex", out)
	var removed []cliFinding
	for _, f := range without {
		if !slices.Contains(with, f) {
			removed = append(removed, f)
		}
	}
	if len(removed) != 1 || removed[0].ID != "CVE-2023-38545" || removed[0].Pkg != "curl" {
		t.Fatalf("trivy --vex removed %+v, want only CVE-2023-38545 in curl (of %d findings)", removed, len(without))
	}

	// fleetscan applies the same document to the same findings alike.
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	stmts, err := vex.Parse(data, out)
	if err != nil {
		t.Fatal(err)
	}
	set := vex.NewSet()
	set.Add(stmts...)
	for _, f := range without {
		st := set.Decide(vex.Subject{Vulnerability: f.ID, PURL: f.PURL, Repositories: []string{repo},
			Digest: pushed[0].Digest, Arch: "amd64"})
		suppressed := st != nil && st.Status.Suppresses()
		if suppressed != slices.Contains(removed, f) {
			t.Errorf("%s in %s: fleetscan suppresses %v, trivy removed %v", f.ID, f.Pkg, suppressed, slices.Contains(removed, f))
		}
	}

	// Trivy's own parser reads it and answers the same.
	doc, err := trivyvex.NewDocument(out, &ttypes.Report{ArtifactType: ftypes.TypeContainerImage})
	if err != nil {
		t.Fatalf("Trivy's VEX parser: %v", err)
	}
	product := component(t, vex.ImagePURL(repo, pushed[0].Digest))
	for _, f := range without {
		_, na := doc.NotAffected(ttypes.DetectedVulnerability{VulnerabilityID: f.ID}, product, component(t, f.PURL))
		if na != slices.Contains(removed, f) {
			t.Errorf("Trivy's parser: %s in %s not affected = %v", f.ID, f.Pkg, na)
		}
	}
}

func component(t *testing.T, p string) *core.Component {
	t.Helper()
	u, err := purl.FromString(p)
	if err != nil {
		t.Fatal(err)
	}
	return &core.Component{PkgIdentifier: ftypes.PkgIdentifier{PURL: u.Unwrap()}}
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestVEXBadInput: a missing or unparseable --vex document and a bad
// acceptance file are refused before any work, naming the flag and file.
func TestVEXBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	writeFile(t, bad, `{"hello": "world"}`)
	badAccept := filepath.Join(dir, "accept.yaml")
	writeFile(t, badAccept, "acceptances:\n  - vulnerability: CVE-1\n    repository: \"*\"\n    expires: 2030-01-01\n    reason: r\n    vex_status: maybe\n")
	tests := []struct {
		name string
		edit func(*Config)
		want []string
	}{
		{"missing", func(c *Config) { c.VEX = []string{filepath.Join(dir, "nope.json")} }, []string{"--vex", "nope.json"}},
		{"unparseable", func(c *Config) { c.VEX = []string{bad} }, []string{"--vex", "bad.json", "not an OpenVEX"}},
		{"empty directory", func(c *Config) { c.VEX = []string{t.TempDir()} }, []string{"--vex", "no *.json"}},
		{"bad accept file", func(c *Config) { c.AcceptFile = badAccept }, []string{"--accept-file", "accept.yaml", "vex_status"}},
		{"vex-out without acceptances", func(c *Config) { c.VEXOut = filepath.Join(dir, "out.json") }, []string{"--vex-out", "--accept-file"}},
	}
	for _, tt := range tests {
		cfg := Defaults()
		cfg.OutDir = t.TempDir()
		tt.edit(&cfg)
		err := cfg.Check()
		if err == nil {
			t.Errorf("%s: accepted", tt.name)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not name %q", tt.name, err, w)
			}
		}
	}
}
