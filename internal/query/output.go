package query

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// jsonMatch is one element of --format json: one object per matching
// (digest, package). vulnerability and fixed_in are present for --cve
// only (fixed_in is "" when there is no fix).
type jsonMatch struct {
	Digest         string   `json:"digest"`
	Platform       string   `json:"platform"`
	ManifestDigest string   `json:"manifest_digest,omitempty"`
	Package        string   `json:"package"`
	Version        string   `json:"version"`
	PURL           string   `json:"purl"`
	Type           string   `json:"type"`
	Path           string   `json:"path,omitempty"`
	References     []string `json:"references"`
	Workloads      []string `json:"workloads"`
	Vulnerability  *string  `json:"vulnerability,omitempty"`
	FixedIn        *string  `json:"fixed_in,omitempty"`
	Status         string   `json:"status,omitempty"`
	Severity       string   `json:"severity,omitempty"`
}

// WriteJSON writes the matches as a JSON array.
func WriteJSON(w io.Writer, r *Result) error {
	out := make([]jsonMatch, 0, len(r.Matches))
	for _, m := range r.Matches {
		j := jsonMatch{Digest: m.Digest, Platform: m.Platform, ManifestDigest: m.ManifestDigest, Package: m.Package,
			Version: m.Version, PURL: m.PURL, Type: m.Type, Path: m.Path, References: nonNil(m.References), Workloads: nonNil(m.Workloads)}
		if r.CVE {
			vuln, fixed := m.Vulnerability, m.FixedIn
			j.Vulnerability, j.FixedIn, j.Status, j.Severity = &vuln, &fixed, m.Status, m.Severity
		}
		out = append(out, j)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(out)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// WriteTable writes the matches as an aligned table with a summary line.
func WriteTable(w io.Writer, r *Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := []string{"DIGEST", "PLATFORM", "PACKAGE", "VERSION"}
	if r.CVE {
		head = append(head, "VULNERABILITY", "SEVERITY", "FIXED IN")
	}
	head = append(head, "WORKLOADS", "REFERENCE")
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	digests, workloads := map[string]bool{}, map[string]bool{}
	for _, m := range r.Matches {
		digests[m.Digest] = true
		for _, wl := range m.Workloads {
			workloads[wl] = true
		}
		row := []string{shortDigest(m.Digest), m.Platform, m.Package, m.Version}
		if r.CVE {
			fixed := m.FixedIn
			if fixed == "" {
				fixed = "no fix"
				if m.Status != "" && m.Status != "affected" {
					fixed += " (" + m.Status + ")"
				}
			}
			row = append(row, m.Vulnerability, m.Severity, fixed)
		}
		ref := ""
		if len(m.References) > 0 {
			ref = m.References[0]
			if n := len(m.References); n > 1 {
				ref += fmt.Sprintf(" (+%d)", n-1)
			}
		}
		row = append(row, listSome(m.Workloads, 3), ref)
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%d matches in %d running digests, %d workloads (%d of %d running images indexed)\n",
		len(r.Matches), len(digests), len(workloads), r.Indexed, r.Running)
	return err
}

func shortDigest(d string) string {
	if algo, hex, ok := strings.Cut(d, ":"); ok && len(hex) > 12 {
		return algo + ":" + hex[:12]
	}
	return d
}

func listSome(s []string, n int) string {
	if len(s) <= n {
		return strings.Join(s, ", ")
	}
	return strings.Join(s[:n], ", ") + fmt.Sprintf(", … (+%d)", len(s)-n)
}
