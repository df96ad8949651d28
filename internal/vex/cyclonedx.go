package vex

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
)

// parseCycloneDX reads a CycloneDX VEX document (a BOM with
// vulnerabilities and their analysis). The product is the BOM's metadata
// component when it is an image (pkg:oci); each affects ref is a PURL, a
// bom-ref of a component in the document, or a BOM-Link whose fragment is
// one of those.
func parseCycloneDX(data []byte, source string) ([]Statement, error) {
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(bytes.NewReader(data), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		return nil, fmt.Errorf("CycloneDX: %w", err)
	}
	refs := map[string]string{}
	collectRefs(bom.Components, refs)
	product, author, ts := cdxMetadata(bom.Metadata, refs)
	var out []Statement
	for i, v := range deref(bom.Vulnerabilities) {
		if v.ID == "" {
			return nil, fmt.Errorf("CycloneDX: vulnerability %d: id is required", i+1)
		}
		a := v.Analysis
		if a == nil || a.State == "" {
			continue // no VEX analysis: a plain vulnerability record
		}
		st := Statement{Vulnerability: v.ID, Status: cdxStatus(a.State), Justification: string(a.Justification),
			Impact: a.Detail, Author: author, Source: source, Format: "cyclonedx", Timestamp: ts}
		if st.Status == "" {
			return nil, fmt.Errorf("CycloneDX: %s: unknown analysis state %q", v.ID, a.State)
		}
		if t, err := time.Parse(time.RFC3339, a.LastUpdated); err == nil {
			st.Timestamp = t.UTC()
		}
		for _, r := range deref(v.References) {
			st.Aliases = append(st.Aliases, r.ID)
		}
		for _, af := range deref(v.Affects) {
			p := resolveRef(af.Ref, refs)
			switch {
			case p == "":
				return nil, fmt.Errorf("CycloneDX: %s: affects ref %q is neither a PURL nor a component of the document", v.ID, af.Ref)
			case isOCI(p):
				st.Targets = append(st.Targets, Target{Product: p})
			default:
				st.Targets = append(st.Targets, Target{Product: product, Subcomponent: p})
			}
		}
		if len(st.Targets) == 0 {
			return nil, fmt.Errorf("CycloneDX: %s: no affects", v.ID)
		}
		out = append(out, st)
	}
	return out, nil
}

func deref[T any](p *[]T) []T {
	if p == nil {
		return nil
	}
	return *p
}

func collectRefs(cs *[]cdx.Component, refs map[string]string) {
	for _, c := range deref(cs) {
		if c.BOMRef != "" && c.PackageURL != "" {
			refs[c.BOMRef] = c.PackageURL
		}
		collectRefs(c.Components, refs)
	}
}

func cdxMetadata(m *cdx.Metadata, refs map[string]string) (product, author string, ts time.Time) {
	if m == nil {
		return "", "", time.Time{}
	}
	if c := m.Component; c != nil {
		if c.BOMRef != "" && c.PackageURL != "" {
			refs[c.BOMRef] = c.PackageURL
		}
		if isOCI(c.PackageURL) {
			product = c.PackageURL
		}
	}
	for _, a := range deref(m.Authors) {
		if author = cmpOr(a.Name, a.Email); author != "" {
			break
		}
	}
	for _, e := range []*cdx.OrganizationalEntity{m.Manufacturer, m.Manufacture, m.Supplier} {
		if author == "" && e != nil {
			author = e.Name
		}
	}
	if t, err := time.Parse(time.RFC3339, m.Timestamp); err == nil {
		ts = t.UTC()
	}
	return product, author, ts
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// resolveRef turns an affects ref into a PURL ("" when it names none).
func resolveRef(ref string, refs map[string]string) string {
	if strings.HasPrefix(ref, "urn:cdx:") {
		if _, frag, ok := strings.Cut(ref, "#"); ok {
			ref = frag
		}
	}
	if p, ok := refs[ref]; ok {
		return p
	}
	if strings.HasPrefix(ref, "pkg:") {
		return ref
	}
	return ""
}

// cdxStatus maps a CycloneDX analysis state to a VEX status, as Trivy
// does.
func cdxStatus(s cdx.ImpactAnalysisState) Status {
	switch s {
	case cdx.IASResolved, cdx.IASResolvedWithPedigree:
		return Fixed
	case cdx.IASExploitable:
		return Affected
	case cdx.IASInTriage:
		return UnderInvestigation
	case cdx.IASFalsePositive, cdx.IASNotAffected:
		return NotAffected
	}
	return ""
}
