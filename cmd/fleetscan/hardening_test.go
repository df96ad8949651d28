package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/cli"
	"github.com/fleetscan/fleetscan/internal/cli/clitest"
	"github.com/fleetscan/fleetscan/internal/dirlock"
	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/internal/fixture/fixturetest"
	"github.com/fleetscan/fleetscan/internal/reporter"
)

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}, {"scan", "--version"}, {"demo", "--version"}} {
		var stdout, stderr bytes.Buffer
		if code := runMain(t.Context(), args, &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "fleetscan ") {
			t.Fatalf("%v: exit %d stdout %q stderr %q", args, code, stdout.String(), stderr.String())
		}
	}
}

// scanFixture is what `fleetscan scan` needs offline: a registry with one
// image, a fixture DB and an inventory file running it.
type scanFixture struct {
	cache, inv, host string
	blobs            chan struct{} // a blob GET started (when slow)
}

// newScanFixture builds the fixture; with delay > 0 every blob GET of the
// registry waits that long first (scans stay in flight).
func newScanFixture(t *testing.T, delay time.Duration) *scanFixture {
	t.Helper()
	f := &scanFixture{blobs: make(chan struct{}, 64)}
	var pushed atomic.Bool // slow down the scans' pulls, not the push
	slow := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if delay > 0 && pushed.Load() && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				select {
				case f.blobs <- struct{}{}:
				default:
				}
				select {
				case <-time.After(delay):
				case <-r.Context().Done():
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}
	reg := fixturetest.NewRegistry(t, fixture.WithMiddleware(slow))
	f.host = reg.Host
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	spec, err := fixture.SampleImage("alpine-3.18")
	if err != nil {
		t.Fatal(err)
	}
	alpine, err := fixture.PushSample(ctx, reg.Host, spec)
	if err != nil {
		t.Fatal(err)
	}
	pushed.Store(true)
	advisories, err := fixture.BaseAdvisories()
	if err != nil {
		t.Fatal(err)
	}
	f.cache = t.TempDir()
	if _, err := fixture.BuildDB(f.cache, advisories, fixture.DBOptions{}); err != nil {
		t.Fatal(err)
	}
	pods := fmt.Sprintf(`{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Pod",
	  "metadata":{"name":"web-0","namespace":"shop"},
	  "spec":{"containers":[{"name":"app","image":"%[1]s:3.18"}]},
	  "status":{"containerStatuses":[{"name":"app","image":"%[1]s:3.18","imageID":"%[1]s@%[2]s"}]}}]}`, alpine.Repository, alpine.Digest)
	f.inv = filepath.Join(t.TempDir(), "pods.json")
	if err := os.WriteFile(f.inv, []byte(pods), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *scanFixture) args(t *testing.T, stateDir, outDir string, extra ...string) []string {
	return append([]string{"scan", "--skip-db-update", "--cache-dir", f.cache, "--state-dir", stateDir,
		"--inventory-file", "laptop=" + f.inv, "--insecure-registry", f.host, "--workers", "2",
		"--out-dir", outDir, "--scratch-dir", t.TempDir()}, extra...)
}

// TestStateDirHasOneOwner: a second scan on a state directory in use
// exits 4 at once, naming the directory and the holder's PID; nothing of
// the state is touched.
func TestStateDirHasOneOwner(t *testing.T) {
	f := newScanFixture(t, 0)
	state := t.TempDir()
	held, err := dirlock.Acquire(state, "fleetscan scan")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var stdout, stderr bytes.Buffer
	code := runMain(t.Context(), f.args(t, state, t.TempDir()), &stdout, &stderr)
	took := time.Since(start)
	if code != reporter.ExitNoReport || took > 5*time.Second {
		t.Fatalf("exit %d after %s, want 4 within 5s:\n%s", code, took, stderr.String())
	}
	if msg := stderr.String(); !strings.Contains(msg, "--state-dir") || !strings.Contains(msg, state) || !strings.Contains(msg, fmt.Sprintf("process %d", os.Getpid())) {
		t.Fatalf("message does not name the flag, directory and holder PID:\n%s", msg)
	}
	if _, err := os.Stat(filepath.Join(state, "jetstream")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the state was opened anyway: %v", err)
	}

	// The holder goes away (here: releases; a dead process's lock is
	// dropped by the kernel, see internal/dirlock): the next scan runs.
	_ = held.Release()
	stdout.Reset()
	stderr.Reset()
	if code := runMain(t.Context(), f.args(t, state, t.TempDir()), &stdout, &stderr); code != reporter.ExitOK {
		t.Fatalf("after the holder left: exit %d:\n%s", code, stderr.String())
	}
}

// TestStaleLockIsTakenOver: a lock file left by a process that is gone
// (here: a PID that cannot be running) does not block the next scan.
func TestStaleLockIsTakenOver(t *testing.T) {
	f := newScanFixture(t, 0)
	state := t.TempDir()
	if err := os.WriteFile(filepath.Join(state, dirlock.FileName), []byte("2147483646\n2026-01-01T00:00:00Z\nfleetscan scan\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	ctx, in, stop := cli.WithSignals(t.Context(), nil, "fleetscan", &stderr, reporter.ExitNoReport, func(int) {})
	defer stop()
	if code := cli.Run(ctx, command, cli.Env{Args: f.args(t, state, t.TempDir()), Stdout: &stdout, Stderr: &stderr, Interrupts: in}, run); code != reporter.ExitOK {
		t.Fatalf("exit %d:\n%s", code, stderr.String())
	}
	// The report was written: a second signal now would exit with its
	// status, not "no report".
	if in.ExitCode() != reporter.ExitOK {
		t.Errorf("after the report, a second signal would exit %d, want 0", in.ExitCode())
	}
}

// TestBadInputBeforeAnyWork: every flag and file of `fleetscan scan` is
// checked before the state is opened — no job published, no first-seen date
// written — with exit 4 and a message naming the flag (and only flags of
// this command).
func TestBadInputBeforeAnyWork(t *testing.T) {
	f := newScanFixture(t, 0)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	file := write("file", "")
	brokenAccept := write("accept.yaml", "acceptances: [{vulnerability: CVE-1, repository: '*', expires: someday, reason: r}]")
	shortName := write("short.yaml", "acceptances: [{vulnerability: CVE-1, repository: alpine, expires: 2030-01-01, reason: r}]")
	dupPolicy := write("policy.yaml", "overrides: [{name: p, days: {high: 3, High: 5}}]")
	var stdout, stderr bytes.Buffer
	runMain(t.Context(), []string{"scan", "--help"}, &stdout, &stderr)
	help := stderr.String()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--out-dir", filepath.Join(file, "report")}, "--out-dir " + filepath.Join(file, "report")},
		{[]string{"--accept-file", brokenAccept}, "--accept-file"},
		{[]string{"--accept-file", shortName}, "docker.io/library/alpine"},
		{[]string{"--accept-file", filepath.Join(dir, "missing.yaml")}, "--accept-file " + filepath.Join(dir, "missing.yaml")},
		{[]string{"--sla-config", dupPolicy}, "HIGH is given twice"},
		{[]string{"--sla", "CRITICAL=106752"}, "--sla"},
		{[]string{"--sla", "CRITICAL=3,critical=30"}, "CRITICAL is given twice"},
		{[]string{"--now", "0001-01-01"}, "--now"},
		{[]string{"--now", "9999-12-31"}, "between 1970 and 2200"},
		{[]string{"--inventory-file", "=" + f.inv}, "--inventory-file"},
		{[]string{"--inventory-file", "other=" + filepath.Join(dir, "gone.json")}, "--inventory-file " + filepath.Join(dir, "gone.json")},
		{[]string{"--workers", "0"}, "--workers 0"},
		{[]string{"--scan-wait", "-1s"}, "--scan-wait"},
		{[]string{"--grace-period", "0s"}, "--grace-period"},
		{[]string{"--first-seen-retention", "-24h"}, "--first-seen-retention -24h0m0s"},
	} {
		state := filepath.Join(t.TempDir(), "state")
		stdout.Reset()
		stderr.Reset()
		code := runMain(t.Context(), f.args(t, state, t.TempDir(), tc.args...), &stdout, &stderr)
		if code != reporter.ExitNoReport || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, want 4 naming %q:\n%s", tc.args, code, tc.want, stderr.String())
		}
		if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%v: the state directory was created: work started before the input was checked", tc.args)
		}
		clitest.OnlyOwnFlags(t, help, stderr.String())
	}

	// All at once: every message still names only flags of scan.
	stdout.Reset()
	stderr.Reset()
	runMain(t.Context(), []string{"scan", "--workers", "0", "--scan-wait", "0s", "--grace-period", "-1s", "--scan-timeout", "0s",
		"--max-db-age", "0s", "--layer-cache", "x", "--layer-lease-ttl", "1ms", "--insecure-registry", "a/b", "--format", "pdf",
		"--severity", "SEVERE", "--page-size", "0", "--selector", "a in (b", "--nats-url", "http://x", "--s3-url", "x",
		"--sla", "LOW=0", "--now", "1900-01-01", "--log-level", "loud", "--layer-cache-ttl", "1s"}, &stdout, &stderr)
	clitest.OnlyOwnFlags(t, help, stderr.String())
}

func TestSecretsNeverPrinted(t *testing.T) {
	const secret = "hunter2-s3cr3t"
	for _, args := range [][]string{
		{"scan", "--skip-db-update", "--nats-url", "http://admin:" + secret + "@nats:4222"},
		{"scan", "--skip-db-update", "--nats-url", "nats://nats:4222", "--nats-user", "u", "--nats-password", secret, "--workers", "0"},
		{"scan", "--skip-db-update", "--s3-url", "s3://AKIA:" + secret + "@bucket"},
	} {
		var stdout, stderr bytes.Buffer
		if code := runMain(t.Context(), append(args, "--out-dir", t.TempDir()), &stdout, &stderr); code != reporter.ExitNoReport {
			t.Fatalf("%v: exit %d", args, code)
		}
		clitest.NoSecret(t, stdout.String()+stderr.String(), secret)
	}
}

// TestInterrupt: the first SIGINT with a scan in flight stops taking work,
// says on stderr what is waited for and until when, and ends within the
// --grace-period with status 4 ("no report"); a second signal exits at once
// with status 4.
func TestInterrupt(t *testing.T) {
	f := newScanFixture(t, time.Minute) // blob fetches hang: scans stay in flight
	sigs := make(chan os.Signal, 2)
	exited := make(chan int, 1)
	var stdout, stderr clitest.Buffer
	ctx, in, stop := cli.WithSignals(t.Context(), sigs, "fleetscan", &stderr, reporter.ExitNoReport, func(code int) { exited <- code })
	defer stop()
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, command, cli.Env{Args: f.args(t, t.TempDir(), t.TempDir(), "--grace-period", "2s"),
			Stdout: &stdout, Stderr: &stderr, Interrupts: in}, run)
	}()
	select {
	case <-f.blobs: // a scan is pulling layers
	case code := <-done:
		t.Fatalf("scan ended (%d) before a layer was pulled:\n%s", code, stderr.String())
	case <-time.After(2 * time.Minute):
		t.Fatalf("no layer pulled:\n%s", stderr.String())
	}
	interrupted := time.Now()
	sigs <- os.Interrupt
	var code int
	select {
	case code = <-done:
	case <-time.After(time.Minute):
		t.Fatalf("still running a minute after the interrupt (grace period 2s):\n%s", stderr.String())
	}
	took := time.Since(interrupted)
	msg := stderr.String()
	t.Logf("interrupted run ended %s after the signal; stderr:\n%s", took.Round(time.Millisecond), msg)
	if code != reporter.ExitNoReport || took > 20*time.Second {
		t.Errorf("exit %d %s after the interrupt, want 4 soon after the 2s grace period", code, took)
	}
	for _, want := range []string{"SIGINT: stopping; press Ctrl-C again", "waiting up to 2s (until ", "1 in-flight scans",
		"interrupted (SIGINT): no report written"} {
		if !strings.Contains(msg, want) {
			t.Errorf("stderr lacks %q:\n%s", want, msg)
		}
	}
	select {
	case c := <-exited:
		t.Fatalf("one signal exited the process (%d)", c)
	default:
	}
	// The second signal exits at once: no report was written.
	sigs <- os.Interrupt
	select {
	case c := <-exited:
		if c != reporter.ExitNoReport {
			t.Errorf("second signal exited %d, want 4", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second signal did not exit")
	}
}
