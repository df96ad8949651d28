package contract

import (
	"errors"
	"fmt"
	"time"
)

// PackagesSchemaVersion is the schema version of ImagePackages written by
// this build.
const PackagesSchemaVersion = "1.0"

// Package classes, as Trivy names them.
const (
	ClassOSPackages   = "os-pkgs"
	ClassLangPackages = "lang-pkgs"
)

// ImagePackages is the package inventory of one image key: every OS and
// language package Trivy found in it, with its package URL and version.
// Workers store one per scanned image key next to its result (replacing
// the previous one), so the fleet's package set can be queried without a
// registry; the fields beyond name, version and PURL are what vulnerability
// detection reads, so a newer DB can be matched against them.
type ImagePackages struct {
	SchemaVersion string `json:"schemaVersion"`
	ImageKey
	// Reference is what was analysed, pinned by digest.
	Reference string `json:"reference,omitempty"`
	// ManifestDigest is the platform image's own manifest digest when the
	// key's digest is a multi-arch index (empty otherwise or when unknown).
	ManifestDigest string      `json:"manifestDigest,omitempty"`
	Scanner        ScannerInfo `json:"scanner"`
	AnalyzedAt     time.Time   `json:"analyzedAt"`
	// OS is the detected distribution; nil when none was found.
	// OSExtended marks an extended-support stream (Ubuntu ESM, ...) and
	// OSSupplier a third party that rebuilt the OS packages: both change
	// which advisories apply.
	OS         *OSInfo `json:"os,omitempty"`
	OSExtended bool    `json:"osExtended,omitempty"`
	OSSupplier string  `json:"osSupplier,omitempty"`
	// Repository is the OS package repository the image is configured for
	// (Alpine's /etc/apk/repositories), which OS detection prefers over
	// the release when present.
	Repository *PackageRepository `json:"repository,omitempty"`
	Packages   []Package          `json:"packages"`
}

// PackageRepository is a configured OS package repository.
type PackageRepository struct {
	Family  string `json:"family"`
	Release string `json:"release"`
}

// Package is one installed package.
type Package struct {
	// Name is the package name as Trivy reports it (pkgName in findings).
	Name string `json:"name"`
	// Version is the installed version as Trivy renders it (epoch and
	// release included: "1:1.2.13.dfsg-1").
	Version string `json:"version"`
	// PURL is the package URL (purl spec), with the version.
	PURL string `json:"purl,omitempty"`
	// Type is Trivy's package type: alpine, debian, npm, python-pkg,
	// gobinary, jar, ... (for OS packages, the OS family).
	Type string `json:"type"`
	// Class is os-pkgs or lang-pkgs.
	Class string `json:"class"`
	// Path is the file the package was found in (language packages).
	Path string `json:"path,omitempty"`

	// Detection inputs: what Trivy's detectors read besides name and
	// version. RawVersion is the version field alone (Version renders
	// epoch:version-release).
	ID              string   `json:"id,omitempty"`
	RawVersion      string   `json:"rawVersion,omitempty"`
	Release         string   `json:"release,omitempty"`
	Epoch           int      `json:"epoch,omitempty"`
	Arch            string   `json:"arch,omitempty"`
	SrcName         string   `json:"srcName,omitempty"`
	SrcVersion      string   `json:"srcVersion,omitempty"`
	SrcRelease      string   `json:"srcRelease,omitempty"`
	SrcEpoch        int      `json:"srcEpoch,omitempty"`
	Modularitylabel string   `json:"modularitylabel,omitempty"`
	ContentSets     []string `json:"contentSets,omitempty"`
	BuildNvr        string   `json:"buildNvr,omitempty"`
	BuildArch       string   `json:"buildArch,omitempty"`
	RepositoryClass string   `json:"repositoryClass,omitempty"`
	Relationship    string   `json:"relationship,omitempty"`
	Dev             bool     `json:"dev,omitempty"`
	LayerDigest     string   `json:"layerDigest,omitempty"`
	LayerDiffID     string   `json:"layerDiffId,omitempty"`
}

func (p *ImagePackages) schemaVersion() string { return p.SchemaVersion }
func (p *ImagePackages) kind() string          { return "image packages" }

func (p *ImagePackages) validate() error {
	const k = "image packages"
	if err := p.ImageKey.Validate(); err != nil {
		return &DecodeError{Kind: k, Field: "digest", Err: err}
	}
	if err := requiredTime(k, "analyzedAt", p.AnalyzedAt); err != nil {
		return err
	}
	if p.ManifestDigest != "" && !ValidDigest(p.ManifestDigest) {
		return &DecodeError{Kind: k, Field: "manifestDigest", Err: fmt.Errorf("not an OCI digest: %q", p.ManifestDigest)}
	}
	for i, pkg := range p.Packages {
		if pkg.Name == "" {
			return &DecodeError{Kind: k, Field: fmt.Sprintf("packages[%d].name", i), Err: errors.New("required")}
		}
		switch pkg.Class {
		case ClassOSPackages, ClassLangPackages:
		default:
			return &DecodeError{Kind: k, Field: fmt.Sprintf("packages[%d].class", i), Err: fmt.Errorf("%q: want %s or %s", pkg.Class, ClassOSPackages, ClassLangPackages)}
		}
	}
	return nil
}

// Encode renders the record as JSON.
func (p ImagePackages) Encode() ([]byte, error) {
	if p.SchemaVersion == "" {
		p.SchemaVersion = PackagesSchemaVersion
	}
	if p.Packages == nil {
		p.Packages = []Package{}
	}
	return encode(p)
}

// DecodeImagePackages parses and validates a record.
func DecodeImagePackages(data []byte) (ImagePackages, error) {
	var p ImagePackages
	err := decode(data, &p)
	return p, err
}
