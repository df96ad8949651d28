package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/internal/fixture/fixturetest"
	"github.com/fleetscan/fleetscan/internal/logging"
	"github.com/fleetscan/fleetscan/internal/pipeline"
	"github.com/fleetscan/fleetscan/internal/progress"
	"github.com/fleetscan/fleetscan/internal/rss"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// plan is what the parent hands every row (written as JSON).
type plan struct {
	Proxy    string `json:"proxy"`
	TrivyCLI string `json:"trivyCli"`
	// DBGen1 / DBGen2 are cache dirs holding db/ (the base DB and the DB
	// after the update).
	DBGen1 string `json:"dbGen1"`
	DBGen2 string `json:"dbGen2"`
	// TagRefs maps every tag reference the pods run to its digest.
	TagRefs        map[string]string `json:"tagRefs"`
	InventoryFiles []string          `json:"inventoryFiles"`
	NodesFiles     []string          `json:"nodesFiles"`
}

// rowSpec is one row of the table.
type rowSpec struct {
	Name  string `json:"name"`
	Label string `json:"label"`
	// Kind is "cli" (the tutorial's loop) or "fleetscan".
	Kind       string `json:"kind"`
	Workers    int    `json:"workers"`
	CacheDir   string `json:"cacheDir"`
	StateDir   string `json:"stateDir"`
	ScratchDir string `json:"scratchDir"`
	OutDir     string `json:"outDir"`
	CPUProfile string `json:"cpuProfile,omitempty"`
}

// rowResult is what a row measured.
type rowResult struct {
	Wall time.Duration `json:"wall"`
	// Scans performed: CLI invocations, or images the pipeline scanned.
	Scans int `json:"scans"`
	// Queued counts the jobs the dispatcher published (fleetscan): the
	// other images were answered by their stored result without a job.
	Queued int `json:"queued"`
	// ScanPhase is the time from the stored run manifest to the last
	// result (fleetscan): what scanning itself took, without the fixed
	// cost of starting, dispatching and writing the report.
	ScanPhase time.Duration `json:"scanPhase"`
	// PeakRSSKiB is VmHWM of the row's process (fleetscan: the whole
	// in-process pipeline), or the largest of the Trivy CLI processes.
	PeakRSSKiB int64 `json:"peakRssKiB"`
	// Findings by image digest, reduced to the compared fields.
	Findings map[string][]fixture.Finding `json:"findings"`
	// RawFindings counts every finding reported (the CLI reports an image
	// once per tag).
	RawFindings int `json:"rawFindings"`
	// Mismatch notes where tags of one digest disagreed (CLI).
	Mismatch string `json:"mismatch,omitempty"`
	// Traffic is filled in by the parent from the proxy.
	Traffic trafficStats `json:"traffic"`
}

// FindingsCount is the number of findings over unique images.
func (r rowResult) FindingsCount() int {
	n := 0
	for _, fs := range r.Findings {
		n += len(fs)
	}
	return n
}

// compareKey reduces a finding to (vuln ID, pkg, installed, fixed,
// severity): Status is left out of the comparison.
func compareKey(f fixture.Finding) fixture.Finding {
	f.Status = ""
	return f
}

// runRow is the `row` subcommand: it runs one row in this process and
// writes its result to out.
func runRow(ctx context.Context, planPath, rowPath, out string) error {
	var p plan
	var r rowSpec
	if err := readJSON(planPath, &p); err != nil {
		return err
	}
	if err := readJSON(rowPath, &r); err != nil {
		return err
	}
	if r.CPUProfile != "" {
		f, err := os.Create(r.CPUProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	var res rowResult
	var err error
	switch r.Kind {
	case "cli":
		res, err = cliRow(ctx, p, r)
	case "fleetscan":
		res, err = fleetscanRow(ctx, p, r)
	default:
		err = fmt.Errorf("row %s: unknown kind %q", r.Name, r.Kind)
	}
	if err != nil {
		return err
	}
	if r.Kind == "fleetscan" {
		if res.PeakRSSKiB, err = vmHWM(); err != nil {
			return err
		}
	}
	return writeJSON(out, res)
}

// cliRow is the tutorial's approach: the Trivy CLI once per tag,
// sequentially, with one fresh cache dir holding a copy of the DB.
func cliRow(ctx context.Context, p plan, r rowSpec) (rowResult, error) {
	res := rowResult{Findings: map[string][]fixture.Finding{}}
	if err := copyDir(fixture.DBDir(p.DBGen1), fixture.DBDir(r.CacheDir)); err != nil {
		return res, err
	}
	refs := make([]string, 0, len(p.TagRefs))
	for ref := range p.TagRefs {
		refs = append(refs, ref)
	}
	slices.Sort(refs)
	var mismatches []string
	start := time.Now()
	for _, ref := range refs {
		args := []string{
			"image", "--quiet", "--format", "json",
			"--cache-dir", r.CacheDir,
			"--skip-db-update", "--skip-java-db-update", "--offline-scan", "--skip-version-check",
			"--insecure", "--scanners", "vuln", "--image-src", "remote", ref,
		}
		cmd := exec.CommandContext(ctx, p.TrivyCLI, args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+filepath.Join(r.CacheDir, ".no-docker-config"), "TRIVY_NO_PROGRESS=true")
		if err := cmd.Run(); err != nil {
			return res, fmt.Errorf("trivy image %s: %w: %s", ref, err, strings.TrimSpace(stderr.String()))
		}
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			res.PeakRSSKiB = max(res.PeakRSSKiB, ru.Maxrss) // KiB on Linux
		}
		fs, err := fixturetest.ParseCLIReport(stdout.Bytes())
		if err != nil {
			return res, fmt.Errorf("trivy image %s: %w", ref, err)
		}
		for i := range fs {
			fs[i] = compareKey(fs[i])
		}
		res.Scans++
		res.RawFindings += len(fs)
		digest := p.TagRefs[ref]
		if prev, ok := res.Findings[digest]; ok {
			if d := fixturetest.DiffFindings(prev, fs); d != "" {
				mismatches = append(mismatches, ref+" differs from another tag of "+digest+":\n"+d)
			}
			continue
		}
		res.Findings[digest] = fs
	}
	res.Wall = time.Since(start)
	res.Mismatch = strings.Join(mismatches, "\n")
	return res, nil
}

// fleetscanRow runs the all-in-one pipeline in this process.
func fleetscanRow(ctx context.Context, p plan, r rowSpec) (rowResult, error) {
	res := rowResult{Findings: map[string][]fixture.Finding{}}
	log, err := logging.New(logging.Config{Format: "console", Level: "error"})
	if err != nil {
		return res, err
	}
	c := pipeline.Defaults()
	c.StateDir = r.StateDir
	c.SkipDBUpdate = true
	c.Worker.DB.CacheDir = r.CacheDir
	c.Worker.DB.Registry.InsecureRegistries = []string{p.Proxy}
	c.Worker.ScratchDir = r.ScratchDir
	c.Workers = r.Workers
	c.ScanWait = 30 * time.Minute
	c.Report.OutDir = r.OutDir
	c.Report.Severities = []string{"UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL"}
	c.Dispatch.Sources.InventoryFiles = p.InventoryFiles
	c.Dispatch.Sources.NodesFiles = p.NodesFiles
	now := time.Now()
	c.Complete(now)

	start := time.Now()
	var dispatched, scanned time.Time
	o, err := pipeline.Run(ctx, c, pipeline.Deps{Log: log,
		OnManifest: func(m contract.RunManifest) { res.Queued, dispatched = m.Published, time.Now() },
		OnProgress: func(s progress.State) {
			if s.Done >= s.Total && scanned.IsZero() {
				scanned = time.Now()
			}
		},
	})
	res.Wall = time.Since(start)
	if err != nil {
		return res, fmt.Errorf("row %s: %w", r.Name, err)
	}
	if o.Report == nil {
		return res, fmt.Errorf("row %s: no report", r.Name)
	}
	if inc := o.Incomplete(); len(inc) > 0 {
		return res, fmt.Errorf("row %s: incomplete scan: %v", r.Name, inc)
	}
	res.Scans = o.Report.Summary.ImagesScanned
	if !dispatched.IsZero() && !scanned.IsZero() {
		res.ScanPhase = scanned.Sub(dispatched)
	}
	for _, img := range o.Report.Images {
		fs := make([]fixture.Finding, 0, len(img.Vulns))
		for _, v := range img.Vulns {
			fs = append(fs, fixture.Finding{VulnerabilityID: v.ID, PkgName: v.PkgName, InstalledVersion: v.PkgVersion,
				FixedVersion: v.FixedVersion, Severity: v.Severity})
		}
		fixturetest.SortFindings(fs)
		res.Findings[img.Key.Digest] = fs
		res.RawFindings += len(fs)
	}
	return res, nil
}

// vmHWM returns this process's peak resident set size in KiB.
func vmHWM() (int64, error) {
	b, err := rss.Peak()
	return b >> 10, err
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

func copyDir(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if err := copyFile(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
