package scan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"go.uber.org/zap"

	trivydbcfg "github.com/aquasecurity/trivy-db/pkg/db"
	tcache "github.com/aquasecurity/trivy/pkg/cache"
	"github.com/aquasecurity/trivy/pkg/fanal/applier"
	"github.com/aquasecurity/trivy/pkg/fanal/artifact"
	tname "github.com/aquasecurity/trivy/pkg/fanal/image/name"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	tscan "github.com/aquasecurity/trivy/pkg/scan"
	"github.com/aquasecurity/trivy/pkg/scan/langpkg"
	"github.com/aquasecurity/trivy/pkg/scan/local"
	"github.com/aquasecurity/trivy/pkg/scan/ospkg"
	"github.com/aquasecurity/trivy/pkg/scan/utils"
	ttypes "github.com/aquasecurity/trivy/pkg/types"
	"github.com/aquasecurity/trivy/pkg/vulnerability"

	"github.com/fleetscan/fleetscan/internal/layercache"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// osRecorder wraps the OS package scanner of one scan to keep what Trivy's
// report leaves out: the OS package repository of the target (Alpine's
// /etc/apk/repositories), which detection prefers over the OS release.
type osRecorder struct {
	ospkg.Scanner

	mu   sync.Mutex
	os   ftypes.OS
	repo *ftypes.Repository
	seen bool
}

func (r *osRecorder) Scan(ctx context.Context, target ttypes.ScanTarget, opts ttypes.ScanOptions) (ttypes.Result, bool, error) {
	r.mu.Lock()
	r.os, r.seen = target.OS, true
	if target.Repository != nil {
		repo := *target.Repository
		r.repo = &repo
	}
	r.mu.Unlock()
	return r.Scanner.Scan(ctx, target, opts)
}

// imagePackages is the package record of a Trivy report (its image key is
// the caller's to set). The report's results list every package, whether
// or not it is vulnerable.
func imagePackages(rep ttypes.Report, rec *osRecorder, scanner contract.ScannerInfo, manifestDigest string, now time.Time) *contract.ImagePackages {
	p := &contract.ImagePackages{
		SchemaVersion:  contract.PackagesSchemaVersion,
		Reference:      rep.ArtifactName,
		ManifestDigest: manifestDigest,
		Scanner:        scanner,
		AnalyzedAt:     now.UTC(),
		OS:             osOf(rep),
		Packages:       []contract.Package{},
	}
	if rec != nil {
		rec.mu.Lock()
		if rec.seen {
			p.OSExtended = rec.os.Extended
			p.OSSupplier = string(rec.os.Supplier)
		}
		if rec.repo != nil && (rec.repo.Family != "" || rec.repo.Release != "") {
			p.Repository = &contract.PackageRepository{Family: string(rec.repo.Family), Release: rec.repo.Release}
		}
		rec.mu.Unlock()
	}
	for _, r := range rep.Results {
		var class string
		switch r.Class {
		case ttypes.ClassOSPkg:
			class = contract.ClassOSPackages
		case ttypes.ClassLangPkg:
			class = contract.ClassLangPackages
		default:
			continue
		}
		for _, pkg := range r.Packages {
			if pkg.Name == "" {
				continue
			}
			path := pkg.FilePath
			if path == "" && class == contract.ClassLangPackages {
				path = r.Target
			}
			p.Packages = append(p.Packages, contractPackage(pkg, class, string(r.Type), path))
		}
	}
	return p
}

// contractPackage maps a Trivy package to the wire record.
func contractPackage(p ftypes.Package, class, typ, path string) contract.Package {
	c := contract.Package{
		Name:            p.Name,
		Version:         p.Version,
		Type:            typ,
		Class:           class,
		Path:            path,
		ID:              p.ID,
		RawVersion:      p.Version,
		Release:         p.Release,
		Epoch:           p.Epoch,
		Arch:            p.Arch,
		SrcName:         p.SrcName,
		SrcVersion:      p.SrcVersion,
		SrcRelease:      p.SrcRelease,
		SrcEpoch:        p.SrcEpoch,
		Modularitylabel: p.Modularitylabel,
		RepositoryClass: string(p.Repository.Class),
		Dev:             p.Dev,
		LayerDigest:     p.Layer.Digest,
		LayerDiffID:     p.Layer.DiffID,
	}
	if class == contract.ClassOSPackages {
		c.Version = utils.FormatVersion(p)
	}
	if p.Identifier.PURL != nil {
		c.PURL = p.Identifier.PURL.String()
	}
	if p.Relationship != ftypes.RelationshipUnknown {
		c.Relationship = p.Relationship.String()
	}
	if b := p.BuildInfo; b != nil {
		c.ContentSets, c.BuildNvr, c.BuildArch = b.ContentSets, b.Nvr, b.Arch
	}
	return c
}

// trivyPackage rebuilds the Trivy package detection reads from a record.
func trivyPackage(c contract.Package) ftypes.Package {
	p := ftypes.Package{
		ID:              c.ID,
		Name:            c.Name,
		Version:         c.RawVersion,
		Release:         c.Release,
		Epoch:           c.Epoch,
		Arch:            c.Arch,
		SrcName:         c.SrcName,
		SrcVersion:      c.SrcVersion,
		SrcRelease:      c.SrcRelease,
		SrcEpoch:        c.SrcEpoch,
		Modularitylabel: c.Modularitylabel,
		Repository:      ftypes.PackageRepository{Class: ftypes.RepositoryClass(c.RepositoryClass)},
		Dev:             c.Dev,
		FilePath:        c.Path,
		Layer:           ftypes.Layer{Digest: c.LayerDigest, DiffID: c.LayerDiffID},
	}
	if p.Version == "" {
		p.Version = c.Version
	}
	if c.Relationship != "" {
		if rel, err := ftypes.NewRelationship(c.Relationship); err == nil {
			p.Relationship = rel
		}
	}
	if len(c.ContentSets) > 0 || c.BuildNvr != "" || c.BuildArch != "" {
		p.BuildInfo = &ftypes.BuildInfo{ContentSets: c.ContentSets, Nvr: c.BuildNvr, Arch: c.BuildArch}
	}
	return p
}

// manifestDigestOf is the digest of the image manifest Trivy read: for a
// multi-arch index, the platform's manifest (not the index).
func manifestDigestOf(img v1.Image) string {
	d, err := img.Digest()
	if err != nil {
		return ""
	}
	return d.String()
}

// storedReference rebuilds, from a recorded analysis, what the image
// artifact's Inspect returned when the image was pulled.
func storedReference(a layercache.Analysis) artifact.Reference {
	meta := artifact.ImageMetadata{ID: a.ImageID, DiffIDs: a.DiffIDs, RepoTags: a.RepoTags, RepoDigests: a.RepoDigests}
	if ref, err := tname.ParseReference(a.Reference); err == nil {
		meta.Reference = ref
	}
	if len(a.Config) > 0 {
		var cfg v1.ConfigFile
		if err := json.Unmarshal(a.Config, &cfg); err == nil {
			meta.ConfigFile = cfg
		}
	}
	return artifact.Reference{
		Name: a.Reference, Type: ftypes.TypeContainerImage, ID: a.ArtifactID, BlobIDs: a.BlobIDs,
		ImageMetadata: meta,
	}
}

// analysisOf records what an image artifact's Inspect returned, so the
// image can be rescanned, listed or described later without its registry.
func analysisOf(ref string, art artifact.Reference, scanner contract.ScannerInfo, manifestDigest string, now time.Time) layercache.Analysis {
	a := layercache.Analysis{
		Reference: ref, ArtifactID: art.ID, BlobIDs: art.BlobIDs,
		ImageID: art.ImageMetadata.ID, DiffIDs: art.ImageMetadata.DiffIDs,
		Scanner: scanner, StoredAt: now.UTC(),
		RepoTags: art.ImageMetadata.RepoTags, RepoDigests: art.ImageMetadata.RepoDigests,
		ManifestDigest: manifestDigest,
	}
	if cfg, err := json.Marshal(art.ImageMetadata.ConfigFile); err == nil {
		a.Config = cfg
	}
	return a
}

// AnalysisSource is the shared layer cache as an inventory reads it:
// Trivy's cache entries and each image key's recorded analysis.
// *layercache.Cache implements it.
type AnalysisSource interface {
	tcache.LocalArtifactCache
	Analysis(ctx context.Context, key contract.ImageKey) (layercache.Analysis, bool, error)
	MissingBlobs(ctx context.Context, artifactID string, blobIDs []string) (bool, []string, error)
}

// ErrNoAnalysis is returned for an image key whose analysis the shared
// layer cache does not hold (never analysed with the shared cache, or its
// entries expired).
var ErrNoAnalysis = errors.New("no recorded analysis in the shared layer cache")

// Inventory lists the packages of analysed images from the shared layer
// cache alone: no registry, no vulnerability DB. It runs Trivy's own scan
// service with only its SBOM scanner over the recorded analysis, so the
// packages are exactly those `trivy image` lists for the image. It is safe
// for concurrent use.
type Inventory struct {
	src AnalysisSource
	log *zap.Logger
}

// NewInventory reads analyses from src.
func NewInventory(src AnalysisSource, log *zap.Logger) *Inventory {
	if log == nil {
		log = zap.NewNop()
	}
	ensureTrivyLogs(log)
	return &Inventory{src: src, log: log}
}

// Listing is an image's package listing: Trivy's report (packages only,
// no vulnerabilities), the wire record, and the analysis it came from.
type Listing struct {
	Report   ttypes.Report
	Packages contract.ImagePackages
	Analysis layercache.Analysis
}

// List lists the packages of key from its recorded analysis, or returns an
// error wrapping ErrNoAnalysis.
func (i *Inventory) List(ctx context.Context, key contract.ImageKey) (Listing, error) {
	a, ok, err := i.src.Analysis(ctx, key)
	if err != nil {
		return Listing{}, fmt.Errorf("recorded analysis of %s: %w", key, err)
	}
	if !ok || a.ArtifactID == "" || len(a.BlobIDs) == 0 {
		return Listing{}, fmt.Errorf("%s: %w", key, ErrNoAnalysis)
	}
	missingArtifact, missing, err := i.src.MissingBlobs(ctx, a.ArtifactID, a.BlobIDs)
	if err != nil {
		return Listing{}, fmt.Errorf("layer cache entries of %s: %w", key, err)
	}
	if missingArtifact || len(missing) > 0 {
		return Listing{}, fmt.Errorf("%s: %w (%d of %d layer entries expired)", key, ErrNoAnalysis, len(missing), len(a.BlobIDs))
	}
	rec := &osRecorder{Scanner: ospkg.NewScanner()}
	svc := tscan.NewService(local.NewService(applier.NewApplier(i.src), rec, langpkg.NewScanner(),
		vulnerability.NewClient(trivydbcfg.Config{})), storedArtifact{ref: storedReference(a)})
	rep, err := svc.ScanArtifact(ctx, ttypes.ScanOptions{
		PkgTypes:         []string{ttypes.PkgTypeOS, ttypes.PkgTypeLibrary},
		PkgRelationships: ftypes.Relationships,
		Scanners:         ttypes.Scanners{ttypes.SBOMScanner},
	})
	if err != nil {
		return Listing{}, fmt.Errorf("list packages of %s: %w", key, err)
	}
	rec2 := imagePackages(rep, rec, a.Scanner, manifestOf(a, key), a.StoredAt)
	rec2.ImageKey = key
	return Listing{Report: rep, Packages: *rec2, Analysis: a}, nil
}

// manifestOf is the recorded platform manifest digest, when it differs
// from the key's (an index).
func manifestOf(a layercache.Analysis, key contract.ImageKey) string {
	if a.ManifestDigest == "" || strings.EqualFold(a.ManifestDigest, key.Digest) {
		return ""
	}
	return a.ManifestDigest
}

// TrivyVersion is the version of the Trivy module this binary was built
// with (SBOMs name it as their tool).
func TrivyVersion() string { return trivyVersion() }
