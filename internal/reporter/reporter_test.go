package reporter

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/fleetscan/fleetscan/internal/natsembed/natstest"
	"github.com/fleetscan/fleetscan/internal/progress"
	"github.com/fleetscan/fleetscan/internal/report"
	"github.com/fleetscan/fleetscan/internal/s3upload/s3test"
	"github.com/fleetscan/fleetscan/internal/sla"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// TestExitCodeEveryCombination checks the bit mask over every combination
// of the conditions that set it.
func TestExitCodeEveryCombination(t *testing.T) {
	conds := []string{"breached", "failed image", "never-scanned image", "unresolved image", "unreachable cluster", "S3 upload failed", "stale feed"}
	for mask := 0; mask < 1<<len(conds); mask++ {
		on := func(i int) bool { return mask&(1<<i) != 0 }
		r := &report.Report{Complete: true}
		if on(0) {
			r.Summary.BreachedUnaccepted = 2
		}
		if on(1) {
			r.Summary.ImagesFailed = 1
		}
		if on(2) {
			r.Summary.ImagesNotScanned = 1
		}
		if on(3) {
			r.Summary.UnresolvedContainers = 1
		}
		if on(4) {
			r.Summary.ClustersUnreachable = 1
		}
		if on(6) {
			r.Feeds = []report.FeedStatus{{Feed: "epss", Title: "EPSS scores", State: "stale"}, {Feed: "kev", Title: "KEV catalogue", State: "never loaded"}}
		}
		o := Outcome{Report: r, Files: []report.File{{Name: "report.csv"}}}
		if on(5) {
			o.UploadErr = errors.New("connection refused")
		}
		want := 0
		if on(0) {
			want |= ExitBreached
		}
		if mask&^1 != 0 {
			want |= ExitIncomplete
		}
		var names []string
		for i, c := range conds {
			if on(i) {
				names = append(names, c)
			}
		}
		t.Run(fmt.Sprintf("%02d %s", mask, strings.Join(names, "+")), func(t *testing.T) {
			if got := o.ExitCode(); got != want {
				t.Fatalf("exit %d, want %d", got, want)
			}
			if got := ExitCode(o, nil); got != want {
				t.Fatalf("ExitCode(o, nil) = %d, want %d", got, want)
			}
			if got := ExitCode(o, errors.New("nats down")); got != ExitNoReport {
				t.Fatalf("with an error: %d, want 4", got)
			}
		})
	}
	if got := (Outcome{}).ExitCode(); got != ExitNoReport {
		t.Fatalf("no report: %d", got)
	}
	if got := (Outcome{Report: &report.Report{Complete: true}}).ExitCode(); got != ExitNoReport {
		t.Fatalf("no files written: %d", got)
	}
}

// TestSLAClockAcrossRuns drives the whole reporter through three runs with
// --now against real JetStream: new findings, a rebuilt image keeping its
// clock, a breach, a resolution listed once as fixed, and a reopening that
// keeps the original clock.
func TestSLAClockAcrossRuns(t *testing.T) {
	f := newFleet(t)
	wall := time.Now().UTC()
	web := func(k contract.ImageKey, tag string) map[string][]container {
		return map[string][]container{"prod": {{ns: "web", kind: "Deployment", name: "frontend", image: "docker.io/library/nginx:" + tag, key: k}}}
	}
	crit := vuln{"CVE-2025-0001", "CRITICAL", "openssl", "3.1.3-r0", "3.1.4-r0"}
	high := vuln{"CVE-2025-0002", "HIGH", "zlib", "1.3-r2", "1.3.1-r0"}
	low := vuln{"CVE-2025-0003", "LOW", "busybox", "1.36.1-r5", ""}

	// Run 1 (2025-01-01): both findings are new; nothing is due.
	f.dispatch("run-1", "c1", wall.Add(-3*time.Minute), web(key('a'), "1.25"), nil)
	f.scanned(key('a'), "c1", wall.Add(-2*time.Minute), crit, high)
	cfg := f.config("2025-01-01T06:00:00Z")
	o := f.run(cfg)
	if o.ExitCode() != ExitOK {
		t.Fatalf("run 1 exit %d, want 0", o.ExitCode())
	}
	d := o.Report.Diff
	if d.New != 2 || d.StillOpen != 0 || d.Fixed != 0 {
		t.Fatalf("run 1 diff %+v", d)
	}
	if c := rowFor(t, csvRows(t, cfg.OutDir), "CVE-2025-0001"); c["first_seen"] != "2025-01-01" || c["sla_deadline"] != "2025-01-08" {
		t.Fatalf("run 1 row %v", c)
	}

	// Run 2 (2025-01-09): the image was rebuilt (new digest, same
	// repository) and still carries the CRITICAL: its clock from run 1 holds,
	// so it is 8 days old and breached. The HIGH is gone: fixed. A LOW is new.
	f.dispatch("run-2", "c2", wall.Add(-2*time.Minute), web(key('b'), "1.26"), nil)
	f.scanned(key('b'), "c2", wall.Add(-time.Minute), crit, low)
	cfg = f.config("2025-01-09T06:00:00Z")
	o = f.run(cfg)
	if o.ExitCode() != ExitBreached {
		t.Fatalf("run 2 exit %d, want 1 (breached)", o.ExitCode())
	}
	rows := csvRows(t, cfg.OutDir)
	c := rowFor(t, rows, "CVE-2025-0001")
	if c["first_seen"] != "2025-01-01" || c["sla_deadline"] != "2025-01-08" || c["sla_breached"] != "True" || c["days_remaining"] != "-1" {
		t.Fatalf("rebuilt image lost its clock: %v", c)
	}
	if l := rowFor(t, rows, "CVE-2025-0003"); l["first_seen"] != "2025-01-09" || l["sla_breached"] != "False" {
		t.Fatalf("new LOW: %v", l)
	}
	if rows[0]["cve_id"] != "CVE-2025-0001" {
		t.Fatalf("breached row not first: %v", rows[0])
	}
	d = o.Report.Diff
	if d.New != 1 || d.StillOpen != 1 || d.Fixed != 1 || d.FixedFindings[0].VulnerabilityID != "CVE-2025-0002" ||
		!d.FixedFindings[0].ResolvedAt.Equal(must(sla.ParseTime("2025-01-09T06:00:00Z"))) {
		t.Fatalf("run 2 diff %+v", d)
	}

	// Run 3 (2025-01-10): the CRITICAL is fixed; the HIGH is back: reopened,
	// it keeps its clock from run 1 (deadline 2025-01-31), so nothing is
	// breached any more.
	f.dispatch("run-3", "c3", wall.Add(-time.Minute), web(key('c'), "1.27"), nil)
	f.scanned(key('c'), "c3", wall, high, low)
	cfg = f.config("2025-01-10T06:00:00Z")
	o = f.run(cfg)
	if o.ExitCode() != ExitOK {
		t.Fatalf("run 3 exit %d, want 0", o.ExitCode())
	}
	h := rowFor(t, csvRows(t, cfg.OutDir), "CVE-2025-0002")
	if h["first_seen"] != "2025-01-01" || h["sla_deadline"] != "2025-01-31" || h["sla_breached"] != "False" {
		t.Fatalf("reopened HIGH: %v", h)
	}
	d = o.Report.Diff
	if d.Reopened != 1 || d.StillOpen != 1 || d.Fixed != 1 || d.FixedFindings[0].VulnerabilityID != "CVE-2025-0001" {
		t.Fatalf("run 3 diff %+v", d)
	}

	// The same report again: fixed findings are listed once only.
	o = f.run(f.config("2025-01-10T07:00:00Z"))
	if d := o.Report.Diff; d.Fixed != 0 || d.New != 0 || d.Reopened != 0 || d.StillOpen != 2 {
		t.Fatalf("repeat diff %+v", d)
	}
}

// TestFirstSeenRetention runs the reporter under --now across a fix, a
// pruning and a return: a record resolved longer ago than
// --first-seen-retention is pruned (counted in the summary and on the
// console, not listed as fixed again), a younger one is kept, and when both
// findings come back the pruned one is new with a fresh clock while the
// kept one is reopened with its old clock.
func TestFirstSeenRetention(t *testing.T) {
	f := newFleet(t)
	wall := time.Now().UTC()
	web := func(k contract.ImageKey, tag string) map[string][]container {
		return map[string][]container{"prod": {{ns: "web", kind: "Deployment", name: "frontend", image: "docker.io/library/nginx:" + tag, key: k}}}
	}
	crit := vuln{"CVE-2025-0001", "CRITICAL", "openssl", "3.1.3-r0", "3.1.4-r0"}
	high := vuln{"CVE-2025-0002", "HIGH", "zlib", "1.3-r2", "1.3.1-r0"}
	low := vuln{"CVE-2025-0003", "LOW", "busybox", "1.36.1-r5", ""}
	step := func(n int, now string, k contract.ImageKey, vulns ...vuln) Outcome {
		at := wall.Add(time.Duration(n-10) * time.Minute)
		f.dispatch(fmt.Sprintf("run-%d", n), fmt.Sprintf("c%d", n), at, web(k, fmt.Sprintf("1.%d", n)), nil)
		f.scanned(k, fmt.Sprintf("c%d", n), at.Add(time.Second), vulns...)
		cfg := f.config(now)
		cfg.FirstSeenRetention = 30 * 24 * time.Hour
		var out bytes.Buffer
		d := f.deps(&out)
		d.FirstSeenMarkerTTL = time.Second
		o, err := Run(f.ctx, cfg, d)
		if err != nil {
			t.Fatal(err)
		}
		if pruned := o.Report.Summary.FirstSeenPruned; (pruned > 0) != strings.Contains(out.String(), "past --first-seen-retention") {
			t.Fatalf("run %d: %d pruned, console:\n%s", n, pruned, out.String())
		}
		return o
	}
	step(1, "2025-01-01T06:00:00Z", key('a'), crit, high)
	step(2, "2025-01-09T06:00:00Z", key('b'), crit, low) // HIGH fixed on 01-09
	o := step(3, "2025-02-20T06:00:00Z", key('c'), crit) // LOW fixed on 02-20; HIGH pruned (cutoff 01-21)
	if d, s := o.Report.Diff, o.Report.Summary; s.FirstSeenPruned != 1 || d.Fixed != 1 || d.FixedFindings[0].VulnerabilityID != low.id || d.StillOpen != 1 {
		t.Fatalf("run 3: pruned %d, diff %+v", s.FirstSeenPruned, d)
	}
	// The pruned record's marker expires on the server: CRITICAL, LOW and
	// the clusters key are left.
	natstest.WaitForValues(t, f.env.Res.FirstSeen, 3, 30*time.Second)
	o = step(4, "2025-03-01T06:00:00Z", key('d'), crit, high, low) // cutoff 01-30: LOW's record (02-20) is kept
	d := o.Report.Diff
	if o.Report.Summary.FirstSeenPruned != 0 || d.New != 1 || d.Reopened != 1 || d.StillOpen != 1 || d.Fixed != 0 {
		t.Fatalf("run 4: pruned %d, diff %+v", o.Report.Summary.FirstSeenPruned, d)
	}
	for _, e := range d.NewFindings {
		switch e.VulnerabilityID {
		case high.id:
			if e.Reopened || !e.FirstSeen.Equal(must(sla.ParseTime("2025-03-01T06:00:00Z"))) {
				t.Errorf("pruned HIGH came back as %+v, want new as of 03-01", e)
			}
		case low.id:
			if !e.Reopened || !e.FirstSeen.Equal(must(sla.ParseTime("2025-01-09T06:00:00Z"))) {
				t.Errorf("kept LOW came back as %+v, want reopened, first seen 01-09", e)
			}
		}
	}
}

func TestAcceptanceExpiryTripsTheGate(t *testing.T) {
	f := newFleet(t)
	wall := time.Now().UTC()
	f.dispatch("run-1", "c1", wall.Add(-time.Minute), map[string][]container{
		"prod": {{ns: "web", kind: "Deployment", name: "frontend", image: "docker.io/library/nginx:1.25", key: key('a')}},
	}, nil)
	f.scanned(key('a'), "c1", wall, vuln{"CVE-2025-0001", "CRITICAL", "openssl", "3.1.3-r0", "3.1.4-r0"})
	accept := filepath.Join(t.TempDir(), "accept.yaml")
	if err := os.WriteFile(accept, []byte(`acceptances:
  - vulnerability: CVE-2025-0001
    repository: docker.io/library/*
    expires: 2025-01-20
    reason: mitigated by the WAF
`), 0o644); err != nil {
		t.Fatal(err)
	}
	// Record the first sighting on 2025-01-01.
	f.run(f.config("2025-01-01"))
	tests := []struct {
		now    string
		accept bool
		exit   int
		status string
	}{
		{"2025-01-05", false, ExitOK, "open"},                    // within SLA
		{"2025-01-15", false, ExitBreached, "open"},              // past the 7 days
		{"2025-01-15", true, ExitOK, "accepted"},                 // breached but accepted
		{"2025-01-20", true, ExitBreached, "acceptance-expired"}, // the acceptance expired at midnight
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s accept=%v", tt.now, tt.accept), func(t *testing.T) {
			cfg := f.config(tt.now)
			if tt.accept {
				cfg.AcceptFile = accept
			}
			var out bytes.Buffer
			o, err := Run(f.ctx, cfg, f.deps(&out))
			if err != nil {
				t.Fatal(err)
			}
			if o.ExitCode() != tt.exit {
				t.Fatalf("exit %d, want %d", o.ExitCode(), tt.exit)
			}
			if got := o.Report.Findings.At(0).Status; string(got) != tt.status {
				t.Fatalf("status %s, want %s", got, tt.status)
			}
			if tt.status == "acceptance-expired" && !strings.Contains(out.String(), "Expired acceptance: CVE-2025-0001") {
				t.Fatalf("expired acceptance not called out:\n%s", out.String())
			}
		})
	}
}

// TestCompletion covers what the reporter waits for: a failed image, a
// missing result (by digest and workload), a stale result from an older
// cycle, an unresolved container, an unreachable cluster and a stale
// cluster, then --wait picking up a result that arrives while it polls.
func TestCompletion(t *testing.T) {
	f := newFleet(t)
	wall := time.Now().UTC()
	created := wall.Add(-time.Minute)
	// An old cluster: inventory from 3 days ago, no recent manifest.
	old := contract.Inventory{RunID: "run-0", Cycle: "c0", Cluster: "retired", CollectedAt: wall.Add(-72 * time.Hour),
		Entries: []contract.InventoryEntry{{Namespace: "x", Pod: "p", Container: "c", Image: "old.example/x:1",
			Digest: key('f').Digest, Platform: amd64, Resolution: contract.ResolvedStatus}}}
	if err := f.st.PutInventory(f.ctx, old); err != nil {
		t.Fatal(err)
	}
	f.dispatch("run-1", "c1", created, map[string][]container{
		"prod": {
			{ns: "web", kind: "Deployment", name: "frontend", image: "docker.io/library/nginx:1.25", key: key('a')},
			{ns: "cache", kind: "StatefulSet", name: "redis", image: "docker.io/library/redis:7", key: key('b')},
			{ns: "mon", kind: "DaemonSet", name: "node-exporter", image: "quay.io/prometheus/node-exporter:v1", key: key('c')},
			{ns: "jobs", kind: "CronJob", name: "nightly", image: "private.example/batch:latest", unresolved: "ErrImagePull: 401"},
		},
		"stage": {{ns: "web", kind: "Deployment", name: "frontend", image: "docker.io/library/nginx:1.25", key: key('a')}},
	}, map[string]string{"edge": "list pods: connection refused"})
	f.scanned(key('a'), "c1", wall, vuln{"CVE-2025-0001", "HIGH", "openssl", "1", "2"})
	f.failed(key('b'), "c1", wall, contract.FailureUnauthorized, "pull docker.io/library/redis:7: 401")
	f.scanned(key('d'), "c1", wall) // not expected by anyone: ignored

	cfg := f.config("")
	o := f.run(cfg)
	r := o.Report
	if o.ExitCode() != ExitIncomplete {
		t.Fatalf("exit %d, want 2", o.ExitCode())
	}
	if r.Summary.Images != 3 || r.Summary.ImagesScanned != 1 || r.Summary.ImagesFailed != 1 || r.Summary.ImagesNotScanned != 1 {
		t.Fatalf("summary %+v", r.Summary)
	}
	if fl := r.Failures[0]; fl.Class != contract.FailureUnauthorized || fl.Image != "docker.io/library/redis:7" ||
		ids(fl.Workloads) != "prod/cache/StatefulSet/redis" || fl.Attempts != 5 {
		t.Fatalf("failure %+v", fl)
	}
	var missing, unresolved report.NotScanned
	for _, ns := range r.NotScanned {
		if ns.Digest != "" {
			missing = ns
		} else {
			unresolved = ns
		}
	}
	if missing.Digest != key('c').Digest || missing.Image != "quay.io/prometheus/node-exporter:v1" ||
		ids(missing.Workloads) != "prod/mon/DaemonSet/node-exporter" || missing.Reason != "no scan result" {
		t.Fatalf("missing %+v", missing)
	}
	if !strings.Contains(unresolved.Reason, "not scanned: ErrImagePull: 401") || ids(unresolved.Workloads) != "prod/jobs/CronJob/nightly" {
		t.Fatalf("unresolved %+v", unresolved)
	}
	var clusters []string
	for _, c := range r.Clusters {
		clusters = append(clusters, c.Name+"="+c.Status)
	}
	if ids(clusters) != "edge=unreachable,prod=ok,stage=ok" {
		t.Fatalf("clusters %v (the retired cluster must be left out)", clusters)
	}
	if img := r.Images[0]; ids(img.Clusters) != "prod,stage" {
		t.Fatalf("nginx runs in %v", img.Clusters)
	}

	// A result from an older cycle, completed before the run, is stale.
	f.scanned(key('c'), "c0", created.Add(-time.Hour))
	o = f.run(f.config(""))
	for _, ns := range o.Report.NotScanned {
		if ns.Digest == key('c').Digest && !strings.Contains(ns.Reason, "no result for run run-1 yet (the latest is from cycle c0") {
			t.Fatalf("stale reason %q", ns.Reason)
		}
	}

	// --wait waits until the missing result arrives: it is stored once the
	// reporter reported itself waiting for it (no timing window to miss on
	// a loaded machine), from a goroutine that reports its error instead of
	// failing the test off the test goroutine.
	cfg = f.config("")
	cfg.Wait = time.Minute
	core, logs := observer.New(zap.InfoLevel)
	d := f.deps(nil)
	d.Log = zap.New(core)
	var once sync.Once
	stored := make(chan error, 1)
	d.Progress = func(s progress.State) {
		if s.Done < s.Total {
			once.Do(func() {
				go func() { stored <- f.store(key('c'), "c1", time.Now().UTC()) }()
			})
		}
	}
	o, err := Run(f.ctx, cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-stored; err != nil {
		t.Fatal(err)
	}
	progress := logs.FilterMessageSnippet("waiting: 2/3 done, 1 failed, ETA").All()
	if len(progress) == 0 || progress[0].ContextMap()["total"] != int64(3) {
		t.Fatalf("no progress line while waiting; logged %v", logs.All())
	}
	if o.Report.Summary.ImagesScanned != 2 || o.Report.Summary.ImagesNotScanned != 0 {
		t.Fatalf("after waiting: %+v", o.Report.Summary)
	}
	if o.ExitCode() != ExitIncomplete { // the failure, the unresolved container and the unreachable cluster remain
		t.Fatalf("exit %d", o.ExitCode())
	}

	// --wait gives up at the limit.
	f.dispatch("run-2", "c2", time.Now().UTC(), map[string][]container{
		"prod": {{ns: "web", kind: "Deployment", name: "frontend", image: "docker.io/library/nginx:1.25", key: key('e')}},
	}, nil)
	cfg = f.config("")
	cfg.Wait = 300 * time.Millisecond
	start := time.Now()
	o = f.run(cfg)
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Fatalf("gave up after %s", took)
	}
	if o.Report.Summary.ImagesNotScanned != 1 {
		t.Fatalf("summary %+v", o.Report.Summary)
	}
}

func TestRunMode(t *testing.T) {
	f := newFleet(t)
	wall := time.Now().UTC()
	f.dispatch("run-1", "c1", wall.Add(-time.Hour), map[string][]container{
		"prod": {{ns: "web", kind: "Deployment", name: "frontend", image: "docker.io/library/nginx:1.25", key: key('a')}},
	}, map[string]string{"edge": "timeout"})
	f.scanned(key('a'), "c1", wall, vuln{"CVE-2025-0001", "HIGH", "openssl", "1", "2"})
	// A later run replaces prod's inventory.
	f.dispatch("run-2", "c2", wall, map[string][]container{
		"prod": {{ns: "web", kind: "Deployment", name: "frontend", image: "docker.io/library/nginx:1.26", key: key('b')}},
	}, nil)

	cfg := f.config("")
	cfg.RunID = "run-1"
	o := f.run(cfg)
	r := o.Report
	if r.Scope.Mode != "run" || r.Findings.Len() != 1 || r.Findings.At(0).Digest() != key('a').Digest {
		t.Fatalf("run report %+v", r.Scope)
	}
	if r.Summary.ClustersUnreachable != 1 || o.ExitCode() != ExitIncomplete || o.ReportID != "run-1" {
		t.Fatalf("summary %+v exit %d id %s", r.Summary, o.ExitCode(), o.ReportID)
	}

	cfg.RunID = "no-such-run"
	if _, err := Run(f.ctx, cfg, f.deps(nil)); err == nil || !strings.Contains(err.Error(), "--run no-such-run") {
		t.Fatalf("err = %v", err)
	}
}

func TestConfigErrorsMeanNoReport(t *testing.T) {
	f := newFleet(t)
	bad := filepath.Join(t.TempDir(), "sla.yaml")
	if err := os.WriteFile(bad, []byte("days: {CRITICAL: -1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"bad --now", func(c *Config) { c.Now = "friday" }, "--now"},
		{"bad --sla", func(c *Config) { c.SLA = "CRITICAL=soon" }, "--sla"},
		{"bad severity", func(c *Config) { c.Severities = []string{"SEVERE"} }, "--severity"},
		{"bad format", func(c *Config) { c.Formats = []string{"pdf"} }, "--format"},
		{"missing accept file", func(c *Config) { c.AcceptFile = "/nonexistent/accept.yaml" }, "--accept-file /nonexistent/accept.yaml"},
		{"invalid sla config", func(c *Config) { c.SLAConfig = bad }, bad},
		{"bad s3 url", func(c *Config) { c.S3.URL = "bucket" }, "--s3-url"},
		{"short --first-seen-retention", func(c *Config) { c.FirstSeenRetention = time.Hour }, "--first-seen-retention 1h0m0s"},
		{"negative --first-seen-retention", func(c *Config) { c.FirstSeenRetention = -24 * time.Hour }, "--first-seen-retention"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := f.config("")
			tt.mod(&cfg)
			o, err := Run(f.ctx, cfg, f.deps(nil))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want mentioning %q", err, tt.want)
			}
			if ExitCode(o, err) != ExitNoReport {
				t.Fatalf("exit %d", ExitCode(o, err))
			}
		})
	}
}

// TestS3Delivery runs the reporter against a real S3-compatible server: the
// report lands under <prefix>/<date>/<run-id>/ and latest/; when the
// server is down the local report is still written and the run is
// incomplete.
func TestS3Delivery(t *testing.T) {
	f := newFleet(t)
	wall := time.Now().UTC()
	f.dispatch("run-7", "c1", wall.Add(-time.Minute), map[string][]container{
		"prod": {{ns: "web", kind: "Deployment", name: "frontend", image: "docker.io/library/nginx:1.25", key: key('a')}},
	}, nil)
	f.scanned(key('a'), "c1", wall, vuln{"CVE-2025-0001", "HIGH", "openssl", "1", "2"})
	srv := s3test.Start(t, "reports")
	s3test.UseCredentials(t, srv.AccessKey, srv.SecretKey)

	cfg := f.config("2025-03-10T06:00:00Z")
	cfg.S3.URL, cfg.S3.Endpoint, cfg.S3.PathStyle = "s3://reports/vuln-reports/", srv.Endpoint, true
	cfg.Formats = []string{"csv", "json"}
	var out bytes.Buffer
	o, err := Run(f.ctx, cfg, f.deps(&out))
	if err != nil {
		t.Fatal(err)
	}
	if o.UploadErr != nil || o.ExitCode() != ExitOK {
		t.Fatalf("upload %v exit %d", o.UploadErr, o.ExitCode())
	}
	local, err := os.ReadFile(filepath.Join(cfg.OutDir, "report.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := srv.Get(t.Context(), "reports", "vuln-reports/latest/metrics.prom"); err != nil {
		t.Fatalf("metrics.prom not uploaded with the report: %v", err)
	}
	for _, k := range []string{"vuln-reports/2025-03-10/run-7/report.csv", "vuln-reports/latest/report.csv"} {
		got, _, err := srv.Get(t.Context(), "reports", k)
		if err != nil {
			t.Fatalf("get %s: %v", k, err)
		}
		if !bytes.Equal(got, local) {
			t.Fatalf("%s differs from the local report", k)
		}
	}
	if !strings.Contains(out.String(), "Uploaded to s3://reports/vuln-reports/2025-03-10/run-7/") {
		t.Fatalf("console:\n%s", out.String())
	}

	srv.Stop()
	cfg.OutDir = filepath.Join(t.TempDir(), "again")
	out.Reset()
	o, err = Run(f.ctx, cfg, f.deps(&out))
	if err != nil {
		t.Fatal(err)
	}
	if o.UploadErr == nil || o.ExitCode() != ExitIncomplete {
		t.Fatalf("upload err %v exit %d, want incomplete", o.UploadErr, o.ExitCode())
	}
	if !strings.Contains(o.UploadErr.Error(), "s3://reports/") || !strings.Contains(o.UploadErr.Error(), srv.Endpoint) {
		t.Fatalf("upload error does not name bucket and endpoint: %v", o.UploadErr)
	}
	if _, err := os.Stat(filepath.Join(cfg.OutDir, "report.csv")); err != nil {
		t.Fatalf("local report not written: %v", err)
	}
	if !strings.Contains(out.String(), "Exit status 2: the S3 upload failed") {
		t.Fatalf("console:\n%s", out.String())
	}
}

func TestConsoleSummary(t *testing.T) {
	f := newFleet(t)
	wall := time.Now().UTC()
	f.dispatch("run-1", "c1", wall.Add(-time.Minute), map[string][]container{
		"prod": {{ns: "web", kind: "Deployment", name: "frontend", image: "docker.io/library/nginx:1.25", key: key('a')}},
	}, nil)
	f.scanned(key('a'), "c1", wall, vuln{"CVE-2025-0001", "CRITICAL", "openssl", "1", "2"}, vuln{"CVE-2025-0002", "LOW", "zlib", "1", ""})
	cfg := f.config("2025-01-01")
	cfg.Record = false
	var out bytes.Buffer
	if _, err := Run(f.ctx, cfg, f.deps(&out)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Vulnerability Summary (2 total)", "CRITICAL       1  ", "SLA:      0 breached",
		"Report written to " + cfg.OutDir, "Exit status 0: nothing breached, report complete"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("console lacks %q:\n%s", want, out.String())
		}
	}
	// --record=false wrote no first-seen record.
	keys, err := f.env.Res.FirstSeen.ListKeys(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range keys.Keys() {
		n++
	}
	if n != 0 {
		t.Fatalf("%d first-seen records written with --record=false", n)
	}
}

func TestUnreadableInventoryIsUnreachableNotFatal(t *testing.T) {
	f := newFleet(t)
	wall := time.Now().UTC()
	f.dispatch("run-1", "c1", wall.Add(-time.Minute), map[string][]container{
		"prod": {{ns: "web", kind: "Deployment", name: "frontend", image: "docker.io/library/nginx:1.25", key: key('a')}},
	}, nil)
	f.scanned(key('a'), "c1", wall)
	if _, err := f.env.Res.Inventories.PutBytes(f.ctx, "broken", []byte(`{"schemaVersion":"1.0"}`)); err != nil {
		t.Fatal(err)
	}
	o := f.run(f.config(""))
	var got []string
	for _, c := range o.Report.Clusters {
		got = append(got, c.Name+"="+c.Status)
	}
	if ids(got) != "broken=unreachable,prod=ok" || o.ExitCode() != ExitIncomplete {
		t.Fatalf("clusters %v exit %d", got, o.ExitCode())
	}
	if !strings.Contains(o.Report.Clusters[0].Error, "unreadable") {
		t.Fatalf("error %q", o.Report.Clusters[0].Error)
	}
}

// TestChunkedAndSingleDocumentInventories: the reporter reads inventories
// in the chunked form (what the dispatcher stores) and in the single-
// document form of schema 1.0 (stored before chunking) alike, in the fleet
// and the run view; a chunked inventory cut before its end record (its
// writer died midway) is unreadable, never a shorter inventory.
func TestChunkedAndSingleDocumentInventories(t *testing.T) {
	f := newFleet(t)
	f.st.InventoryChunk = 1
	wall := time.Now().UTC()
	web := func(name string, k contract.ImageKey) container {
		return container{ns: "web", kind: "Deployment", name: name, image: "docker.io/library/nginx:1.25", key: k}
	}
	m := f.dispatch("run-1", "c1", wall.Add(-time.Minute), map[string][]container{
		"chunked": {web("a", key('a')), web("b", key('b')), web("c", key('a'))},
		"legacy":  {web("d", key('b')), web("e", key('c'))},
		"partial": {web("f", key('a'))},
	}, nil)
	for _, k := range m.Expected {
		f.scanned(k, "c1", wall)
	}
	old, err := f.st.Inventory(f.ctx, "legacy")
	if err != nil {
		t.Fatal(err)
	}
	old.SchemaVersion = "1.0"
	doc, err := old.Encode()
	if err != nil {
		t.Fatal(err)
	}
	cut, err := contract.Inventory{RunID: "run-1", Cycle: "c1", Cluster: "partial", CollectedAt: wall.Add(-time.Minute),
		Entries: make([]contract.InventoryEntry, 3)}.EncodeChunked(1)
	if err != nil {
		t.Fatal(err)
	}
	cut = cut[:bytes.LastIndex(bytes.TrimSuffix(cut, []byte("\n")), []byte("\n"))+1] // the end record lost
	zw, _ := zstd.NewWriter(nil)
	for name, data := range map[string][]byte{"legacy": doc, "partial": zw.EncodeAll(cut, nil)} {
		if _, err := f.env.Res.Inventories.PutBytes(f.ctx, name, data); err != nil {
			t.Fatal(err)
		}
	}
	for _, runID := range []string{"", "run-1"} {
		cfg := f.config("")
		cfg.RunID = runID
		o, err := Run(f.ctx, cfg, f.deps(nil))
		if runID != "" {
			// The run view reads the run's inventories as it finds them:
			// the unreadable one fails the report.
			if err == nil || !strings.Contains(err.Error(), "partial") {
				t.Fatalf("run view with an unreadable inventory: %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range o.Report.Clusters {
			got = append(got, fmt.Sprintf("%s=%s/%d/%d", c.Name, c.Status, c.Pods, c.Containers))
		}
		if ids(got) != "chunked=ok/3/3,legacy=ok/2/2,partial=unreachable/0/0" {
			t.Fatalf("clusters %v", got)
		}
		if !strings.Contains(o.Report.Clusters[2].Error, "unreadable") || !strings.Contains(o.Report.Clusters[2].Error, "end record") {
			t.Fatalf("partial: %q", o.Report.Clusters[2].Error)
		}
		if o.Report.Summary.Images != 3 {
			t.Fatalf("%d images, want 3", o.Report.Summary.Images)
		}
	}
}

// TestReusedKeysAcceptStoredResult: a key the dispatcher found already
// answered (manifest reusedKeys) is satisfied by its stored result from an
// older cycle, in the fleet view and in the run view; without that mark the
// same result is stale.
func TestReusedKeysAcceptStoredResult(t *testing.T) {
	f := newFleet(t)
	wall := time.Now().UTC()
	f.scanned(key('a'), "c0", wall.Add(-48*time.Hour), vuln{"CVE-2025-0001", "HIGH", "openssl", "1", "2"})
	m := f.dispatch("run-1", "c1", wall.Add(-time.Minute), map[string][]container{
		"prod": {
			{ns: "web", kind: "Deployment", name: "frontend", image: "docker.io/library/nginx:1.25", key: key('a')},
			{ns: "cache", kind: "StatefulSet", name: "redis", image: "docker.io/library/redis:7", key: key('b')},
		},
	}, nil)
	f.scanned(key('b'), "c1", wall)

	o := f.run(f.config(""))
	if o.Report.Summary.ImagesNotScanned != 1 || o.ExitCode() != ExitIncomplete {
		t.Fatalf("without reusedKeys the old result must be stale: %+v exit %d", o.Report.Summary, o.ExitCode())
	}

	m.ReusedKeys, m.Reused = []contract.ImageKey{key('a')}, 1
	if err := f.st.PutManifest(f.ctx, m); err != nil {
		t.Fatal(err)
	}
	for _, runID := range []string{"", "run-1"} {
		cfg := f.config("")
		cfg.RunID = runID
		o := f.run(cfg)
		s := o.Report.Summary
		if s.ImagesScanned != 2 || s.ImagesNotScanned != 0 || o.ExitCode() != ExitOK || o.Report.Findings.Len() != 1 {
			t.Fatalf("run %q: reused key not accepted: %+v exit %d", runID, s, o.ExitCode())
		}
	}
}
