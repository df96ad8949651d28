package scan

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"go.uber.org/zap"

	trivydbcfg "github.com/aquasecurity/trivy-db/pkg/db"
	dbtypes "github.com/aquasecurity/trivy-db/pkg/types"
	ospkgDetector "github.com/aquasecurity/trivy/pkg/detector/ospkg"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/result"
	"github.com/aquasecurity/trivy/pkg/scan/langpkg"
	"github.com/aquasecurity/trivy/pkg/scan/ospkg"
	ttypes "github.com/aquasecurity/trivy/pkg/types"
	"github.com/aquasecurity/trivy/pkg/vulnerability"

	"github.com/fleetscan/fleetscan/pkg/contract"
)

// PackageGroup is a set of stored packages detected together, as Trivy
// would see them in one image: the OS packages of an image with its OS and
// repository (OS detection may depend on the whole set), or language
// packages of one type (detected one by one).
type PackageGroup struct {
	// Class is contract.ClassOSPackages or contract.ClassLangPackages.
	Class string
	// OS, OSExtended, OSSupplier and Repository: OS groups only.
	OS         *contract.OSInfo
	OSExtended bool
	OSSupplier string
	Repository *contract.PackageRepository
	// Type is the language package type (lang groups only).
	Type     string
	Packages []contract.Package
	// Keys, when set, identify the packages (equal keys are the same
	// package, as the package index's unit ids): OS groups that share a
	// package are then detected together. Nil identifies them by content.
	Keys []uint32
	// Unit, with Keys and no Packages, looks packages up by key: a fleet's
	// OS groups then need not each hold a copy of their packages.
	Unit func(key uint32) *contract.Package
}

// size is the number of packages of the group.
func (g PackageGroup) size() int {
	if g.Packages == nil && g.Unit != nil {
		return len(g.Keys)
	}
	return len(g.Packages)
}

// pkg is the group's i-th package.
func (g PackageGroup) pkg(i int) *contract.Package {
	if g.Packages == nil && g.Unit != nil {
		return g.Unit(g.Keys[i])
	}
	return &g.Packages[i]
}

// materialized returns the group with its packages copied out.
func (g PackageGroup) materialized() PackageGroup {
	if g.Packages != nil || g.Unit == nil {
		return g
	}
	g.Packages = make([]contract.Package, len(g.Keys))
	for i, k := range g.Keys {
		g.Packages[i] = *g.Unit(k)
	}
	return g
}

// PackageVuln is one vulnerability detected in one package of a group.
type PackageVuln struct {
	Group, Package  int
	VulnerabilityID string
	// VendorIDs are the advisory's other identifiers (GHSA-..., DSA-...).
	VendorIDs    []string
	FixedVersion string
	Status       string
	Severity     string
}

// DetectPackages runs Trivy's OS and language detectors over stored
// packages against the open vulnerability DB (trivydb.Open), without any
// image: the detection a scan would run on the same packages. It detects
// each distinct package once where Trivy's detection allows it: the OS
// groups of one OS release (and repository) whose packages Trivy's
// standard driver for the OS family would detect — one package at a time,
// as every standard driver does — are pooled, so images built on many
// different bases still cost one detection per distinct package; a group
// a supplier driver (Seal, Root.io, RapidFort rebuilt packages) claims is
// detected on its own, as a scan would. Jobs run in parallel (parallel <=
// 0: one per CPU).
func DetectPackages(ctx context.Context, groups []PackageGroup, parallel int, log *zap.Logger) ([]PackageVuln, error) {
	if log == nil {
		log = zap.NewNop()
	}
	ensureTrivyLogs(log)
	if parallel <= 0 {
		parallel = runtime.GOMAXPROCS(0)
	}
	jobs := planDetection(ctx, groups)
	var (
		mu   sync.Mutex
		out  []PackageVuln
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, parallel)
	)
	client := vulnerability.NewClient(trivydbcfg.Config{})
	for _, j := range jobs {
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			found, err := detectGroup(ctx, client, j.group)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			for _, v := range found {
				for _, m := range j.members[v.Package] {
					pv := v
					pv.Group, pv.Package = m.group, m.index
					out = append(out, pv)
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, errors.Join(errs...)
}

// detectJob is one detection: a (possibly pooled) group, and for each of
// its packages the groups and positions it stands for.
type detectJob struct {
	group   PackageGroup
	members [][]member
}

type member struct{ group, index int }

// identity maps each package of a group to a pooling key.
func identity(g PackageGroup, i int) string {
	if g.Keys != nil {
		return strconv.FormatUint(uint64(g.Keys[i]), 10)
	}
	p := g.pkg(i)
	return strings.Join([]string{p.Name, p.Version, p.PURL, p.Type, p.Path, p.ID, p.RawVersion, p.Release, strconv.Itoa(p.Epoch), p.Arch,
		p.SrcName, p.SrcVersion, p.SrcRelease, strconv.Itoa(p.SrcEpoch), p.Modularitylabel, strings.Join(p.ContentSets, ","),
		p.BuildNvr, p.BuildArch, p.RepositoryClass, p.Relationship, strconv.FormatBool(p.Dev)}, "\x00")
}

// planDetection pools the OS groups Trivy's standard drivers detect,
// per OS release and repository; everything else is a job of its own.
func planDetection(ctx context.Context, groups []PackageGroup) []detectJob {
	var jobs []detectJob
	alone := func(gi int) {
		j := detectJob{group: groups[gi].materialized(), members: make([][]member, groups[gi].size())}
		for i := range j.members {
			j.members[i] = []member{{gi, i}}
		}
		jobs = append(jobs, j)
	}
	pools := map[string][]int{}
	var order []string
	probed := map[string]bool{} // OS context + package → standard driver
	for gi, g := range groups {
		if g.Class != contract.ClassOSPackages || g.OS == nil {
			alone(gi)
			continue
		}
		k := osContext(g)
		if !eachStandard(ctx, g, k, probed) {
			alone(gi)
			continue
		}
		if _, ok := pools[k]; !ok {
			order = append(order, k)
		}
		pools[k] = append(pools[k], gi)
	}
	for _, k := range order {
		members := pools[k]
		if len(members) == 1 {
			alone(members[0])
			continue
		}
		first := groups[members[0]]
		pooled := PackageGroup{Class: first.Class, OS: first.OS, OSExtended: first.OSExtended, OSSupplier: first.OSSupplier, Repository: first.Repository}
		j := detectJob{}
		at := map[string]int{}
		for _, gi := range members {
			for i := range groups[gi].size() {
				id := identity(groups[gi], i)
				u, ok := at[id]
				if !ok {
					u = len(pooled.Packages)
					at[id] = u
					pooled.Packages = append(pooled.Packages, *groups[gi].pkg(i))
					j.members = append(j.members, nil)
				}
				j.members[u] = append(j.members[u], member{gi, i})
			}
		}
		// The pool must resolve to the standard driver too; else each
		// group is detected as a scan of its image would be.
		if !standardDriver(ctx, pooled) {
			for _, gi := range members {
				alone(gi)
			}
			continue
		}
		j.group = pooled
		jobs = append(jobs, j)
	}
	return jobs
}

// eachStandard reports whether the standard driver would detect each of
// the group's packages on its own (memoised per OS context and package).
// Suppliers claim a package set by what some package is (Seal's "seal-"
// names, Root.io's version suffixes) or by the OS alone, so a set none of
// whose packages is claimed is not claimed either; a supplier that counts
// packages is caught by the probe of the pooled set, which then falls
// back to detecting each group alone.
func eachStandard(ctx context.Context, g PackageGroup, osKey string, probed map[string]bool) bool {
	for i := range g.size() {
		k := osKey + "\x01" + identity(g, i)
		std, ok := probed[k]
		if !ok {
			one := g
			one.Packages, one.Keys, one.Unit = []contract.Package{*g.pkg(i)}, nil, nil
			std = standardDriver(ctx, one)
			probed[k] = std
		}
		if !std {
			return false
		}
	}
	return true
}

func osContext(g PackageGroup) string {
	k := g.OS.Family + "\x00" + g.OS.Name + "\x00" + strconv.FormatBool(g.OSExtended) + "\x00" + g.OSSupplier
	if r := g.Repository; r != nil {
		k += "\x00" + r.Family + "\x00" + r.Release
	}
	return k
}

// probeDriver stands in for the OS family's standard driver, to learn
// whether Trivy would use it for a package set (or a supplier's driver).
type probeDriver struct{ used *bool }

func (p probeDriver) Detect(context.Context, string, *ftypes.Repository, []ftypes.Package) ([]ttypes.DetectedVulnerability, error) {
	*p.used = true
	return nil, nil
}

func (p probeDriver) IsSupportedVersion(context.Context, ftypes.OSType, string) bool { return true }

// standardDriver reports whether Trivy detects an OS group's packages with
// the standard driver of its OS family (no supplier driver claims them):
// Trivy resolves the driver for the group with the standard one replaced
// by a probe, and the probe is asked to detect. (When a supplier claims
// the group, its driver answers instead, with a real detection: the DB
// must be open.)
func standardDriver(ctx context.Context, g PackageGroup) bool {
	target := osTarget(g, trivyPackages(g))
	used := false
	fam := ftypes.OSType(g.OS.Family)
	det, err := ospkgDetector.NewDetector(target, ospkgDetector.WithDriver(fam, probeDriver{used: &used}))
	if err != nil {
		return false
	}
	if _, _, err := det.Detect(ctx); err != nil {
		return false
	}
	return used
}

func trivyPackages(g PackageGroup) []ftypes.Package {
	pkgs := make([]ftypes.Package, len(g.Packages))
	for i, c := range g.Packages {
		p := trivyPackage(c)
		// The identifier carries the package's index through detection,
		// and the ID keeps Trivy's filter from merging the findings of
		// distinct packages that look alike (the same package of two
		// architectures in a pool): its duplicate key is the package ID,
		// name, version and path. Detection does not read the ID.
		p.Identifier.UID = strconv.Itoa(i)
		p.ID = c.ID + "#" + strconv.Itoa(i)
		// No PURL: neither driver resolution nor detection reads it, and
		// parsing one per package would dominate a fleet-wide query.
		pkgs[i] = p
	}
	return pkgs
}

func osTarget(g PackageGroup, pkgs []ftypes.Package) ttypes.ScanTarget {
	target := ttypes.ScanTarget{
		Name:     "fleet",
		OS:       ftypes.OS{Family: ftypes.OSType(g.OS.Family), Name: g.OS.Name, Extended: g.OSExtended, Supplier: ftypes.Supplier(g.OSSupplier)},
		Packages: pkgs,
	}
	if r := g.Repository; r != nil {
		target.Repository = &ftypes.Repository{Family: ftypes.OSType(r.Family), Release: r.Release}
	}
	return target
}

func detectGroup(ctx context.Context, client vulnerability.Client, g PackageGroup) ([]PackageVuln, error) {
	pkgs := trivyPackages(g)
	opts := ttypes.ScanOptions{
		PkgTypes:            []string{ttypes.PkgTypeOS, ttypes.PkgTypeLibrary},
		PkgRelationships:    ftypes.Relationships,
		Scanners:            ttypes.Scanners{ttypes.VulnerabilityScanner},
		VulnSeveritySources: []dbtypes.SourceID{"auto"},
	}
	var res ttypes.Result
	switch g.Class {
	case contract.ClassOSPackages:
		if g.OS == nil {
			return nil, nil
		}
		var err error
		res, _, err = ospkg.NewScanner().Scan(ctx, osTarget(g, pkgs), opts)
		if errors.Is(err, ospkgDetector.ErrUnsupportedOS) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("detect %s %s packages: %w", g.OS.Family, g.OS.Name, err)
		}
	case contract.ClassLangPackages:
		target := ttypes.ScanTarget{Name: "fleet", Applications: []ftypes.Application{{Type: ftypes.LangType(g.Type), Packages: pkgs}}}
		results, err := langpkg.NewScanner().Scan(ctx, target, opts)
		if err != nil {
			return nil, fmt.Errorf("detect %s packages: %w", g.Type, err)
		}
		for _, r := range results {
			res.Vulnerabilities = append(res.Vulnerabilities, r.Vulnerabilities...)
		}
	default:
		return nil, fmt.Errorf("package group class %q", g.Class)
	}
	if len(res.Vulnerabilities) == 0 {
		return nil, nil
	}
	// As a scan does: details from the DB, then Trivy's filter (all
	// severities), which also drops duplicate advisories.
	client.FillInfo(res.Vulnerabilities, opts.VulnSeveritySources)
	if err := result.FilterResult(ctx, &res, result.IgnoreConfig{}, result.FilterOptions{Severities: allSeverities()}); err != nil {
		return nil, fmt.Errorf("filter detected vulnerabilities: %w", err)
	}
	out := make([]PackageVuln, 0, len(res.Vulnerabilities))
	for _, v := range res.Vulnerabilities {
		i, err := strconv.Atoi(v.PkgIdentifier.UID)
		if err != nil || i < 0 || i >= len(g.Packages) {
			return nil, fmt.Errorf("detected %s in a package Trivy did not keep the identity of (%q)", v.VulnerabilityID, v.PkgName)
		}
		pv := PackageVuln{Package: i, VulnerabilityID: v.VulnerabilityID, VendorIDs: v.VendorIDs,
			FixedVersion: v.FixedVersion, Status: v.Status.String(), Severity: v.Severity}
		if v.Status == dbtypes.StatusUnknown {
			pv.Status = ""
		}
		out = append(out, pv)
	}
	return out, nil
}

// allSeverities is every severity: the CLI's default (an empty list
// would drop every finding).
func allSeverities() []dbtypes.Severity {
	out := make([]dbtypes.Severity, 0, len(dbtypes.SeverityNames))
	for i := range dbtypes.SeverityNames {
		out = append(out, dbtypes.Severity(i))
	}
	return out
}
