package query

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/internal/fixture/fixturetest"
	"github.com/fleetscan/fleetscan/internal/sbom"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/internal/trivydb"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

func (s *scanned) config(mod func(*Config)) Config {
	c := Defaults("", s.cacheDir)
	c.NATS.URLs = s.nats.Server.URL()
	mod(&c)
	return c
}

func (s *scanned) run(t *testing.T, mod func(*Config)) *Result {
	t.Helper()
	res, err := Run(t.Context(), s.config(mod), s.src, Deps{Log: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// lines renders matches as "sample platform package version [vuln fixed]"
// (digests by sample name), sorted.
func (s *scanned) lines(res *Result) []string {
	names := map[string]string{}
	for n, p := range s.pushed {
		names[p.Digest] = n
	}
	var out []string
	for _, m := range res.Matches {
		l := fmt.Sprintf("%s %s %s %s", names[m.Digest], m.Platform, m.Package, m.Version)
		if res.CVE {
			l += fmt.Sprintf(" %s fixed=%q", m.Vulnerability, m.FixedIn)
		}
		out = append(out, l)
	}
	slices.Sort(out)
	return out
}

func (s *scanned) match(t *testing.T, res *Result, sample, platform, pkg string) Match {
	t.Helper()
	for _, m := range res.Matches {
		if m.Digest == s.pushed[sample].Digest && m.Platform == platform && m.Package == pkg {
			return m
		}
	}
	t.Fatalf("no match for %s %s %s in %q", sample, platform, pkg, s.lines(res))
	return Match{}
}

// TestQueryFixtureFleet scans the fixture fleet once, then asks it the
// incident-response questions: no query contacts the registry.
func TestQueryFixtureFleet(t *testing.T) {
	s := scanFleet(t)
	s.reg.ResetStats()
	defer func() {
		if n := s.reg.Stats().Requests; n != 0 {
			t.Errorf("queries made %d registry requests, want none", n)
		}
	}()

	t.Run("package by source name across OS families", func(t *testing.T) {
		res := s.run(t, func(c *Config) { c.Package = "openssl" })
		want := []string{
			"alpine-3.18 linux/amd64 libcrypto3 3.1.0-r4", "alpine-3.18 linux/amd64 libssl3 3.1.0-r4",
			"alpine-curl linux/amd64 libcrypto3 3.1.0-r4", "alpine-curl linux/amd64 libssl3 3.1.0-r4",
			"debian-12 linux/amd64 libssl3 3.0.9-1",
			"node-app linux/amd64 libcrypto3 3.1.4-r1", "node-app linux/amd64 libssl3 3.1.4-r1",
			"node-app linux/arm64 libcrypto3 3.1.4-r1", "node-app linux/arm64 libssl3 3.1.4-r1",
			"python-app linux/amd64 libssl3 3.0.9-1",
		}
		if got := s.lines(res); !reflect.DeepEqual(got, want) {
			t.Errorf("matches:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if res.Running != 8 || res.Indexed != 8 || res.CVE {
			t.Errorf("running %d, indexed %d, cve %v; want 8, 8, false", res.Running, res.Indexed, res.CVE)
		}
		// The same digest in three clusters: every workload is listed.
		m := s.match(t, res, "node-app", "linux/amd64", "libssl3")
		wantWL := []string{"prod-eu/web/Deployment/storefront", "prod-us/web/Deployment/storefront", "staging/web/Deployment/storefront"}
		if !reflect.DeepEqual(m.Workloads, wantWL) || !reflect.DeepEqual(m.References, []string{s.pushed["node-app"].Repository + ":1.0.0"}) {
			t.Errorf("node-app amd64: workloads %q references %q", m.Workloads, m.References)
		}
		if !strings.HasPrefix(m.PURL, "pkg:apk/alpine/libssl3@3.1.4-r1?arch=x86_64") {
			t.Errorf("purl %q", m.PURL)
		}
		arm := s.match(t, res, "node-app", "linux/arm64", "libssl3")
		if !reflect.DeepEqual(arm.Workloads, []string{"prod-eu/web/Deployment/storefront-arm"}) || !strings.Contains(arm.PURL, "arch=aarch64") ||
			arm.ManifestDigest == "" || arm.ManifestDigest == m.ManifestDigest {
			t.Errorf("node-app arm64: workloads %q purl %q manifest %q (amd64 %q)", arm.Workloads, arm.PURL, arm.ManifestDigest, m.ManifestDigest)
		}
		// An init container counts: alpine-3.18 runs in two clusters.
		if wl := s.match(t, res, "alpine-3.18", "linux/amd64", "libssl3").Workloads; !reflect.DeepEqual(wl, []string{"prod-us/web/Deployment/storefront", "staging/tools/StatefulSet/toolbox"}) {
			t.Errorf("alpine-3.18 workloads %q", wl)
		}
	})

	t.Run("version constraint", func(t *testing.T) {
		res := s.run(t, func(c *Config) { c.Package, c.Version = "lodash", "<4.17.21" })
		if got, want := s.lines(res), []string{"node-app linux/amd64 lodash 4.17.20", "node-app linux/arm64 lodash 4.17.20"}; !reflect.DeepEqual(got, want) {
			t.Errorf("lodash <4.17.21: %q, want %q", got, want)
		}
		if res := s.run(t, func(c *Config) { c.Package, c.Version = "lodash", ">=4.17.21" }); len(res.Matches) != 0 {
			t.Errorf("lodash >=4.17.21 matched %q", s.lines(res))
		}
		// Ecosystem order: apk's r-numbers, dpkg's epochs.
		if got := s.lines(s.run(t, func(c *Config) { c.Package, c.Version = "zlib1g", "<1:1.2.13.dfsg-2" })); len(got) != 2 {
			t.Errorf("zlib1g <1:1.2.13.dfsg-2: %q, want debian-12 and python-app", got)
		}
		// musl-utils is built from musl: the source name matches too.
		if got := s.lines(s.run(t, func(c *Config) { c.Package, c.Version = "musl", ">1.2.4-r0, <1.2.4_git20230717-r5" })); len(got) != 4 || !strings.HasPrefix(got[0], "node-app") {
			t.Errorf("musl range: %q, want musl and musl-utils of node-app's two platforms", got)
		}
	})

	t.Run("purl", func(t *testing.T) {
		if got := s.lines(s.run(t, func(c *Config) { c.PURL = "pkg:npm/lodash@4.17.20" })); len(got) != 2 {
			t.Errorf("pkg:npm/lodash@4.17.20: %q", got)
		}
		if got := s.lines(s.run(t, func(c *Config) { c.PURL = "pkg:pypi/flask" })); !reflect.DeepEqual(got, []string{"python-app linux/amd64 Flask 2.2.2"}) {
			t.Errorf("pkg:pypi/flask: %q", got)
		}
		if got := s.lines(s.run(t, func(c *Config) { c.PURL = "pkg:golang/golang.org/x/net"; c.Version = "<0.17.0" })); !reflect.DeepEqual(got, []string{"go-agent linux/amd64 golang.org/x/net v0.10.0"}) {
			t.Errorf("pkg:golang/golang.org/x/net <0.17.0: %q", got)
		}
	})

	t.Run("cve equals the scans' findings", func(t *testing.T) {
		running := map[contract.ImageKey]bool{}
		for _, p := range s.pushed {
			for _, pl := range p.Spec.Platforms {
				running[p.Key(pl)] = true
			}
		}
		byVuln := s.findings(t, running)
		if len(byVuln) < 20 {
			t.Fatalf("only %d vulnerabilities in the fleet's results", len(byVuln))
		}
		for id, want := range byVuln {
			res := s.run(t, func(c *Config) { c.CVE = id })
			var got []string
			for _, m := range res.Matches {
				if m.Vulnerability != id {
					t.Errorf("--cve %s matched %s", id, m.Vulnerability)
				}
				got = append(got, fmt.Sprintf("%s %s %s %s fixed=%q", m.Digest, m.Platform, m.Package, m.Version, m.FixedIn))
			}
			slices.Sort(got)
			slices.Sort(want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("--cve %s:\n%s\nthe scans found:\n%s", id, strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		}
		res := s.run(t, func(c *Config) { c.CVE = "cve-2021-23337" }) // case-insensitive
		m := s.match(t, res, "node-app", "linux/arm64", "lodash")
		if m.FixedIn != "4.17.21" || m.Severity != "HIGH" || len(m.Workloads) != 1 || res.DB == nil {
			t.Errorf("CVE-2021-23337 in node-app arm64: %+v (DB %v)", m, res.DB)
		}
		if res := s.run(t, func(c *Config) { c.CVE = "CVE-2024-0727" }); len(res.Matches) != 0 {
			t.Errorf("CVE-2024-0727 is not in the first DB, matched %q", s.lines(res))
		}
	})

	t.Run("json output", func(t *testing.T) {
		var buf bytes.Buffer
		if err := WriteJSON(&buf, s.run(t, func(c *Config) { c.CVE = "CVE-2023-38545" })); err != nil {
			t.Fatal(err)
		}
		var got []map[string]any
		if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		if len(got) != 4 {
			t.Fatalf("CVE-2023-38545: %d objects, want curl and libcurl in alpine-curl and python-app:\n%s", len(got), buf.String())
		}
		for _, o := range got {
			for _, k := range []string{"digest", "package", "version", "purl", "references", "workloads", "vulnerability", "fixed_in"} {
				if _, ok := o[k]; !ok {
					t.Errorf("object lacks %q: %v", k, o)
				}
			}
		}
		buf.Reset()
		if err := WriteJSON(&buf, s.run(t, func(c *Config) { c.Package = "nonexistent" })); err != nil || strings.TrimSpace(buf.String()) != "[]" {
			t.Errorf("no match: %q, %v; want []", buf.String(), err)
		}
		buf.Reset()
		if err := WriteJSON(&buf, s.run(t, func(c *Config) { c.Package = "flask" })); err != nil || strings.Contains(buf.String(), "fixed_in") {
			t.Errorf("a package query carries vulnerability fields: %s", buf.String())
		}
	})

	t.Run("table output", func(t *testing.T) {
		var buf bytes.Buffer
		if err := WriteTable(&buf, s.run(t, func(c *Config) { c.CVE = "CVE-2023-45853" })); err != nil {
			t.Fatal(err)
		}
		out := buf.String()
		for _, want := range []string{"VULNERABILITY", "zlib1g", "no fix (will_not_fix)", "prod-eu/payments/StatefulSet/ledger", "2 matches in 2 running digests"} {
			if !strings.Contains(out, want) {
				t.Errorf("table lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("sboms of the scan", func(t *testing.T) {
		res := s.outcome.SBOM
		if res == nil || res.SBOMs != 8 || len(res.Missing) != 0 {
			t.Fatalf("SBOM export: %+v", res)
		}
		hex := func(n string) string { return strings.TrimPrefix(s.pushed[n].Digest, "sha256:") }
		for _, name := range []string{
			"sha256-" + hex("alpine-3.18") + ".cdx.json", "sha256-" + hex("alpine-3.18") + ".spdx.json",
			"sha256-" + hex("node-app") + ".linux-amd64.cdx.json", "sha256-" + hex("node-app") + ".linux-arm64.spdx.json",
			sbom.IndexFile,
		} {
			if _, err := os.Stat(filepath.Join(s.outDir, sbom.Dir, name)); err != nil {
				t.Errorf("SBOM file: %v", err)
			}
		}
		if _, err := os.Stat(filepath.Join(s.outDir, sbom.Dir, "sha256-"+hex("node-app")+".cdx.json")); err == nil {
			t.Error("the multi-arch index has an SBOM without a platform in its name")
		}
	})

	t.Run("digest no longer running", func(t *testing.T) {
		st := store.New(s.nats.JS, s.nats.Res)
		inv, err := st.Inventory(t.Context(), "prod-us")
		if err != nil {
			t.Fatal(err)
		}
		var kept []contract.InventoryEntry
		for _, e := range inv.Entries {
			if e.Digest != s.pushed["python-app"].Digest {
				kept = append(kept, e)
			}
		}
		if len(kept) == len(inv.Entries) {
			t.Fatal("python-app not in prod-us's inventory")
		}
		inv.Entries, inv.CollectedAt = kept, time.Now().UTC()
		if err := st.PutInventory(t.Context(), inv); err != nil {
			t.Fatal(err)
		}
		if res := s.run(t, func(c *Config) { c.Package = "flask" }); len(res.Matches) != 0 {
			t.Errorf("python-app was removed from every cluster, but flask matched %q", s.lines(res))
		}
		if res := s.run(t, func(c *Config) { c.CVE = "CVE-2023-30861" }); len(res.Matches) != 0 {
			t.Errorf("python-app was removed, but its CVE matched %q", s.lines(res))
		}
		// Still indexed: only the inventories decide what runs.
		ix, _, err := s.src.Index.Load(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := ix.Image(s.pushed["python-app"].Key(contract.DefaultPlatform)); !ok {
			t.Error("python-app left the package index")
		}
	})

	t.Run("records lost: listed from the layer cache", func(t *testing.T) {
		before := s.lines(s.run(t, func(c *Config) { c.Package = "openssl" }))
		if err := s.nats.Res.Packages.Purge(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := s.nats.Res.PackageIndex.Delete(t.Context(), topology.PackageIndexSnapshot); err != nil {
			t.Fatal(err)
		}
		res := s.run(t, func(c *Config) { c.Package = "openssl" })
		if got := s.lines(res); !reflect.DeepEqual(got, before) {
			t.Errorf("after losing the records:\n%s\nbefore:\n%s", strings.Join(got, "\n"), strings.Join(before, "\n"))
		}
		if res.Indexed != res.Running || !strings.Contains(strings.Join(res.Notes, "\n"), "listed from the layer cache") {
			t.Errorf("indexed %d of %d, notes %q", res.Indexed, res.Running, res.Notes)
		}
		// The listed records were stored again: the next query needs no listing.
		if res := s.run(t, func(c *Config) { c.CVE = "CVE-2021-23337" }); len(res.Matches) != 2 || len(res.Notes) != 0 {
			t.Errorf("next query: %q, notes %q", s.lines(res), res.Notes)
		}
		// A cluster whose inventory is too old is left out, and said so.
		res = s.run(t, func(c *Config) { c.Package, c.MaxAge = "flask", time.Nanosecond })
		if res.Running != 0 || len(res.Notes) == 0 || !strings.Contains(strings.Join(res.Notes, "\n"), "left out") {
			t.Errorf("stale clusters: running %d, notes %q", res.Running, res.Notes)
		}
	})
}

// TestQueryCVEWithDBUpdate: an advisory published after the fleet was
// scanned ("an hour ago") is found with --db-update, which downloads the
// newest DB through the real download path, without pulling an image.
func TestQueryCVEWithDBUpdate(t *testing.T) {
	s := scanFleet(t)
	dbReg := fixturetest.NewRegistry(t)
	updated, err := fixture.UpdatedAdvisories()
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	now := time.Now().UTC().Truncate(time.Second)
	if _, err := fixture.BuildDB(src, updated, fixture.DBOptions{UpdatedAt: now, NextUpdate: now.Add(6 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	repo := dbReg.Ref("aquasec/trivy-db:2")
	if _, err := fixture.PushDBArtifact(t.Context(), repo, fixture.DBDir(src)); err != nil {
		t.Fatal(err)
	}
	s.reg.ResetStats()
	ask := func(update bool) *Result {
		return s.run(t, func(c *Config) {
			c.CVE, c.DBUpdate = "CVE-2024-0727", update
			c.DB.DBRepositories = []string{repo}
			c.DB.Registry.InsecureRegistries = []string{dbReg.Host}
		})
	}
	if res := ask(false); len(res.Matches) != 0 {
		t.Fatalf("before the update: %q", s.lines(res))
	}
	res := ask(true)
	want := []string{
		`alpine-3.18 linux/amd64 libcrypto3 3.1.0-r4 CVE-2024-0727 fixed="3.1.4-r5"`, `alpine-3.18 linux/amd64 libssl3 3.1.0-r4 CVE-2024-0727 fixed="3.1.4-r5"`,
		`alpine-curl linux/amd64 libcrypto3 3.1.0-r4 CVE-2024-0727 fixed="3.1.4-r5"`, `alpine-curl linux/amd64 libssl3 3.1.0-r4 CVE-2024-0727 fixed="3.1.4-r5"`,
		`debian-12 linux/amd64 libssl3 3.0.9-1 CVE-2024-0727 fixed="3.0.13-1~deb12u1"`,
		`node-app linux/amd64 libcrypto3 3.1.4-r1 CVE-2024-0727 fixed="3.1.4-r5"`, `node-app linux/amd64 libssl3 3.1.4-r1 CVE-2024-0727 fixed="3.1.4-r5"`,
		`node-app linux/arm64 libcrypto3 3.1.4-r1 CVE-2024-0727 fixed="3.1.4-r5"`, `node-app linux/arm64 libssl3 3.1.4-r1 CVE-2024-0727 fixed="3.1.4-r5"`,
		`python-app linux/amd64 libssl3 3.0.9-1 CVE-2024-0727 fixed="3.0.13-1~deb12u1"`,
	}
	if got := s.lines(res); !reflect.DeepEqual(got, want) {
		t.Errorf("after --db-update:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if res.DB == nil || !res.DB.UpdatedAt.Equal(now) {
		t.Errorf("DB used: %+v, want the one built at %s", res.DB, now)
	}
	if n := s.reg.Stats().Requests; n != 0 {
		t.Errorf("the image registry got %d requests, want none", n)
	}
	// The scans' DB is the one the query switched to.
	info, err := trivydb.Check(trivydb.Config{CacheDir: s.cacheDir, MaxDBAge: time.Hour, OpenTimeout: time.Second}, time.Now())
	if err != nil || !info.UpdatedAt.Equal(now) {
		t.Errorf("DB under --cache-dir after the update: %+v, %v", info, err)
	}

}

func TestConfigValidate(t *testing.T) {
	base := func(mod func(*Config)) Config {
		c := Defaults(t.TempDir(), t.TempDir())
		c.Package = "openssl"
		mod(&c)
		return c
	}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"nothing asked", base(func(c *Config) { c.Package = "" }), "--package, --purl or --cve"},
		{"two questions", base(func(c *Config) { c.CVE = "CVE-2024-3094" }), "one at a time"},
		{"bad purl", base(func(c *Config) { c.Package, c.PURL = "", "npm/lodash" }), "--purl"},
		{"purl version and --version", base(func(c *Config) { c.Package, c.PURL, c.Version = "", "pkg:npm/lodash@1.0.0", "<2" }), "--version"},
		{"bad constraint", base(func(c *Config) { c.Version = "~>1.0" }), "--version"},
		{"version without package", base(func(c *Config) { c.Package, c.CVE, c.Version = "", "CVE-1", "<1" }), "--version needs"},
		{"db-update without cve", base(func(c *Config) { c.DBUpdate = true }), "--db-update"},
		{"bad format", base(func(c *Config) { c.Format = "xml" }), "--format"},
		{"bad max-age", base(func(c *Config) { c.MaxAge = 0 }), "--max-age"},
		{"no state", base(func(c *Config) { c.StateDir = "" }), "--state-dir"},
		{"bad nats url", base(func(c *Config) { c.NATS.URLs = "::" }), "--nats-url"},
		{"two cves", base(func(c *Config) { c.Package, c.CVE = "", "CVE-1,CVE-2" }), "--cve"},
		{"cve without cache dir", base(func(c *Config) { c.Package, c.CVE, c.DB.CacheDir = "", "CVE-1", "" }), "--cache-dir"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate() = %v, want an error naming %s", tt.name, err, tt.want)
		}
	}
	if err := base(func(*Config) {}).Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
}
