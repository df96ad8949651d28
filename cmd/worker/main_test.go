package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/fleetscan/fleetscan/internal/cli"
	"github.com/fleetscan/fleetscan/internal/feeds"
	"github.com/fleetscan/fleetscan/internal/feeds/feedstest"
	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/internal/fixture/fixturetest"
	"github.com/fleetscan/fleetscan/internal/natsembed"
	"github.com/fleetscan/fleetscan/internal/natsembed/natstest"
	"github.com/fleetscan/fleetscan/internal/queue"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

func runMain(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = cli.Run(ctx, command, cli.Env{Args: args, Stdout: &out, Stderr: &errb}, run)
	return code, out.String(), errb.String()
}

// buildDB writes the fixture DB, built age ago, under a new cache dir.
func buildDB(t *testing.T, age time.Duration) string {
	t.Helper()
	dir := t.TempDir()
	set, err := fixture.BaseAdvisories()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fixture.BuildDB(dir, set, fixture.DBOptions{UpdatedAt: time.Now().Add(-age).UTC().Truncate(time.Second)}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// scratch is the --scratch-dir of every run in this test binary: `worker
// run` points $TMPDIR at it, and Trivy creates its per-process temporary
// directory there once, so it must outlive every test.
var scratch string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "worker-cmd-test-")
	if err != nil {
		panic(err)
	}
	scratch = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// keepTMPDIR restores $TMPDIR, which `worker run` points at --scratch-dir.
func keepTMPDIR(t *testing.T) { t.Setenv("TMPDIR", os.TempDir()) }

func TestExitCodes(t *testing.T) {
	keepTMPDIR(t)
	fresh := buildDB(t, time.Hour)
	stale := buildDB(t, 100*time.Hour)
	common := []string{"--log-format", "json", "--listen", "", "--scratch-dir", scratch, "--nats-url", "nats://127.0.0.1:1", "--nats-timeout", "200ms"}
	tests := []struct {
		name    string
		args    []string
		code    int
		wantErr string
	}{
		{"help", []string{"--help"}, cli.ExitOK, "worker db-update [flags]"},
		{"db-update help", []string{"db-update", "--help"}, cli.ExitOK, "--db-repository"},
		{"unknown command", []string{"scan"}, cli.ExitUsage, `unknown command "scan"`},
		{"unknown flag", []string{"run", "--bogus"}, cli.ExitUsage, "unknown flag: --bogus"},
		{"bad concurrency", []string{"--concurrency", "0"}, cli.ExitUsage, "--concurrency 0"},
		{"bad insecure registry", []string{"--insecure-registry", "http://x/y"}, cli.ExitUsage, "--insecure-registry"},
		{"missing registry config", []string{"--registry-config", filepath.Join(t.TempDir(), "nope.json")}, cli.ExitUsage, "--registry-config"},
		{"missing DB", append([]string{"--cache-dir", t.TempDir()}, common...), cli.ExitFailed, "db-update"},
		{"stale DB", append([]string{"--cache-dir", stale}, common...), cli.ExitFailed, "--max-db-age"},
		{"stale DB accepted with a larger max age, NATS down", append([]string{"--cache-dir", stale, "--max-db-age", "200h"}, common...), cli.ExitFailed, "connect to NATS"},
		{"fresh DB, NATS down", append([]string{"--cache-dir", fresh}, common...), cli.ExitFailed, "connect to NATS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runMain(t.Context(), tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.wantErr) {
				t.Fatalf("exit %d, want %d; stderr lacks %q:\n%s", code, tt.code, tt.wantErr, stderr)
			}
		})
	}
	_, _, help := runMain(t.Context(), "run", "--help")
	for _, want := range []string{"$FLEETSCAN_CACHE_DIR", "--scan-timeout", "--grace-period", "--insecure-registry", "--registry-config",
		"--concurrency", "--listen", "--worker-name", "--nats-url", "--js-ack-wait", "--log-format", "--max-db-age", "--scratch-dir"} {
		if !strings.Contains(help, want) {
			t.Errorf("run --help lacks %s", want)
		}
	}
}

// TestRunScansAndStops runs the command against a real embedded JetStream,
// the fixture DB and registry: a queued job gets its result, and SIGTERM
// (context cancellation) stops it cleanly.
func TestRunScansAndStops(t *testing.T) {
	keepTMPDIR(t)
	nats := natstest.Start(t)
	cacheDir := buildDB(t, time.Hour)
	reg := fixturetest.NewRegistry(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	spec, err := fixture.SampleImage("alpine-curl")
	if err != nil {
		t.Fatal(err)
	}
	p, err := fixture.PushSample(ctx, reg.Host, spec)
	if err != nil {
		t.Fatal(err)
	}
	job := contract.NewScanJob("run-1", "c1", p.Key(spec.Platforms[0]), p.Ref(), nil, time.Now())
	if _, err := queue.NewPublisher(nats.JS).Publish(ctx, []contract.ScanJob{job}); err != nil {
		t.Fatal(err)
	}

	t.Setenv("FLEETSCAN_WORKER_NAME", "cmd-test")
	runCtx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	var out, errb bytes.Buffer
	go func() {
		done <- run(runCtx, cli.Env{Args: []string{"run", "--cache-dir", cacheDir, "--scratch-dir", scratch, "--listen", "",
			"--nats-url", nats.Server.URL(), "--log-format", "json", "--concurrency", "2"}, Stdout: &out, Stderr: &errb})
	}()
	st := store.New(nats.JS, nats.Res)
	var res contract.ScanResult
	deadline := time.Now().Add(time.Minute)
	for {
		r, err := st.Result(ctx, job.ImageKey)
		if err == nil {
			res = r
			break
		}
		if !errors.Is(err, store.ErrNotFound) || time.Now().After(deadline) {
			stop()
			t.Fatalf("no result: %v\n%s", err, errb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("worker did not stop")
	}
	if res.Status != contract.StatusScanned || len(res.Findings) != len(spec.Expected) || res.Worker != "cmd-test" {
		t.Errorf("result %s by %q with %d findings, want scanned by cmd-test with %d", res.Status, res.Worker, len(res.Findings), len(spec.Expected))
	}
}

// TestDBUpdate pushes a fixture DB as the real Trivy DB artifact and
// updates from it through the command.
func TestDBUpdate(t *testing.T) {
	keepTMPDIR(t)
	reg := fixturetest.NewRegistry(t)
	src := buildDB(t, time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	ref := reg.Host + "/aquasec/trivy-db:2"
	if _, err := fixture.PushDBArtifact(ctx, ref, fixture.DBDir(src)); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	feedSrv := feedstest.NewServer(t)
	args := []string{"db-update", "--cache-dir", cache, "--db-repository", ref, "--insecure-registry", reg.Host, "--log-format", "json",
		"--kev-url", feedSrv.FeedURL(feedstest.KEVPath), "--epss-url", feedSrv.FeedURL(feedstest.EPSSPath)}
	code, stdout, stderr := runMain(ctx, args...)
	if code != cli.ExitOK || !strings.Contains(stdout, "trivy DB: updated from "+ref) ||
		!strings.Contains(stdout, "KEV catalogue: updated ("+feedSrv.FeedURL(feedstest.KEVPath)+"); in use: KEV catalogue 2025.08.25 (3 CVEs") ||
		!strings.Contains(stdout, "EPSS scores: updated") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	code, stdout, stderr = runMain(ctx, args...)
	if code != cli.ExitOK || !strings.Contains(stdout, "fresh, kept") || !strings.Contains(stdout, "KEV catalogue: unchanged") {
		t.Fatalf("second update: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	// A worker accepts what the updater wrote.
	code, _, stderr = runMain(ctx, "--cache-dir", cache, "--scratch-dir", scratch, "--listen", "", "--log-format", "json",
		"--nats-url", "nats://127.0.0.1:1", "--nats-timeout", "200ms")
	if code != cli.ExitFailed || !strings.Contains(stderr, "connect to NATS") {
		t.Errorf("worker on the updated DB: exit %d: %s", code, stderr)
	}
}

// TestEnsureTopologyOnly lays out the JetStream resources on an empty
// server and exits, without a vulnerability DB (the deploy's init step).
func TestEnsureTopologyOnly(t *testing.T) {
	keepTMPDIR(t)
	srv, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir()}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	code, stdout, stderr := runMain(ctx, "run", "--ensure-topology-only", "--cache-dir", filepath.Join(t.TempDir(), "no-db-here"),
		"--nats-url", srv.URL(), "--log-format", "json")
	if code != cli.ExitOK || !strings.Contains(stdout, "topology ensured") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Consumer(ctx, topology.JobsStream, topology.WorkersConsumer); err != nil {
		t.Errorf("consumer %s/%s not created: %v", topology.JobsStream, topology.WorkersConsumer, err)
	}
}

// TestDBUpdateFeeds: the feeds are fetched, a failing one makes the command
// exit 1 naming its flag while the other feed is stored, and with
// --publish-feeds the copies in use land in JetStream, where a reporter
// reads them. An explicitly given local file is read like a download.
func TestDBUpdateFeeds(t *testing.T) {
	keepTMPDIR(t)
	env := natstest.Start(t)
	feedSrv := feedstest.NewServer(t)
	feedSrv.Set(feedstest.EPSSPath, feedstest.Response{Status: 502})
	kevFile, _ := feedstest.WriteFiles(t, t.TempDir())
	// A fresh DB in the cache, so only the feeds are fetched; the DB
	// repository is never contacted.
	cache := buildDB(t, time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	code, stdout, stderr := runMain(ctx, "db-update", "--cache-dir", cache, "--db-repository", "127.0.0.1:1/none:2", "--log-format", "json",
		"--kev-url", kevFile, "--epss-url", feedSrv.FeedURL(feedstest.EPSSPath), "--feed-timeout", "5s",
		"--publish-feeds", "--nats-url", env.Server.URL())
	if code != cli.ExitFailed || !strings.Contains(stderr, "EPSS scores (--epss-url "+feedSrv.FeedURL(feedstest.EPSSPath)+"): fetch: HTTP 502") ||
		!strings.Contains(stdout, "trivy DB: fresh, kept") || !strings.Contains(stdout, "KEV catalogue: updated ("+kevFile+")") || !strings.Contains(stdout, "KEV catalogue: published to fleetscan-feeds: uploaded") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	e, err := feeds.Load(ctx, feeds.ObjectStoreSource(env.Res.Feeds), feeds.DefaultMaxAge)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := e.KEV(feedstest.RapidReset); !ok || e.Status(feeds.EPSS).Loaded {
		t.Fatalf("published feeds: %+v", e.Statuses())
	}
	// Invalid feed flags are usage errors before any work.
	code, _, stderr = runMain(ctx, "db-update", "--cache-dir", cache, "--kev-url", "ftp://mirror/kev.json", "--log-format", "json")
	if code != cli.ExitUsage || !strings.Contains(stderr, "--kev-url: ftp://mirror/kev.json: unsupported scheme") {
		t.Fatalf("bad --kev-url: exit %d: %s", code, stderr)
	}
}
