// Package demo runs fleetscan's real pipeline on a small, generated fleet,
// fully offline: sample images with real package databases (Alpine, Debian,
// npm, Python, a Go binary, a multi-arch index) served from a registry on
// 127.0.0.1, a vulnerability DB built from real advisories, and three
// clusters' pods as `kubectl get pods -A -o json` files with the imageID
// forms real runtimes report.
//
// The SLA history is produced honestly: a first pass of the same pipeline
// runs with --now set weeks back, so the findings it sees get that first-seen
// date; the second pass, today, finds some of them past their deadline, plus
// a workload deployed since whose findings are new.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/internal/pipeline"
	"github.com/fleetscan/fleetscan/internal/progress"
	"github.com/fleetscan/fleetscan/internal/reporter"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// Config configures a demo run.
type Config struct {
	// OutDir receives the final report.
	OutDir string
	// WorkDir holds the demo's state, DB and inventories; empty means a
	// temporary directory removed afterwards.
	WorkDir string
	// Workers is the number of scans in flight.
	Workers int
	// HistoryDays is how far back the first pass runs.
	HistoryDays int
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.OutDir == "" {
		errs = append(errs, errors.New("--out-dir is required"))
	}
	if c.Workers < 1 {
		errs = append(errs, fmt.Errorf("--workers %d: want at least 1", c.Workers))
	}
	if c.HistoryDays < 1 {
		errs = append(errs, fmt.Errorf("--history-days %d: want at least 1", c.HistoryDays))
	}
	return errors.Join(errs...)
}

// Deps are the demo's collaborators.
type Deps struct {
	Log *zap.Logger
	// Out receives the narration and the console summary.
	Out io.Writer
	// Progress shows scan progress (nil: none).
	Progress *progress.Printer
	// Clock is "today" (nil: time.Now).
	Clock func() time.Time
	// Notice receives what an interrupted run still waits for.
	Notice io.Writer
}

// Run generates the fleet and runs the pipeline twice. It returns the
// second pass's outcome; its exit status is the demo's.
func Run(ctx context.Context, cfg Config, d Deps) (reporter.Outcome, error) {
	if err := cfg.Validate(); err != nil {
		return reporter.Outcome{}, err
	}
	log := d.Log
	if log == nil {
		log = zap.NewNop()
	}
	out := d.Out
	if out == nil {
		out = io.Discard
	}
	now := time.Now().UTC()
	if d.Clock != nil {
		now = d.Clock().UTC()
	}
	// The demo lives on its own calendar: its DB is built as of "today",
	// and its freshness is judged against the same day.
	today := func() time.Time { return now }
	work := cfg.WorkDir
	if work == "" {
		tmp, err := os.MkdirTemp("", "fleetscan-demo-")
		if err != nil {
			return reporter.Outcome{}, fmt.Errorf("demo work dir: %w", err)
		}
		defer os.RemoveAll(tmp)
		work = tmp
	} else if err := os.MkdirAll(work, 0o755); err != nil {
		return reporter.Outcome{}, fmt.Errorf("--work-dir %s: %w", work, err)
	}

	// 1. A registry on 127.0.0.1 with the sample images, and a
	// vulnerability DB built from real advisories.
	w, err := startWorld(ctx, work, now, out)
	if err != nil {
		return reporter.Outcome{}, err
	}
	defer w.reg.Close()

	// 2. First pass, weeks ago: records when each finding was first seen.
	past := now.AddDate(0, 0, -cfg.HistoryDays)
	first, err := w.passConfig(cfg, 1, false, past, filepath.Join(work, "first-pass-report"))
	if err != nil {
		return reporter.Outcome{}, err
	}
	fmt.Fprintf(out, "demo: pass 1 — scanning the fleet as of %s (%d days ago) to start the SLA clocks\n", past.Format("2006-01-02"), cfg.HistoryDays)
	o1, err := pipeline.Run(ctx, first, pipeline.Deps{Log: log.Named("pass1"), Progress: d.Progress, Clock: today, Notice: d.Notice})
	if err != nil {
		return reporter.Outcome{}, fmt.Errorf("demo pass 1: %w", err)
	}
	if o1.Report == nil || o1.Report.Summary.ImagesFailed+o1.Report.Summary.ImagesNotScanned > 0 {
		return reporter.Outcome{}, fmt.Errorf("demo pass 1 did not scan every image: %v", o1.Incomplete())
	}

	// 3. Second pass, today, with a workload deployed since.
	second, err := w.passConfig(cfg, 2, true, now, cfg.OutDir)
	if err != nil {
		return reporter.Outcome{}, err
	}
	fmt.Fprintf(out, "demo: pass 2 — scanning again today (%s); a new workload (payments/risk-api) was deployed since\n\n", now.Format("2006-01-02"))
	o2, err := pipeline.Run(ctx, second, pipeline.Deps{Log: log.Named("pass2"), Progress: d.Progress, Out: out, Clock: today, Notice: d.Notice})
	if err != nil {
		return reporter.Outcome{}, fmt.Errorf("demo pass 2: %w", err)
	}
	explain(out, o2, past, cfg.HistoryDays)
	return o2, nil
}

// world is the demo's offline world: the registry with the sample images
// and the vulnerability DB under work.
type world struct {
	work  string
	reg   *fixture.Registry
	im    images
	cache string
	// kev, epss and policy are the demo's exploit feeds and SLA policy.
	kev, epss, policy string
}

// startWorld pushes the sample images to a registry on 127.0.0.1 and builds
// a vulnerability DB of real advisories, as if downloaded two hours before
// now. The caller closes the registry.
func startWorld(ctx context.Context, work string, now time.Time, out io.Writer) (*world, error) {
	reg, err := fixture.StartRegistry()
	if err != nil {
		return nil, fmt.Errorf("start demo registry: %w", err)
	}
	w := &world{work: work, reg: reg, im: images{}, cache: filepath.Join(work, "trivy")}
	pushed, err := fixture.PushSamples(ctx, reg.Host, fixture.SampleImages())
	if err != nil {
		reg.Close()
		return nil, fmt.Errorf("push sample images: %w", err)
	}
	for _, p := range pushed {
		w.im[p.Spec.Name] = p
	}
	advisories, err := fixture.BaseAdvisories()
	if err != nil {
		reg.Close()
		return nil, fmt.Errorf("demo advisories: %w", err)
	}
	if _, err := fixture.BuildDB(w.cache, advisories, fixture.DBOptions{UpdatedAt: now.Add(-2 * time.Hour)}); err != nil {
		reg.Close()
		return nil, fmt.Errorf("build demo DB: %w", err)
	}
	if w.kev, w.epss, w.policy, err = writeFeeds(work, now); err != nil {
		reg.Close()
		return nil, err
	}
	fmt.Fprintf(out, "demo: %d sample images in a registry at %s; a vulnerability DB of %d real advisories; "+
		"a CISA KEV excerpt and FIRST EPSS scores for its CVEs\n", len(pushed), reg.Host, len(advisories.Advisories))
	return w, nil
}

// passConfig is the pipeline configuration of one pass: the demo fleet's
// inventories as of asOf (with the payments/risk-api workload when
// withPython), scanned offline against the world.
func (w *world) passConfig(cfg Config, pass int, withPython bool, asOf time.Time, outDir string) (pipeline.Config, error) {
	c := pipeline.Defaults()
	c.StateDir = filepath.Join(w.work, "state")
	c.SkipDBUpdate = true
	c.Worker.DB.CacheDir = w.cache
	c.Worker.DB.Registry.InsecureRegistries = []string{w.reg.Host}
	c.Worker.ScratchDir = filepath.Join(w.work, "scratch")
	c.Workers = cfg.Workers
	c.ScanWait = 5 * time.Minute
	c.Report.OutDir = outDir
	c.Report.Now = asOf.Format(time.RFC3339)
	// Local feed files are read even with --skip-db-update.
	c.Feeds.KEVURL, c.Feeds.EPSSURL = w.kev, w.epss
	c.Report.SLAConfig = w.policy
	dir := filepath.Join(w.work, fmt.Sprintf("inventories-%d", pass))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return c, err
	}
	for _, cl := range fleet(withPython) {
		pods, nodes, err := writeInventory(dir, cl, w.im)
		if err != nil {
			return c, err
		}
		c.Dispatch.Sources.InventoryFiles = append(c.Dispatch.Sources.InventoryFiles, cl.name+"="+pods)
		c.Dispatch.Sources.NodesFiles = append(c.Dispatch.Sources.NodesFiles, cl.name+"="+nodes)
	}
	c.Dispatch.Cycle = fmt.Sprintf("demo-pass-%d", pass)
	c.Complete(asOf)
	return c, nil
}

// explain says in plain words what the demo showed.
func explain(w io.Writer, o reporter.Outcome, past time.Time, days int) {
	if o.Report == nil {
		return
	}
	s := o.Report.Summary
	fmt.Fprintln(w)
	fmt.Fprintf(w, "What happened: pass 1 first saw these findings on %s. With the default SLA (CRITICAL 7 days,\n", past.Format("2006-01-02"))
	fmt.Fprintf(w, "HIGH 30, MEDIUM 90, LOW 180) measured from that first sighting, %d findings are now past their\n", s.BreachedUnaccepted)
	fmt.Fprintf(w, "deadline, so the exit status is %d. Findings of the newly deployed risk-api were first seen today:\n", o.ExitCode())
	fmt.Fprintln(w, "their clock has just started. The tutorial script computed deadlines from today and would have")
	fmt.Fprintf(w, "reported none of this %d days later.\n", days)
	fmt.Fprintf(w, "Exploits move deadlines earlier: %d findings are in CISA's KEV catalogue (due by its due date; %d breached)\n",
		s.KEV, s.KEVBreached)
	fmt.Fprintln(w, "and the policy gives findings in the top 3 % of EPSS scores 14 days whatever their severity; the")
	fmt.Fprintln(w, "sla_rule column says which rule set each deadline. Known-exploited breaches are listed first.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Report files:")
	for _, f := range o.Files {
		fmt.Fprintf(w, "  %s\n", f.Path)
	}
}

// Scope checks (tests): which keys the demo expects. Kept here so the demo's
// test and the fleet description cannot drift apart.
func expectedKeys(im images, withPython bool) map[contract.ImageKey]bool {
	keys := map[contract.ImageKey]bool{}
	for _, c := range fleet(withPython) {
		for _, p := range c.pods {
			arch := c.nodes[p.node]
			pl := contract.Platform{OS: "linux", Architecture: arch}
			for _, group := range [][]container{p.init, p.main, p.ephemeral} {
				for _, ct := range group {
					keys[im.get(ct.image).Key(pl)] = true
				}
			}
		}
	}
	return keys
}
