package vex

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/gocsaf/csaf/v3/csaf"
)

// parseCSAF reads a CSAF VEX advisory. Product IDs resolve through the
// product tree to PURLs; a relationship (default_component_of,
// installed_on, installed_with) gives the image as the product and the
// package as the subcomponent.
func parseCSAF(data []byte, source string) ([]Statement, error) {
	var adv csaf.Advisory
	if err := json.Unmarshal(data, &adv); err != nil {
		return nil, fmt.Errorf("CSAF: %w", err)
	}
	author, ts := csafMetadata(adv.Document)
	var out []Statement
	for i, v := range adv.Vulnerabilities {
		if v == nil || v.ProductStatus == nil {
			continue
		}
		id := ""
		if v.CVE != nil {
			id = string(*v.CVE)
		}
		var aliases []string
		for _, vid := range v.IDs {
			if vid != nil && vid.Text != nil {
				aliases = append(aliases, string(*vid.Text))
			}
		}
		if id == "" && len(aliases) > 0 {
			id, aliases = aliases[0], aliases[1:]
		}
		if id == "" {
			return nil, fmt.Errorf("CSAF: vulnerability %d: no cve or ids", i+1)
		}
		ps := v.ProductStatus
		for _, g := range []struct {
			status Status
			ids    []*csaf.Products
		}{
			{NotAffected, []*csaf.Products{ps.KnownNotAffected}},
			{Fixed, []*csaf.Products{ps.Fixed, ps.FirstFixed}},
			{Affected, []*csaf.Products{ps.KnownAffected, ps.FirstAffected, ps.LastAffected}},
			{UnderInvestigation, []*csaf.Products{ps.UnderInvestigation}},
		} {
			for _, pid := range flatten(g.ids) {
				st := Statement{Vulnerability: id, Aliases: aliases, Status: g.status, Author: author,
					Source: source, Format: "csaf", Timestamp: ts,
					Justification: csafFlag(v, pid), Impact: csafThreat(v, pid)}
				st.Targets = csafTargets(adv.ProductTree, pid)
				if len(st.Targets) == 0 {
					return nil, fmt.Errorf("CSAF: %s: product %q has no PURL in the product tree", id, pid)
				}
				out = append(out, st)
			}
		}
	}
	return out, nil
}

func flatten(ps []*csaf.Products) []csaf.ProductID {
	var out []csaf.ProductID
	for _, p := range ps {
		if p == nil {
			continue
		}
		for _, id := range *p {
			if id != nil {
				out = append(out, *id)
			}
		}
	}
	return out
}

func csafMetadata(d *csaf.Document) (author string, ts time.Time) {
	if d == nil {
		return "", time.Time{}
	}
	if d.Publisher != nil && d.Publisher.Name != nil {
		author = *d.Publisher.Name
	}
	if d.Tracking != nil && d.Tracking.CurrentReleaseDate != nil {
		if t, err := time.Parse(time.RFC3339, *d.Tracking.CurrentReleaseDate); err == nil {
			ts = t.UTC()
		}
	}
	return author, ts
}

// csafTargets resolves a product ID: a relationship's full product name
// gives (image, package) pairs; a plain product its PURLs.
func csafTargets(pt *csaf.ProductTree, pid csaf.ProductID) []Target {
	if pt == nil {
		return nil
	}
	var out []Target
	if pt.RelationShips != nil {
		for _, rel := range *pt.RelationShips {
			if rel == nil || rel.FullProductName == nil || rel.FullProductName.ProductID == nil ||
				*rel.FullProductName.ProductID != pid || rel.ProductReference == nil || rel.RelatesToProductReference == nil {
				continue
			}
			for _, prod := range purlsOf(pt, *rel.RelatesToProductReference) {
				for _, sub := range purlsOf(pt, *rel.ProductReference) {
					out = append(out, Target{Product: prod, Subcomponent: sub})
				}
			}
		}
	}
	for _, p := range purlsOf(pt, pid) {
		out = append(out, Target{Product: p})
	}
	return out
}

func purlsOf(pt *csaf.ProductTree, pid csaf.ProductID) []string {
	var out []string
	for _, h := range pt.CollectProductIdentificationHelpers(pid) {
		if h != nil && h.PURL != nil && *h.PURL != "" {
			out = append(out, string(*h.PURL))
		}
	}
	return out
}

// csafFlag is the flag label (the justification) naming pid.
func csafFlag(v *csaf.Vulnerability, pid csaf.ProductID) string {
	for _, f := range v.Flags {
		if f == nil || f.Label == nil || f.ProductIds == nil {
			continue
		}
		for _, id := range *f.ProductIds {
			if id != nil && *id == pid {
				return string(*f.Label)
			}
		}
	}
	return ""
}

// csafThreat is the impact threat's details naming pid (or all products).
func csafThreat(v *csaf.Vulnerability, pid csaf.ProductID) string {
	for _, t := range v.Threats {
		if t == nil || t.Category == nil || *t.Category != csaf.CSAFThreatCategoryImpact || t.Details == nil {
			continue
		}
		if t.ProductIds == nil {
			return *t.Details
		}
		for _, id := range *t.ProductIds {
			if id != nil && *id == pid {
				return *t.Details
			}
		}
	}
	return ""
}
