package feeds

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/feeds/feedstest"
)

func TestParseKEVFixture(t *testing.T) {
	for name, data := range map[string][]byte{"json": feedstest.KEV(), "gzipped": feedstest.Gzip(feedstest.KEV())} {
		t.Run(name, func(t *testing.T) {
			c, err := ParseKEV(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			released, _ := time.Parse(time.RFC3339Nano, feedstest.KEVReleased)
			if c.Version != feedstest.KEVVersion || !c.Released.Equal(released) || c.Len() != feedstest.KEVEntries {
				t.Fatalf("catalogue %q released %s with %d entries", c.Version, c.Released, c.Len())
			}
			e, ok := c.Lookup(feedstest.RapidReset)
			want := KEVEntry{CVE: "CVE-2023-44487", VendorProject: "IETF", Product: "HTTP/2",
				VulnerabilityName: "HTTP/2 Rapid Reset Attack Vulnerability",
				DateAdded:         time.Date(2023, 10, 10, 0, 0, 0, 0, time.UTC), DueDate: time.Date(2023, 10, 31, 0, 0, 0, 0, time.UTC),
				RequiredAction:             "Apply mitigations per vendor instructions, follow applicable BOD 22-01 guidance for cloud services, or discontinue use of the product if mitigations are unavailable.",
				KnownRansomwareCampaignUse: "Unknown"}
			if !ok || e != want {
				t.Fatalf("lookup %s = %+v, %v\nwant %+v", feedstest.RapidReset, e, ok, want)
			}
			if e.Ransomware() {
				t.Error("Rapid Reset has no known ransomware use")
			}
			if l, ok := c.Lookup("cve-2021-44228"); !ok || !l.Ransomware() {
				t.Errorf("Log4Shell (lower-case lookup): %+v %v, want known ransomware use", l, ok)
			}
			for _, id := range []string{feedstest.NotListed, "GHSA-xvch-5gv4-984h", "", "CVE-2023"} {
				if _, ok := c.Lookup(id); ok {
					t.Errorf("%q found", id)
				}
			}
		})
	}
}

func TestParseKEVRejects(t *testing.T) {
	good := string(feedstest.KEV())
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "truncated document"},
		{"schema-less object", []byte(`{"hello": "world"}`), `no "vulnerabilities" array`},
		{"an array", []byte(`[{"cveID": "CVE-2023-44487"}]`), "not a KEV catalogue document"},
		{"an HTML error page", []byte("<html><body>Access denied</body></html>"), "not a KEV catalogue document"},
		{"truncated", []byte(good[:len(good)/2]), "truncated document"},
		{"trailing data", []byte(good + `{}`), "trailing data"},
		{"count does not match", []byte(strings.Replace(good, `"count": 3`, `"count": 4`, 1)), "count says 4 vulnerabilities, the document lists 3"},
		{"no count", []byte(strings.Replace(good, `"count": 3,`, ``, 1)), `no "count"`},
		{"no catalogVersion", []byte(strings.Replace(good, `"catalogVersion": "2025.08.25",`, ``, 1)), `no "catalogVersion"`},
		{"bad dateReleased", []byte(strings.Replace(good, feedstest.KEVReleased, "yesterday", 1)), `dateReleased "yesterday"`},
		{"bad cveID", []byte(strings.Replace(good, `"cveID": "CVE-2023-44487"`, `"cveID": "CVE-23-44487"`, 1)), `cveID "CVE-23-44487"`},
		{"no cveID", []byte(strings.Replace(good, `"cveID": "CVE-2023-44487",`, ``, 1)), `vulnerabilities[1]: no "cveID"`},
		{"bad dueDate", []byte(strings.Replace(good, `"dueDate": "2023-10-31"`, `"dueDate": "2023-10-32"`, 1)), `CVE-2023-44487: dueDate "2023-10-32"`},
		{"no dueDate", []byte(strings.Replace(good, `"dueDate": "2023-10-31",`, ``, 1)), "CVE-2023-44487: dueDate missing"},
		{"no dateAdded", []byte(strings.Replace(good, `"dateAdded": "2023-10-10",`, ``, 1)), "CVE-2023-44487: dateAdded missing"},
		{"empty catalogue", []byte(`{"catalogVersion": "1", "dateReleased": "2025-01-01T00:00:00Z", "count": 0, "vulnerabilities": []}`), "no vulnerabilities"},
		{"bad gzip", append([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3}, []byte("not deflate at all")...), "gzip"},
		{"truncated gzip", func() []byte { z := feedstest.Gzip(feedstest.KEV()); return z[:len(z)-20] }(), "gzip: truncated stream"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseKEV(bytes.NewReader(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, %v; want an error containing %q", c, err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "KEV catalogue: ") {
				t.Errorf("error %q does not name the feed", err)
			}
		})
	}
}

func TestParseKEVDuplicateKeepsEarliestDates(t *testing.T) {
	doc := `{"catalogVersion": "1", "dateReleased": "2025-01-01T00:00:00Z", "count": 2, "vulnerabilities": [
	  {"cveID": "CVE-2024-0001", "dateAdded": "2024-02-01", "dueDate": "2024-02-22", "knownRansomwareCampaignUse": "Known"},
	  {"cveID": "CVE-2024-0001", "dateAdded": "2024-01-01", "dueDate": "2024-03-01", "knownRansomwareCampaignUse": "Unknown"}]}`
	c, err := ParseKEV(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	e, _ := c.Lookup("CVE-2024-0001")
	if c.Len() != 1 || e.DateAdded.Format(time.DateOnly) != "2024-01-01" || e.DueDate.Format(time.DateOnly) != "2024-02-22" || !e.Ransomware() {
		t.Fatalf("merged %d entries: %+v", c.Len(), e)
	}
}

func TestParseEPSSFixture(t *testing.T) {
	for name, data := range map[string][]byte{"csv": feedstest.EPSS(), "gzipped": feedstest.EPSSGzip(),
		"CRLF": bytes.ReplaceAll(feedstest.EPSS(), []byte("\n"), []byte("\r\n"))} {
		t.Run(name, func(t *testing.T) {
			s, err := ParseEPSS(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			if name == "gzipped" {
				// FIRST's file is one gzip member; concatenated members
				// (a re-compressed mirror) are one file too.
				z := feedstest.EPSSGzip()
				half := len(feedstest.EPSS()) / 2
				multi := append(feedstest.Gzip(feedstest.EPSS()[:half]), feedstest.Gzip(feedstest.EPSS()[half:])...)
				if m, err := ParseEPSS(bytes.NewReader(multi)); err != nil || m.Len() != s.Len() {
					t.Fatalf("multi-member gzip: %v", err)
				}
				if _, err := ParseEPSS(bytes.NewReader(append(z, "trailing garbage"...))); err == nil {
					t.Fatal("trailing garbage after the gzip stream accepted")
				}
			}
			if s.ModelVersion != feedstest.EPSSModel || s.ScoreDate.Format(time.DateOnly) != feedstest.EPSSDate || s.Len() != feedstest.EPSSEntries {
				t.Fatalf("model %q date %s, %d scores", s.ModelVersion, s.ScoreDate, s.Len())
			}
			if sc, ok := s.Lookup(feedstest.RapidReset); !ok || sc != (EPSSScore{Score: 0.9442, Percentile: 0.9995}) {
				t.Fatalf("%s: %+v %v", feedstest.RapidReset, sc, ok)
			}
			if sc, ok := s.Lookup(feedstest.AtThreshold); !ok || sc.Percentile != 0.95 {
				t.Fatalf("%s: %+v %v", feedstest.AtThreshold, sc, ok)
			}
			if _, ok := s.Lookup("CVE-1999-0001"); ok {
				t.Fatal("an absent CVE was found")
			}
		})
	}
}

func TestParseEPSSScoreDateForms(t *testing.T) {
	for _, v := range []string{"2025-08-25T00:00:00+0000", "2025-08-25T00:00:00Z", "2025-08-25T02:00:00+02:00", "2025-08-25"} {
		s, err := ParseEPSS(strings.NewReader("#model_version:v2025.03.14,score_date:" + v + "\ncve,epss,percentile\nCVE-2024-0001,0.1,0.2\n"))
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		if !s.ScoreDate.Equal(time.Date(2025, 8, 25, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("%s: %s", v, s.ScoreDate)
		}
	}
}

func TestParseEPSSRejects(t *testing.T) {
	const head = "#model_version:v2025.03.14,score_date:2025-08-25T00:00:00+0000\ncve,epss,percentile\n"
	good := feedstest.EPSS()
	tests := []struct {
		name string
		data string
		want string
	}{
		{"empty", "", "empty or not an EPSS file"},
		{"no comment line", "cve,epss,percentile\nCVE-2024-0001,0.1,0.2\n", "no #model_version"},
		{"no score_date", "#model_version:v1\ncve,epss,percentile\nCVE-2024-0001,0.1,0.2\n", "no #model_version:…,score_date:… line"},
		{"bad score_date", "#model_version:v1,score_date:tomorrow\n", `score_date "tomorrow"`},
		{"header only", head, "no scores"},
		{"wrong header", "#model_version:v1,score_date:2025-08-25\ncve,score\n", "header"},
		{"JSON instead", `{"cve": "CVE-2024-0001"}`, "line 1"},
		{"cut-off row", head + "CVE-2024-0001,0.1\n", "line 3"},
		{"too many fields", head + "CVE-2024-0001,0.1,0.2,0.3\n", "want cve,epss,percentile"},
		{"not a CVE", head + "GHSA-xxxx,0.1,0.2\n", `cve "GHSA-xxxx"`},
		{"percentile above 1", head + "CVE-2024-0001,0.1,1.2\n", "CVE-2024-0001: percentile \"1.2\""},
		{"negative score", head + "CVE-2024-0001,-0.1,0.2\n", "CVE-2024-0001: epss"},
		{"NaN", head + "CVE-2024-0001,NaN,0.2\n", "CVE-2024-0001: epss"},
		{"duplicate", head + "CVE-2024-0001,0.1,0.2\nCVE-2024-0001,0.1,0.2\n", "CVE-2024-0001 listed twice"},
		{"comment after the header", head + "#x\n", "comment after the header"},
		{"bad gzip", string(append([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3}, []byte("garbage")...)), "gzip"},
		{"truncated gzip", func() string { z := feedstest.EPSSGzip(); return string(z[:len(z)/2]) }(), "gzip: truncated stream"},
		{"gzip with a bad checksum", func() string {
			z := feedstest.Gzip(good)
			z[len(z)-8] ^= 0xff // CRC-32 in the trailer
			return string(z)
		}(), "gzip: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseEPSS(strings.NewReader(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, %v; want an error containing %q", s, err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "EPSS scores: ") {
				t.Errorf("error %q does not name the feed", err)
			}
		})
	}
}

func TestCVEKey(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"CVE-2023-44487", true}, {"cve-2023-44487", true}, {"CVE-1999-0001", true},
		{"CVE-2023-1234567", true}, {"CVE-2023-123456789012345", true},
		{"CVE-2023-1234567890123456", false}, // valid, too long to pack
		{"CVE-2023-123", false}, {"CVE-20234-1234", false}, {"CVE-2023-12a4", false}, {"GHSA-xvch-5gv4-984h", false}, {"", false},
	}
	seen := map[uint64]string{}
	for _, tt := range tests {
		k, ok := cveKey(tt.id)
		if ok != tt.ok {
			t.Errorf("cveKey(%q) ok = %v, want %v", tt.id, ok, tt.ok)
		}
		if ok {
			if prev, dup := seen[k]; dup && !strings.EqualFold(prev, tt.id) {
				t.Errorf("%s and %s share key %d", prev, tt.id, k)
			}
			seen[k] = tt.id
		}
	}
	// IDs too long to pack still work, through the string table.
	var tb table[int]
	tb = newTable[int](1)
	tb.put("CVE-2023-1234567890123456", 7)
	if v, ok := tb.get("cve-2023-1234567890123456"); !ok || v != 7 || tb.len() != 1 {
		t.Fatalf("long ID: %v %v", v, ok)
	}
	if _, ok := tb.get("CVE-2023-12345678901234567890"); ok {
		t.Fatal("an invalid ID was found")
	}
}
