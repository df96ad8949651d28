package vex

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"time"

	openvex "github.com/openvex/go-vex/pkg/vex"
	"github.com/package-url/packageurl-go"
)

// Decision is one decision to export: a vulnerability's VEX status in an
// image repository (Digest empty: every digest) for a package (PURL empty:
// every package).
type Decision struct {
	Vulnerability string
	Status        Status
	Justification string
	// Impact is the impact statement (the acceptance's reason).
	Impact     string
	Repository string
	Digest     string
	PURL       string
}

// Export writes decisions as one OpenVEX document by author at now:
// one statement per vulnerability, status, justification and impact, its
// products the images (pkg:oci PURLs as Trivy writes them) with the
// packages as subcomponents. The document's @id is its canonical hash.
func Export(decisions []Decision, author string, now time.Time) ([]byte, error) {
	type key struct{ vuln, status, just, impact string }
	type prod struct{ subs map[string]bool }
	groups := map[key]map[string]*prod{}
	for _, d := range decisions {
		if !d.Status.Valid() {
			return nil, fmt.Errorf("vex export: %s: invalid status %q", d.Vulnerability, d.Status)
		}
		k := key{d.Vulnerability, string(d.Status), d.Justification, d.Impact}
		if groups[k] == nil {
			groups[k] = map[string]*prod{}
		}
		id := ImagePURL(d.Repository, d.Digest)
		p := groups[k][id]
		if p == nil {
			p = &prod{subs: map[string]bool{}}
			groups[k][id] = p
		}
		p.subs[d.PURL] = true // "" marks every package
	}
	doc := openvex.New()
	doc.Author, doc.Tooling = author, "fleetscan"
	ts := now.UTC()
	doc.Timestamp, doc.Version = &ts, 1
	keys := make([]key, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int {
		return cmp.Or(cmp.Compare(a.vuln, b.vuln), cmp.Compare(a.status, b.status), cmp.Compare(a.just, b.just), cmp.Compare(a.impact, b.impact))
	})
	for _, k := range keys {
		st := openvex.Statement{Vulnerability: openvex.Vulnerability{Name: openvex.VulnerabilityID(k.vuln)},
			Status: openvex.Status(k.status), Justification: openvex.Justification(k.just)}
		switch openvex.Status(k.status) {
		case openvex.StatusAffected:
			st.ActionStatement = k.impact
		default:
			st.ImpactStatement = k.impact
		}
		ids := make([]string, 0, len(groups[k]))
		for id := range groups[k] {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			st.Products = append(st.Products, exportProduct(id, groups[k][id].subs))
		}
		doc.Statements = append(doc.Statements, st)
	}
	if _, err := doc.GenerateCanonicalID(); err != nil {
		return nil, fmt.Errorf("vex export: %w", err)
	}
	var buf bytes.Buffer
	if err := doc.ToJSON(&buf); err != nil {
		return nil, fmt.Errorf("vex export: %w", err)
	}
	return buf.Bytes(), nil
}

// exportProduct is an image product; when one of its decisions covers every
// package it has no subcomponents.
func exportProduct(id string, subs map[string]bool) openvex.Product {
	p := openvex.Product{Component: openvex.Component{ID: id}}
	if subs[""] {
		return p
	}
	list := make([]string, 0, len(subs))
	for s := range subs {
		list = append(list, s)
	}
	slices.Sort(list)
	for _, s := range list {
		p.Subcomponents = append(p.Subcomponents, openvex.Subcomponent{Component: openvex.Component{ID: s}})
	}
	return p
}

// BasePURL is purl without version and qualifiers: it names the package in
// every version (an acceptance by package name covers them all).
func BasePURL(purl string) string {
	p, err := packageurl.FromString(purl)
	if err != nil {
		return ""
	}
	return packageurl.NewPackageURL(p.Type, p.Namespace, p.Name, "", nil, "").ToString()
}
