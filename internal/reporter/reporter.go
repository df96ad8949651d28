// Package reporter runs fleetscan's reporter: it works out which images
// the fleet (or one run) expects, waits for their scan results, advances
// the SLA first-seen clocks, builds and writes the report, uploads it to S3
// and decides the exit status. The reporter command and the all-in-one
// command both call Run. The report itself — its model and writers — is
// package report.
package reporter

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/feeds"
	"github.com/fleetscan/fleetscan/internal/logging"
	"github.com/fleetscan/fleetscan/internal/progress"
	"github.com/fleetscan/fleetscan/internal/report"
	"github.com/fleetscan/fleetscan/internal/s3upload"
	"github.com/fleetscan/fleetscan/internal/sbom"
	"github.com/fleetscan/fleetscan/internal/sla"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/internal/tickets"
	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/internal/vex"
)

// Exit status bits. A run that produced a report exits with the OR of
// ExitBreached and ExitIncomplete; ExitNoReport stands alone.
const (
	// ExitOK: nothing breached and the report is complete.
	ExitOK = 0
	// ExitBreached: at least one finding is past its SLA deadline and not
	// covered by an active risk acceptance.
	ExitBreached = 1
	// ExitIncomplete: an image failed or was never scanned, a cluster was
	// unreachable, an exploit feed is stale or unreadable, or a delivery
	// failed (S3 upload, Pushgateway push, ticket sync, owner digest). The
	// local report is written.
	ExitIncomplete = 2
	// ExitNoReport: no report could be produced (bad flags or
	// configuration, NATS unreachable, output directory not writable).
	ExitNoReport = 4
)

// ExitStatusHelp documents the exit status for --help and the README.
const ExitStatusHelp = `Exit status (a bit mask):
  0  nothing breached and the report is complete
  1  unaccepted SLA breaches: a finding is past its deadline (first seen +
     SLA days) and not covered by an active risk acceptance
  2  incomplete: an image failed or was never scanned, a cluster was
     unreachable, a KEV or EPSS feed is older than --max-enrichment-age or
     unreadable, or a delivery failed: the S3 upload, the Pushgateway push,
     the ticket sync or an owner digest (the local report is still written;
     a feed never loaded is stated in it, not an error)
  3  both 1 and 2
  4  no report could be produced: bad flags, files or configuration
     (checked before any work), NATS unreachable or lost, the output
     directory not writable, or interrupted (a second SIGINT/SIGTERM exits
     at once, with the report's status if it was already written)
`

// Uploader delivers the report files (*s3upload.Uploader).
type Uploader interface {
	Upload(ctx context.Context, day time.Time, runID string, files []s3upload.File) ([]string, error)
	Destination() string
}

// Deps are the reporter's collaborators.
type Deps struct {
	// Store reads runs, inventories and results.
	Store Store
	// FirstSeen is the first-seen KV bucket (topology.Resources.FirstSeen).
	FirstSeen sla.KV
	// FirstSeenStream is that bucket's stream
	// (topology.Resources.FirstSeenStream), which the records are read from.
	FirstSeenStream sla.Stream
	// FirstSeenMarkerTTL is how long a pruned first-seen record's marker
	// stays in the bucket (zero: sla.DefaultMarkerTTL; tests shorten it).
	FirstSeenMarkerTTL time.Duration
	// Uploader overrides the S3 uploader built from Config.S3 (tests).
	Uploader Uploader
	Log      *zap.Logger
	// Out receives the console summary (nil: none).
	Out io.Writer
	// Clock is the wall clock (nil: time.Now).
	Clock func() time.Time
	// Progress is told, at every poll while collecting results, how many
	// expected images are done (nil: progress only in the log).
	Progress func(progress.State)
	// Exporter writes SBOMs (--sbom) and keeps the package index whole
	// for the report's images (nil: neither).
	Exporter Exporter
	// Tickets is the ticket-ID → issue KV bucket (topology.Resources.Tickets);
	// required with a tracker.
	Tickets jetstream.KeyValue
	// HTTPClient sends pushes, notifications and tracker requests (nil:
	// http.DefaultClient).
	HTTPClient *http.Client
	// OnWritten is told the outcome as soon as the report files are
	// written, before the exports and the upload (a second interrupt then
	// exits with the report's status instead of "no report").
	OnWritten func(Outcome)
	// Feeds is where the exploit feeds (CISA KEV, FIRST EPSS) are read:
	// the JetStream object store the updater publishes to (the fleet), or
	// the all-in-one's --cache-dir. Nil: none; the report says the feeds
	// were never loaded.
	Feeds feeds.Source
	// Spill is where a fleet's ranked rows are kept while the outputs are
	// written (nil: temporary files in os.TempDir(), above
	// report.DefaultRunRows rows).
	Spill *report.Spill
}

// NewDeps wires the reporter to shared state on JetStream, the exploit
// feeds included (the object store `worker db-update --publish-feeds`
// writes).
func NewDeps(st *store.Store, res *topology.Resources, log *zap.Logger, out io.Writer) Deps {
	d := Deps{Store: st, FirstSeen: res.FirstSeen, FirstSeenStream: res.FirstSeenStream, Tickets: res.Tickets, Log: log, Out: out, Exporter: newExporter(res, log)}
	if res.Feeds != nil {
		d.Feeds = feeds.ObjectStoreSource(res.Feeds)
	}
	return d
}

func (d Deps) spill() report.Spill {
	if d.Spill == nil {
		return report.Spill{Dir: os.TempDir()}
	}
	return *d.Spill
}

// build builds the report; rows a failed spill kept in memory are a
// warning, rows lost an error.
func build(in report.Input, log *zap.Logger) (*report.Report, error) {
	r := report.Build(in)
	if err := r.Findings.SpillFailure(); err != nil {
		log.Warn("the ranked rows stay in memory: spilling them to a temporary file failed", zap.Error(err))
	}
	if err := r.Findings.Err(); err != nil {
		return nil, fmt.Errorf("rank the report's rows: %w", err)
	}
	return r, nil
}

func (d Deps) now() time.Time {
	if d.Clock != nil {
		return d.Clock()
	}
	return time.Now()
}

// Outcome is what a run produced and how it ends.
type Outcome struct {
	Report *report.Report
	// Files are the report files written to the output directory.
	Files []report.File
	// Uploaded lists the s3:// URLs stored; UploadErr is set when the
	// upload failed (the run is then incomplete).
	Uploaded  []string
	UploadErr error
	// ReportID names the report's S3 directory.
	ReportID string
	// SBOM is what the export wrote (nil when it did not run).
	SBOM *sbom.Result
	// Notified counts the owner digests delivered.
	Notified int
	// Tickets is what the ticket sync did, per tracker.
	Tickets []tickets.Result
	// FirstSeenWrites counts the first-seen records written.
	FirstSeenWrites int
	// MetricsFile is the metrics file written (metrics.prom).
	MetricsFile string
	// DeliveryFailures name the deliveries beyond the files that failed
	// (Pushgateway, notifications, tickets): the run is then incomplete.
	DeliveryFailures []string
}

// Breached reports whether an unaccepted finding is past its deadline.
func (o Outcome) Breached() bool { return o.Report != nil && o.Report.Summary.BreachedUnaccepted > 0 }

// Incomplete lists why the report is incomplete (empty when complete).
func (o Outcome) Incomplete() []string {
	if o.Report == nil {
		return nil
	}
	var why []string
	s := o.Report.Summary
	if s.ImagesFailed > 0 {
		why = append(why, fmt.Sprintf("%d images failed to scan", s.ImagesFailed))
	}
	if s.ImagesNotScanned > 0 {
		why = append(why, fmt.Sprintf("%d images were not scanned", s.ImagesNotScanned))
	}
	if s.UnresolvedContainers > 0 {
		why = append(why, fmt.Sprintf("%d containers run an image never resolved to a digest", s.UnresolvedContainers))
	}
	if s.ClustersUnreachable > 0 {
		why = append(why, fmt.Sprintf("%d clusters were unreachable", s.ClustersUnreachable))
	}
	for _, f := range o.Report.Feeds {
		if f.Degraded() {
			why = append(why, fmt.Sprintf("the %s is %s", f.Title, f.State))
		}
	}
	if o.UploadErr != nil {
		why = append(why, "the S3 upload failed")
	}
	why = append(why, o.DeliveryFailures...)
	if o.SBOM != nil && len(o.SBOM.Missing) > 0 {
		why = append(why, fmt.Sprintf("%d images have no SBOM (no cached analysis)", len(o.SBOM.Missing)))
	}
	return why
}

// ExitCode is the process exit status for this outcome.
func (o Outcome) ExitCode() int {
	if o.Report == nil || len(o.Files) == 0 {
		return ExitNoReport
	}
	code := ExitOK
	if o.Breached() {
		code |= ExitBreached
	}
	if len(o.Incomplete()) > 0 {
		code |= ExitIncomplete
	}
	return code
}

// ExitCode maps Run's results to the exit status: any error means no
// report.
func ExitCode(o Outcome, err error) int {
	if err != nil {
		return ExitNoReport
	}
	return o.ExitCode()
}

// Run produces one report. An error means no report could be produced
// (exit status 4); everything else — breaches, gaps, a failed upload — is
// in the Outcome.
func Run(ctx context.Context, cfg Config, d Deps) (Outcome, error) {
	if err := cfg.Check(); err != nil {
		return Outcome{}, err
	}
	if d.Store == nil || d.FirstSeen == nil || d.FirstSeenStream == nil {
		return Outcome{}, fmt.Errorf("reporting: Deps.Store, Deps.FirstSeen and Deps.FirstSeenStream are required")
	}
	log := d.Log
	if log == nil {
		log = zap.NewNop()
	}
	started := d.now()
	asOf := cfg.asOf(started)
	set, err := loadSettings(ctx, cfg, d, log)
	if err != nil {
		return Outcome{}, err
	}
	enrichment, err := loadFeeds(ctx, cfg, d, asOf, log)
	if err != nil {
		return Outcome{}, err
	}
	sc, err := selectScope(ctx, cfg, d, started, log)
	if err != nil {
		return Outcome{}, err
	}
	col, err := collect(ctx, d.Store, sc, waitOptions{Wait: cfg.Wait, Interval: cfg.PollInterval, Now: d.now, OnProgress: d.Progress}, log)
	if err != nil {
		return Outcome{}, err
	}
	// The images carry their own lists now: the fleet's usage index (every
	// pod of every cluster) is not needed any more.
	sc.fleet = nil
	led, err := observe(ctx, cfg, d, sc, col, asOf, log)
	if err != nil {
		return Outcome{}, err
	}
	r, err := build(report.Input{
		GeneratedAt: started, AsOf: asOf, Scope: sc.mode, Runs: sc.runs, Clusters: sc.clusters,
		Images: col.images, Failures: col.failures, NotScanned: append(col.notScanned, sc.unresolved...),
		Policy: set.policy, Acceptances: set.acceptances, VEX: set.vex, Filter: set.filter,
		Ledger: led, Fixed: led.Fixed, FirstSeenPruned: led.Pruned, DB: col.db, Scanner: col.scanner, Enrichment: enrichment,
		Spill: d.spill(),
	}, log)
	if err != nil {
		return Outcome{}, err
	}
	// The rows hold their clocks: the ledger (one entry per identity) is
	// not used past this point, so it is freed before the outputs are
	// written.
	writes, pruned := led.Writes, led.Pruned
	if err := writeVEXOut(cfg.VEXOut, set.acceptances, r, asOf, log); err != nil {
		return Outcome{}, err
	}
	// The SBOMs (and the package index) are exported between writing the
	// report and uploading it, so they are uploaded with it.
	exports := func(out *Outcome) error {
		if d.OnWritten != nil {
			d.OnWritten(*out)
		}
		if err := export(ctx, cfg, d, col.images, out, log); err != nil {
			return err
		}
		return writeMetrics(cfg, r, out)
	}
	out, err := deliver(ctx, cfg.OutDir, set, r, asOf, reportID(sc, asOf), exports, log)
	if err != nil {
		return out, err
	}
	out.FirstSeenWrites = writes
	reach(ctx, cfg, d, &out, sc.namespaces, log)
	if err := r.Findings.Err(); err != nil { // rows the notifications could not read back
		return out, fmt.Errorf("read the report's rows: %w", err)
	}
	log.Info("report written", zap.String("dir", cfg.OutDir), zap.Int("findings", r.Summary.Findings),
		zap.Int("breached_unaccepted", r.Summary.BreachedUnaccepted), zap.Bool("complete", r.Complete),
		zap.Int("first_seen_writes", writes), zap.Int("first_seen_pruned", pruned), zap.Int("exit_status", out.ExitCode()),
		logging.Took(d.now().Sub(started).Round(time.Millisecond)))
	console(d, cfg, out, set, log)
	return out, nil
}

// console writes the console summary to Deps.Out (when set).
func console(d Deps, cfg Config, out Outcome, set settings, log *zap.Logger) {
	if d.Out == nil {
		return
	}
	if err := writeConsole(d.Out, cfg, out, set.uploader); err != nil {
		log.Warn("console summary", zap.Error(err))
	}
}

// observe advances the first-seen clocks with what the collected results
// show.
func observe(ctx context.Context, cfg Config, d Deps, sc *scope, col *collected, asOf time.Time, log *zap.Logger) (*sla.Ledger, error) {
	clock := sla.NewClock(d.FirstSeen, d.FirstSeenStream, log)
	clock.MarkerTTL = d.FirstSeenMarkerTTL
	return clock.Observe(ctx, sla.Observation{
		AsOf: asOf, Sightings: report.Sightings(col.images), Observed: sc.observed,
		Uncertain: col.uncertain, CoversFleet: sc.coversFleet, Retention: cfg.FirstSeenRetention,
	}, cfg.Record)
}

// selectScope is the report's scope: the run --run names, or the fleet
// view (each cluster's latest inventory within --max-age).
func selectScope(ctx context.Context, cfg Config, d Deps, started time.Time, log *zap.Logger) (*scope, error) {
	var sc *scope
	var err error
	if cfg.RunID != "" {
		sc, err = runScope(ctx, d.Store, cfg.RunID, log)
	} else {
		sc, err = fleetScope(ctx, d.Store, cfg.MaxAge, started, log)
	}
	if err != nil {
		return nil, err
	}
	log.Info("report scope", zap.String("mode", sc.mode.Mode), zap.Int("clusters", len(sc.clusters)),
		zap.Int("runs", len(sc.runs)), zap.Int("images", len(sc.req)), zap.Int("unresolved", len(sc.unresolved)))
	return sc, nil
}

// loadFeeds reads the exploit feeds' last good copies from d.Feeds and
// logs each feed's state at asOf. A feed never stored is a state the
// report shows, not an error; only a cancelled context fails.
func loadFeeds(ctx context.Context, cfg Config, d Deps, asOf time.Time, log *zap.Logger) (*feeds.Enrichment, error) {
	if d.Feeds == nil {
		return feeds.New(nil, nil, time.Time{}, cfg.MaxEnrichmentAge), nil
	}
	e, err := feeds.Load(ctx, d.Feeds, cfg.MaxEnrichmentAge)
	if err != nil {
		return nil, err
	}
	for _, st := range e.Statuses() {
		fields := []zap.Field{zap.String("feed", string(st.Feed)), zap.String("state", string(st.State(asOf))),
			zap.String("source", d.Feeds.String()), zap.String("status", st.Describe(asOf))}
		if st.Degraded(asOf) {
			log.Warn("exploit feed degraded: the report is incomplete", fields...)
		} else {
			log.Info("exploit feed", fields...)
		}
	}
	return e, nil
}

// settings are what the configuration names, loaded before any work: the
// SLA policy, risk acceptances, filters, formats and the S3 uploader.
type settings struct {
	policy      sla.Policy
	acceptances *sla.Acceptances
	vex         *vex.Set
	filter      report.Filter
	formats     []report.Format
	uploader    Uploader
}

func loadSettings(ctx context.Context, cfg Config, d Deps, log *zap.Logger) (settings, error) {
	var set settings
	var err error
	if set.policy, err = cfg.policy(); err != nil {
		return settings{}, err
	}
	if cfg.AcceptFile != "" {
		if set.acceptances, err = sla.LoadAcceptances(cfg.AcceptFile); err != nil {
			return settings{}, err
		}
	}
	if set.vex, err = cfg.loadVEX(log); err != nil {
		return settings{}, err
	}
	severities, _ := sla.ParseSeverities(cfg.Severities)
	set.filter = report.Filter{Severities: severities, IgnoreUnfixed: cfg.IgnoreUnfixed}
	set.formats, _ = report.ParseFormats(cfg.Formats)
	set.uploader = d.Uploader
	if set.uploader == nil && cfg.S3.Enabled() {
		u, err := s3upload.New(ctx, cfg.S3, log)
		if err != nil {
			return settings{}, err
		}
		set.uploader = u
	}
	return set, nil
}

// deliver writes the report files to the output directory, runs exports
// (SBOMs: their files go to the Outcome), and uploads them all when an
// uploader is configured; a failed upload is in the Outcome.
func deliver(ctx context.Context, dir string, set settings, r *report.Report, asOf time.Time, id string, exports func(*Outcome) error, log *zap.Logger) (Outcome, error) {
	out := Outcome{Report: r, ReportID: id}
	var err error
	if out.Files, err = report.WriteFiles(dir, r, set.formats); err != nil {
		return out, err
	}
	if exports != nil {
		if err := exports(&out); err != nil {
			return out, err
		}
	}
	up := set.uploader
	if up == nil {
		return out, nil
	}
	files := make([]s3upload.File, len(out.Files))
	for i, f := range out.Files {
		files[i] = s3upload.File{Name: f.Name, Path: f.Path, ContentType: f.ContentType}
	}
	files = append(files, out.sbomUploads()...)
	files = append(files, out.metricsUpload()...)
	out.Uploaded, out.UploadErr = up.Upload(ctx, asOf, out.ReportID, files)
	if out.UploadErr != nil {
		log.Error("S3 upload failed; the local report is written", zap.String("destination", up.Destination()), zap.Error(out.UploadErr))
	}
	return out, nil
}

func writeConsole(w io.Writer, cfg Config, o Outcome, up Uploader) error {
	if err := report.WriteConsole(w, o.Report); err != nil {
		return err
	}
	names := make([]string, len(o.Files))
	for i, f := range o.Files {
		names[i] = f.Name
	}
	fmt.Fprintf(w, "\nReport written to %s (%s)\n", cfg.OutDir, strings.Join(names, ", "))
	writeSBOMSummary(w, cfg, o)
	switch {
	case up == nil:
	case o.UploadErr != nil:
		fmt.Fprintf(w, "S3 upload FAILED: %v\n", o.UploadErr)
	default:
		fmt.Fprintf(w, "Uploaded to %s/%s/%s/ and %s/%s/\n", up.Destination(), o.Report.AsOf.Format(time.DateOnly),
			o.ReportID, up.Destination(), s3upload.LatestDir)
	}
	code := o.ExitCode()
	why := []string{}
	if o.Breached() {
		why = append(why, fmt.Sprintf("%d unaccepted SLA breaches", o.Report.Summary.BreachedUnaccepted))
	}
	why = append(why, o.Incomplete()...)
	if len(why) == 0 {
		why = append(why, "nothing breached, report complete")
	}
	_, err := fmt.Fprintf(w, "Exit status %d: %s\n", code, strings.Join(why, "; "))
	return err
}

// reportID names the report's S3 directory: the run in run mode, else the
// newest run the fleet view covers.
func reportID(sc *scope, asOf time.Time) string {
	if sc.mode.RunID != "" {
		return sc.mode.RunID
	}
	if sc.newestRun != "" {
		return sc.newestRun
	}
	return "fleet-" + asOf.UTC().Format("20060102T150405Z")
}
