package pkgindex

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/fleetscan/fleetscan/internal/natsembed/natstest"
	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

func digest(c byte) string { return "sha256:" + strings.Repeat(string(c), 64) }

var (
	amd64 = contract.Platform{OS: "linux", Architecture: "amd64"}
	arm64 = contract.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
)

func apk(name, version, src string) contract.Package {
	return contract.Package{Name: name, Version: version, RawVersion: version, SrcName: src, Type: "alpine", Class: contract.ClassOSPackages,
		PURL: fmt.Sprintf("pkg:apk/alpine/%s@%s?arch=x86_64&distro=3.18.0", name, version), LayerDigest: "sha256:layer-" + name}
}

func npm(name, version, path string) contract.Package {
	return contract.Package{Name: name, Version: version, RawVersion: version, Type: "node-pkg", Class: contract.ClassLangPackages,
		PURL: "pkg:npm/" + name + "@" + version, Path: path}
}

func record(d byte, p contract.Platform, pkgs ...contract.Package) contract.ImagePackages {
	return contract.ImagePackages{
		SchemaVersion: contract.PackagesSchemaVersion, ImageKey: contract.ImageKey{Digest: digest(d), Platform: p},
		Reference: "r.example/app@" + digest(d), Scanner: contract.ScannerInfo{Name: "trivy", Version: "0.74.0", Options: "o"},
		AnalyzedAt: time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC), OS: &contract.OSInfo{Family: "alpine", Name: "3.18.0"},
		Repository: &contract.PackageRepository{Family: "alpine", Release: "3.18"}, Packages: pkgs,
	}
}

// dump renders an index canonically: per image, its fields and packages.
func dump(ix *Index) []string {
	var out []string
	for _, im := range ix.sortedImages() {
		var pkgs []string
		for _, id := range im.Units {
			u := ix.Unit(id)
			pkgs = append(pkgs, fmt.Sprintf("%s@%s[%s|%s|%s]", u.Name, u.Version, u.PURL, u.SrcName, u.Path))
		}
		slices.Sort(pkgs)
		out = append(out, fmt.Sprintf("%s seq=%d ref=%s os=%v repo=%v scanner=%v at=%s: %s", im.ImageKey, im.Seq, im.Reference,
			*im.OS, *im.Repository, im.Scanner, im.AnalyzedAt.Format(time.RFC3339Nano), strings.Join(pkgs, " ")))
	}
	return out
}

func TestIndexApplySnapshotRoundTrip(t *testing.T) {
	ix := NewIndex()
	musl := apk("musl", "1.2.4-r0", "")
	ssl := apk("libssl3", "3.1.0-r4", "openssl")
	ix.Apply(record('a', amd64, musl, ssl, npm("lodash", "4.17.20", "app/node_modules/lodash/package.json")), 3)
	ix.Apply(record('a', arm64, musl, npm("lodash", "4.17.20", "app/node_modules/lodash/package.json")), 4)
	ix.Apply(record('b', amd64, musl, ssl), 5)
	if ix.Len() != 3 || ix.Units() != 3 || ix.Postings() != 7 || ix.LastSeq != 5 {
		t.Fatalf("len %d units %d postings %d lastSeq %d; want 3, 3 (the same package in two images is one unit), 7, 5", ix.Len(), ix.Units(), ix.Postings(), ix.LastSeq)
	}
	// A replaced record replaces the image's packages; the unit nobody
	// holds any more is dropped from the snapshot.
	ix.Apply(record('b', amd64, musl, apk("libssl3", "3.1.4-r5", "openssl")), 6)
	data, err := ix.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeSnapshot(data)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := dump(back), dump(ix); !reflect.DeepEqual(got, want) {
		t.Fatalf("snapshot round trip:\n got %q\nwant %q", got, want)
	}
	if back.Units() != 4 || back.LastSeq != 6 {
		t.Errorf("decoded: %d units, lastSeq %d; want 4 (libssl3 3.1.0-r4 still held by a), 6", back.Units(), back.LastSeq)
	}
	// The decoded index takes more records.
	back.Apply(record('c', amd64, ssl), 7)
	if back.Units() != 4 || back.Len() != 4 {
		t.Errorf("after apply: %d units, %d images", back.Units(), back.Len())
	}

	for _, bad := range [][]byte{nil, []byte("nonsense"), data[:len(data)/2]} {
		if _, err := DecodeSnapshot(bad); err == nil {
			t.Errorf("DecodeSnapshot(%d bytes of garbage) succeeded", len(bad))
		}
	}
}

func TestMatchers(t *testing.T) {
	ix := NewIndex()
	ix.Apply(record('a', amd64,
		apk("libssl3", "3.1.0-r4", "openssl"), apk("libcrypto3", "3.1.0-r4", "openssl"), apk("musl", "1.2.4-r0", ""),
		npm("lodash", "4.17.20", "a/package.json"), npm("@babel/core", "7.22.0", "b/package.json"),
		contract.Package{Name: "org.apache.logging.log4j:log4j-core", Version: "2.14.1", Type: "jar", Class: contract.ClassLangPackages,
			PURL: "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1"},
		contract.Package{Name: "Flask", Version: "2.2.2", Type: "python-pkg", Class: contract.ClassLangPackages, PURL: "pkg:pypi/flask@2.2.2"},
		contract.Package{Name: "zope.interface", Version: "6.0", Type: "python-pkg", Class: contract.ClassLangPackages, PURL: "pkg:pypi/zope-interface@6.0"},
	), 1)
	names := func(m Matcher) []string {
		var out []string
		ix.Each(ix.SelectUnits(m), nil, func(_ *Image, id uint32) { out = append(out, ix.Unit(id).Name) })
		slices.Sort(out)
		return out
	}
	constraint := func(s string) *Constraint {
		c, err := ParseConstraint(s)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	purl := func(s string) *PURLQuery {
		q, err := ParsePURL(s)
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	tests := []struct {
		name string
		m    Matcher
		want []string
	}{
		{"source package", NameMatcher("openssl", nil), []string{"libcrypto3", "libssl3"}},
		{"binary package", NameMatcher("libssl3", nil), []string{"libssl3"}},
		{"case-insensitive", NameMatcher("LODASH", nil), []string{"lodash"}},
		{"maven artifact id", NameMatcher("log4j-core", constraint("<2.17.1")), []string{"org.apache.logging.log4j:log4j-core"}},
		{"maven full name", NameMatcher("org.apache.logging.log4j:log4j-core", nil), []string{"org.apache.logging.log4j:log4j-core"}},
		{"version excludes", NameMatcher("log4j-core", constraint(">=2.17.1")), nil},
		{"python normalised", NameMatcher("flask", nil), []string{"Flask"}},
		{"PEP 503", NameMatcher("zope-interface", nil), []string{"zope.interface"}},
		{"scoped npm", NameMatcher("@babel/core", nil), []string{"@babel/core"}},
		{"apk version constraint", NameMatcher("openssl", constraint("<3.1.4-r5")), []string{"libcrypto3", "libssl3"}},
		{"unknown", NameMatcher("nginx", nil), nil},
		{"purl with version", purl("pkg:npm/lodash@4.17.20").Matcher(nil), []string{"lodash"}},
		{"purl other version", purl("pkg:npm/lodash@4.17.21").Matcher(nil), nil},
		{"purl constraint", purl("pkg:npm/lodash").Matcher(constraint("<4.17.21")), []string{"lodash"}},
		{"purl any namespace", purl("pkg:apk/musl").Matcher(nil), []string{"musl"}},
		{"purl namespace", purl("pkg:apk/alpine/musl").Matcher(nil), []string{"musl"}},
		{"purl wrong namespace", purl("pkg:apk/wolfi/musl").Matcher(nil), nil},
		{"purl qualifier", purl("pkg:apk/alpine/musl?arch=x86_64").Matcher(nil), []string{"musl"}},
		{"purl other qualifier", purl("pkg:apk/alpine/musl?arch=aarch64").Matcher(nil), nil},
		{"purl scoped npm", purl("pkg:npm/%40babel/core@7.22.0").Matcher(nil), []string{"@babel/core"}},
		{"purl maven", purl("pkg:maven/org.apache.logging.log4j/log4j-core").Matcher(nil), []string{"org.apache.logging.log4j:log4j-core"}},
	}
	for _, tt := range tests {
		if got := names(tt.m); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: matched %q, want %q", tt.name, got, tt.want)
		}
	}
	for _, bad := range []string{"lodash", "pkg:", "pkg:npm", "npm/lodash"} {
		if _, err := ParsePURL(bad); err == nil {
			t.Errorf("ParsePURL(%q) succeeded", bad)
		}
	}
}

func TestOSGroupsAndLangUnits(t *testing.T) {
	ix := NewIndex()
	musl, ssl := apk("musl", "1.2.4-r0", ""), apk("libssl3", "3.1.0-r4", "openssl")
	ix.Apply(record('a', amd64, musl, ssl, npm("lodash", "4.17.20", "x")), 1)
	ix.Apply(record('b', amd64, ssl, musl, npm("lodash", "4.17.20", "x"), npm("minimist", "1.2.5", "y")), 2)
	other := record('c', amd64, musl, ssl)
	other.OS = &contract.OSInfo{Family: "alpine", Name: "3.19.0"}
	ix.Apply(other, 3)
	ix.Apply(record('d', amd64, musl), 4)
	groups := ix.OSGroups(nil)
	var sizes []int
	for _, g := range groups {
		sizes = append(sizes, len(g.Images))
	}
	slices.Sort(sizes)
	if !reflect.DeepEqual(sizes, []int{1, 1, 2}) {
		t.Errorf("OS groups of sizes %v, want [1 1 2] (a and b share their OS package set; c has another release; d another set)", sizes)
	}
	lang := ix.LangUnits(func(im *Image) bool { return im.Digest != digest('b') })
	if len(lang["node-pkg"]) != 1 {
		t.Errorf("language units of the admitted images: %v, want lodash only", lang)
	}
}

func newStore(t *testing.T) (*Store, *natstest.Env) {
	t.Helper()
	env := natstest.Start(t)
	s, err := NewStore(env.Res, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return s, env
}

func TestStoreRecordsSnapshotAndDelta(t *testing.T) {
	s, env := newStore(t)
	ctx := t.Context()
	a := record('a', amd64, apk("musl", "1.2.4-r0", ""), npm("lodash", "4.17.20", "x"))
	b := record('b', arm64, apk("musl", "1.2.4-r0", ""))
	for _, r := range []contract.ImagePackages{a, b} {
		if err := s.PutPackages(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	got, ok, err := s.Packages(ctx, a.ImageKey)
	if err != nil || !ok || !reflect.DeepEqual(got, a) {
		t.Fatalf("Packages = %+v %v %v, want %+v", got, ok, err, a)
	}
	if _, ok, err := s.Packages(ctx, record('z', amd64).ImageKey); ok || err != nil {
		t.Fatalf("Packages of an unknown key = %v %v", ok, err)
	}

	ix, st, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ix.Len() != 2 || st.Delta != 2 || st.SnapshotImages != 0 {
		t.Fatalf("first load: %d images, stats %+v", ix.Len(), st)
	}
	if err := s.Save(ctx, ix); err != nil {
		t.Fatal(err)
	}

	// A replaced record and a new one arrive after the snapshot.
	a2 := a
	a2.Packages = []contract.Package{apk("musl", "1.2.4-r3", "")}
	c := record('c', amd64, npm("express", "4.18.2", "y"))
	for _, r := range []contract.ImagePackages{a2, c} {
		if err := s.PutPackages(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	ix, st, err = s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ix.Len() != 3 || st.SnapshotImages != 2 || st.Delta != 2 {
		t.Fatalf("second load: %d images, stats %+v; want 3 from a 2-image snapshot and 2 new records", ix.Len(), st)
	}
	im, _ := ix.Image(a.ImageKey)
	if len(im.Units) != 1 || ix.Unit(im.Units[0]).Version != "1.2.4-r3" {
		t.Errorf("replaced record: %v", dump(ix))
	}
	want := dump(ix)

	// Refresh compacts once the delta exceeds the threshold; the next
	// load reads the snapshot alone.
	if _, _, err := s.Refresh(ctx, 1); err != nil {
		t.Fatal(err)
	}
	ix, st, err = s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Delta != 0 || st.SnapshotImages != 3 || !reflect.DeepEqual(dump(ix), want) {
		t.Errorf("after compaction: stats %+v\n%q\nwant %q", st, dump(ix), want)
	}

	// A record that left the stream (expired, here purged) leaves the
	// index once it is older than the stream's first message.
	if err := env.Res.Packages.Purge(ctx, jetstream.WithPurgeSubject(topology.PackagesSubject(b.ImageKey))); err != nil {
		t.Fatal(err)
	}
	ix, st, err = s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, still := ix.Image(b.ImageKey); still || st.Pruned != 1 {
		t.Errorf("expired record still indexed (stats %+v)", st)
	}
}

func TestStoreLargeRecordAndUnreadable(t *testing.T) {
	s, env := newStore(t)
	s.InlineLimit = 64
	ctx := t.Context()
	var pkgs []contract.Package
	for i := range 500 {
		pkgs = append(pkgs, npm(fmt.Sprintf("pkg-%03d", i), "1.0.0", fmt.Sprintf("node_modules/pkg-%03d/package.json", i)))
	}
	big := record('a', amd64, pkgs...)
	if err := s.PutPackages(ctx, big); err != nil {
		t.Fatal(err)
	}
	raw, err := env.Res.Packages.GetLastMsgForSubject(ctx, topology.PackagesSubject(big.ImageKey))
	if err != nil || raw.Header.Get(ClaimHeader) == "" || len(raw.Data) != 0 {
		t.Fatalf("large record: claim %q, %d bytes inline, %v", raw.Header.Get(ClaimHeader), len(raw.Data), err)
	}
	// A foreign message on the records' subjects is skipped, not fatal.
	if _, err := env.JS.Publish(ctx, topology.PackagesSubjectPrefix+".sha256-x.linux-amd64", []byte("{not a record")); err != nil {
		t.Fatal(err)
	}
	ix, st, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ix.Len() != 1 || ix.Units() != 500 || st.Unreadable != 1 {
		t.Fatalf("load: %d images, %d units, stats %+v", ix.Len(), ix.Units(), st)
	}
}

func TestNewStoreRequiresResources(t *testing.T) {
	if _, err := NewStore(&topology.Resources{}, nil); err == nil {
		t.Fatal("NewStore without resources succeeded")
	}
}
