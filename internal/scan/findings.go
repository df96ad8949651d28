package scan

import (
	"sort"

	dbtypes "github.com/aquasecurity/trivy-db/pkg/types"
	ttypes "github.com/aquasecurity/trivy/pkg/types"

	"github.com/fleetscan/fleetscan/pkg/contract"
)

// cvssPreference is the order CVSS sources are tried in when the source
// that gave the severity has no score: the NVD first (most complete), then
// the GitHub advisory database, then the distributions.
var cvssPreference = []dbtypes.SourceID{"nvd", "ghsa", "redhat", "ubuntu", "debian", "alpine", "amazon", "oracle-oval", "photon"}

// findingsOf maps every vulnerability of a Trivy report to a finding.
func findingsOf(rep ttypes.Report) []contract.Finding {
	n := 0
	for _, r := range rep.Results {
		n += len(r.Vulnerabilities)
	}
	out := make([]contract.Finding, 0, n)
	for _, r := range rep.Results {
		for _, v := range r.Vulnerabilities {
			out = append(out, findingOf(r, v))
		}
	}
	return out
}

func findingOf(r ttypes.Result, v ttypes.DetectedVulnerability) contract.Finding {
	status := v.Status
	f := contract.Finding{
		VulnerabilityID:  v.VulnerabilityID,
		PkgName:          v.PkgName,
		PkgVersion:       v.InstalledVersion,
		PkgPath:          v.PkgPath,
		PkgType:          string(r.Type),
		PkgClass:         string(r.Class),
		Target:           r.Target,
		FixedVersion:     v.FixedVersion,
		Status:           status.String(),
		SeveritySource:   string(v.SeveritySource),
		Title:            v.Title,
		Description:      v.Description,
		CVSS:             pickCVSS(v.CVSS, v.SeveritySource),
		PublishedDate:    v.PublishedDate,
		LastModifiedDate: v.LastModifiedDate,
		PrimaryURL:       v.PrimaryURL,
		References:       v.References,
		LayerDigest:      v.Layer.Digest,
	}
	if v.PkgIdentifier.PURL != nil {
		f.PkgPURL = v.PkgIdentifier.PURL.String()
	}
	//lint:ignore SA1019 Trivy fills it from the preferred source, and `trivy image` reports exactly it.
	f.Severity = v.Severity
	if f.Severity == "" {
		f.Severity = dbtypes.SeverityUnknown.String()
	}
	if f.LayerDigest == "" {
		f.LayerDigest = v.Layer.DiffID
	}
	if status == dbtypes.StatusUnknown {
		f.Status = ""
	}
	return f
}

// pickCVSS chooses one score for ranking: the severity source's own score
// when it has one, else the first preferred source with one, else any
// source (in name order, so the choice is stable). CVSS v3 is preferred over
// v4.0, then v2, because most advisories and SLAs are written against v3.
func pickCVSS(all dbtypes.VendorCVSS, severitySource dbtypes.SourceID) *contract.CVSS {
	if len(all) == 0 {
		return nil
	}
	order := make([]dbtypes.SourceID, 0, len(all)+len(cvssPreference)+1)
	order = append(order, severitySource)
	order = append(order, cvssPreference...)
	rest := make([]string, 0, len(all))
	for id := range all {
		rest = append(rest, string(id))
	}
	sort.Strings(rest)
	for _, id := range rest {
		order = append(order, dbtypes.SourceID(id))
	}
	for _, id := range order {
		c, ok := all[id]
		if !ok {
			continue
		}
		switch {
		case c.V3Score > 0:
			return &contract.CVSS{Source: string(id), Score: c.V3Score, Vector: c.V3Vector}
		case c.V40Score > 0:
			return &contract.CVSS{Source: string(id), Score: c.V40Score, Vector: c.V40Vector}
		case c.V2Score > 0:
			return &contract.CVSS{Source: string(id), Score: c.V2Score, Vector: c.V2Vector}
		}
	}
	return nil
}

// osOf maps the detected OS.
func osOf(rep ttypes.Report) *contract.OSInfo {
	if rep.Metadata.OS == nil || rep.Metadata.OS.Family == "" {
		return nil
	}
	return &contract.OSInfo{Family: string(rep.Metadata.OS.Family), Name: rep.Metadata.OS.Name, EOSL: rep.Metadata.OS.Eosl}
}
