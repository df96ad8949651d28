package report

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/fleetscan/fleetscan/internal/sla"
	"github.com/fleetscan/fleetscan/pkg/contract"
	"github.com/fleetscan/fleetscan/pkg/reportjson"
)

var arm64v8 = contract.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}

// multiArch is a fleet running one multi-arch image (one index digest) on
// linux/amd64 and linux/arm64/v8 nodes: both sides have openssl's
// CVE-2024-1000, only the arm64 side has zlib's CVE-2024-2000. The arm64
// side also runs in a Job named like a CronJob's, attributed by inference
// (as from an inventory file).
func multiArch(t *testing.T) *Report {
	t.Helper()
	asOf := ts("2025-03-10T06:00:00Z")
	agent := digest('e')
	fleet := NewFleet()
	amd := entry("ops", "Deployment", "agent", "ghcr.io/acme/agent:1.0", agent)
	arm := amd
	arm.Platform = arm64v8
	cron := arm
	cron.Pod, cron.Workload = "backfill-29412345-x7k2p", contract.Workload{Kind: "CronJob", Name: "backfill", Inferred: true}
	fleet.Add("edge", amd)
	fleet.Add("edge", arm)
	fleet.Add("edge", cron)

	openssl := contract.Finding{VulnerabilityID: "CVE-2024-1000", PkgName: "openssl", PkgVersion: "3.1.3-r0",
		FixedVersion: "3.1.4-r0", Status: "fixed", Severity: "CRITICAL"}
	zlib := contract.Finding{VulnerabilityID: "CVE-2024-2000", PkgName: "zlib", PkgVersion: "1.3-r2",
		FixedVersion: "1.3.1-r0", Status: "fixed", Severity: "HIGH"}
	amdImg := fleet.Image(contract.ImageKey{Digest: agent, Platform: contract.DefaultPlatform}, "")
	amdImg.Vulns = Compact([]contract.Finding{openssl}, nil)
	armImg := fleet.Image(contract.ImageKey{Digest: agent, Platform: arm64v8}, "")
	armImg.Vulns = Compact([]contract.Finding{openssl, zlib}, nil)

	led := mapLedger{}
	for _, v := range armImg.Vulns {
		led.set(identity("ghcr.io/acme/agent", v), ts("2025-01-01T06:00:00Z"), sla.ChangeStillOpen)
	}
	return Build(Input{
		GeneratedAt: asOf, AsOf: asOf, Scope: Scope{Mode: "run", RunID: "r1"},
		Clusters: []Cluster{{Name: "edge", Status: ClusterOK, Pods: 3, Containers: 3}},
		// The arm64 side first: the order of the input must not matter.
		Images: []*Image{armImg, amdImg},
		Policy: sla.DefaultPolicy(),
		Ledger: led,
	})
}

// want is each row's (vulnerability, platform), in report order: the rows
// of CVE-2024-1000 on both platforms next to each other.
var wantRows = [][2]string{
	{"CVE-2024-1000", "linux/amd64"}, {"CVE-2024-1000", "linux/arm64/v8"}, {"CVE-2024-2000", "linux/arm64/v8"},
}

func TestMultiPlatformCSV(t *testing.T) {
	t.Parallel()
	r := multiArch(t)
	recs, err := csv.NewReader(bytes.NewReader(render(t, r, WriteCSV))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := func(name string) int {
		i := slices.Index(recs[0], name)
		if i < 0 {
			t.Fatalf("no column %q in %v", name, recs[0])
		}
		return i
	}
	if d, p := col("digest"), col("platform"); p != d+1 {
		t.Fatalf("platform is column %d, digest %d: want it right after digest", p, d)
	}
	var got [][2]string
	for _, rec := range recs[1:] {
		got = append(got, [2]string{rec[col("cve_id")], rec[col("platform")]})
		if rec[col("digest")] != digest('e') {
			t.Errorf("row %v: digest %s", rec, rec[col("digest")])
		}
		wl := rec[col("workloads")]
		inferred := strings.Contains(wl, "edge/ops/CronJob/backfill (inferred)")
		if arm := rec[col("platform")] == "linux/arm64/v8"; arm != inferred || !strings.Contains(wl, "edge/ops/Deployment/agent") ||
			strings.Contains(wl, "agent (inferred)") {
			t.Errorf("row %v: workloads %q", rec[:2], wl)
		}
	}
	if !slices.Equal(got, wantRows) {
		t.Errorf("rows (cve, platform) = %v, want %v", got, wantRows)
	}
}

func TestMultiPlatformJSON(t *testing.T) {
	t.Parallel()
	r := multiArch(t)
	rep, err := reportjson.Decode(bytes.NewReader(render(t, r, WriteJSON)))
	if err != nil {
		t.Fatal(err)
	}
	var got [][2]string
	for _, f := range rep.Findings {
		got = append(got, [2]string{f.VulnerabilityID, f.Platform})
	}
	if !slices.Equal(got, wantRows) {
		t.Errorf("findings (id, platform) = %v, want %v", got, wantRows)
	}
	if rep.Summary.InferredOwners != 1 {
		t.Errorf("summary.inferredOwners = %d, want 1", rep.Summary.InferredOwners)
	}
	for _, img := range rep.Images {
		want := []string{}
		if img.Platform == "linux/arm64/v8" {
			want = []string{"edge/ops/CronJob/backfill"}
		}
		if !slices.Equal(img.OwnerInferred, want) || slices.ContainsFunc(img.Workloads, func(w string) bool { return strings.Contains(w, "(") }) {
			t.Errorf("image %s: workloads %v, owner_inferred %v (want %v)", img.Platform, img.Workloads, img.OwnerInferred, want)
		}
	}
	wantTickets := map[string][]string{"openssl": {"linux/amd64", "linux/arm64/v8"}, "zlib": {"linux/arm64/v8"}}
	for _, tk := range rep.Tickets {
		if !slices.Equal(tk.Platforms, wantTickets[tk.Package]) || !slices.Equal(tk.OwnerInferred, []string{"edge/ops/CronJob/backfill"}) {
			t.Errorf("ticket %s: platforms %v, owner_inferred %v", tk.Package, tk.Platforms, tk.OwnerInferred)
		}
	}
	if len(rep.Tickets) != 2 {
		t.Errorf("%d tickets, want 2", len(rep.Tickets))
	}
}

func TestMultiPlatformTickets(t *testing.T) {
	t.Parallel()
	r := multiArch(t)
	recs, err := csv.NewReader(bytes.NewReader(render(t, r, WriteTicketsCSV))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	pi, wi, ki := slices.Index(recs[0], "platforms"), slices.Index(recs[0], "workloads"), slices.Index(recs[0], "package")
	if pi < 0 {
		t.Fatalf("no platforms column in %v", recs[0])
	}
	want := map[string]string{"openssl": "linux/amd64;linux/arm64/v8", "zlib": "linux/arm64/v8"}
	for _, rec := range recs[1:] {
		if rec[pi] != want[rec[ki]] || !strings.Contains(rec[wi], "edge/ops/CronJob/backfill (inferred)") {
			t.Errorf("ticket %s: platforms %q, workloads %q", rec[ki], rec[pi], rec[wi])
		}
	}
	var tickets []reportjson.Ticket
	for line := range bytes.Lines(bytes.Trim(bytes.TrimSpace(render(t, r, WriteTicketsJSON)), "[]")) {
		line = bytes.TrimSuffix(bytes.TrimSpace(line), []byte(","))
		if len(line) == 0 {
			continue
		}
		var tk reportjson.Ticket
		if err := json.Unmarshal(line, &tk); err != nil {
			t.Fatalf("tickets.json line %s: %v", line, err)
		}
		tickets = append(tickets, tk)
	}
	for _, tk := range tickets {
		if strings.Join(tk.Platforms, ";") != want[tk.Package] {
			t.Errorf("tickets.json %s: platforms %v", tk.Package, tk.Platforms)
		}
	}
	if len(tickets) != 2 {
		t.Errorf("tickets.json has %d tickets, want 2", len(tickets))
	}
}

func TestMultiPlatformMarkdownHTMLConsole(t *testing.T) {
	t.Parallel()
	r := multiArch(t)
	md := string(render(t, r, WriteMarkdown))
	for _, want := range []string{
		"| Image | Platform | Vulnerability |",
		"| ghcr.io/acme/agent:1.0 | linux/amd64 | CVE-2024-1000 |",
		"| ghcr.io/acme/agent:1.0 | linux/arm64/v8 | CVE-2024-1000 |",
		"| ghcr.io/acme/agent:1.0 | linux/arm64/v8 | CVE-2024-2000 |",
		"edge/ops/CronJob/backfill (inferred)",
		"| linux/amd64, linux/arm64/v8 | CRITICAL |",
		"1 workload attributed by naming convention",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
	html := string(render(t, r, WriteHTML))
	for _, want := range []string{
		`<th>Image</th><th>Platform</th>`,
		`<td>ghcr.io/acme/agent:1.0</td><td class="nowrap">linux/arm64/v8</td><td class="nowrap">CVE-2024-2000</td>`,
		`data-platforms="1"`,
		`"linux/arm64/v8"]`,
		`<td class="nowrap">linux/amd64, linux/arm64/v8</td>`,
		`owners inferred`,
		`edge/ops/CronJob/backfill (inferred)`,
	} {
		if !strings.Contains(html, want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	console := string(render(t, r, WriteConsole))
	if !strings.Contains(console, "Owners:   1 workload attributed by naming convention, not looked up (marked (inferred))") {
		t.Errorf("console summary does not count the inferred owner:\n%s", console)
	}

	// One platform: the HTML report does not spend a column on it.
	single := string(render(t, Build(fixture(t)), WriteHTML))
	if strings.Contains(single, "<th>Platform</th>") || strings.Contains(single, `data-platforms="1"`) {
		t.Error("single-platform HTML report shows a platform column")
	}
}

// TestFleetOwnerInferred: a workload is marked inferred only when every
// entry naming it says so.
func TestFleetOwnerInferred(t *testing.T) {
	t.Parallel()
	dig := digest('f')
	looked := entry("ops", "CronJob", "backfill", "ghcr.io/acme/job:1", dig)
	guessed := looked
	guessed.Workload.Inferred = true
	for _, tc := range []struct {
		name    string
		entries []contract.InventoryEntry
		want    []string
	}{
		{"looked up", []contract.InventoryEntry{looked}, nil},
		{"inferred", []contract.InventoryEntry{guessed, guessed}, []string{"c/ops/CronJob/backfill"}},
		{"inferred then looked up", []contract.InventoryEntry{guessed, looked}, nil},
		{"looked up then inferred", []contract.InventoryEntry{looked, guessed}, nil},
	} {
		fleet := NewFleet()
		for _, e := range tc.entries {
			fleet.Add("c", e)
		}
		img := fleet.Image(contract.ImageKey{Digest: dig, Platform: amd64}, "")
		if !slices.Equal(img.OwnerInferred, tc.want) {
			t.Errorf("%s: OwnerInferred = %v, want %v", tc.name, img.OwnerInferred, tc.want)
		}
	}
}
