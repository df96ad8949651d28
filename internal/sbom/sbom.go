// Package sbom writes one SBOM per running image — CycloneDX 1.6 JSON and
// SPDX 2.3 JSON — from the fleet's cached layer analyses, with Trivy's own
// SBOM marshalers: no registry is contacted and no image is pulled. The
// package sets are those `trivy image --format cyclonedx` lists for the
// same image.
//
// Files are named after the digest the fleet runs:
//
//	sbom/sha256-<hex>.cdx.json             CycloneDX 1.6 JSON
//	sbom/sha256-<hex>.spdx.json            SPDX 2.3 JSON
//
// A multi-arch index digest names several images, one per platform, so
// each of its SBOMs carries the platform in its name:
//
//	sbom/sha256-<index hex>.linux-amd64.cdx.json
//	sbom/sha256-<index hex>.linux-arm64-v8.cdx.json
//
// (the platform image's own manifest digest is inside the SBOM and in
// sbom/index.json, which lists every SBOM of the run with its digest,
// platform, references and workloads). A digest is treated as an index
// when its recorded analysis says so, or when the fleet runs it on more
// than one platform.
//
// The Exporter also keeps the package index whole: an image the reporter
// covers without a package record (a result reused since before records
// existed, a worker that could not store one) gets one rebuilt from the
// same analysis.
package sbom

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	cdx "github.com/CycloneDX/cyclonedx-go"

	tcdx "github.com/aquasecurity/trivy/pkg/sbom/cyclonedx"
	tspdx "github.com/aquasecurity/trivy/pkg/sbom/spdx"
	ttypes "github.com/aquasecurity/trivy/pkg/types"

	"github.com/fleetscan/fleetscan/pkg/contract"
)

// Format is an SBOM format of --sbom.
type Format string

const (
	// CycloneDX is CycloneDX 1.6 JSON (*.cdx.json).
	CycloneDX Format = "cyclonedx"
	// SPDX is SPDX 2.3 JSON (*.spdx.json).
	SPDX Format = "spdx"
)

// Formats lists every format.
var Formats = []Format{CycloneDX, SPDX}

// Dir is the subdirectory of the output directory SBOMs are written to.
const Dir = "sbom"

// IndexFile lists the run's SBOMs (inside Dir).
const IndexFile = "index.json"

// ParseFormats validates an --sbom list (items may be comma-separated);
// an empty list means no SBOMs.
func ParseFormats(list []string) ([]Format, error) {
	var out []Format
	for _, item := range list {
		for _, s := range strings.Split(item, ",") {
			s = strings.ToLower(strings.TrimSpace(s))
			switch s {
			case "":
				continue
			case "cdx":
				s = string(CycloneDX)
			case "spdx-json":
				s = string(SPDX)
			}
			f := Format(s)
			if !slices.Contains(Formats, f) {
				return nil, fmt.Errorf("SBOM format %q: want cyclonedx and/or spdx", s)
			}
			if !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
	}
	return out, nil
}

// Ext is the file extension of the format.
func (f Format) Ext() string {
	if f == SPDX {
		return ".spdx.json"
	}
	return ".cdx.json"
}

// ContentType is the format's media type.
func (f Format) ContentType() string {
	if f == SPDX {
		return "application/spdx+json"
	}
	return "application/vnd.cyclonedx+json"
}

// FileName names the SBOM of key in format f: "sha256-<hex>" plus, for a
// digest that names several platform images (perPlatform), the platform.
func FileName(key contract.ImageKey, perPlatform bool, f Format) string {
	base := strings.Replace(key.Digest, ":", "-", 1)
	if perPlatform {
		p := key.Platform.OS + "-" + key.Platform.Architecture
		if key.Platform.Variant != "" {
			p += "-" + key.Platform.Variant
		}
		base += "." + safeName(p)
	}
	return base + f.Ext()
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, s)
}

// Write renders rep (a package listing of one image) in format f.
// trivyVersion names the tool in the SBOM's metadata. Timestamps come from
// ctx's clock (trivy/pkg/clock).
func Write(ctx context.Context, w io.Writer, f Format, rep ttypes.Report, trivyVersion string) error {
	switch f {
	case CycloneDX:
		m := tcdx.NewMarshaler(trivyVersion)
		bom, err := m.MarshalReport(ctx, rep)
		if err != nil {
			return fmt.Errorf("CycloneDX: %w", err)
		}
		enc := cdx.NewBOMEncoder(w, cdx.BOMFileFormatJSON)
		enc.SetPretty(true)
		enc.SetEscapeHTML(false)
		if err := enc.EncodeVersion(bom, cdx.SpecVersion1_6); err != nil {
			return fmt.Errorf("CycloneDX 1.6: %w", err)
		}
		return nil
	case SPDX:
		doc, err := tspdx.NewMarshaler(trivyVersion).MarshalReport(ctx, rep)
		if err != nil {
			return fmt.Errorf("SPDX: %w", err)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(doc); err != nil {
			return fmt.Errorf("SPDX 2.3: %w", err)
		}
		return nil
	}
	return fmt.Errorf("SBOM format %q", f)
}

// writeAtomic writes path through a temporary file renamed into place.
func writeAtomic(path string, write func(io.Writer) error) (int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return 0, err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if err := write(tmp); err != nil {
		_ = tmp.Close()
		return 0, err
	}
	st, err := tmp.Stat()
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	return st.Size(), os.Rename(tmp.Name(), path)
}

func newJSONEncoder(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc
}
