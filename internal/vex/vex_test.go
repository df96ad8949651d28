package vex

import (
	"fmt"
	"strings"
	"testing"
)

// Subjects from the fixture images (internal/fixture): curl in
// fixtures/curl (Alpine 3.18) and lodash in fixtures/node-app (npm).
var (
	digestA = "sha256:" + strings.Repeat("a", 64)
	digestB = "sha256:" + strings.Repeat("b", 64)
	curlA   = Subject{Vulnerability: "CVE-2023-38545", PURL: "pkg:apk/alpine/curl@8.3.0-r0?arch=x86_64&distro=3.18.0",
		Repositories: []string{"127.0.0.1:5000/fixtures/curl"}, Digest: digestA, Arch: "amd64"}
	lodashB = Subject{Vulnerability: "CVE-2021-23337", PURL: "pkg:npm/lodash@4.17.20",
		Repositories: []string{"127.0.0.1:5000/fixtures/node-app"}, Digest: digestB, Arch: "arm64"}
)

const openVEXDoc = `{
  "@context": "https://openvex.dev/ns/v0.2.0", "@id": "https://example.com/vex/1",
  "author": "Fixture Vendor", "timestamp": "2025-01-01T00:00:00Z", "version": 1,
  "statements": [
    {"vulnerability": {"name": "CVE-2023-38545"}, "status": "not_affected", "justification": "vulnerable_code_not_in_execute_path",
     "products": [{"@id": "pkg:oci/curl@%s?repository_url=127.0.0.1:5000/fixtures/curl",
                   "subcomponents": [{"@id": "pkg:apk/alpine/curl@8.3.0-r0"}]}]},
    {"vulnerability": {"name": "CVE-2021-23337"}, "status": "fixed",
     "products": [{"@id": "pkg:oci/node-app?repository_url=127.0.0.1:5000/fixtures/node-app",
                   "subcomponents": [{"@id": "pkg:npm/lodash"}]}]}
  ]}`

const cycloneDXDoc = `{
  "bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
  "metadata": {"timestamp": "2025-01-01T00:00:00Z", "authors": [{"name": "Fixture Vendor"}],
    "component": {"type": "container", "name": "curl", "bom-ref": "img", "purl": "pkg:oci/curl@%s?repository_url=127.0.0.1:5000/fixtures/curl"}},
  "components": [{"type": "library", "name": "curl", "bom-ref": "curl-pkg", "purl": "pkg:apk/alpine/curl@8.3.0-r0"}],
  "vulnerabilities": [
    {"id": "CVE-2023-38545", "analysis": {"state": "not_affected", "justification": "code_not_reachable"}, "affects": [{"ref": "urn:cdx:3e671687-395b-41f5-a30f-a58921a69b79/1#curl-pkg"}]},
    {"id": "CVE-2021-23337", "analysis": {"state": "resolved"}, "affects": [{"ref": "pkg:oci/node-app?repository_url=127.0.0.1:5000/fixtures/node-app"}]}
  ]}`

const csafDoc = `{
  "document": {"category": "csaf_vex", "csaf_version": "2.0", "title": "fixture",
    "publisher": {"category": "vendor", "name": "Fixture Vendor", "namespace": "https://example.com"},
    "tracking": {"id": "FIX-1", "current_release_date": "2025-01-01T00:00:00Z", "initial_release_date": "2025-01-01T00:00:00Z",
      "status": "final", "version": "1", "revision_history": [{"date": "2025-01-01T00:00:00Z", "number": "1", "summary": "x"}]}},
  "product_tree": {
    "branches": [{"category": "vendor", "name": "fixtures", "branches": [
      {"category": "product_name", "name": "curl image", "product": {"name": "curl image", "product_id": "IMG",
        "product_identification_helper": {"purl": "pkg:oci/curl@%s?repository_url=127.0.0.1:5000/fixtures/curl"}}},
      {"category": "product_name", "name": "curl", "product": {"name": "curl", "product_id": "CURL",
        "product_identification_helper": {"purl": "pkg:apk/alpine/curl@8.3.0-r0"}}},
      {"category": "product_name", "name": "lodash", "product": {"name": "lodash", "product_id": "LODASH",
        "product_identification_helper": {"purl": "pkg:npm/lodash@4.17.20"}}}]}],
    "relationships": [{"category": "default_component_of", "product_reference": "CURL", "relates_to_product_reference": "IMG",
      "full_product_name": {"name": "curl in the curl image", "product_id": "IMG:CURL"}}]},
  "vulnerabilities": [
    {"cve": "CVE-2023-38545", "product_status": {"known_not_affected": ["IMG:CURL"]},
     "flags": [{"label": "vulnerable_code_not_in_execute_path", "product_ids": ["IMG:CURL"]}]},
    {"cve": "CVE-2021-23337", "product_status": {"fixed": ["LODASH"]}}
  ]}`

// TestFormatsApplyAlike: the same decisions in OpenVEX, CycloneDX VEX and
// CSAF apply to the same subjects, and never to another digest, version,
// package or repository.
func TestFormatsApplyAlike(t *testing.T) {
	t.Parallel()
	otherDigest := curlA
	otherDigest.Digest = digestB
	otherVersion := curlA
	otherVersion.PURL = "pkg:apk/alpine/curl@8.4.0-r0?arch=x86_64&distro=3.18.0"
	otherPackage := curlA
	otherPackage.PURL = "pkg:apk/alpine/libcurl@8.3.0-r0?arch=x86_64&distro=3.18.0"
	otherRepo := lodashB
	otherRepo.Repositories = []string{"127.0.0.1:5000/fixtures/other-app"}
	otherVersionLodash := lodashB
	otherVersionLodash.PURL = "pkg:npm/lodash@4.17.19"
	tests := []struct {
		name string
		sub  Subject
		want map[string]Status // format → status ("" none)
	}{
		{"digest-pinned OS package", curlA, map[string]Status{"openvex": NotAffected, "cyclonedx": NotAffected, "csaf": NotAffected}},
		{"another digest", otherDigest, map[string]Status{}},
		{"another version", otherVersion, map[string]Status{}},
		{"another package", otherPackage, map[string]Status{}},
		{"repository-wide language package", lodashB, map[string]Status{"openvex": Fixed, "cyclonedx": Fixed, "csaf": Fixed}},
		{"another repository", otherRepo, map[string]Status{"csaf": Fixed}}, // CSAF names the package alone
		{"another lodash version", otherVersionLodash, map[string]Status{"openvex": Fixed, "cyclonedx": Fixed}},
	}
	docs := map[string]string{"openvex": openVEXDoc, "cyclonedx": cycloneDXDoc, "csaf": csafDoc}
	for format, doc := range docs {
		stmts, err := Parse([]byte(fmt.Sprintf(doc, digestA)), format+".json")
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		set := NewSet()
		set.Add(stmts...)
		for _, tt := range tests {
			got := Status("")
			if st := set.Decide(tt.sub); st != nil {
				got = st.Status
				if st.Author != "Fixture Vendor" || st.Source != format+".json" || st.Format != format {
					t.Errorf("%s/%s: author %q source %q format %q", format, tt.name, st.Author, st.Source, st.Format)
				}
			}
			if got != tt.want[format] {
				t.Errorf("%s/%s: status %q, want %q", format, tt.name, got, tt.want[format])
			}
		}
	}
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	for name, doc := range map[string]string{
		"not JSON":       "nope",
		"unknown format": `{"hello": 1}`,
		"bad status":     `{"@context": "https://openvex.dev/ns/v0.2.0", "statements": [{"vulnerability": {"name": "CVE-1"}, "status": "maybe", "products": [{"@id": "pkg:npm/x"}]}]}`,
		"no products":    `{"@context": "https://openvex.dev/ns/v0.2.0", "statements": [{"vulnerability": {"name": "CVE-1"}, "status": "fixed"}]}`,
		"cdx bad ref":    `{"bomFormat": "CycloneDX", "specVersion": "1.5", "vulnerabilities": [{"id": "CVE-1", "analysis": {"state": "not_affected"}, "affects": [{"ref": "nothing"}]}]}`,
	} {
		if _, err := Parse([]byte(doc), "doc.json"); err == nil || !strings.Contains(err.Error(), "doc.json") {
			t.Errorf("%s: error %v, want one naming doc.json", name, err)
		}
	}
}

// TestNewestStatementWins: a later statement overrides an earlier one.
func TestNewestStatementWins(t *testing.T) {
	t.Parallel()
	doc := `{"@context": "https://openvex.dev/ns/v0.2.0", "author": "a", "statements": [
	  {"vulnerability": {"name": "CVE-2023-38545"}, "status": "under_investigation", "timestamp": "2025-01-01T00:00:00Z", "products": [{"@id": "pkg:apk/alpine/curl"}]},
	  {"vulnerability": {"name": "CVE-2023-38545"}, "status": "affected", "timestamp": "2025-02-01T00:00:00Z", "products": [{"@id": "pkg:apk/alpine/curl"}]}]}`
	stmts, err := Parse([]byte(doc), "d")
	if err != nil {
		t.Fatal(err)
	}
	set := NewSet()
	set.Add(stmts[1], stmts[0])
	if st := set.Decide(curlA); st == nil || st.Status != Affected {
		t.Fatalf("decided %+v, want the newer affected statement", st)
	}
}
