// Command fleetbench is fleetscan's fleet benchmark harness (`make bench`).
//
// It generates a seeded synthetic fleet — images built on eight base images
// with real package databases, language packages and shared layers, pods
// over four clusters running the same digests under different tags, and a
// Trivy DB of real plus generated advisories — serves it from the CNCF
// distribution registry behind a byte-counting proxy, and times the
// tutorial's sequential `trivy image` loop against fleetscan cold (1, 2, 4
// workers), warm, and after a DB update, plus the physical floor (every
// unique layer fetched and decompressed once). Each row runs in a child
// process of the harness (`fleetbench row ...`) so its peak RSS is its own.
// It fails when fleetscan's findings differ from the CLI's.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/internal/fixture/fixturetest"
)

type options struct {
	fleetSpec
	Work             string
	Keep             bool
	BenchMD          string
	Rows             []string
	CPUProfile       string
	ProfileRow       string
	FloorConcurrency int
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 && os.Args[1] == "row" {
		fs := pflag.NewFlagSet("row", pflag.ExitOnError)
		planPath := fs.String("plan", "", "plan JSON")
		rowPath := fs.String("row", "", "row JSON")
		out := fs.String("out", "", "result JSON")
		_ = fs.Parse(os.Args[2:])
		if err := runRow(ctx, *planPath, *rowPath, *out); err != nil {
			fmt.Fprintln(os.Stderr, "fleetbench row:", err)
			os.Exit(1)
		}
		return
	}
	o := options{fleetSpec: fleetSpec{Seed: 20261127, Images: 200, PodsPerImage: 10, BasePadKiB: 2048, AppPadKiB: 256}}
	fs := pflag.NewFlagSet("fleetbench", pflag.ExitOnError)
	fs.Uint64Var(&o.Seed, "seed", o.Seed, "seed of the generated fleet")
	fs.IntVar(&o.Images, "images", o.Images, "unique images in the fleet")
	fs.IntVar(&o.PodsPerImage, "pods-per-image", o.PodsPerImage, "mean pods running each image")
	fs.IntVar(&o.BasePadKiB, "base-pad-kib", o.BasePadKiB, "incompressible KiB in each base image root layer (Debian: 3x)")
	fs.IntVar(&o.AppPadKiB, "app-pad-kib", o.AppPadKiB, "mean incompressible KiB in each image's own layer")
	fs.StringVar(&o.Work, "work-dir", "", "work directory (default: a temporary directory, removed afterwards)")
	fs.BoolVar(&o.Keep, "keep", false, "keep the work directory")
	fs.StringVar(&o.BenchMD, "benchmarks-md", "BENCHMARKS.md", "file whose fleetbench markers receive the table (empty: do not write)")
	fs.StringSliceVar(&o.Rows, "rows", []string{"a", "b1", "b2", "b4", "c", "d"}, "rows to run (a is always run: the others are compared with it)")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of --profile-row to this file")
	fs.StringVar(&o.ProfileRow, "profile-row", "b2", "row profiled by --cpuprofile")
	fs.IntVar(&o.FloorConcurrency, "floor-concurrency", runtime.NumCPU(), "layers fetched at once when measuring the floor")
	_ = fs.Parse(os.Args[1:])
	if o.Images < 1 || o.PodsPerImage < 1 || o.AppPadKiB < 0 || o.BasePadKiB < 0 || o.FloorConcurrency < 1 {
		fmt.Fprintln(os.Stderr, "fleetbench: --images, --pods-per-image and --floor-concurrency must be positive, pads not negative")
		os.Exit(2)
	}
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "fleetbench:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "fleetbench: "+format+"\n", args...)
}

func run(ctx context.Context, o options) error {
	m := machineInfo()
	m.LoadBefore = loadAvg()
	work := o.Work
	if work == "" {
		tmp, err := os.MkdirTemp("", "fleetbench-")
		if err != nil {
			return err
		}
		work = tmp
		if !o.Keep {
			defer os.RemoveAll(work)
		}
	}
	work, err := filepath.Abs(work)
	if err != nil {
		return err
	}
	trivy, err := fixturetest.TrivyCLI()
	if err != nil {
		return err
	}
	trivy, err = filepath.Abs(trivy)
	if err != nil {
		return err
	}
	regBin := filepath.Join(filepath.Dir(trivy), "registry")
	self, err := os.Executable()
	if err != nil {
		return err
	}

	t0 := time.Now()
	f, err := generate(o.fleetSpec)
	if err != nil {
		return fmt.Errorf("generate fleet: %w", err)
	}
	reg, err := startRegistry(ctx, regBin, filepath.Join(work, "registry"))
	if err != nil {
		return err
	}
	defer reg.Close()
	proxy, err := startProxy(reg.Host)
	if err != nil {
		return err
	}
	defer proxy.Close()
	if err := f.push(ctx, reg.Host); err != nil {
		return fmt.Errorf("push fleet: %w", err)
	}
	p := plan{Proxy: proxy.Host, TrivyCLI: trivy, DBGen1: filepath.Join(work, "db-gen1"), DBGen2: filepath.Join(work, "db-gen2"), TagRefs: f.tagRefs(proxy.Host)}
	dbTime := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	if _, err := fixture.BuildDB(p.DBGen1, f.base, fixture.DBOptions{UpdatedAt: dbTime}); err != nil {
		return err
	}
	if _, err := fixture.BuildDB(p.DBGen2, f.updated, fixture.DBOptions{UpdatedAt: dbTime.Add(30 * time.Minute)}); err != nil {
		return err
	}
	if p.InventoryFiles, p.NodesFiles, err = f.writeInventories(filepath.Join(work, "inventories"), proxy.Host); err != nil {
		return err
	}
	planPath := filepath.Join(work, "plan.json")
	if err := writeJSON(planPath, p); err != nil {
		return err
	}
	fd := describe(f, p, o.fleetSpec)
	fd.Setup = time.Since(t0)
	logf("fleet: %s (setup %s)", fd.summary(), fd.Setup.Round(time.Millisecond))

	floor, err := measureFloor(ctx, proxy.Host, f.images, o.FloorConcurrency)
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	logf("floor: %d layers, %s compressed, %s uncompressed in %s (%d at once)", floor.Layers, mib(floor.Compressed), mib(floor.Uncompressed), floor.Wall.Round(time.Millisecond), floor.Concurrency)

	rows := planRows(work, o)
	var results []rowOutcome
	for _, r := range rows {
		before := proxy.Stats()
		logf("row %s: %s ...", r.Name, r.Label)
		res, err := runChild(ctx, self, planPath, r, filepath.Join(work, "rows"))
		if err != nil {
			return fmt.Errorf("row %s: %w", r.Name, err)
		}
		res.Traffic = proxy.Stats().sub(before)
		logf("row %s: %s, %d scans, %s blobs, %d findings", r.Name, res.Wall.Round(time.Millisecond), res.Scans, mib(res.Traffic.BlobBytes), res.FindingsCount())
		results = append(results, rowOutcome{spec: r, res: res})
	}
	m.LoadAfter = loadAvg()

	failures := verify(results)
	table := render(m, fd, floor, results, failures)
	fmt.Println(table)
	if o.BenchMD != "" {
		if err := updateMarkdown(o.BenchMD, table); err != nil {
			return err
		}
		logf("wrote the table into %s", o.BenchMD)
	}
	if len(failures) > 0 {
		return errors.New(strings.Join(failures, "\n"))
	}
	return nil
}

type rowOutcome struct {
	spec rowSpec
	res  rowResult
}

// planRows lays out the rows: (a) first, then b1/b2/b4 each with a fresh
// state and scratch dir, (c) reusing the last (b) run's dirs, (d) the same
// dirs with the updated DB.
func planRows(work string, o options) []rowSpec {
	want := map[string]bool{"a": true}
	for _, r := range o.Rows {
		want[strings.TrimSpace(r)] = true
	}
	dir := func(parts ...string) string { return filepath.Join(append([]string{work, "rows"}, parts...)...) }
	var rows []rowSpec
	rows = append(rows, rowSpec{Name: "a", Label: "tutorial: trivy CLI per tag, sequential", Kind: "cli", CacheDir: dir("a", "cache")})
	last := ""
	for _, n := range []int{1, 2, 4} {
		name := fmt.Sprintf("b%d", n)
		if !want[name] {
			continue
		}
		rows = append(rows, rowSpec{Name: name, Label: fmt.Sprintf("fleetscan cold, %d worker(s)", n), Kind: "fleetscan", Workers: n,
			CacheDir: filepath.Join(work, "db-gen1"), StateDir: dir(name, "state"), ScratchDir: dir(name, "scratch"), OutDir: dir(name, "report")})
		last = name
	}
	if last != "" {
		prev := rows[len(rows)-1]
		for _, x := range []struct{ name, label, db string }{
			{"c", "fleetscan warm (same DB, state and scratch as " + last + ")", "db-gen1"},
			{"d", "fleetscan after a DB update (more advisories)", "db-gen2"},
		} {
			if !want[x.name] {
				continue
			}
			r := prev
			r.Name, r.Label, r.CacheDir, r.OutDir = x.name, x.label, filepath.Join(work, x.db), dir(x.name, "report")
			rows = append(rows, r)
		}
	}
	for i := range rows {
		if o.CPUProfile != "" && rows[i].Name == o.ProfileRow {
			rows[i].CPUProfile, _ = filepath.Abs(o.CPUProfile)
		}
	}
	return rows
}

// runChild runs one row in a child process of this binary.
func runChild(ctx context.Context, self, planPath string, r rowSpec, dir string) (rowResult, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return rowResult{}, err
	}
	rowPath := filepath.Join(dir, r.Name+".row.json")
	out := filepath.Join(dir, r.Name+".result.json")
	if err := writeJSON(rowPath, r); err != nil {
		return rowResult{}, err
	}
	cmd := exec.CommandContext(ctx, self, "row", "--plan", planPath, "--row", rowPath, "--out", out)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return rowResult{}, err
	}
	var res rowResult
	return res, readJSON(out, &res)
}

// verify checks the findings: (b) and (c) identical to (a), (d) a superset
// of (a) with more findings; the CLI's tags of one digest agree.
func verify(rows []rowOutcome) []string {
	var a *rowResult
	var out []string
	for i := range rows {
		if rows[i].spec.Name == "a" {
			a = &rows[i].res
		}
	}
	if a == nil {
		return []string{"row a did not run"}
	}
	if a.Mismatch != "" {
		out = append(out, "row a: tags of the same digest got different findings:\n"+a.Mismatch)
	}
	for _, r := range rows {
		n := r.spec.Name
		switch {
		case n == "a":
		case n == "d":
			var missing []string
			for digest, want := range a.Findings {
				got := r.res.Findings[digest]
				if d := fixturetest.DiffFindings(want, got); strings.Contains(d, "- missing") {
					missing = append(missing, digest+":\n"+d)
				}
			}
			if len(missing) > 0 {
				out = append(out, "row d lost findings of the base DB:\n"+strings.Join(missing, "\n"))
			}
			if r.res.FindingsCount() <= a.FindingsCount() {
				out = append(out, fmt.Sprintf("row d: %d findings after the DB update, want more than %d", r.res.FindingsCount(), a.FindingsCount()))
			}
		default:
			if d := diffRows(a.Findings, r.res.Findings); d != "" {
				out = append(out, fmt.Sprintf("row %s findings differ from row a (- only in a, + only in %s):\n%s", n, n, d))
			}
		}
	}
	return out
}

func diffRows(want, got map[string][]fixture.Finding) string {
	var lines []string
	keys := map[string]bool{}
	for k := range want {
		keys[k] = true
	}
	for k := range got {
		keys[k] = true
	}
	for k := range keys {
		if d := fixturetest.DiffFindings(want[k], got[k]); d != "" {
			lines = append(lines, k+":\n"+d)
		}
	}
	const maxLines = 40
	if len(lines) > maxLines {
		lines = append(lines[:maxLines], fmt.Sprintf("... and %d more images", len(lines)-maxLines))
	}
	return strings.Join(lines, "\n")
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
