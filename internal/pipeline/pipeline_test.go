package pipeline

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/fleetscan/fleetscan/internal/deadport"
	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/internal/fixture/fixturetest"
	"github.com/fleetscan/fleetscan/internal/natsconn"
	"github.com/fleetscan/fleetscan/internal/natsembed"
	"github.com/fleetscan/fleetscan/internal/progress"
	"github.com/fleetscan/fleetscan/internal/reporter"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// slowFleet is one image in a registry whose blob GETs hang (so a scan
// stays in flight), a fixture DB and an inventory file.
func slowFleet(t *testing.T, cfg *Config) (blobs <-chan struct{}) {
	t.Helper()
	seen := make(chan struct{}, 16)
	var pushed atomic.Bool
	reg := fixturetest.NewRegistry(t, fixture.WithMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if pushed.Load() && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				select {
				case seen <- struct{}{}:
				default:
				}
				select {
				case <-time.After(time.Minute):
				case <-r.Context().Done():
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	spec, err := fixture.SampleImage("alpine-3.18")
	if err != nil {
		t.Fatal(err)
	}
	img, err := fixture.PushSample(ctx, reg.Host, spec)
	if err != nil {
		t.Fatal(err)
	}
	pushed.Store(true)
	set, err := fixture.BaseAdvisories()
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	if _, err := fixture.BuildDB(cache, set, fixture.DBOptions{}); err != nil {
		t.Fatal(err)
	}
	pods := fmt.Sprintf(`{"kind":"List","items":[{"kind":"Pod","metadata":{"name":"web-0","namespace":"shop"},
	  "spec":{"containers":[{"name":"app","image":"%[1]s:3.18"}]},
	  "status":{"containerStatuses":[{"name":"app","imageID":"%[1]s@%[2]s"}]}}]}`, img.Repository, img.Digest)
	inv := filepath.Join(t.TempDir(), "pods.json")
	if err := os.WriteFile(inv, []byte(pods), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.SkipDBUpdate = true
	cfg.Worker.DB.CacheDir = cache
	cfg.Worker.DB.Registry.InsecureRegistries = []string{reg.Host}
	cfg.Worker.ScratchDir = t.TempDir()
	cfg.Dispatch.Sources.InventoryFiles = []string{"laptop=" + inv}
	cfg.Report.OutDir = filepath.Join(t.TempDir(), "report")
	cfg.StateDir = t.TempDir()
	cfg.Workers = 1
	cfg.GracePeriod = time.Second
	return seen
}

// TestNATSDiesMidRun: an external NATS that goes away while scans run ends
// the run once it stayed away for the give-up time, with a message naming
// the server — not a context deadline after the scan wait.
func TestNATSDiesMidRun(t *testing.T) {
	srv, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir()}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	url := srv.URL()
	cfg := Defaults()
	blobs := slowFleet(t, &cfg)
	cfg.NATS.URLs = url
	cfg.NATS.GiveUpAfter = time.Second
	cfg.NATS.ReconnectWait = 100 * time.Millisecond
	cfg.Complete(time.Now())

	errc := make(chan error, 1)
	go func() {
		_, err := Run(t.Context(), cfg, Deps{Log: zaptest.NewLogger(t)})
		errc <- err
	}()
	select {
	case <-blobs:
	case err := <-errc:
		t.Fatalf("run ended before a scan was in flight: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("no scan started")
	}
	srv.Shutdown()
	died := time.Now()
	select {
	case err = <-errc:
	case <-time.After(time.Minute):
		t.Fatal("the run did not end a minute after NATS died")
	}
	took := time.Since(died)
	t.Logf("ended %s after NATS died: %v", took.Round(time.Millisecond), err)
	if !errors.Is(err, natsconn.ErrLost) || !strings.Contains(err.Error(), url) || strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("error %v: want the lost connection, naming %s", err, url)
	}
	if took > 20*time.Second {
		t.Errorf("took %s to notice (give-up 1s, grace 1s)", took)
	}
}

// TestUnreachableRegistry: an image whose registry refuses connections is
// recorded as unreachable once its short time budget is spent (it was
// internal and held the run ~150 s), and while it waits for its retries the
// progress estimate counts them.
func TestUnreachableRegistry(t *testing.T) {
	cfg := Defaults()
	slowFleet(t, &cfg) // DB, scratch, state; the fleet is replaced below
	dead := deadport.Addr(t)
	digest := "sha256:" + strings.Repeat("ab", 32)
	pods := fmt.Sprintf(`{"kind":"List","items":[{"kind":"Pod","metadata":{"name":"gone-0","namespace":"shop"},
	  "spec":{"containers":[{"name":"app","image":"%[1]s/shop/gone:1"}]},
	  "status":{"containerStatuses":[{"name":"app","imageID":"%[1]s/shop/gone@%[2]s"}]}}]}`, dead, digest)
	inv := filepath.Join(t.TempDir(), "pods.json")
	if err := os.WriteFile(inv, []byte(pods), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Dispatch.Sources.InventoryFiles = []string{"laptop=" + inv}
	cfg.Worker.DB.Registry.InsecureRegistries = []string{dead}
	cfg.Worker.RetryDelay = 300 * time.Millisecond
	cfg.Worker.UnreachableBudget = 2 * time.Second
	cfg.Complete(time.Now())

	var mu sync.Mutex
	var sawRetry progress.State
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out, err := Run(ctx, cfg, Deps{Log: zaptest.NewLogger(t), OnProgress: func(s progress.State) {
		mu.Lock()
		defer mu.Unlock()
		if s.Retrying > 0 && sawRetry.Retrying == 0 {
			sawRetry = s
		}
	}})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	r := out.Report
	if r.Summary.ImagesFailed != 1 || len(r.Failures) != 1 || r.Failures[0].Class != contract.FailureUnreachable {
		t.Fatalf("summary %+v failures %+v: want the image failed as unreachable", r.Summary, r.Failures)
	}
	if out.ExitCode() != reporter.ExitIncomplete {
		t.Errorf("exit %d, want %d (incomplete)", out.ExitCode(), reporter.ExitIncomplete)
	}
	if took > 30*time.Second {
		t.Errorf("took %s with a 2s unreachable budget", took)
	}
	mu.Lock()
	defer mu.Unlock()
	if sawRetry.Retrying != 1 || sawRetry.RetryUntil.IsZero() {
		t.Fatalf("progress never showed the retry: %+v", sawRetry)
	}
	if eta, ok := sawRetry.ETA(sawRetry.RetryUntil.Add(-time.Second), start); !ok || eta < time.Second {
		t.Errorf("ETA while retrying = %v %v, want at least the retry budget left", eta, ok)
	}
}
