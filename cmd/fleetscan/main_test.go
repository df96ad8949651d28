package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/cli"
	"github.com/fleetscan/fleetscan/internal/feeds"
	"github.com/fleetscan/fleetscan/internal/feeds/feedstest"
	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/internal/fixture/fixturetest"
	"github.com/fleetscan/fleetscan/internal/reporter"
)

// runMain runs the command as main does, minus the signal handling.
func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cli.Run(ctx, command, cli.Env{Args: args, Stdout: stdout, Stderr: stderr}, run)
}

func TestUsage(t *testing.T) {
	badPolicy := filepath.Join(t.TempDir(), "sla.yaml")
	if err := os.WriteFile(badPolicy, []byte("kev: {days: 0}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no command", nil, reporter.ExitNoReport, "Commands:"},
		{"unknown command", []string{"frobnicate"}, reporter.ExitNoReport, `unknown command "frobnicate"`},
		{"help", []string{"--help"}, 0, "Commands:"},
		{"scan help", []string{"scan", "--help"}, 0, "--skip-db-update"},
		{"scan help documents exit status", []string{"scan", "--help"}, 0, "Exit status (a bit mask)"},
		{"demo help", []string{"demo", "--help"}, 0, "--history-days"},
		{"bad flag", []string{"scan", "--no-such-flag"}, reporter.ExitNoReport, "unknown flag"},
		{"bad value", []string{"scan", "--workers", "0", "--skip-db-update"}, reporter.ExitNoReport, "--workers 0"},
		{"stray argument", []string{"demo", "extra"}, reporter.ExitNoReport, "unexpected arguments"},
		{"bad --kev-url", []string{"scan", "--skip-db-update", "--kev-url", "ftp://mirror/kev.json"}, reporter.ExitNoReport, "--kev-url: ftp://mirror/kev.json: unsupported scheme"},
		{"bad --sla-config rule", []string{"scan", "--skip-db-update", "--sla-config", badPolicy}, reporter.ExitNoReport, "--sla-config " + badPolicy + ": kev.days: 0: want 1 to 3650"},
		{"bad --owner-label", []string{"scan", "--skip-db-update", "--notify-webhook", "https://hooks.example.com/x", "--owner-label", "team owner"}, reporter.ExitNoReport, `--owner-label "team owner": not a Kubernetes label or annotation key`},
		{"version", []string{"version"}, 0, "fleetscan"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runMain(t.Context(), tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout.String(), stderr.String())
			}
			if all := stdout.String() + stderr.String(); !strings.Contains(all, tt.want) {
				t.Fatalf("output does not mention %q:\n%s", tt.want, all)
			}
		})
	}
}

func TestScanOfflineWithoutDBNamesTheFix(t *testing.T) {
	var stdout, stderr bytes.Buffer
	inv := filepath.Join(t.TempDir(), "pods.json")
	if err := os.WriteFile(inv, []byte(`{"kind":"List","items":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	code := runMain(t.Context(), []string{"scan", "--skip-db-update", "--cache-dir", t.TempDir(),
		"--state-dir", t.TempDir(), "--inventory-file", "x=" + inv, "--out-dir", t.TempDir()}, &stdout, &stderr)
	if code != reporter.ExitNoReport {
		t.Fatalf("exit %d, want 4; stderr: %s", code, stderr.String())
	}
	if msg := stderr.String(); !strings.Contains(msg, "--skip-db-update") || !strings.Contains(msg, "--cache-dir") {
		t.Fatalf("error does not name the flags that fix it: %s", msg)
	}
}

// TestScanInventoryFile runs `fleetscan scan` end to end on an inventory
// file, a fixture registry and a fixture DB: the README's "scan your own
// cluster" path, offline.
func TestScanInventoryFile(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	reg := fixturetest.NewRegistry(t)
	spec, err := fixture.SampleImage("alpine-3.18")
	if err != nil {
		t.Fatal(err)
	}
	alpine, err := fixture.PushSample(ctx, reg.Host, spec)
	if err != nil {
		t.Fatal(err)
	}
	advisories, err := fixture.BaseAdvisories()
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	if _, err := fixture.BuildDB(cache, advisories, fixture.DBOptions{}); err != nil {
		t.Fatal(err)
	}
	pods := fmt.Sprintf(`{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Pod",
	  "metadata":{"name":"web-0","namespace":"shop","ownerReferences":[{"apiVersion":"apps/v1","kind":"StatefulSet","name":"web","uid":"u","controller":true}]},
	  "spec":{"containers":[{"name":"app","image":"%[1]s:3.18"}]},
	  "status":{"containerStatuses":[{"name":"app","image":"%[1]s:3.18","imageID":"%[1]s@%[2]s"}]}}]}`, alpine.Repository, alpine.Digest)
	inv := filepath.Join(t.TempDir(), "pods.json")
	if err := os.WriteFile(inv, []byte(pods), 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	now := time.Now().UTC().Truncate(time.Second)
	// An explicitly given local KEV file is read even with --skip-db-update;
	// the remote default EPSS feed is not fetched.
	kevFile, _ := feedstest.WriteFiles(t, t.TempDir())
	var stdout, stderr bytes.Buffer
	args := []string{"scan", "--skip-db-update", "--cache-dir", cache, "--state-dir", t.TempDir(), "--kev-url", kevFile,
		"--inventory-file", "laptop=" + inv, "--insecure-registry", reg.Host, "--workers", "2",
		"--out-dir", out, "--scratch-dir", t.TempDir(),
		// One SLA clock for both runs below, so days remaining compare;
		// it stays the last argument (the third run moves it).
		"--now", now.Format(time.RFC3339)}
	code := runMain(ctx, args, &stdout, &stderr)
	// Findings were first seen just now: nothing can be past its SLA yet.
	if code != reporter.ExitOK {
		t.Fatalf("exit %d, want 0\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
	}
	csvData, err := os.ReadFile(filepath.Join(out, "report.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(csvData), "image,cve_id,severity,pkg_name,installed,fixed_in,sla_deadline,sla_breached,") {
		t.Fatalf("CSV header: %.120s", csvData)
	}
	for _, f := range alpine.Spec.Expected {
		if !strings.Contains(string(csvData), f.VulnerabilityID) {
			t.Errorf("report misses %s", f.VulnerabilityID)
		}
	}
	if !strings.Contains(stdout.String(), "Vulnerability Summary") {
		t.Fatalf("no console summary:\n%s", stdout.String())
	}
	// The report read the KEV copy from --cache-dir and states the EPSS feed
	// was never loaded (not an error: exit 0 above).
	for _, want := range []string{"Feed:     KEV catalogue 2025.08.25 (3 CVEs", "): fresh", "Feed:     EPSS scores: never loaded"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("console lacks %q:\n%s", want, stdout.String())
		}
	}
	if !strings.Contains(string(csvData), ",workloads,kev,kev_due_date,ransomware,epss,epss_percentile,sla_rule,os_eol,vex_status,vex_justification,vex_source\n") {
		t.Errorf("CSV header lacks the exploit and VEX columns: %.400s", csvData)
	}
	if !strings.Contains(stdout.String(), "Scans: 0 reused") {
		t.Fatalf("first run: no incremental-scanning line, or something reused:\n%s", stdout.String())
	}
	enr, err := feeds.Load(ctx, feeds.DirSource(cache), feeds.DefaultMaxAge)
	if err != nil || !enr.Status(feeds.KEV).Loaded || enr.Status(feeds.EPSS).State(time.Now()) != feeds.StateNeverLoaded {
		t.Fatalf("feeds in --cache-dir after the scan: %+v %v", enr.Statuses(), err)
	}

	// The same fleet again with the same state and DB: the stored result is
	// current, so the image is not even queued, and the report is the same.
	stdout.Reset()
	stderr.Reset()
	if code := runMain(ctx, args, &stdout, &stderr); code != reporter.ExitOK {
		t.Fatalf("second run: exit %d\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
	}
	if want := "Scans: 1 reused (same DB and scanner; 1 not even queued), 0 re-detected from cached analyses without the registry, 0 pulled"; !strings.Contains(stdout.String(), want) {
		t.Fatalf("second run: want %q in\n%s", want, stdout.String())
	}
	again, err := os.ReadFile(filepath.Join(out, "report.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(csvData) {
		t.Errorf("second run's report.csv differs from the first's:\n%s\n---\n%s", again, csvData)
	}

	// Ten days later, after the embedded NATS was stopped and started again
	// on the same state: every finding keeps the first run's first_seen
	// date, and its days_remaining went down by ten.
	first := csvColumns(t, csvData)
	stdout.Reset()
	stderr.Reset()
	later := append(args[:len(args)-1:len(args)-1], now.AddDate(0, 0, 10).Format(time.RFC3339))
	code = runMain(ctx, later, &stdout, &stderr)
	if code&reporter.ExitNoReport != 0 {
		t.Fatalf("third run: exit %d\n%s", code, stderr.String())
	}
	// Evaluated ten days after the KEV copy was last confirmed: stale, and
	// the report is incomplete (exit status bit 2).
	if code&reporter.ExitIncomplete == 0 || !strings.Contains(stdout.String(), "the KEV catalogue is stale") {
		t.Errorf("third run: exit %d; a KEV copy 10 days old must make the report incomplete:\n%s", code, stdout.String())
	}
	third, err := os.ReadFile(filepath.Join(out, "report.csv"))
	if err != nil {
		t.Fatal(err)
	}
	rows := csvColumns(t, third)
	if len(rows) != len(first) || len(rows) == 0 {
		t.Fatalf("third run: %d rows, first run %d", len(rows), len(first))
	}
	for k, r := range rows {
		f, ok := first[k]
		if !ok {
			t.Errorf("%s: not in the first report", k)
			continue
		}
		if r["first_seen"] != f["first_seen"] || f["first_seen"] != now.Format(time.DateOnly) {
			t.Errorf("%s: first_seen %s after the restart, %s before; want the first run's date %s", k, r["first_seen"], f["first_seen"], now.Format(time.DateOnly))
		}
		d1, _ := strconv.Atoi(f["days_remaining"])
		d3, _ := strconv.Atoi(r["days_remaining"])
		if d1-d3 != 10 {
			t.Errorf("%s: days_remaining %d then %d, want 10 fewer", k, d1, d3)
		}
	}
}

// csvColumns reads report.csv rows keyed by cve_id and pkg_name.
func csvColumns(t *testing.T, data []byte) map[string]map[string]string {
	t.Helper()
	recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]string{}
	for _, r := range recs[1:] {
		m := map[string]string{}
		for i, c := range recs[0] {
			m[c] = r[i]
		}
		out[m["cve_id"]+" "+m["pkg_name"]] = m
	}
	return out
}

// TestScanOwnerLabel: `fleetscan scan` on `kubectl get namespaces,pods -A
// -o json` with --owner-label routes the digest by the namespace's label
// (over its annotation of the same key): the label owner's route gets
// exactly one digest, the default route none.
func TestScanOwnerLabel(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	f := newScanFixture(t, 0)
	// As `kubectl get namespaces,pods -A -o json` prints them: the
	// fixture's pods and their namespace, labelled and annotated.
	pods, err := os.ReadFile(f.inv)
	if err != nil {
		t.Fatal(err)
	}
	ns := `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop","labels":{"team":"shop-label"},"annotations":{"team":"shop-annotation"}}},`
	pods = bytes.Replace(pods, []byte(`"items":[`), []byte(`"items":[`+ns), 1)
	dir := t.TempDir()
	inv := filepath.Join(dir, "pods.json")
	if err := os.WriteFile(inv, pods, 0o644); err != nil {
		t.Fatal(err)
	}
	type inbox struct {
		mu     sync.Mutex
		owners []string
	}
	serve := func(b *inbox) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var d struct {
				Owner string `json:"owner"`
			}
			_ = json.NewDecoder(r.Body).Decode(&d)
			b.mu.Lock()
			b.owners = append(b.owners, d.Owner)
			b.mu.Unlock()
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	label, fallback := &inbox{}, &inbox{}
	routes := "routes:\n  - owner: shop-label\n    webhook: " + serve(label).URL + "/shop\ndefault:\n  webhook: " + serve(fallback).URL + "/default\n"
	notifyConfig := filepath.Join(dir, "notify.yaml")
	if err := os.WriteFile(notifyConfig, []byte(routes), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	// SLAs of a day: every finding is due within 7 days, so the digest
	// has something to say.
	args := f.args(t, t.TempDir(), t.TempDir(), "--sla", "CRITICAL=1,HIGH=1,MEDIUM=1,LOW=1,UNKNOWN=1",
		"--owner-label", "team", "--notify-config", notifyConfig)
	for i := range args {
		if args[i] == "laptop="+f.inv {
			args[i] = "laptop=" + inv
		}
	}
	code := runMain(ctx, args, &stdout, &stderr)
	if code&reporter.ExitNoReport != 0 || code&reporter.ExitIncomplete != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
	}
	label.mu.Lock()
	fallback.mu.Lock()
	defer label.mu.Unlock()
	defer fallback.mu.Unlock()
	if strings.Join(label.owners, ",") != "shop-label" || len(fallback.owners) != 0 {
		t.Fatalf("digests: shop-label's route got %q, the default route %q; want exactly shop-label's digest on its route", label.owners, fallback.owners)
	}
}
