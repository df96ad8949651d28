// Package feedstest holds KEV and EPSS fixtures in the feeds' real formats,
// naming CVEs of the fixture vulnerability DB (internal/fixture/advisories),
// and an HTTP server that serves them — or fails the way real servers do —
// for tests of the updater, the reporter and the all-in-one.
//
//   - kev.json is an excerpt of CISA's catalogue 2025.08.25, entries copied
//     verbatim: CVE-2023-44487 (HTTP/2 Rapid Reset, listed 2023-10-10, due
//     2023-10-31) and CVE-2023-4911 (glibc "Looney Tunables", listed
//     2023-11-21, due 2023-12-12), both in the fixture DB, and
//     CVE-2021-44228 (Log4Shell, known ransomware use), which is not. Its
//     count is the excerpt's (3).
//   - epss.csv has FIRST's layout (model_version/score_date comment line,
//     then cve,epss,percentile) for every CVE of the fixture DB. The scores
//     are illustrative, not FIRST's: CVE-2023-44487 and CVE-2023-4911 are
//     high, CVE-2024-45337 sits exactly at the 0.95 percentile, most are low.
package feedstest

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var (
	//go:embed kev.json
	kevJSON []byte
	//go:embed epss.csv
	epssCSV []byte
)

// Facts of the fixtures, for assertions.
const (
	KEVVersion  = "2025.08.25"
	KEVReleased = "2025-08-25T17:04:19.9796Z"
	KEVEntries  = 3
	EPSSModel   = "v2025.03.14"
	EPSSDate    = "2025-08-25"
	EPSSEntries = 40
	// RapidReset is in both feeds and the fixture DB.
	RapidReset = "CVE-2023-44487"
	// LooneyTunables is in both feeds and the fixture DB.
	LooneyTunables = "CVE-2023-4911"
	// Log4Shell is in KEV with known ransomware use, not in the fixture DB.
	Log4Shell = "CVE-2021-44228"
	// AtThreshold has an EPSS percentile of exactly 0.95.
	AtThreshold = "CVE-2024-45337"
	// NotListed is in the fixture DB and EPSS, not in KEV.
	NotListed = "CVE-2023-5363"
)

// KEV returns the KEV catalogue fixture (JSON).
func KEV() []byte { return bytes.Clone(kevJSON) }

// EPSS returns the EPSS fixture (plain CSV).
func EPSS() []byte { return bytes.Clone(epssCSV) }

// EPSSGzip returns the EPSS fixture gzipped, as FIRST serves it.
func EPSSGzip() []byte { return Gzip(epssCSV) }

// Gzip compresses data.
func Gzip(data []byte) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, _ = zw.Write(data)
	_ = zw.Close()
	return b.Bytes()
}

// WriteFiles writes the fixtures into dir (kev.json, epss.csv.gz) and
// returns their paths.
func WriteFiles(t testing.TB, dir string) (kevPath, epssPath string) {
	t.Helper()
	kevPath, epssPath = filepath.Join(dir, "kev.json"), filepath.Join(dir, "epss.csv.gz")
	if err := os.WriteFile(kevPath, KEV(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(epssPath, EPSSGzip(), 0o644); err != nil {
		t.Fatal(err)
	}
	return kevPath, epssPath
}

// Response is what the server answers on a path.
type Response struct {
	// Status defaults to 200.
	Status int
	Body   []byte
	// ETag, when set, is sent, and a request with a matching If-None-Match
	// gets 304 Not Modified.
	ETag string
	// Hang, when set, holds the request open without answering until the
	// client gives up (or the server closes).
	Hang bool
	// HangAfter sends the headers and this many body bytes, then hangs.
	HangAfter int
}

// Server is an HTTP server for the feeds whose answers tests change.
type Server struct {
	*httptest.Server
	mu     sync.Mutex
	routes map[string]Response
	hits   map[string]int
	done   chan struct{}
}

// Feed paths the server answers by default: the fixtures.
const (
	KEVPath  = "/kev.json"
	EPSSPath = "/epss_scores-current.csv.gz"
)

// NewServer starts a server serving the fixtures on KEVPath and EPSSPath;
// it is closed with the test.
func NewServer(t testing.TB) *Server {
	s := &Server{routes: map[string]Response{
		KEVPath:  {Body: KEV(), ETag: `"kev-1"`},
		EPSSPath: {Body: EPSSGzip(), ETag: `"epss-1"`},
	}, hits: map[string]int{}, done: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(func() {
		close(s.done) // release hanging handlers first
		s.Close()
	})
	return s
}

// Set changes the answer on a path.
func (s *Server) Set(path string, r Response) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.routes[path] = r
}

// Hits counts the requests for a path.
func (s *Server) Hits(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

// FeedURL is the URL of a path.
func (s *Server) FeedURL(path string) string { return s.URL + path }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	resp, ok := s.routes[r.URL.Path]
	s.hits[r.URL.Path]++
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	hang := func() {
		select {
		case <-r.Context().Done():
		case <-s.done:
		case <-time.After(time.Minute):
		}
	}
	if resp.Hang {
		hang()
		return
	}
	if resp.ETag != "" {
		w.Header().Set("ETag", resp.ETag)
		if r.Header.Get("If-None-Match") == resp.ETag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	if resp.Status == 0 {
		resp.Status = http.StatusOK
	}
	if resp.HangAfter > 0 {
		w.WriteHeader(resp.Status)
		_, _ = w.Write(resp.Body[:min(resp.HangAfter, len(resp.Body))])
		w.(http.Flusher).Flush()
		hang()
		return
	}
	w.WriteHeader(resp.Status)
	_, _ = w.Write(resp.Body)
}
