package report

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/goldentest"
	"github.com/fleetscan/fleetscan/internal/tooltest"
)

// chromium returns the headless browser the HTML tests drive.
func chromium(t testing.TB) string {
	t.Helper()
	tooltest.Require(t, "Chromium (apt-get install -y chromium)")
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium not found: the HTML report is checked in real headless Chromium; " +
		"install it with `apt-get install -y chromium` (Debian/Ubuntu)")
	return ""
}

// runChromium loads file in headless Chromium with name resolution
// disabled (a page that fetched anything would fail to) and returns stdout.
func runChromium(t testing.TB, file string, args ...string) []byte {
	t.Helper()
	bin := chromium(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--disable-extensions", "--disable-background-networking", "--hide-scrollbars",
		"--host-resolver-rules=MAP * ~NOTFOUND", "--user-data-dir=" + t.TempDir(),
	}
	cmd := exec.CommandContext(ctx, bin, append(append(base, args...), "file://"+file)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.Bytes()
}

func writeHTML(t *testing.T, r *Report) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "report.html")
	if err := os.WriteFile(path, render(t, r, WriteHTML), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// externalRef finds anything a browser would fetch: scripts, styles,
// images, frames, fonts or CSS imports from elsewhere.
var externalRef = regexp.MustCompile(`(?i)<(script|img|iframe|link|source|video|audio|embed|object)\b[^>]*\b(src|href|data)\s*=|@import|url\(\s*['"]?(https?:|//)`)

func TestHTMLIsSelfContained(t *testing.T) {
	page := render(t, Build(fixture(t)), WriteHTML)
	if m := externalRef.Find(page); m != nil {
		t.Fatalf("HTML references an external resource: %s", m)
	}
	for _, want := range []string{`id="severity-chart"`, `id="deadlines"`, `id="breached"`, `id="coverage"`, `id="groups"`, "<style>", "fleetscan-data",
		`<meta http-equiv="Content-Security-Policy" content="default-src 'none';`, `<a href="report.csv">report.csv</a>`} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("HTML lacks %s", want)
		}
	}
	goldentest.Assert(t, "report.html", page)
}

// TestHTMLRendersInChromium loads the report in real headless Chromium: the
// script must fill the groups table, expand the group a URL hash names, and
// a screenshot must show a rendered page (not blank, with the verdict
// banner's colour).
func TestHTMLRendersInChromium(t *testing.T) {
	in := fixture(t)
	// Hostile text must stay text.
	in.Images[0].Vulns[2].Title = `</script><img src=x onerror="document.title='pwned'">`
	r := Build(in)
	file := writeHTML(t, r)

	dom := string(runChromium(t, file, "--dump-dom"))
	if !strings.Contains(dom, "Showing 1–7 of 7") || !regexp.MustCompile(`<html[^>]* data-ready="\d+"`).MatchString(dom) {
		t.Fatalf("groups table not rendered by the page script; #count is %q", regexp.MustCompile(`id="count"[^>]*>[^<]*`).FindString(dom))
	}
	groups := dom[strings.Index(dom, `<table id="groups">`):]
	// One group per vulnerability; three have unaccepted breaches.
	if n := strings.Count(groups, `<tr class="group`); n != 7 {
		t.Errorf("%d vulnerability groups, want 7", n)
	}
	if n := strings.Count(groups, `<tr class="group breached"`); n != 3 {
		t.Errorf("%d breached vulnerability groups, want 3", n)
	}
	// The KEV-listed vulnerability carries its badge (ransomware: known),
	// EPSS is shown, and the cards count KEV findings and end-of-life images.
	if n := strings.Count(groups, `<span class="kev ransom" title="CISA KEV: due 2025-03-26, known ransomware use">KEV</span>`); n != 1 {
		t.Errorf("%d KEV badges in the table, want 1", n)
	}
	if !strings.Contains(groups, `title="percentile 0.97">0.62</td>`) {
		t.Error("EPSS score of CVE-2024-0003 not shown")
	}
	if strings.Contains(groups, `<tr class="detail">`) {
		t.Error("a group is expanded before anyone asked")
	}
	for _, want := range []string{`id="f-kev"`, `id="f-vex"`, `<b>1 / 0</b>known exploited (KEV) / breached`, `<b>1</b>end-of-life OS images`,
		"KEV catalogue 2025.03.09 (1 CVEs", "alpine 3.15.11"} {
		if !strings.Contains(dom, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(dom, "<title>pwned") || strings.Contains(dom, `<img src="x"`) {
		t.Fatal("a finding title was interpreted as HTML")
	}
	if !strings.Contains(dom, "onerror=") {
		t.Fatal("hostile title not shown as text")
	}
	assertExpands(t, file)
	// Clicking a group opens and shuts it, in each view.
	check := regexp.MustCompile(`data-selfcheck="([^"]*)"`).FindStringSubmatch(string(runChromium(t, file+"#selfcheck", "--dump-dom")))
	if check == nil || check[1] != "vulns: ok 1; images: ok 5; ns: ok 1" {
		t.Errorf("clicking groups: %v", check)
	}
	assertScreenshot(t, file)
}

// assertExpands opens groups by URL hash: the page must show their rows,
// decoded from the data document, with the VEX, rule and exploit cells.
func assertExpands(t *testing.T, file string) {
	t.Helper()
	for _, tc := range []struct {
		hash string
		want []string
	}{
		{"#vuln=CVE-2024-0003", []string{
			`<a href="#image=sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">docker.io/library/nginx:1.25</a>`,
			`<td>zlib</td><td>1.3-r2</td><td>—</td><td class="nowrap">2025-01-29</td><td class="num">-40</td><td class="status-open">open</td>`,
			`title="vex/acme.openvex.json (Acme Security)">under_investigation</td><td>epss</td>`}},
		{"#vuln=GHSA-4v7x-pqxf-cx7m", []string{
			`title="vex/acme.openvex.json (Acme Security)">not_affected: vulnerable_code_not_in_execute_path</td>`,
			`<td class="status-not_affected">not_affected</td>`}},
		{"#image=sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", []string{
			`CVE-2024-0002<span class="kev ransom" title="CISA KEV: due 2025-03-26, known ransomware use">KEV</span>`,
			`<td>kev</td>`, `<td class="status-acceptance-expired">acceptance-expired</td>`, `<td class="status-accepted">accepted</td>`,
			`end-of-life OS · workloads (3): prod-eu/web/Deployment/frontend, staging/edge/DaemonSet/proxy, staging/web/Deployment/frontend`}},
		{"#ns=payments", []string{`<a href="#image=sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb">ghcr.io/acme/api:v2</a>`}},
	} {
		dom := string(runChromium(t, file+tc.hash, "--dump-dom"))
		detail := regexp.MustCompile(`<tr class="detail">.*?</table>`).FindString(dom)
		if detail == "" {
			t.Errorf("%s: no group expanded", tc.hash)
			continue
		}
		for _, want := range tc.want {
			if !strings.Contains(detail, want) {
				t.Errorf("%s: expanded group lacks %s\n%s", tc.hash, want, detail)
			}
		}
	}
}

// assertScreenshot takes a screenshot of the page: a PNG of plausible size
// with many colours and the verdict banner.
func assertScreenshot(t *testing.T, file string) {
	t.Helper()
	shot := filepath.Join(t.TempDir(), "report.png")
	runChromium(t, file, "--window-size=1280,1800", "--screenshot="+shot)
	data, err := os.ReadFile(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	if len(data) < 30_000 {
		t.Fatalf("screenshot is only %d bytes: page probably blank", len(data))
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	colors, banner := paletteOf(img)
	if colors < 50 {
		t.Fatalf("screenshot has %d distinct colours: page probably blank", colors)
	}
	if !banner {
		t.Fatal("screenshot lacks the red verdict banner (#ffebe9): CSS not applied?")
	}
	if dir := os.Getenv("FLEETSCAN_SCREENSHOT_DIR"); dir != "" {
		_ = os.WriteFile(filepath.Join(dir, filepath.Base(file)+".png"), data, 0o644)
	}
}

func paletteOf(img image.Image) (int, bool) {
	seen := map[[3]uint32]bool{}
	banner := false
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			c := [3]uint32{r >> 8, g >> 8, bl >> 8}
			seen[c] = true
			if c == [3]uint32{0xff, 0xeb, 0xe9} {
				banner = true
			}
		}
	}
	return len(seen), banner
}

// TestHTMLEdgesInChromium: a multi-platform fleet names an image by digest
// and platform (the same digest runs as two images), and a report without
// a finding still renders its (empty) groups table.
func TestHTMLEdgesInChromium(t *testing.T) {
	file := writeHTML(t, multiArch(t))
	arm := "#image=" + digest('e') + "@linux/arm64/v8"
	dom := string(runChromium(t, file+arm, "--dump-dom"))
	detail := regexp.MustCompile(`<tr class="detail">.*?</table>`).FindString(dom)
	for _, want := range []string{"linux/arm64/v8 · workloads (2): edge/ops/CronJob/backfill (inferred), edge/ops/Deployment/agent",
		">CVE-2024-1000<", ">CVE-2024-2000<"} {
		if !strings.Contains(detail, want) {
			t.Errorf("%s: expanded image lacks %q:\n%s", arm, want, detail)
		}
	}
	if !strings.Contains(dom, `<th>Image</th><th>Platform</th><th>Digest</th>`) {
		t.Error("multi-platform images view has no platform column")
	}

	r := Build(Input{GeneratedAt: ts("2025-03-10T06:00:00Z"), AsOf: ts("2025-03-10T06:00:00Z"), Scope: Scope{Mode: "fleet"}})
	dom = string(runChromium(t, writeHTML(t, r), "--dump-dom"))
	if !regexp.MustCompile(`<html[^>]* data-ready="\d+"`).MatchString(dom) || !strings.Contains(dom, `id="count" class="muted">No matching group`) {
		t.Errorf("empty report: groups table not rendered: %q", regexp.MustCompile(`id="count"[^>]*>[^<]*`).FindString(dom))
	}
}
