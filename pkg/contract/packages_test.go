package contract

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestImagePackagesRoundTripAndRejects(t *testing.T) {
	key := ImageKey{Digest: "sha256:" + strings.Repeat("c", 64), Platform: Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}
	rec := ImagePackages{
		SchemaVersion: PackagesSchemaVersion, ImageKey: key, Reference: "r.example/app@" + key.Digest,
		ManifestDigest: "sha256:" + strings.Repeat("d", 64), Scanner: ScannerInfo{Name: "trivy", Version: "0.74.0"},
		AnalyzedAt: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), OS: &OSInfo{Family: "debian", Name: "12.1"},
		Repository: &PackageRepository{Family: "debian", Release: "12"},
		Packages: []Package{
			{Name: "zlib1g", Version: "1:1.2.13.dfsg-1", PURL: "pkg:deb/debian/zlib1g@1.2.13.dfsg-1?epoch=1", Type: "debian", Class: ClassOSPackages,
				RawVersion: "1.2.13.dfsg", Release: "1", Epoch: 1, SrcName: "zlib", Arch: "arm64"},
			{Name: "lodash", Version: "4.17.20", PURL: "pkg:npm/lodash@4.17.20", Type: "node-pkg", Class: ClassLangPackages, Path: "app/node_modules/lodash/package.json"},
		},
	}
	data, err := rec.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeImagePackages(data)
	if err != nil || !reflect.DeepEqual(got, rec) {
		t.Fatalf("round trip: %+v %v\nwant %+v", got, err, rec)
	}
	empty, err := ImagePackages{ImageKey: key, AnalyzedAt: rec.AnalyzedAt}.Encode()
	if err != nil || !strings.Contains(string(empty), `"packages":[]`) || !strings.Contains(string(empty), `"schemaVersion":"1.0"`) {
		t.Fatalf("empty record: %s %v", empty, err)
	}

	for _, tt := range []struct {
		name, field string
		mod         func(*ImagePackages)
	}{
		{"no analysis time", "analyzedAt", func(p *ImagePackages) { p.AnalyzedAt = time.Time{} }},
		{"bad digest", "digest", func(p *ImagePackages) { p.Digest = "sha256:nope" }},
		{"bad manifest digest", "manifestDigest", func(p *ImagePackages) { p.ManifestDigest = "latest" }},
		{"unnamed package", "packages[1].name", func(p *ImagePackages) { p.Packages[1].Name = "" }},
		{"unknown class", "packages[0].class", func(p *ImagePackages) { p.Packages[0].Class = "binaries" }},
	} {
		bad := rec
		bad.Packages = append([]Package{}, rec.Packages...)
		tt.mod(&bad)
		data, err := bad.Encode()
		if err != nil {
			t.Fatal(err)
		}
		_, err = DecodeImagePackages(data)
		var de *DecodeError
		if !errors.As(err, &de) || de.Field != tt.field {
			t.Errorf("%s: %v, want a decode error on %s", tt.name, err, tt.field)
		}
	}
	if _, err := DecodeImagePackages([]byte(`{"schemaVersion":"2.0"}`)); !errors.Is(err, ErrUnsupportedVersion) {
		t.Errorf("major 2: %v", err)
	}
}
