package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/internal/fixture/fixturetest"
	"github.com/fleetscan/fleetscan/internal/reporter"
)

func TestQueryUsage(t *testing.T) {
	state := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no question", []string{"query", "--state-dir", state}, "--package, --purl or --cve"},
		{"unknown flag", []string{"query", "--pakage", "x"}, "--pakage"},
		{"bad constraint", []string{"query", "--package", "log4j-core", "--version", "~>2"}, "--version"},
		{"bad purl", []string{"query", "--purl", "npm/lodash"}, "--purl"},
		{"bad format", []string{"query", "--package", "x", "--format", "yaml"}, "--format"},
		{"db-update without cve", []string{"query", "--package", "x", "--db-update"}, "--db-update"},
		{"no state", []string{"query", "--package", "x", "--state-dir", filepath.Join(state, "none")}, "run `fleetscan scan` first"},
		{"stray argument", []string{"query", "--package", "x", "extra"}, "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := runMain(t.Context(), tt.args, &stdout, &stderr); code != 4 {
				t.Fatalf("exit %d, want 4\nstderr: %s", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("stderr does not name %q:\n%s", tt.want, stderr.String())
			}
		})
	}
	var stdout, stderr bytes.Buffer
	if code := runMain(t.Context(), []string{"query", "--help"}, &stdout, &stderr); code != 0 || !strings.Contains(stderr.String(), "--db-update") {
		t.Fatalf("query --help: exit %d\n%s", code, stderr.String())
	}
}

// TestScanSBOMThenQuery is the README's incident-response recipe, offline:
// `fleetscan scan --sbom` writes an SBOM per digest, then `fleetscan query`
// over the same state answers package and CVE questions without the
// registry, with the documented exit status.
func TestScanSBOMThenQuery(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	reg := fixturetest.NewRegistry(t)
	var pushed []fixture.Pushed
	for _, name := range []string{"alpine-3.18", "node-app"} {
		spec, err := fixture.SampleImage(name)
		if err != nil {
			t.Fatal(err)
		}
		p, err := fixture.PushSample(ctx, reg.Host, spec)
		if err != nil {
			t.Fatal(err)
		}
		pushed = append(pushed, p)
	}
	advisories, err := fixture.BaseAdvisories()
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	if _, err := fixture.BuildDB(cache, advisories, fixture.DBOptions{}); err != nil {
		t.Fatal(err)
	}
	var items []string
	for i, p := range pushed {
		items = append(items, fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod",
	  "metadata":{"name":"web-%[3]d","namespace":"shop","ownerReferences":[{"apiVersion":"apps/v1","kind":"StatefulSet","name":"web-%[3]d","uid":"u","controller":true}]},
	  "spec":{"containers":[{"name":"app","image":"%[1]s:v"}]},
	  "status":{"containerStatuses":[{"name":"app","image":"%[1]s:v","imageID":"%[1]s@%[2]s"}]}}`, p.Repository, p.Digest, i))
	}
	inv := filepath.Join(t.TempDir(), "pods.json")
	if err := os.WriteFile(inv, []byte(`{"apiVersion":"v1","kind":"List","items":[`+strings.Join(items, ",")+`]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	state, out := t.TempDir(), t.TempDir()
	var stdout, stderr bytes.Buffer
	code := runMain(ctx, []string{"scan", "--skip-db-update", "--cache-dir", cache, "--state-dir", state,
		"--inventory-file", "laptop=" + inv, "--insecure-registry", reg.Host, "--workers", "2",
		"--out-dir", out, "--scratch-dir", t.TempDir(), "--sbom", "cyclonedx,spdx"}, &stdout, &stderr)
	if code != reporter.ExitOK {
		t.Fatalf("scan: exit %d\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
	}
	alpineHex, nodeHex := strings.TrimPrefix(pushed[0].Digest, "sha256:"), strings.TrimPrefix(pushed[1].Digest, "sha256:")
	for _, f := range []string{"sha256-" + alpineHex + ".cdx.json", "sha256-" + alpineHex + ".spdx.json",
		"sha256-" + nodeHex + ".linux-amd64.cdx.json", "index.json"} {
		if _, err := os.Stat(filepath.Join(out, "sbom", f)); err != nil {
			t.Errorf("scan --sbom: %v", err)
		}
	}
	if !strings.Contains(stdout.String(), "SBOMs: 2 images (cyclonedx, spdx)") {
		t.Errorf("scan console:\n%s", stdout.String())
	}

	reg.ResetStats()
	query := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := runMain(ctx, append([]string{"query", "--state-dir", state, "--cache-dir", cache}, args...), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	code, got, errOut := query("--package", "lodash", "--version", "<4.17.21", "--format", "json")
	if code != 0 {
		t.Fatalf("query lodash: exit %d\n%s", code, errOut)
	}
	var matches []struct {
		Digest, Platform, Package, Version, PURL string
		Workloads                                []string
	}
	// No nodes file: every pod runs linux/amd64, so one of node-app's two
	// platforms runs.
	if err := json.Unmarshal([]byte(got), &matches); err != nil || len(matches) != 1 {
		t.Fatalf("lodash: %v\n%s", err, got)
	}
	for _, m := range matches {
		if m.Digest != pushed[1].Digest || m.Version != "4.17.20" || len(m.Workloads) != 1 || m.Workloads[0] != "laptop/shop/StatefulSet/web-1" {
			t.Errorf("lodash match %+v", m)
		}
	}
	if code, got, errOut := query("--package", "lodash", "--version", ">=4.17.21"); code != 1 || !strings.Contains(got, "0 matches") {
		t.Errorf("no match: exit %d\n%s%s", code, got, errOut)
	}
	if code, got, errOut := query("--cve", "CVE-2022-48174"); code != 0 || !strings.Contains(got, "busybox") || !strings.Contains(got, "1.36.1-r1") {
		t.Errorf("--cve: exit %d\n%s%s", code, got, errOut)
	}
	if n := reg.Stats().Requests; n != 0 {
		t.Errorf("queries made %d registry requests", n)
	}
}
