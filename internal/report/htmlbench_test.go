package report

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// BenchmarkHTML1M renders the HTML page of 1,000,000 findings (10,000
// images × 100 findings in 50 clusters), aggregated row by row as a
// streaming reporter feeds it, and opens it in headless Chromium. The time
// per op includes building the rows image by image; it reports the time in
// HTMLGroups.Add (add-ms) and in writing the page (write-ms), the live heap
// with the aggregation done (heap-MiB, the fleet's inventory included), the
// page's size (page-MB, target < 15), the first contentful
// paint when Chromium reports it before dumping the DOM (first-paint-ms),
// the time from navigation
// to the groups table being rendered with its handlers attached as the page
// measures it (open-ms, target < 5,000), the same with a vulnerability
// group expanded from the URL hash (expand-open-ms; expand-ms is the
// expansion alone: one pass over every row), and the wall time of
// a whole headless Chromium run that dumps the DOM or paints a screenshot
// (dom-wall-ms, screenshot-wall-ms; they include starting the browser,
// measured alone as browser-wall-ms).
func BenchmarkHTML1M(b *testing.B) { benchmarkHTML(b, 10_000) }

// BenchmarkHTML200k is BenchmarkHTML1M for 200,000 findings (2,000 images).
func BenchmarkHTML200k(b *testing.B) { benchmarkHTML(b, 2_000) }

func benchmarkHTML(b *testing.B, images int) {
	asOf := ts("2025-03-10T06:00:00Z")
	s := newScaleFleet(images, 50, asOf)
	path := filepath.Join(b.TempDir(), "report.html")
	var page bytes.Buffer
	var write time.Duration
	var heap uint64
	for b.Loop() {
		page.Reset()
		s.added = 0
		g := NewHTMLGroups(asOf)
		head := s.stream(g)
		heap = heapInUse()
		start := time.Now()
		if err := g.WriteHTML(&page, head); err != nil {
			b.Fatal(err)
		}
		write = time.Since(start)
	}
	b.StopTimer()
	b.ReportMetric(float64(s.added.Milliseconds()), "add-ms")
	b.ReportMetric(float64(write.Milliseconds()), "write-ms")
	b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
	if err := os.WriteFile(path, page.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(page.Len())/1e6, "page-MB")
	empty := filepath.Join(b.TempDir(), "empty.html")
	if err := os.WriteFile(empty, []byte("<!DOCTYPE html><title>x</title><p>x"), 0o644); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(wallMS(func() { runChromium(b, empty, "--dump-dom") }), "browser-wall-ms")
	var dom []byte
	b.ReportMetric(wallMS(func() { dom = runChromium(b, path, "--dump-dom") }), "dom-wall-ms")
	b.ReportMetric(readyMS(b, dom), "open-ms")
	// Chromium may dump the DOM before it paints: first paint is then
	// not known.
	if ms, ok := htmlAttrMS(dom, "data-first-paint"); ok {
		b.ReportMetric(ms, "first-paint-ms")
	}
	d := decodePage(b, page.Bytes())
	vuln := d.Str[raw[int](b, d.Vulns[0][0])]
	dom = runChromium(b, path+"#vuln="+vuln, "--dump-dom")
	if !bytes.Contains(dom, []byte(`<tr class="detail">`)) {
		b.Fatalf("#vuln=%s did not expand the group", vuln)
	}
	b.ReportMetric(readyMS(b, dom), "expand-open-ms")
	if ms, ok := htmlAttrMS(dom, "data-follow-ms"); ok {
		b.ReportMetric(ms, "expand-ms")
	}
	dom = runChromium(b, path+"#selfcheck", "--dump-dom")
	if m := regexp.MustCompile(`data-selfcheck="(vulns: ok \d+; images: ok \d+; ns: ok \d+)"`).FindSubmatch(dom); m == nil {
		b.Fatalf("clicking groups open and shut failed: %s", regexp.MustCompile(`data-selfcheck="[^"]*"`).Find(dom))
	}
	shot := filepath.Join(b.TempDir(), "report.png")
	b.ReportMetric(wallMS(func() { runChromium(b, path, "--window-size=1280,1800", "--screenshot="+shot) }), "screenshot-wall-ms")
	if st, err := os.Stat(shot); err != nil || st.Size() < 30_000 {
		b.Fatalf("screenshot: %v (%v bytes): page probably blank", err, st)
	}
}

// heapInUse is the live heap after a collection: the aggregation and the
// fleet's inventory (the rows of the last image only).
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func wallMS(f func()) float64 {
	start := time.Now()
	f()
	return float64(time.Since(start).Microseconds()) / 1000
}

// readyMS is the page's own measure of its opening: milliseconds from
// navigation to the groups table rendered and interactive.
func readyMS(tb testing.TB, dom []byte) float64 {
	tb.Helper()
	n, ok := htmlAttrMS(dom, "data-ready")
	if !ok {
		tb.Fatal("the page never became ready (no data-ready attribute)")
	}
	return n
}

// htmlAttrMS reads a number the page set on its <html> element.
func htmlAttrMS(dom []byte, attr string) (float64, bool) {
	m := regexp.MustCompile(`<html[^>]* ` + attr + `="(\d+)"`).FindSubmatch(dom)
	if m == nil {
		return 0, false
	}
	n, _ := strconv.Atoi(string(m[1]))
	return float64(n), true
}

// BenchmarkHTMLGroupsAdd measures HTMLGroups.Add alone as WriteHTML uses
// it: the 200,000 rows of BenchmarkHTML200k's fleet, built once and ranked,
// aggregated per op.
func BenchmarkHTMLGroupsAdd(b *testing.B) {
	asOf := ts("2025-03-10T06:00:00Z")
	s := newScaleFleet(2_000, 50, asOf)
	r := Build(s.input(0, s.n, &Interner{}))
	b.ReportAllocs()
	before := liveHeap()
	b.ResetTimer()
	var g *HTMLGroups
	for b.Loop() {
		g = NewHTMLGroups(asOf)
		g.byPtr = map[*Image]int32{}
		for f := range r.Findings.All() {
			g.Add(f)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*r.Findings.Len()), "ns/row")
	// What the aggregation holds until the page is written.
	b.ReportMetric(float64(liveHeap()-before)/(1<<20), "held-MiB")
	runtime.KeepAlive(g)
	runtime.KeepAlive(r)
}

// liveHeap is the heap in use after a collection.
func liveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
