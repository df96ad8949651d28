package scan

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"

	"github.com/package-url/packageurl-go"
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
// image: the detection a scan would run on the same packages. Groups are
// detected in parallel (parallel <= 0: one per CPU).
func DetectPackages(ctx context.Context, groups []PackageGroup, parallel int, log *zap.Logger) ([]PackageVuln, error) {
	if log == nil {
		log = zap.NewNop()
	}
	ensureTrivyLogs(log)
	if parallel <= 0 {
		parallel = runtime.GOMAXPROCS(0)
	}
	var (
		mu   sync.Mutex
		out  []PackageVuln
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, parallel)
	)
	client := vulnerability.NewClient(trivydbcfg.Config{})
	for gi := range groups {
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			found, err := detectGroup(ctx, client, groups[gi], gi)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			out = append(out, found...)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, errors.Join(errs...)
}

func detectGroup(ctx context.Context, client vulnerability.Client, g PackageGroup, gi int) ([]PackageVuln, error) {
	pkgs := make([]ftypes.Package, len(g.Packages))
	for i, c := range g.Packages {
		p := trivyPackage(c)
		// The identifier carries the package's index through detection.
		p.Identifier.UID = strconv.Itoa(i)
		if c.PURL != "" {
			if u, err := packageurl.FromString(c.PURL); err == nil {
				p.Identifier.PURL = &u
			}
		}
		pkgs[i] = p
	}
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
		target := ttypes.ScanTarget{
			Name:     "fleet",
			OS:       ftypes.OS{Family: ftypes.OSType(g.OS.Family), Name: g.OS.Name, Extended: g.OSExtended, Supplier: ftypes.Supplier(g.OSSupplier)},
			Packages: pkgs,
		}
		if r := g.Repository; r != nil {
			target.Repository = &ftypes.Repository{Family: ftypes.OSType(r.Family), Release: r.Release}
		}
		var err error
		res, _, err = ospkg.NewScanner().Scan(ctx, target, opts)
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
		pv := PackageVuln{Group: gi, Package: i, VulnerabilityID: v.VulnerabilityID, VendorIDs: v.VendorIDs,
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
