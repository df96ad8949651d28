package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

type machine struct {
	Date, CPU, Go, Trivy  string
	NProc                 int
	LoadBefore, LoadAfter string
}

func machineInfo() machine {
	m := machine{Date: time.Now().UTC().Format("2006-01-02"), NProc: runtime.NumCPU(), Go: runtime.Version(), CPU: "unknown", Trivy: "unknown"}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/aquasecurity/trivy" {
				m.Trivy = d.Version
			}
		}
	}
	return m
}

func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// fleetDescription summarises the generated fleet.
type fleetDescription struct {
	Images, Bases, Layers, Repos, TagRefs, Pods, Clusters int
	Advisories, Synthetic, Update                         int
	Setup                                                 time.Duration
	Spec                                                  fleetSpec
}

func describe(f *fleet, p plan, spec fleetSpec) fleetDescription {
	d := fleetDescription{Images: len(f.images), TagRefs: len(p.TagRefs), Clusters: len(f.clusters), Spec: spec,
		Advisories: len(f.base.Advisories), Synthetic: f.synthetic, Update: len(f.updated.Advisories) - len(f.base.Advisories)}
	bases, layers, repos := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, ip := range f.images {
		bases[ip.Base] = true
		repos[ip.Repository] = true
		for _, l := range ip.Layers {
			layers[l] = true
		}
	}
	d.Bases, d.Layers, d.Repos = len(bases), len(layers), len(repos)
	for _, c := range f.clusters {
		d.Pods += c.pods()
	}
	return d
}

func (d fleetDescription) summary() string {
	return fmt.Sprintf("%d unique images (%d repositories, %d base images, %d unique layers), %d pods over %d clusters running %d tag references; DB of %d advisories (%d synthetic), update adds %d",
		d.Images, d.Repos, d.Bases, d.Layers, d.Pods, d.Clusters, d.TagRefs, d.Advisories, d.Synthetic, d.Update)
}

func fmtDur(d time.Duration) string {
	if d >= 10*time.Second {
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// render returns the Markdown the harness prints and writes between the
// markers.
func render(m machine, fd fleetDescription, floor floorResult, rows []rowOutcome, failures []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s by `hack/fleetbench` (seed %d): `nproc` = %d, %s, %s, Trivy %s; load average %s before, %s after.\n\n",
		m.Date, fd.Spec.Seed, m.NProc, m.CPU, m.Go, m.Trivy, m.LoadBefore, m.LoadAfter)
	fmt.Fprintf(&b, "Fleet: %s. Setup (generate, push, build DBs) %s.\n\n", fd.summary(), fmtDur(fd.Setup))
	var a *rowResult
	for i := range rows {
		if rows[i].spec.Name == "a" {
			a = &rows[i].res
		}
	}
	b.WriteString("| row | wall | scan phase | scans | registry bytes: blobs / total | requests: manifests / blobs | peak RSS | findings | vs (a) |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	byName := map[string]rowResult{}
	for _, r := range rows {
		byName[r.spec.Name] = r.res
		ratio := "1.0×"
		if a != nil && r.spec.Name != "a" && r.res.Wall > 0 {
			ratio = fmt.Sprintf("%.1f× faster", a.Wall.Seconds()/r.res.Wall.Seconds())
		}
		findings := fmt.Sprintf("%d", r.res.FindingsCount())
		if r.spec.Kind == "cli" {
			findings = fmt.Sprintf("%d (%d over all tags)", r.res.FindingsCount(), r.res.RawFindings)
		}
		rss := fmt.Sprintf("%.0f MiB", float64(r.res.PeakRSSKiB)/1024)
		if r.spec.Kind == "cli" {
			rss += " (largest CLI process)"
		} else {
			rss += fmt.Sprintf(" (one process, %d worker(s))", r.spec.Workers)
		}
		scans, phase := fmt.Sprintf("%d", r.res.Scans), "—"
		if r.spec.Kind != "cli" {
			scans += fmt.Sprintf(" (%d queued)", r.res.Queued)
			phase = fmtDur(r.res.ScanPhase)
		}
		fmt.Fprintf(&b, "| (%s) %s | %s | %s | %s | %s / %s | %d / %d | %s | %s | %s |\n",
			r.spec.Name, r.spec.Label, fmtDur(r.res.Wall), phase, scans, mib(r.res.Traffic.BlobBytes), mib(r.res.Traffic.TotalBytes()),
			r.res.Traffic.ManifestRequests, r.res.Traffic.BlobRequests, rss, findings, ratio)
	}
	fmt.Fprintf(&b, "| floor: every unique layer fetched + gunzipped once (%d at a time) | %s | — | — | %s / — | — / %d | — | — | %.1f× faster |\n\n",
		floor.Concurrency, fmtDur(floor.Wall), mib(floor.Compressed), floor.Layers, safeRatio(a, floor.Wall))

	b.WriteString("Targets:\n\n")
	if b2, ok := byName["b2"]; ok && a != nil {
		r := a.Wall.Seconds() / b2.Wall.Seconds()
		fmt.Fprintf(&b, "- (b) with 2 workers ≥ 3× faster than (a): %.1f× — %s\n", r, metStr(r >= 3))
		fr := b2.Wall.Seconds() / floor.Wall.Seconds()
		fmt.Fprintf(&b, "- (b) within 2× of the floor: (b2)/floor = %.1f — %s\n", fr, metStr(fr <= 2))
	}
	if c, ok := byName["c"]; ok && a != nil {
		r := a.Wall.Seconds() / c.Wall.Seconds()
		fmt.Fprintf(&b, "- (c) ≥ 20× faster than (a): %.1f× — %s; zero layer bytes pulled: %s blobs — %s\n", r, metStr(r >= 20), mib(c.Traffic.BlobBytes), metStr(c.Traffic.BlobBytes == 0))
	}
	if d, ok := byName["d"]; ok {
		if cold, ok := byName["b4"]; ok && d.Wall > 0 {
			r := cold.Wall.Seconds() / d.Wall.Seconds()
			fmt.Fprintf(&b, "- (d) ≥ 10× faster than the cold run it follows (b4): %.1f× — %s; zero layer bytes pulled: %s blobs — %s",
				r, metStr(r >= 10), mib(d.Traffic.BlobBytes), metStr(d.Traffic.BlobBytes == 0))
			if d.ScanPhase > 0 && cold.ScanPhase > 0 {
				fmt.Fprintf(&b, " (scan phase alone: %s against %s, %.1f×)", fmtDur(d.ScanPhase), fmtDur(cold.ScanPhase), cold.ScanPhase.Seconds()/d.ScanPhase.Seconds())
			}
			b.WriteString("\n")
		}
	}
	if len(failures) == 0 {
		b.WriteString("- Findings: (b) and (c) identical to (a) on (image, vulnerability, package, installed, fixed, severity); (d) keeps all of them and adds the update's.\n")
	} else {
		b.WriteString("- Findings: **MISMATCH** (see the harness output).\n")
	}
	return b.String()
}

func safeRatio(a *rowResult, d time.Duration) float64 {
	if a == nil || d <= 0 {
		return 0
	}
	return a.Wall.Seconds() / d.Seconds()
}

func metStr(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

const (
	markStart = "<!-- fleetbench:start -->"
	markEnd   = "<!-- fleetbench:end -->"
)

// updateMarkdown replaces the text between the fleetbench markers in path;
// without markers it appends a "Fleet benchmark" section holding them.
func updateMarkdown(path, table string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--benchmarks-md: %w", err)
	}
	s := string(data)
	i, j := strings.Index(s, markStart), strings.Index(s, markEnd)
	block := markStart + "\n" + table + markEnd
	switch {
	case i >= 0 && j > i:
		s = s[:i] + block + s[j+len(markEnd):]
	case i < 0 && j < 0:
		s = strings.TrimRight(s, "\n") + "\n\n## Fleet benchmark\n\n" + block + "\n"
	default:
		return fmt.Errorf("--benchmarks-md %s: unbalanced %s / %s markers", path, markStart, markEnd)
	}
	return os.WriteFile(path, []byte(s), 0o644)
}
