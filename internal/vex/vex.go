// Package vex reads VEX (Vulnerability Exploitability eXchange) statements
// — OpenVEX, CycloneDX VEX and CSAF VEX documents, from files, directories,
// VEX Hub–style repositories and image attestations — into one Set the
// reporter applies to findings, and writes fleetscan's own decisions as an
// OpenVEX document.
//
// Statements are matched by package URL: the product is the image
// (pkg:oci/<name>@<digest> matches that digest; without a digest every
// digest of the repository) and the subcomponent is the package's PURL. A
// statement whose product is a package PURL applies to that package in
// every image. A statement for another digest, package or version never
// applies.
package vex

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// Status is a VEX status, with OpenVEX's names.
type Status string

const (
	NotAffected        Status = "not_affected"
	Affected           Status = "affected"
	Fixed              Status = "fixed"
	UnderInvestigation Status = "under_investigation"
)

// Statuses lists the valid statuses.
var Statuses = []Status{NotAffected, Affected, Fixed, UnderInvestigation}

// Valid reports whether s is one of Statuses.
func (s Status) Valid() bool { return slices.Contains(Statuses, s) }

// Suppresses reports whether the status takes a finding off the gate
// (not_affected and fixed).
func (s Status) Suppresses() bool { return s == NotAffected || s == Fixed }

// Target is one product a statement speaks about: Product is a PURL (an
// image, pkg:oci/..., or a package) or empty (any image); Subcomponent is a
// package PURL or empty (every package of the product).
type Target struct {
	Product      string
	Subcomponent string
}

// Statement is one VEX statement, whatever format it came in.
type Statement struct {
	// Vulnerability and its Aliases are the IDs the statement is about.
	Vulnerability string
	Aliases       []string
	Targets       []Target
	Status        Status
	// Justification is the format's justification label
	// (vulnerable_code_not_present, code_not_reachable, ...).
	Justification string
	// Impact is the free-text impact or action statement.
	Impact string
	// Author is the document's author or publisher.
	Author string
	// Source names the document: a file path, a repository URL or an
	// attestation reference.
	Source string
	// Format is openvex, cyclonedx or csaf.
	Format    string
	Timestamp time.Time
	// order is the load order, the tie-breaker between equal timestamps.
	order int
}

// About reports whether the statement is about vulnerability id.
func (s *Statement) About(id string) bool {
	if strings.EqualFold(s.Vulnerability, id) {
		return true
	}
	for _, a := range s.Aliases {
		if strings.EqualFold(a, id) {
			return true
		}
	}
	return false
}

// Set is a collection of statements indexed by vulnerability ID.
type Set struct {
	byVuln map[string][]*Statement
	n      int
	// Sources are the documents loaded, in order.
	Sources []string
}

// NewSet returns an empty set.
func NewSet() *Set { return &Set{byVuln: map[string][]*Statement{}} }

// Add adds statements (later ones win ties with earlier ones).
func (s *Set) Add(stmts ...Statement) {
	for i := range stmts {
		st := stmts[i]
		st.order = s.n
		s.n++
		ids := append([]string{st.Vulnerability}, st.Aliases...)
		seen := map[string]bool{}
		for _, id := range ids {
			k := strings.ToUpper(strings.TrimSpace(id))
			if k == "" || seen[k] {
				continue
			}
			seen[k] = true
			s.byVuln[k] = append(s.byVuln[k], &st)
		}
	}
}

// Merge adds every statement of o.
func (s *Set) Merge(o *Set) {
	if o == nil {
		return
	}
	for _, st := range o.All() {
		s.Add(*st)
	}
	s.Sources = append(s.Sources, o.Sources...)
}

// Len is the number of statements.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return s.n
}

// All lists the statements in load order.
func (s *Set) All() []*Statement {
	if s == nil {
		return nil
	}
	seen := map[*Statement]bool{}
	var out []*Statement
	for _, l := range s.byVuln {
		for _, st := range l {
			if !seen[st] {
				seen[st] = true
				out = append(out, st)
			}
		}
	}
	slices.SortFunc(out, func(a, b *Statement) int { return cmp.Compare(a.order, b.order) })
	return out
}

// Subject is what a statement is matched against: one package of one
// image.
type Subject struct {
	Vulnerability string
	// PURL is the package's PURL.
	PURL string
	// Repositories are the image's repositories (docker.io/library/nginx).
	Repositories []string
	Digest       string
	// Arch is the image platform's architecture (amd64).
	Arch string
}

// Decide returns the statement that applies to sub — the newest matching
// one, the last loaded on a tie — or nil. A nil set decides nothing.
func (s *Set) Decide(sub Subject) *Statement {
	if s == nil {
		return nil
	}
	var best *Statement
	for _, st := range s.byVuln[strings.ToUpper(sub.Vulnerability)] {
		if !st.Applies(sub) {
			continue
		}
		if best == nil || st.Timestamp.After(best.Timestamp) ||
			(st.Timestamp.Equal(best.Timestamp) && st.order > best.order) {
			best = st
		}
	}
	return best
}

// Applies reports whether the statement speaks about sub.
func (s *Statement) Applies(sub Subject) bool {
	if !s.About(sub.Vulnerability) {
		return false
	}
	for _, t := range s.Targets {
		if t.matches(sub) {
			return true
		}
	}
	return false
}

func (t Target) matches(sub Subject) bool {
	switch {
	case t.Product == "" && t.Subcomponent == "":
		return false
	case t.Product == "":
		return PURLMatches(t.Subcomponent, sub.PURL)
	case isOCI(t.Product):
		if !ImageMatches(t.Product, sub.Repositories, sub.Digest, sub.Arch) {
			return false
		}
		return t.Subcomponent == "" || PURLMatches(t.Subcomponent, sub.PURL)
	default:
		// The product is a package: it applies wherever the package is.
		return PURLMatches(t.Product, sub.PURL) && (t.Subcomponent == "" || PURLMatches(t.Subcomponent, sub.PURL))
	}
}
