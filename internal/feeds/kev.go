package feeds

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// KEVEntry is one vulnerability of CISA's Known Exploited Vulnerabilities
// catalogue, with the fields fleetscan uses.
type KEVEntry struct {
	CVE               string
	VendorProject     string
	Product           string
	VulnerabilityName string
	// DateAdded is the day CISA added it (midnight UTC).
	DateAdded time.Time
	// DueDate is the day by which BOD 22-01 requires US federal agencies
	// to remediate it (midnight UTC; the whole day is still in time).
	DueDate        time.Time
	RequiredAction string
	// KnownRansomwareCampaignUse is "Known" or "Unknown", as CISA writes it.
	KnownRansomwareCampaignUse string
}

// Ransomware reports whether CISA knows the vulnerability to be used in
// ransomware campaigns.
func (e KEVEntry) Ransomware() bool {
	return strings.EqualFold(strings.TrimSpace(e.KnownRansomwareCampaignUse), "Known")
}

// KEVCatalog is a parsed and validated KEV catalogue.
type KEVCatalog struct {
	// Version is the catalogue's catalogVersion ("2025.08.25").
	Version string
	// Released is its dateReleased.
	Released time.Time
	entries  table[*KEVEntry]
}

// Len is the number of vulnerabilities in the catalogue.
func (c *KEVCatalog) Len() int {
	if c == nil {
		return 0
	}
	return c.entries.len()
}

// Lookup returns the catalogue entry of a CVE ID. IDs that are not CVE IDs
// (GHSA-…, DLA-…) are never in the catalogue.
func (c *KEVCatalog) Lookup(cve string) (KEVEntry, bool) {
	if c == nil {
		return KEVEntry{}, false
	}
	if e, ok := c.entries.get(cve); ok {
		return *e, true
	}
	return KEVEntry{}, false
}

// kevDoc is the catalogue as CISA publishes it
// (known_exploited_vulnerabilities_schema.json). Unknown fields are
// ignored: CISA adds fields over time (cwes, forensicTriage).
type kevDoc struct {
	Title           string     `json:"title"`
	CatalogVersion  *string    `json:"catalogVersion"`
	DateReleased    *string    `json:"dateReleased"`
	Count           *int       `json:"count"`
	Vulnerabilities *[]kevItem `json:"vulnerabilities"`
}

type kevItem struct {
	CVEID                      *string `json:"cveID"`
	VendorProject              string  `json:"vendorProject"`
	Product                    string  `json:"product"`
	VulnerabilityName          string  `json:"vulnerabilityName"`
	DateAdded                  *string `json:"dateAdded"`
	ShortDescription           string  `json:"shortDescription"`
	RequiredAction             string  `json:"requiredAction"`
	DueDate                    *string `json:"dueDate"`
	KnownRansomwareCampaignUse string  `json:"knownRansomwareCampaignUse"`
}

// ParseKEV reads and validates a KEV catalogue (JSON, optionally gzipped).
// It rejects what is not a catalogue — other JSON, a truncated document,
// trailing data, a count that does not match the entries, an entry without
// a valid cveID, dateAdded or dueDate — so a bad download can never replace
// a good copy. An ID listed twice keeps its earliest dates.
func ParseKEV(r io.Reader) (*KEVCatalog, error) {
	rc, err := decompressed(r)
	if err != nil {
		return nil, fmt.Errorf("KEV catalogue: %w", err)
	}
	defer rc.Close()
	dec := json.NewDecoder(rc)
	var doc kevDoc
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("KEV catalogue: not a KEV catalogue document: %w", eofIsTruncation(err))
	}
	if err := dec.Decode(new(json.RawMessage)); !errors.Is(err, io.EOF) {
		if err == nil {
			err = errors.New("a second JSON value")
		}
		return nil, fmt.Errorf("KEV catalogue: trailing data after the document: %w", err)
	}
	return doc.catalog()
}

func (doc kevDoc) catalog() (*KEVCatalog, error) {
	switch {
	case doc.Vulnerabilities == nil:
		return nil, errors.New(`KEV catalogue: not a KEV catalogue: no "vulnerabilities" array`)
	case doc.CatalogVersion == nil || strings.TrimSpace(*doc.CatalogVersion) == "":
		return nil, errors.New(`KEV catalogue: no "catalogVersion"`)
	case doc.DateReleased == nil:
		return nil, errors.New(`KEV catalogue: no "dateReleased"`)
	case doc.Count == nil:
		return nil, errors.New(`KEV catalogue: no "count"`)
	}
	released, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(*doc.DateReleased))
	if err != nil {
		return nil, fmt.Errorf("KEV catalogue: dateReleased %q: want a date-time like 2025-08-25T17:04:19.9796Z", *doc.DateReleased)
	}
	vulns := *doc.Vulnerabilities
	if *doc.Count != len(vulns) {
		return nil, fmt.Errorf("KEV catalogue: count says %d vulnerabilities, the document lists %d (truncated or inconsistent)", *doc.Count, len(vulns))
	}
	if len(vulns) == 0 {
		return nil, errors.New("KEV catalogue: no vulnerabilities")
	}
	c := &KEVCatalog{Version: strings.TrimSpace(*doc.CatalogVersion), Released: released.UTC(), entries: newTable[*KEVEntry](len(vulns))}
	for i, v := range vulns {
		e, err := v.entry()
		if err != nil {
			return nil, fmt.Errorf("KEV catalogue: vulnerabilities[%d]: %w", i, err)
		}
		if prev, dup := c.entries.get(e.CVE); dup {
			e = mergeKEV(*prev, e)
		}
		c.entries.put(e.CVE, &e)
	}
	return c, nil
}

func (v kevItem) entry() (KEVEntry, error) {
	if v.CVEID == nil {
		return KEVEntry{}, errors.New(`no "cveID"`)
	}
	id := strings.TrimSpace(*v.CVEID)
	if !validCVE(id) {
		return KEVEntry{}, fmt.Errorf("cveID %q: want CVE-YYYY-NNNN", *v.CVEID)
	}
	id = canonicalCVE(id)
	added, err := parseDay(v.DateAdded)
	if err != nil {
		return KEVEntry{}, fmt.Errorf("%s: dateAdded %w", id, err)
	}
	due, err := parseDay(v.DueDate)
	if err != nil {
		return KEVEntry{}, fmt.Errorf("%s: dueDate %w", id, err)
	}
	return KEVEntry{
		CVE: id, VendorProject: strings.TrimSpace(v.VendorProject), Product: strings.TrimSpace(v.Product),
		VulnerabilityName: strings.TrimSpace(v.VulnerabilityName), DateAdded: added, DueDate: due,
		RequiredAction: strings.TrimSpace(v.RequiredAction), KnownRansomwareCampaignUse: strings.TrimSpace(v.KnownRansomwareCampaignUse),
	}, nil
}

// parseDay parses a YYYY-MM-DD field (midnight UTC).
func parseDay(s *string) (time.Time, error) {
	if s == nil {
		return time.Time{}, errors.New("missing")
	}
	t, err := time.Parse(time.DateOnly, strings.TrimSpace(*s))
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want YYYY-MM-DD", *s)
	}
	return t, nil
}

func mergeKEV(a, b KEVEntry) KEVEntry {
	if b.DateAdded.After(a.DateAdded) {
		b.DateAdded = a.DateAdded
	}
	if b.DueDate.After(a.DueDate) {
		b.DueDate = a.DueDate
	}
	if a.Ransomware() {
		b.KnownRansomwareCampaignUse = a.KnownRansomwareCampaignUse
	}
	return b
}

// eofIsTruncation names an empty or cut-off document.
func eofIsTruncation(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("truncated document: %w", err)
	}
	return err
}
