package demo

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// epssCSV is FIRST's daily EPSS file layout for every CVE of the demo's
// vulnerability DB (the same illustrative scores the feeds' test fixtures
// use: CVE-2023-44487, CVE-2023-4911 and CVE-2023-48795 rank high).
//
//go:embed epss.csv
var epssCSV []byte

// demoKEV are the demo DB's CVEs that CISA's catalogue really lists. The
// demo lives on its own calendar, so their listing and due dates are set
// relative to its day (listed before pass 1 first sees them, due three
// weeks later, as BOD 22-01 gives), not copied from the catalogue.
var demoKEV = []struct {
	cve, vendor, product, name, ransomware string
}{
	{"CVE-2023-4911", "GNU", "GNU C Library", "GNU C Library Buffer Overflow Vulnerability", "Unknown"},
	{"CVE-2023-44487", "IETF", "HTTP/2", "HTTP/2 Rapid Reset Attack Vulnerability", "Unknown"},
}

// demoPolicy turns the EPSS rule on (KEV is on by default): findings in
// the top 3 % of EPSS scores get 14 days, whatever their severity.
const demoPolicy = `# fleetscan demo SLA policy
kev: {enabled: true}
epss: {percentile: 0.97, days: 14}
`

var scoreDateLine = regexp.MustCompile(`score_date:[0-9T:+-]+`)

// writeFeeds writes the demo's exploit feeds in their real formats — the
// KEV catalogue as CISA's JSON, the EPSS scores as FIRST's gzip-less CSV
// dated the day before today — and the demo's SLA policy into dir, and
// returns their paths (the updater reads them as local sources, offline).
func writeFeeds(dir string, today time.Time) (kevPath, epssPath, policyPath string, err error) {
	day := func(d int) string { return today.AddDate(0, 0, d).UTC().Format(time.DateOnly) }
	type entry struct {
		CVEID                      string   `json:"cveID"`
		VendorProject              string   `json:"vendorProject"`
		Product                    string   `json:"product"`
		VulnerabilityName          string   `json:"vulnerabilityName"`
		DateAdded                  string   `json:"dateAdded"`
		ShortDescription           string   `json:"shortDescription"`
		RequiredAction             string   `json:"requiredAction"`
		DueDate                    string   `json:"dueDate"`
		KnownRansomwareCampaignUse string   `json:"knownRansomwareCampaignUse"`
		Notes                      string   `json:"notes"`
		CWEs                       []string `json:"cwes"`
	}
	doc := struct {
		Title           string  `json:"title"`
		CatalogVersion  string  `json:"catalogVersion"`
		DateReleased    string  `json:"dateReleased"`
		Count           int     `json:"count"`
		Vulnerabilities []entry `json:"vulnerabilities"`
	}{Title: "CISA Catalog of Known Exploited Vulnerabilities (fleetscan demo excerpt)",
		CatalogVersion: today.AddDate(0, 0, -60).UTC().Format("2006.01.02"),
		DateReleased:   today.AddDate(0, 0, -60).UTC().Format(time.RFC3339), Count: len(demoKEV)}
	for _, k := range demoKEV {
		doc.Vulnerabilities = append(doc.Vulnerabilities, entry{CVEID: k.cve, VendorProject: k.vendor, Product: k.product,
			VulnerabilityName: k.name, DateAdded: day(-60), ShortDescription: k.name + ".",
			RequiredAction: "Apply mitigations per vendor instructions or discontinue use of the product if mitigations are unavailable.",
			DueDate:        day(-39), KnownRansomwareCampaignUse: k.ransomware, CWEs: []string{}})
	}
	kev, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return "", "", "", err
	}
	epss := scoreDateLine.ReplaceAll(epssCSV, []byte("score_date:"+day(-1)+"T00:00:00+0000"))
	kevPath, epssPath, policyPath = filepath.Join(dir, "known_exploited_vulnerabilities.json"),
		filepath.Join(dir, "epss_scores-current.csv"), filepath.Join(dir, "sla-policy.yaml")
	for path, data := range map[string][]byte{kevPath: kev, epssPath: epss, policyPath: []byte(demoPolicy)} {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return "", "", "", fmt.Errorf("demo feeds: %w", err)
		}
	}
	return kevPath, epssPath, policyPath, nil
}
