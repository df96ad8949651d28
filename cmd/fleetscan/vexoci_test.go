package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/internal/fixture/fixturetest"
	"github.com/fleetscan/fleetscan/internal/reporter"
	"github.com/fleetscan/fleetscan/internal/vex"
)

// TestScanVEXOCI runs `fleetscan scan --vex-oci` on an image whose vendor
// attached an OpenVEX attestation as an OCI referrer: the statement about
// curl in that digest takes its rows off the gate, naming the attestation;
// a statement about another digest, and the same CVE in another package,
// change nothing. Without --vex-oci the attestation is ignored.
func TestScanVEXOCI(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	reg := fixturetest.NewRegistry(t, fixture.WithReferrersAPI())
	spec, err := fixture.SampleImage("alpine-curl")
	if err != nil {
		t.Fatal(err)
	}
	curl, err := fixture.PushSample(ctx, reg.Host, spec)
	if err != nil {
		t.Fatal(err)
	}
	other := "sha256:" + strings.Repeat("f", 64)
	doc := fixture.OpenVEX("Curl Vendor",
		fixture.VEXStatement{Vulnerability: "CVE-2023-38545", Product: vex.ImagePURL(curl.Repository, curl.Digest),
			Subcomponent: "pkg:apk/alpine/curl", Status: "not_affected", Justification: "vulnerable_code_not_in_execute_path"},
		fixture.VEXStatement{Vulnerability: "CVE-2023-46218", Product: vex.ImagePURL(curl.Repository, other),
			Subcomponent: "pkg:apk/alpine/curl", Status: "not_affected", Justification: "component_not_present"})
	env := fixture.DSSEEnvelope(fixture.InTotoStatement(fixture.OpenVEXPredicateType, doc, curl.Repository, curl.Digest))
	att, err := fixture.PushReferrer(ctx, curl.Repository, curl.Digest, fixture.Referrer{ArtifactType: fixture.DSSEEnvelopeType,
		LayerType: fixture.DSSEEnvelopeType, Content: env, Annotations: map[string]string{fixture.PredicateAnnotation: fixture.OpenVEXPredicateType}})
	if err != nil {
		t.Fatal(err)
	}
	advisories, err := fixture.BaseAdvisories()
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	if _, err := fixture.BuildDB(cache, advisories, fixture.DBOptions{}); err != nil {
		t.Fatal(err)
	}
	pods := fmt.Sprintf(`{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Pod",
	  "metadata":{"name":"fetch-0","namespace":"shop"},
	  "spec":{"containers":[{"name":"app","image":"%[1]s:8.3.0"}]},
	  "status":{"containerStatuses":[{"name":"app","image":"%[1]s:8.3.0","imageID":"%[1]s@%[2]s"}]}}]}`, curl.Repository, curl.Digest)
	inv := filepath.Join(t.TempDir(), "pods.json")
	if err := os.WriteFile(inv, []byte(pods), 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	args := []string{"scan", "--skip-db-update", "--cache-dir", cache, "--state-dir", t.TempDir(),
		"--inventory-file", "laptop=" + inv, "--insecure-registry", reg.Host, "--out-dir", out, "--scratch-dir", t.TempDir()}
	source := curl.Repository + "@" + att + " (Curl Vendor)"
	for _, tc := range []struct {
		flags []string
		want  map[string][3]string // row: vex_status, vex_justification, vex_source
	}{
		{[]string{"--vex-oci"}, map[string][3]string{
			"CVE-2023-38545 curl":    {"not_affected", "vulnerable_code_not_in_execute_path", source},
			"CVE-2023-38545 libcurl": {},
			"CVE-2023-46218 curl":    {},
		}},
		{nil, map[string][3]string{"CVE-2023-38545 curl": {}}},
	} {
		t.Run(strings.Join(append([]string{"scan"}, tc.flags...), " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := runMain(ctx, append(args, tc.flags...), &stdout, &stderr); code != reporter.ExitOK {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
			}
			data, err := os.ReadFile(filepath.Join(out, "report.csv"))
			if err != nil {
				t.Fatal(err)
			}
			rows := csvColumns(t, data)
			for id, want := range tc.want {
				row, ok := rows[id]
				if !ok {
					t.Fatalf("no row %s in\n%s", id, data)
				}
				if got := [3]string{row["vex_status"], row["vex_justification"], row["vex_source"]}; got != want {
					t.Errorf("%s: vex %q, want %q", id, got, want)
				}
			}
		})
	}
}
