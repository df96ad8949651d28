package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// fleetSpec sizes the generated fleet.
type fleetSpec struct {
	Seed   uint64
	Images int
	// PodsPerImage is the mean number of pods running each image over all
	// clusters.
	PodsPerImage int
	// BasePadKiB / AppPadKiB are incompressible bytes added to each base
	// root layer and to each image's own layer, so layers have realistic
	// weight (files no analyzer reads still have to be fetched and
	// decompressed).
	BasePadKiB int
	AppPadKiB  int
}

var amd64 = contract.Platform{OS: "linux", Architecture: "amd64"}

// osRelease names an OS package pool: synthetic packages installed in every
// image of that release, next to the release's real packages.
type osRelease struct {
	eco     fixture.Ecosystem
	release string // advisory bucket release ("3.18", "12")
	dbPath  string // package database inside the image
	pkgs    []fixture.Package
}

// langPool is a pool of synthetic language packages with a few published
// versions each; every image picks some of them at some version.
type langPool struct {
	eco  fixture.Ecosystem
	pkgs []langPkg
}

type langPkg struct {
	name     string
	versions []string // ascending
}

// baseImage is one of the fleet's base images: its layers (bottom first) and
// which language ecosystem its applications add packages from.
type baseImage struct {
	name   string
	layers []v1.Layer
	lang   fixture.Ecosystem // "" for OS-only images
	weight int
}

// imagePlan is one generated image as the rows need it.
type imagePlan struct {
	Name       string   `json:"name"`
	Base       string   `json:"base"`
	Repository string   `json:"repository"` // path under the registry host
	Digest     string   `json:"digest"`
	Tags       []string `json:"tags"`
	Layers     []string `json:"layers"` // layer digests (compressed), bottom first
	image      v1.Image
}

// fleet is the generated world: images, their advisories and the pods.
type fleet struct {
	images   []*imagePlan
	base     fixture.Set // real advisories + synthetic
	updated  fixture.Set // base + the update generation (real + synthetic)
	clusters []clusterPods
	// synthetic advisory counts (gen 1, added in gen 2)
	synthetic, syntheticUpdate int
}

type deployment struct {
	namespace, name string
	image           *imagePlan
	tag             string
	replicas        int
}

type clusterPods struct {
	name        string
	nodes       []string
	deployments []deployment
}

// pods counts the cluster's pods.
func (c clusterPods) pods() int {
	n := 0
	for _, d := range c.deployments {
		n += d.replicas
	}
	return n
}

var words = []string{"atlas", "beacon", "cobalt", "delta", "ember", "falcon", "garnet", "harbor", "iris", "juniper",
	"kestrel", "lumen", "meridian", "nimbus", "onyx", "pylon", "quartz", "raven", "sierra", "tundra", "umbra",
	"vector", "willow", "xenon", "yarrow", "zephyr"}

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

// pad returns n KiB of seeded pseudo-random (incompressible) bytes.
func pad(r *rand.Rand, kib int) []byte {
	b := make([]byte, kib*1024)
	for i := 0; i+8 <= len(b); i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func osPool(r *rand.Rand, eco fixture.Ecosystem, release, dbPath string, n int) osRelease {
	o := osRelease{eco: eco, release: release, dbPath: dbPath}
	for i := range n {
		name := fmt.Sprintf("fb-%s-lib%02d", pick(r, words), i)
		var v string
		if eco == fixture.EcosystemAlpine {
			v = fmt.Sprintf("%d.%d.%d-r%d", 1+r.IntN(3), r.IntN(20), 2+r.IntN(8), r.IntN(4))
		} else {
			v = fmt.Sprintf("%d.%d.%d-%d", 1+r.IntN(3), r.IntN(20), 2+r.IntN(8), 1+r.IntN(4))
		}
		o.pkgs = append(o.pkgs, fixture.Package{Name: name, Version: v})
	}
	return o
}

func newLangPool(r *rand.Rand, eco fixture.Ecosystem, n int) langPool {
	p := langPool{eco: eco}
	for i := range n {
		var name string
		switch eco {
		case fixture.EcosystemNpm:
			name = fmt.Sprintf("fb-%s-js%02d", pick(r, words), i)
		case fixture.EcosystemPip:
			name = fmt.Sprintf("fb%spy%02d", pick(r, words), i)
		case fixture.EcosystemGo:
			name = fmt.Sprintf("example.com/fb/%s%02d", pick(r, words), i)
		}
		major, minor := r.IntN(4), r.IntN(30)
		if eco == fixture.EcosystemGo {
			major = 0
		}
		var vs []string
		for p := 1 + r.IntN(3); len(vs) < 3; p += 1 + r.IntN(3) {
			vs = append(vs, fmt.Sprintf("%d.%d.%d", major, minor, p))
		}
		p.pkgs = append(p.pkgs, langPkg{name: name, versions: vs})
	}
	return p
}

// appendDB appends synthetic package entries to the package database file
// of files (apk and dpkg databases are blank-line separated stanzas).
func appendDB(files []fixture.File, rel osRelease) ([]fixture.File, error) {
	var extra fixture.File
	var err error
	if rel.eco == fixture.EcosystemAlpine {
		extra, err = fixture.APKInstalled(amd64, rel.pkgs)
	} else {
		extra, err = fixture.DpkgStatus(amd64, rel.pkgs)
	}
	if err != nil {
		return nil, err
	}
	out := slices.Clone(files)
	for i, f := range out {
		if strings.TrimPrefix(f.Path, "/") == rel.dbPath {
			c := bytes.TrimRight(f.Content, "\n")
			out[i].Content = append(append(slices.Clone(c), '\n', '\n'), extra.Content...)
			return out, nil
		}
	}
	return nil, fmt.Errorf("no %s in layer", rel.dbPath)
}

// sampleLayerFiles returns the files of a layer of a fixture sample image.
func sampleLayerFiles(sample string, layer int) ([]fixture.File, error) {
	s, err := fixture.SampleImage(sample)
	if err != nil {
		return nil, err
	}
	if layer >= len(s.Layers) {
		return nil, fmt.Errorf("sample %s has %d layers", sample, len(s.Layers))
	}
	return s.Layers[layer].Files(amd64)
}

// generate builds the fleet deterministically from spec.
func generate(spec fleetSpec) (*fleet, error) {
	r := rand.New(rand.NewPCG(spec.Seed, 0x666c656574))
	alp318 := osPool(r, fixture.EcosystemAlpine, "3.18", "lib/apk/db/installed", 25)
	alp319 := osPool(r, fixture.EcosystemAlpine, "3.19", "lib/apk/db/installed", 25)
	deb12 := osPool(r, fixture.EcosystemDebian, "12", "var/lib/dpkg/status", 80)
	pools := map[fixture.Ecosystem]langPool{
		fixture.EcosystemNpm: newLangPool(r, fixture.EcosystemNpm, 60),
		fixture.EcosystemPip: newLangPool(r, fixture.EcosystemPip, 40),
		fixture.EcosystemGo:  newLangPool(r, fixture.EcosystemGo, 30),
	}

	// layer builds a layer from sample files, optionally extending its
	// package database and adding padding.
	layer := func(sample string, idx int, rel *osRelease, padName string, padKiB int) (v1.Layer, error) {
		files, err := sampleLayerFiles(sample, idx)
		if err != nil {
			return nil, err
		}
		if rel != nil {
			if files, err = appendDB(files, *rel); err != nil {
				return nil, fmt.Errorf("%s layer %d: %w", sample, idx, err)
			}
		}
		if padKiB > 0 {
			files = append(files, fixture.File{Path: "usr/lib/fleetbench/" + padName, Content: pad(r, padKiB)})
		}
		return fixture.Layer(files...)
	}
	var errs []error
	must := func(l v1.Layer, err error) v1.Layer {
		errs = append(errs, err)
		return l
	}
	// Root layers shared by several bases, as in real fleets.
	alpine318Root := must(layer("alpine-3.18", 0, &alp318, "libalpine318.so", spec.BasePadKiB))
	alpine319Root := must(layer("node-app", 0, &alp319, "libalpine319.so", spec.BasePadKiB))
	debianRoot := must(layer("debian-12", 0, &deb12, "libdebian12.so", 3*spec.BasePadKiB))
	curlLayer := must(layer("alpine-curl", 1, &alp318, "libcurl-extra.so", spec.BasePadKiB/4))
	npmLayer := must(layer("node-app", 1, nil, "node-runtime.bin", spec.BasePadKiB))
	debCurlLayer := must(layer("python-app", 1, &deb12, "libcurl-deb.so", spec.BasePadKiB/4))
	pythonLayer := must(layer("python-app", 2, nil, "python-runtime.bin", spec.BasePadKiB))
	goLayer := must(layer("go-agent", 0, nil, "go-runtime.bin", spec.BasePadKiB/2))
	if err := joinErrs(errs); err != nil {
		return nil, fmt.Errorf("build base layers: %w", err)
	}
	bases := []baseImage{
		{name: "alpine-3.18", layers: []v1.Layer{alpine318Root}, weight: 3},
		{name: "alpine-3.18-curl", layers: []v1.Layer{alpine318Root, curlLayer}, weight: 2},
		{name: "alpine-3.19", layers: []v1.Layer{alpine319Root}, weight: 2},
		{name: "node-20-alpine", layers: []v1.Layer{alpine319Root, npmLayer}, lang: fixture.EcosystemNpm, weight: 4},
		{name: "debian-12", layers: []v1.Layer{debianRoot}, weight: 2},
		{name: "python-3.11-debian", layers: []v1.Layer{debianRoot, debCurlLayer, pythonLayer}, lang: fixture.EcosystemPip, weight: 3},
		{name: "distroless-go", layers: []v1.Layer{goLayer}, lang: fixture.EcosystemGo, weight: 2},
		{name: "python-alpine", layers: []v1.Layer{alpine318Root, pythonLayer}, lang: fixture.EcosystemPip, weight: 2},
	}
	totalWeight := 0
	for _, b := range bases {
		totalWeight += b.weight
	}
	pickBase := func() baseImage {
		n := r.IntN(totalWeight)
		for _, b := range bases {
			if n < b.weight {
				return b
			}
			n -= b.weight
		}
		return bases[len(bases)-1]
	}

	f := &fleet{}
	nRepos := max(1, spec.Images*2/5)
	repoNames := make([]string, nRepos)
	repoBase := make([]baseImage, nRepos)
	for i := range nRepos {
		repoNames[i] = fmt.Sprintf("team-%s/%s-%s-%03d", pick(r, words[:8]), pick(r, words), pick(r, words), i)
		repoBase[i] = pickBase()
	}
	installed := map[fixture.Ecosystem]map[string]map[string]bool{} // eco → pkg → versions in use
	for i := range spec.Images {
		repo := i % nRepos
		minor := i / nRepos
		b := repoBase[repo]
		name := fmt.Sprintf("%s:1.%d.%d", repoNames[repo], minor, r.IntN(10))
		layers := slices.Clone(b.layers)
		var appFiles []fixture.File
		if b.lang != "" {
			pool := pools[b.lang]
			var pkgs []fixture.Package
			for _, j := range r.Perm(len(pool.pkgs))[:6+r.IntN(10)] {
				p := pool.pkgs[j]
				v := pick(r, p.versions)
				if installed[b.lang] == nil {
					installed[b.lang] = map[string]map[string]bool{}
				}
				if installed[b.lang][p.name] == nil {
					installed[b.lang][p.name] = map[string]bool{}
				}
				installed[b.lang][p.name][v] = true
				pkgs = append(pkgs, fixture.Package{Name: p.name, Version: v})
			}
			sort.Slice(pkgs, func(a, c int) bool { return pkgs[a].Name < pkgs[c].Name })
			var files []fixture.File
			var err error
			switch b.lang {
			case fixture.EcosystemNpm:
				files, err = fixture.NpmPackages("/srv/app/node_modules", pkgs)
			case fixture.EcosystemPip:
				files, err = fixture.PythonPackages("/usr/local/lib/python3.11/site-packages", pkgs)
			case fixture.EcosystemGo:
				deps := make([]fixture.Package, len(pkgs))
				for k, p := range pkgs {
					deps[k] = fixture.Package{Name: p.Name, Version: "v" + p.Version}
				}
				var elf []byte
				elf, err = fixture.GoBinary{GoVersion: "go1.22.1", Main: "example.com/fleet/" + strings.ReplaceAll(repoNames[repo], "/", "-"), Deps: deps}.ELF(amd64)
				files = []fixture.File{{Path: "usr/local/bin/app", Content: elf, Mode: 0o755}}
			}
			if err != nil {
				return nil, fmt.Errorf("image %s: %w", name, err)
			}
			appFiles = append(appFiles, files...)
		}
		appFiles = append(appFiles,
			fixture.File{Path: "etc/fleet-build", Content: fmt.Appendf(nil, "image=%s base=%s build=%d\n", name, b.name, i)},
			fixture.File{Path: "srv/app/app.bin", Content: pad(r, spec.AppPadKiB/2+r.IntN(spec.AppPadKiB+1))})
		app, err := fixture.Layer(appFiles...)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", name, err)
		}
		layers = append(layers, app)
		img, err := buildImage(name, layers)
		if err != nil {
			return nil, err
		}
		d, err := img.Digest()
		if err != nil {
			return nil, err
		}
		ip := &imagePlan{Name: name, Base: b.name, Repository: "fleet/" + repoNames[repo], Digest: d.String(), image: img}
		_, version, _ := strings.Cut(name, ":")
		ip.Tags = []string{version}
		if r.IntN(2) == 0 {
			ip.Tags = append(ip.Tags, fmt.Sprintf("1.%d", minor))
		}
		if r.IntN(4) == 0 {
			ip.Tags = append(ip.Tags, fmt.Sprintf("build-%06x", r.IntN(1<<24)))
		}
		for _, l := range layers {
			ld, err := l.Digest()
			if err != nil {
				return nil, err
			}
			ip.Layers = append(ip.Layers, ld.String())
		}
		f.images = append(f.images, ip)
	}
	// The newest version of each repository is also "latest".
	latest := map[string]*imagePlan{}
	for _, ip := range f.images {
		latest[ip.Repository] = ip
	}
	for _, ip := range latest {
		ip.Tags = append(ip.Tags, "latest")
	}

	f.clusters = placePods(r, spec, f.images)

	if err := f.advisories(r, []osRelease{alp318, alp319, deb12}, pools, installed); err != nil {
		return nil, err
	}
	return f, nil
}

func joinErrs(errs []error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// buildImage assembles an image from layers with fixed timestamps, so its
// digest depends only on the content.
func buildImage(name string, layers []v1.Layer) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	adds := make([]mutate.Addendum, len(layers))
	for i, l := range layers {
		adds[i] = mutate.Addendum{Layer: l, MediaType: types.OCILayer,
			History: v1.History{Created: v1.Time{Time: fixture.Epoch}, CreatedBy: fmt.Sprintf("fleetbench %s layer %d", name, i)}}
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = amd64.OS, amd64.Architecture
	cf.Created = v1.Time{Time: fixture.Epoch}
	cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cf.Config.Labels = map[string]string{"org.opencontainers.image.title": name}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	return img, nil
}

var clusterNames = []string{"prod-eu", "prod-us", "staging", "dev"}

// placePods spreads the images over four clusters: each image runs in one
// to four clusters as a Deployment, under one of its tags per cluster, so
// the same digest appears under different tags.
func placePods(r *rand.Rand, spec fleetSpec, images []*imagePlan) []clusterPods {
	cl := make([]clusterPods, len(clusterNames))
	for i, n := range clusterNames {
		cl[i] = clusterPods{name: n}
		for j := range 3 {
			cl[i].nodes = append(cl[i].nodes, fmt.Sprintf("%s-node-%d", n, j))
		}
	}
	// Mean clusters per image is 2.5; replicas fill PodsPerImage.
	meanReplicas := max(1, spec.PodsPerImage*2/5)
	for _, ip := range images {
		k := 1 + r.IntN(4)
		for _, c := range r.Perm(len(cl))[:k] {
			svc := strings.ReplaceAll(strings.TrimPrefix(ip.Repository, "fleet/"), "/", "-")
			cl[c].deployments = append(cl[c].deployments, deployment{
				namespace: strings.SplitN(strings.TrimPrefix(ip.Repository, "fleet/"), "/", 2)[0],
				name:      fmt.Sprintf("%s-%s", svc, strings.ReplaceAll(strings.SplitN(ip.Name, ":", 2)[1], ".", "-")),
				image:     ip,
				tag:       pick(r, ip.Tags),
				replicas:  1 + r.IntN(2*meanReplicas-1),
			})
		}
	}
	return cl
}

// advisories generates synthetic advisories for the packages in the images
// (some affect the installed versions, some do not) plus advisories for
// packages nobody runs, merged with the fixture's real advisories.
func (f *fleet) advisories(r *rand.Rand, rels []osRelease, pools map[fixture.Ecosystem]langPool, installed map[fixture.Ecosystem]map[string]map[string]bool) error {
	real1, err := fixture.BaseAdvisories()
	if err != nil {
		return err
	}
	real2, err := fixture.UpdatedAdvisories()
	if err != nil {
		return err
	}
	sevs := []string{"LOW", "MEDIUM", "MEDIUM", "HIGH", "HIGH", "CRITICAL"}
	n := 0
	published := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)
	newVuln := func(gen int) fixture.Vulnerability {
		n++
		p := published.Add(time.Duration(n) * time.Hour)
		return fixture.Vulnerability{
			ID:        fmt.Sprintf("CVE-2099-%05d", 10000+n),
			Title:     fmt.Sprintf("fleetbench synthetic vulnerability %d (generation %d)", n, gen),
			Severity:  map[string]string{"nvd": pick(r, sevs)},
			Published: &p,
		}
	}
	// bump returns an OS version with the patch component moved by d.
	bump := func(v string, d int) string {
		core, rev, _ := strings.Cut(v, "-")
		parts := strings.Split(core, ".")
		var patch int
		fmt.Sscanf(parts[2], "%d", &patch)
		return fmt.Sprintf("%s.%s.%d-%s", parts[0], parts[1], max(0, patch+d), rev)
	}
	gen := func(generation, perPkg int) fixture.Set {
		var s fixture.Set
		add := func(v fixture.Vulnerability, a fixture.Advisory) {
			a.VulnerabilityID = v.ID
			s.Vulnerabilities = append(s.Vulnerabilities, v)
			s.Advisories = append(s.Advisories, a)
		}
		for _, rel := range rels {
			for _, p := range rel.pkgs {
				for range 1 + r.IntN(perPkg) {
					a := fixture.Advisory{Ecosystem: rel.eco, Release: rel.release, Package: p.Name}
					switch x := r.IntN(10); {
					case x < 5: // fixed later: affected
						a.FixedVersion = bump(p.Version, 1+r.IntN(3))
					case x < 8: // fixed before: not affected
						a.FixedVersion = bump(p.Version, -2)
						if a.FixedVersion == p.Version {
							a.FixedVersion = bump(p.Version, 2)
						}
					default:
						if rel.eco == fixture.EcosystemDebian {
							a.Status = pick(r, []string{"affected", "will_not_fix", "fix_deferred"})
						} else {
							a.FixedVersion = bump(p.Version, 1)
						}
					}
					add(newVuln(generation), a)
				}
			}
		}
		for _, eco := range []fixture.Ecosystem{fixture.EcosystemNpm, fixture.EcosystemPip, fixture.EcosystemGo} {
			for _, p := range pools[eco].pkgs {
				if len(installed[eco][p.name]) == 0 {
					continue
				}
				for range 1 + r.IntN(perPkg) {
					// Affects the versions below one of the pool's versions
					// (or all of them).
					i := r.IntN(len(p.versions) + 1)
					var fixedAt string
					if i < len(p.versions) {
						fixedAt = p.versions[i]
					} else {
						fixedAt = bumpLang(p.versions[len(p.versions)-1])
					}
					add(newVuln(generation), fixture.Advisory{Ecosystem: eco, Package: p.name,
						VulnerableVersions: []string{"<" + fixedAt}, PatchedVersions: []string{fixedAt}})
				}
			}
		}
		return s
	}
	synth1 := gen(1, 8)
	// Advisories for packages no image runs: DB weight without findings.
	for i := range 1200 {
		eco := pick(r, []fixture.Ecosystem{fixture.EcosystemAlpine, fixture.EcosystemDebian, fixture.EcosystemNpm, fixture.EcosystemPip, fixture.EcosystemGo})
		a := fixture.Advisory{Ecosystem: eco, Package: fmt.Sprintf("fb-absent-%s-%04d", pick(r, words), i)}
		switch eco {
		case fixture.EcosystemAlpine:
			a.Release, a.FixedVersion = pick(r, []string{"3.18", "3.19"}), "1.0.1-r0"
		case fixture.EcosystemDebian:
			a.Release, a.FixedVersion = "12", "1.0.1-1"
		default:
			a.VulnerableVersions, a.PatchedVersions = []string{"<1.0.1"}, []string{"1.0.1"}
		}
		v := newVuln(1)
		a.VulnerabilityID = v.ID
		synth1.Vulnerabilities = append(synth1.Vulnerabilities, v)
		synth1.Advisories = append(synth1.Advisories, a)
	}
	synth2 := gen(2, 2)
	if f.base, err = real1.Merge(synth1); err != nil {
		return fmt.Errorf("synthetic advisories: %w", err)
	}
	upd, err := real2.Merge(synth1)
	if err != nil {
		return fmt.Errorf("synthetic advisories: %w", err)
	}
	if f.updated, err = upd.Merge(synth2); err != nil {
		return fmt.Errorf("synthetic update advisories: %w", err)
	}
	f.synthetic, f.syntheticUpdate = len(synth1.Advisories), len(synth2.Advisories)
	return nil
}

func bumpLang(v string) string {
	parts := strings.Split(v, ".")
	var patch int
	fmt.Sscanf(parts[2], "%d", &patch)
	return fmt.Sprintf("%s.%s.%d", parts[0], parts[1], patch+1)
}

// push writes every image under its tags to host (the registry itself, not
// the counting proxy, so rows count only their own traffic).
func (f *fleet) push(ctx context.Context, host string) error {
	for _, ip := range f.images {
		for _, t := range ip.Tags {
			if _, err := fixture.Push(ctx, host+"/"+ip.Repository+":"+t, ip.image); err != nil {
				return err
			}
		}
	}
	return nil
}
