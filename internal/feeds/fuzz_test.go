package feeds

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/fleetscan/fleetscan/internal/feeds/feedstest"
)

// FuzzParseKEV: whatever the bytes, ParseKEV returns a catalogue whose
// every entry is valid and can be looked up, or an error — never a panic
// or a half-filled catalogue. `go test -fuzz FuzzParseKEV ./internal/feeds/`
// explores further; the seeds (and testdata/fuzz) run with every go test.
func FuzzParseKEV(f *testing.F) {
	good := feedstest.KEV()
	f.Add(good)
	f.Add(feedstest.Gzip(good))
	f.Add(good[:len(good)/2])
	f.Add([]byte(`{"catalogVersion":"1","dateReleased":"2025-01-01T00:00:00Z","count":1,"vulnerabilities":[{"cveID":"cve-2024-0001","dateAdded":"2024-01-01","dueDate":"2024-01-22"}]}`))
	f.Add([]byte(`{"catalogVersion":"1","dateReleased":"2025-01-01T00:00:00Z","count":1,"vulnerabilities":[{"cveID":"CVE-2024-12345678901234567","dateAdded":"2024-01-01","dueDate":"2024-01-22"}]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseKEV(bytes.NewReader(data))
		if err != nil {
			if c != nil {
				t.Fatal("a catalogue with an error")
			}
			return
		}
		if c.Len() == 0 || c.Version == "" || c.Released.IsZero() {
			t.Fatalf("accepted an empty or undated catalogue: %+v", c)
		}
		n := 0
		c.entries.each(func(e *KEVEntry) {
			n++
			if !validCVE(e.CVE) || e.DateAdded.IsZero() || e.DueDate.IsZero() {
				t.Fatalf("accepted an invalid entry %+v", e)
			}
			if got, ok := c.Lookup(strings.ToLower(e.CVE)); !ok || got.CVE != e.CVE {
				t.Fatalf("entry %s cannot be looked up", e.CVE)
			}
		})
		if n != c.Len() {
			t.Fatalf("Len %d, %d entries", c.Len(), n)
		}
	})
}

// FuzzParseEPSS: accepted files hold only valid CVE IDs with scores and
// percentiles in [0, 1], and re-encoding them parses to the same table.
func FuzzParseEPSS(f *testing.F) {
	f.Add(feedstest.EPSS())
	f.Add(feedstest.EPSSGzip())
	f.Add(feedstest.EPSS()[:200])
	f.Add([]byte("#model_version:v1,score_date:2025-08-25\ncve,epss,percentile\nCVE-2024-0001,1e-5,1\r\n\nCVE-2024-12345678901234567,0,0"))
	f.Add([]byte("#model_version:v1,score_date:2025-08-25T00:00:00+0000\n#other:1\nCVE,EPSS,PERCENTILE\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseEPSS(bytes.NewReader(data))
		if err != nil {
			if s != nil {
				t.Fatal("scores with an error")
			}
			return
		}
		if s.Len() == 0 || s.ModelVersion == "" || s.ScoreDate.IsZero() {
			t.Fatalf("accepted an empty or undated file: %+v", s)
		}
		var b strings.Builder
		fmt.Fprintf(&b, "#model_version:%s,score_date:%s\ncve,epss,percentile\n", "v", s.ScoreDate.Format("2006-01-02T15:04:05-0700"))
		ok := true
		s.scores.each(func(sc EPSSScore) {
			if math.IsNaN(sc.Score) || sc.Score < 0 || sc.Score > 1 || math.IsNaN(sc.Percentile) || sc.Percentile < 0 || sc.Percentile > 1 {
				ok = false
			}
		})
		if !ok {
			t.Fatal("accepted a score outside [0, 1]")
		}
		for k, sc := range s.scores.packed {
			fmt.Fprintf(&b, "CVE-%04d-%04d,%v,%v\n", k/1_000_000_000_000_000, k%1_000_000_000_000_000, sc.Score, sc.Percentile)
		}
		for id, sc := range s.scores.long {
			fmt.Fprintf(&b, "%s,%v,%v\n", id, sc.Score, sc.Percentile)
		}
		again, err := ParseEPSS(strings.NewReader(b.String()))
		if err != nil {
			t.Fatalf("re-encoded file rejected: %v\n%s", err, b.String())
		}
		if again.Len() != s.Len() || !again.ScoreDate.Equal(s.ScoreDate) {
			t.Fatalf("round trip: %d scores dated %s, want %d dated %s", again.Len(), again.ScoreDate, s.Len(), s.ScoreDate)
		}
		for k, sc := range s.scores.packed {
			if again.scores.packed[k] != sc {
				t.Fatalf("round trip changed key %d: %+v", k, again.scores.packed[k])
			}
		}
	})
}
