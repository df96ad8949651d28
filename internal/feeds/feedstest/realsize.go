package feedstest

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Sizes of the feeds RealSize generates: the real catalogues' order of
// magnitude (CISA KEV lists about 1,400 CVEs, FIRST scores about 290,000).
const (
	RealSizeKEV  = 1500
	RealSizeEPSS = 300_000
)

// RealSize returns a KEV catalogue (JSON) and an EPSS file (CSV, not
// gzipped) of the real feeds' sizes, for benchmarks: EPSS scores for
// RealSizeEPSS CVEs, the fleet's among them (score and percentile
// (i%1000)/1000 for the fleet's i-th), and RealSizeKEV KEV entries, one
// in four of the fleet's CVEs among them (listed 2025-01-10, due
// 2025-01-31). The filler CVEs are CVE-2000-… to CVE-2025-…, skipping
// CVE-2024-… so they cannot collide with a fleet's CVE-2024-NNNNN.
func RealSize(fleet []string) (kevJSON, epssCSV []byte, err error) {
	var csv bytes.Buffer
	csv.WriteString("#model_version:v2025.03.14,score_date:2025-03-09T00:00:00+0000\ncve,epss,percentile\n")
	doc := kevDoc{CatalogVersion: "2025.03.09", DateReleased: "2025-03-09T17:00:00.000Z"}
	for v, id := range fleet {
		fmt.Fprintf(&csv, "%s,%.5f,%.5f\n", id, float64(v%1000)/1000, float64(v%1000)/1000)
		if v%4 == 0 {
			doc.add(id)
		}
	}
	filler := RealSizeEPSS - len(fleet)
	for i := range filler {
		year := 2000 + i/12_000
		if year >= 2024 {
			year++
		}
		id := fmt.Sprintf("CVE-%d-%04d", year, i%12_000+1)
		fmt.Fprintf(&csv, "%s,%.5f,%.5f\n", id, float64(i%1000)/1000, float64(i)/float64(filler))
		if len(doc.Vulnerabilities) < RealSizeKEV && i%100 == 0 {
			doc.add(id)
		}
	}
	doc.Count = len(doc.Vulnerabilities)
	kevJSON, err = json.Marshal(doc)
	return kevJSON, csv.Bytes(), err
}

type kevItem struct {
	CVEID, VendorProject, Product, VulnerabilityName, DateAdded, ShortDescription, RequiredAction, DueDate, KnownRansomwareCampaignUse string
}

type kevDoc struct {
	CatalogVersion  string    `json:"catalogVersion"`
	DateReleased    string    `json:"dateReleased"`
	Count           int       `json:"count"`
	Vulnerabilities []kevItem `json:"vulnerabilities"`
}

func (d *kevDoc) add(id string) {
	d.Vulnerabilities = append(d.Vulnerabilities, kevItem{CVEID: id, VendorProject: "Vendor", Product: "Product",
		VulnerabilityName: "A vulnerability", DateAdded: "2025-01-10", ShortDescription: "Something exploitable.",
		RequiredAction: "Apply mitigations per vendor instructions.", DueDate: "2025-01-31", KnownRansomwareCampaignUse: "Unknown"})
}
