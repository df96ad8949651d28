package query

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/internal/natsembed"
	"github.com/fleetscan/fleetscan/internal/pkgindex"
	"github.com/fleetscan/fleetscan/internal/rss"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// The benchmark fleet: 10,000 image keys holding 100 packages each — one
// million (image, package) pairs. As in real fleets, images share bases:
// 200 distinct OS package sets of 40 packages (Alpine 3.18/3.19, Debian
// 12; the vulnerable openssl and zlib of the fixture among them), and 60
// language packages per image drawn from 20,000 distinct npm and PyPI
// package versions (lodash 4.17.20 in one image in ten). 10 clusters run
// them, each digest in one or two.
const (
	benchImages   = 10_000
	benchOSSets   = 200
	benchOSPkgs   = 40
	benchLangPkgs = 60
	benchClusters = 10
)

type benchFleet struct {
	stateDir string
	cacheDir string
	postings int
	units    int
	snapshot int
}

// benchShape is how the images' OS package sets are made.
type benchShape int

const (
	// sharedBases: 200 base OS package sets, each shared by about 50
	// images (images built on a few bases).
	sharedBases benchShape = iota
	// ownPackages: every image has its own OS package set: one of 20
	// bases plus 5 packages it added, from a vocabulary of 2,000 OS
	// package versions (10,000 distinct sets).
	ownPackages
)

var (
	benchMu    sync.Mutex
	benchData  = map[benchShape]*benchFleet{}
	benchDirs  []string
	benchSetup = map[benchShape]error{}
)

// benchOSSet builds OS package set i.
func benchOSSet(i int, r *rand.Rand) (*contract.OSInfo, []contract.Package) {
	var os *contract.OSInfo
	var pkgs []contract.Package
	switch {
	case i%4 == 3:
		os = &contract.OSInfo{Family: "debian", Name: "12.1"}
		pkgs = append(pkgs,
			contract.Package{Name: "libssl3", Version: "3.0.9-1", RawVersion: "3.0.9", Release: "1", SrcName: "openssl", SrcVersion: "3.0.9", SrcRelease: "1", Arch: "amd64"},
			contract.Package{Name: "zlib1g", Version: "1:1.2.13.dfsg-1", RawVersion: "1.2.13.dfsg", Release: "1", Epoch: 1, SrcName: "zlib", SrcVersion: "1.2.13.dfsg", SrcRelease: "1", SrcEpoch: 1, Arch: "amd64"},
			contract.Package{Name: "libc6", Version: "2.36-9+deb12u1", RawVersion: "2.36", Release: "9+deb12u1", SrcName: "glibc", SrcVersion: "2.36", SrcRelease: "9+deb12u1", Arch: "amd64"})
	default:
		rel, ssl := "3.18.0", "3.1.0-r4"
		if i%2 == 1 {
			rel, ssl = "3.19.0", "3.1.4-r1"
		}
		os = &contract.OSInfo{Family: "alpine", Name: rel}
		pkgs = append(pkgs,
			contract.Package{Name: "libssl3", Version: ssl, RawVersion: ssl, SrcName: "openssl", SrcVersion: ssl, Arch: "x86_64"},
			contract.Package{Name: "libcrypto3", Version: ssl, RawVersion: ssl, SrcName: "openssl", SrcVersion: ssl, Arch: "x86_64"},
			contract.Package{Name: "busybox", Version: "1.36.0-r9", RawVersion: "1.36.0-r9", SrcName: "busybox", SrcVersion: "1.36.0-r9", Arch: "x86_64"})
	}
	for len(pkgs) < benchOSPkgs {
		n := fmt.Sprintf("lib%s%d", []string{"xml", "png", "ffi", "uv", "yaml", "zstd", "lz4", "pcre", "idn", "gmp"}[r.IntN(10)], r.IntN(400))
		v := fmt.Sprintf("%d.%d.%d-r%d", r.IntN(4), r.IntN(20), r.IntN(10), r.IntN(5))
		pkgs = append(pkgs, contract.Package{Name: n, Version: v, RawVersion: v, SrcName: n, SrcVersion: v, Arch: "x86_64"})
	}
	for j := range pkgs {
		p := &pkgs[j]
		p.Class, p.Type = contract.ClassOSPackages, os.Family
		kind, ns := "apk", "alpine"
		if os.Family == "debian" {
			kind, ns = "deb", "debian"
		}
		p.PURL = fmt.Sprintf("pkg:%s/%s/%s@%s?arch=%s&distro=%s-%s", kind, ns, p.Name, p.Version, p.Arch, ns, os.Name)
		p.ID = p.Name + "@" + p.Version
	}
	return os, pkgs
}

// benchLangPool is the pool of distinct language package versions.
func benchLangPool(r *rand.Rand) []contract.Package {
	var pool []contract.Package
	for i := range 20_000 {
		typ, purlType := "node-pkg", "npm"
		if i%4 == 0 {
			typ, purlType = "python-pkg", "pypi"
		}
		name := fmt.Sprintf("pkg-%04d", i/5)
		v := fmt.Sprintf("%d.%d.%d", r.IntN(5), r.IntN(30), i%5)
		pool = append(pool, contract.Package{Name: name, Version: v, RawVersion: v, ID: name + "@" + v, Type: typ,
			Class: contract.ClassLangPackages, PURL: fmt.Sprintf("pkg:%s/%s@%s", purlType, name, v),
			Path: fmt.Sprintf("app/node_modules/%s/package.json", name)})
	}
	return pool
}

// setupBenchFleet writes the fleet's package records, the index snapshot
// and the inventories into a JetStream file store under a state
// directory, as `fleetscan scan` leaves it.
func setupBenchFleet(b *testing.B, shape benchShape) (*benchFleet, error) {
	benchMu.Lock()
	defer benchMu.Unlock()
	if f, ok := benchData[shape]; ok || benchSetup[shape] != nil {
		return f, benchSetup[shape]
	}
	f, err := buildBenchFleet(b, shape)
	benchData[shape], benchSetup[shape] = f, err
	return f, err
}

func buildBenchFleet(b *testing.B, shape benchShape) (*benchFleet, error) {
	// FLEETSCAN_QUERY_BENCH_DIR keeps the state for timing the binary:
	// fleetscan query --state-dir $DIR/<shape> --cache-dir $DIR/<shape>/trivy ...
	var dir string
	if keep := os.Getenv("FLEETSCAN_QUERY_BENCH_DIR"); keep != "" {
		dir = filepath.Join(keep, fmt.Sprintf("shape-%d", shape))
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	} else {
		var err error
		if dir, err = os.MkdirTemp("", "fleetscan-query-bench-"); err != nil {
			return nil, err
		}
		benchDirs = append(benchDirs, dir)
	}
	f := &benchFleet{stateDir: dir, cacheDir: filepath.Join(dir, "trivy")}
	set, err := fixture.BaseAdvisories()
	if err != nil {
		return nil, err
	}
	if _, err := fixture.BuildDB(f.cacheDir, set, fixture.DBOptions{}); err != nil {
		return nil, err
	}
	srv, err := natsembed.Start(natsembed.Config{StoreDir: filepath.Join(dir, "jetstream"), DontListen: true}, zap.NewNop())
	if err != nil {
		return nil, err
	}
	defer srv.Shutdown()
	nc, err := nats.Connect("", srv.InProcessOption())
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	res, err := topology.Ensure(ctx, js, topology.Defaults())
	if err != nil {
		return nil, err
	}
	idx, err := pkgindex.NewStore(res, zap.NewNop())
	if err != nil {
		return nil, err
	}
	r := rand.New(rand.NewPCG(19, 2026))
	type osSet struct {
		os   *contract.OSInfo
		pkgs []contract.Package
	}
	nSets := benchOSSets
	if shape == ownPackages {
		nSets = 20
	}
	sets := make([]osSet, nSets)
	for i := range sets {
		sets[i].os, sets[i].pkgs = benchOSSet(i, r)
	}
	var vocabulary []contract.Package
	for i := range 2000 {
		_, pkgs := benchOSSet(i%4*2, r) // Alpine 3.18 package versions
		vocabulary = append(vocabulary, pkgs[3+i%(benchOSPkgs-3)])
	}
	pool := benchLangPool(r)
	lodash := contract.Package{Name: "lodash", Version: "4.17.20", RawVersion: "4.17.20", ID: "lodash@4.17.20", Type: "node-pkg",
		Class: contract.ClassLangPackages, PURL: "pkg:npm/lodash@4.17.20", Path: "app/node_modules/lodash/package.json"}
	invs := make([]contract.Inventory, benchClusters)
	now := time.Now().UTC()
	for c := range invs {
		invs[c] = contract.Inventory{RunID: "bench", Cycle: "bench", Cluster: fmt.Sprintf("cluster-%02d", c), CollectedAt: now}
	}
	start := time.Now()
	for i := range benchImages {
		s := sets[r.IntN(len(sets))]
		rec := contract.ImagePackages{
			ImageKey:   contract.ImageKey{Digest: fmt.Sprintf("sha256:%064x", i+1), Platform: contract.DefaultPlatform},
			Scanner:    contract.ScannerInfo{Name: "trivy", Version: "0.74.0", Options: "bench"},
			AnalyzedAt: now, OS: s.os, Packages: append([]contract.Package{}, s.pkgs...),
		}
		if shape == ownPackages {
			rec.Packages = rec.Packages[:benchOSPkgs-5]
			for range 5 {
				p := vocabulary[r.IntN(len(vocabulary))]
				p.Type, p.PURL = s.os.Family, strings.Replace(p.PURL, "distro=alpine-3.18.0", "distro="+s.os.Family+"-"+s.os.Name, 1)
				rec.Packages = append(rec.Packages, p)
			}
		}
		rec.Reference = fmt.Sprintf("registry.example/team-%d/app-%d@%s", i%50, i, rec.Digest)
		for len(rec.Packages) < benchOSPkgs+benchLangPkgs {
			if len(rec.Packages) == benchOSPkgs && i%10 == 0 {
				rec.Packages = append(rec.Packages, lodash)
				continue
			}
			rec.Packages = append(rec.Packages, pool[r.IntN(len(pool))])
		}
		f.postings += len(rec.Packages)
		if err := idx.PutPackages(ctx, rec); err != nil {
			return nil, err
		}
		for _, c := range []int{i % benchClusters, (i * 7) % benchClusters} {
			invs[c].Entries = append(invs[c].Entries, contract.InventoryEntry{
				Namespace: fmt.Sprintf("team-%d", i%50), Pod: fmt.Sprintf("app-%d-0", i), Container: "app",
				ContainerKind: contract.ContainerRegular, Workload: contract.Workload{Kind: "Deployment", Name: fmt.Sprintf("app-%d", i)},
				Image: fmt.Sprintf("registry.example/team-%d/app-%d:v1", i%50, i), Digest: rec.Digest, Platform: rec.Platform,
				Resolution: contract.ResolvedStatus,
			})
			invs[c].Pods++
		}
	}
	st := store.New(js, res)
	for _, inv := range invs {
		if err := st.PutInventory(ctx, inv); err != nil {
			return nil, err
		}
	}
	stored := time.Since(start)
	ix, lst, err := idx.Load(ctx)
	if err != nil {
		return nil, err
	}
	if err := idx.Save(ctx, ix); err != nil {
		return nil, err
	}
	data, err := ix.Encode()
	if err != nil {
		return nil, err
	}
	f.units, f.snapshot, f.postings = ix.Units(), len(data), ix.Postings()
	osGroups := len(ix.OSGroups(nil))
	b.Logf("bench fleet: %d images, %d distinct OS package sets, %d postings, %d distinct packages, snapshot %.1f MiB; stored in %s, full rebuild from the records %s",
		ix.Len(), osGroups, f.postings, f.units, float64(f.snapshot)/(1<<20), stored.Round(time.Millisecond), lst.Took.Round(time.Millisecond))
	return f, nil
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range benchDirs {
		_ = os.RemoveAll(d)
	}
	os.Exit(code)
}

// benchQuery runs one query per iteration the way `fleetscan query
// --state-dir` does: open the state (embedded NATS on its file store), load
// the inventories and the index, answer; nothing is cached between
// iterations.
func benchQuery(b *testing.B, shape benchShape, mod func(*Config), wantMatches int) {
	f, err := setupBenchFleet(b, shape)
	if err != nil {
		b.Fatal(err)
	}
	cfg := Defaults(f.stateDir, f.cacheDir)
	mod(&cfg)
	var matches int
	var took time.Duration
	for b.Loop() {
		js, closeState, err := Connect(b.Context(), cfg, zap.NewNop())
		if err != nil {
			b.Fatal(err)
		}
		src, err := OpenResources(b.Context(), js, zap.NewNop())
		if err != nil {
			b.Fatal(err)
		}
		res, err := Run(b.Context(), cfg, src, Deps{})
		if err != nil {
			b.Fatal(err)
		}
		matches, took = len(res.Matches), res.Took
		closeState()
	}
	if matches < wantMatches {
		b.Fatalf("%d matches, want at least %d", matches, wantMatches)
	}
	b.ReportMetric(float64(matches), "matches")
	b.ReportMetric(float64(f.postings), "packages")
	b.ReportMetric(took.Seconds()*1000, "query-ms")
	if peak, err := rss.Peak(); err == nil {
		b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
	}
	runtime.GC()
}

// BenchmarkQueryPackage10k: `fleetscan query --package openssl` over
// 10,000 digests / 1,000,000 packages (target: under 2 s).
func BenchmarkQueryPackage10k(b *testing.B) {
	benchQuery(b, sharedBases, func(c *Config) { c.Package = "openssl" }, benchImages)
}

// BenchmarkQueryPackageVersion10k: --package lodash --version "<4.17.21".
func BenchmarkQueryPackageVersion10k(b *testing.B) {
	benchQuery(b, sharedBases, func(c *Config) { c.Package, c.Version = "lodash", "<4.17.21" }, benchImages/10)
}

// BenchmarkQueryCVE10k: `fleetscan query --cve CVE-2023-5363` (openssl)
// over the same fleet: detection with the DB over every running image's
// packages (target: under 2 s).
func BenchmarkQueryCVE10k(b *testing.B) {
	benchQuery(b, sharedBases, func(c *Config) { c.CVE = "CVE-2023-5363" }, benchImages/2)
}

// BenchmarkQueryCVE10kOwnPackages: the same CVE query when every image has
// its own OS package set (10,000 distinct sets): OS detection is pooled
// per release, one detection per distinct package.
func BenchmarkQueryCVE10kOwnPackages(b *testing.B) {
	benchQuery(b, ownPackages, func(c *Config) { c.CVE = "CVE-2023-5363" }, benchImages/2)
}
