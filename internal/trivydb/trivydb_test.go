package trivydb

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dbc "github.com/aquasecurity/trivy-db/pkg/db"
	"github.com/aquasecurity/trivy-db/pkg/metadata"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap/zaptest"

	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/internal/fixture/fixturetest"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		update  bool
		wantErr string
	}{
		{"defaults", func(*Config) {}, true, ""},
		{"no cache dir", func(c *Config) { c.CacheDir = "" }, false, "--cache-dir"},
		{"zero max age", func(c *Config) { c.MaxDBAge = 0 }, false, "--max-db-age"},
		{"zero open timeout", func(c *Config) { c.OpenTimeout = 0 }, false, "--db-open-timeout"},
		{"no repository", func(c *Config) { c.DBRepositories = nil }, true, "--db-repository"},
		{"bad repository", func(c *Config) { c.DBRepositories = []string{"UPPER/case::x"} }, true, `--db-repository "UPPER/case::x"`},
		{"java without repository", func(c *Config) { c.DownloadJavaDB, c.JavaDBRepositories = true, nil }, true, "--java-db-repository"},
		{"keep one", func(c *Config) { c.KeepGenerations = 1 }, true, "--db-keep-generations"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Defaults()
			tt.mutate(&c)
			var err error
			if tt.update {
				err = c.ValidateUpdate()
			} else {
				err = c.Validate()
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one naming %s", err, tt.wantErr)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	set, err := fixture.BaseAdvisories()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		wantErr error
		wantMsg []string
	}{
		{"missing", func(*testing.T, string) {}, ErrMissing, []string{"--cache-dir", "trivy.db"}},
		{"stale", func(t *testing.T, dir string) {
			if _, err := fixture.BuildDB(dir, set, fixture.DBOptions{UpdatedAt: now.Add(-100 * time.Hour)}); err != nil {
				t.Fatal(err)
			}
		}, ErrStale, []string{"--max-db-age=72h0m0s", "100h0m0s ago"}},
		{"wrong schema", func(t *testing.T, dir string) {
			if _, err := fixture.BuildDB(dir, set, fixture.DBOptions{}); err != nil {
				t.Fatal(err)
			}
			m, _ := metadata.NewClient(filepath.Join(dir, "db")).Get()
			m.Version = 1
			if err := metadata.NewClient(filepath.Join(dir, "db")).Update(m); err != nil {
				t.Fatal(err)
			}
		}, ErrMissing, []string{"schema version 1"}},
		{"fresh", func(t *testing.T, dir string) {
			if _, err := fixture.BuildDB(dir, set, fixture.DBOptions{UpdatedAt: now.Add(-time.Hour)}); err != nil {
				t.Fatal(err)
			}
		}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Defaults()
			cfg.CacheDir = t.TempDir()
			tt.setup(t, cfg.CacheDir)
			info, err := Check(cfg, now)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Check error = %v, want %v", err, tt.wantErr)
			}
			for _, m := range tt.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q lacks %q", err, m)
				}
			}
			if tt.wantErr == nil && (info.Version != 2 || info.UpdatedAt.IsZero()) {
				t.Errorf("info = %+v", info)
			}
		})
	}
}

// world is a registry serving fixture DB artifacts and an updater config
// pointing at it.
type world struct {
	reg  *fixture.Registry
	cfg  Config
	repo string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	reg := fixturetest.NewRegistry(t)
	cfg := Defaults()
	cfg.CacheDir = t.TempDir()
	repo := reg.Ref("aquasec/trivy-db:2")
	// The first repository does not exist: the updater falls back.
	cfg.DBRepositories = []string{reg.Ref("missing/trivy-db:2"), repo}
	cfg.JavaDBRepositories = []string{reg.Ref("aquasec/trivy-java-db:1")}
	return &world{reg: reg, cfg: cfg, repo: repo}
}

// publish builds a DB generation with the given UpdatedAt and pushes it as
// the artifact the updater downloads.
func (w *world) publish(t *testing.T, set fixture.Set, updatedAt time.Time) {
	t.Helper()
	src := t.TempDir()
	if _, err := fixture.BuildDB(src, set, fixture.DBOptions{UpdatedAt: updatedAt, NextUpdate: updatedAt.Add(6 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := fixture.PushDBArtifact(t.Context(), w.repo, fixture.DBDir(src)); err != nil {
		t.Fatal(err)
	}
}

func sets(t *testing.T) (base, updated fixture.Set) {
	t.Helper()
	var err error
	if base, err = fixture.BaseAdvisories(); err != nil {
		t.Fatal(err)
	}
	if updated, err = fixture.UpdatedAdvisories(); err != nil {
		t.Fatal(err)
	}
	return base, updated
}

func generations(t *testing.T, dir, link string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), link+"-") {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestUpdateDownloadsSwitchesAndSkipsWhenFresh(t *testing.T) {
	ctx := t.Context()
	log := zaptest.NewLogger(t)
	w := newWorld(t)
	base, updated := sets(t)
	t0 := time.Now().UTC().Truncate(time.Second)
	w.publish(t, base, t0.Add(-time.Hour))

	res, err := update(ctx, w.cfg, log, func() time.Time { return t0 })
	if err != nil {
		t.Fatal(err)
	}
	if !res.DB.Updated || res.DB.Repository != w.repo || !strings.HasPrefix(res.DB.Generation, "db-") || res.JavaDB != nil {
		t.Fatalf("first update = %+v", res)
	}
	target, err := os.Readlink(w.cfg.DBDir())
	if err != nil {
		t.Fatalf("%s is not a symlink: %v", w.cfg.DBDir(), err)
	}
	if target != res.DB.Generation {
		t.Errorf("db -> %q, want the relative generation %q", target, res.DB.Generation)
	}
	info, err := Check(w.cfg, t0)
	if err != nil {
		t.Fatal(err)
	}
	if !info.UpdatedAt.Equal(t0.Add(-time.Hour)) || !info.DownloadedAt.Equal(t0) {
		t.Errorf("installed DB info = %+v", info)
	}

	// Fresh (before NextUpdate): no registry traffic at all.
	w.reg.ResetStats()
	res, err = update(ctx, w.cfg, log, func() time.Time { return t0.Add(time.Hour) })
	if err != nil {
		t.Fatal(err)
	}
	if res.DB.Updated || !strings.Contains(res.DB.Reason, "fresh") || w.reg.Stats().Requests != 0 {
		t.Errorf("update while fresh = %+v, %d registry requests", res.DB, w.reg.Stats().Requests)
	}

	// Past NextUpdate, but upstream still serves the same DB: no switch,
	// DownloadedAt refreshed so the next run within the hour skips.
	t1 := t0.Add(6 * time.Hour)
	res, err = update(ctx, w.cfg, log, func() time.Time { return t1 })
	if err != nil {
		t.Fatal(err)
	}
	if res.DB.Updated || !strings.Contains(res.DB.Reason, "already in use") {
		t.Errorf("update with unchanged upstream = %+v", res.DB)
	}
	if info, _ := Check(w.cfg, t1); !info.DownloadedAt.Equal(t1) {
		t.Errorf("DownloadedAt = %v, want %v", info.DownloadedAt, t1)
	}
	res, err = update(ctx, w.cfg, log, func() time.Time { return t1.Add(30 * time.Minute) })
	if err != nil || res.DB.Updated || !strings.Contains(res.DB.Reason, "within the last") {
		t.Errorf("update half an hour after a download = %+v, %v", res.DB, err)
	}

	// A newer DB upstream is switched in; three switches leave two
	// generations on disk.
	for i := 1; i <= 3; i++ {
		ti := t1.Add(time.Duration(i) * 7 * time.Hour)
		w.publish(t, updated, ti.Add(-time.Minute))
		res, err = update(ctx, w.cfg, log, func() time.Time { return ti })
		if err != nil {
			t.Fatal(err)
		}
		if !res.DB.Updated {
			t.Fatalf("switch %d: %+v", i, res.DB)
		}
	}
	if g := generations(t, w.cfg.CacheDir, "db"); len(g) != 2 {
		t.Errorf("generations on disk = %v, want 2", g)
	}
	if target, _ := os.Readlink(w.cfg.DBDir()); target != res.DB.Generation {
		t.Errorf("db -> %q, want %q", target, res.DB.Generation)
	}
	entries, _ := os.ReadDir(w.cfg.CacheDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), stagingPrefix) {
			t.Errorf("leftover %s", e.Name())
		}
	}
}

func TestUpdateFailures(t *testing.T) {
	ctx := t.Context()
	log := zaptest.NewLogger(t)

	t.Run("no repository has the DB", func(t *testing.T) {
		w := newWorld(t)
		_, err := Update(ctx, w.cfg, log)
		if err == nil || !strings.Contains(err.Error(), "missing/trivy-db:2") || !strings.Contains(err.Error(), "aquasec/trivy-db:2") {
			t.Fatalf("error = %v, want one naming both repositories", err)
		}
		if _, err := os.Lstat(w.cfg.DBDir()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("db link exists after a failed update: %v", err)
		}
		if entries, _ := os.ReadDir(w.cfg.CacheDir); len(entries) != 1 { // the lock file
			t.Errorf("cache dir after failure holds %d entries, want only the lock", len(entries))
		}
	})

	t.Run("registry error keeps the current DB", func(t *testing.T) {
		w := newWorld(t)
		base, _ := sets(t)
		t0 := time.Now().UTC()
		w.publish(t, base, t0.Add(-time.Hour))
		res, err := update(ctx, w.cfg, log, func() time.Time { return t0 })
		if err != nil {
			t.Fatal(err)
		}
		w.reg.InjectFault(fixture.Fault{Kind: fixture.FaultServerError, Repository: "aquasec/trivy-db"})
		later := t0.Add(80 * time.Hour) // older than --max-db-age: must try
		if _, err := update(ctx, w.cfg, log, func() time.Time { return later }); err == nil {
			t.Fatal("update against a failing registry succeeded")
		}
		if target, _ := os.Readlink(w.cfg.DBDir()); target != res.DB.Generation {
			t.Errorf("db -> %q after a failed update, want the previous %q", target, res.DB.Generation)
		}
	})

	t.Run("insecure registry flag is per host", func(t *testing.T) {
		r := RegistryOptions{InsecureRegistries: []string{"10.0.0.1:5000"}}
		if !r.Insecure("10.0.0.1:5000") || r.Insecure("ghcr.io") {
			t.Error("Insecure does not match hosts exactly")
		}
	})
}

func TestUpdateReplacesPlainDirectoryAndJavaDB(t *testing.T) {
	ctx := t.Context()
	w := newWorld(t)
	base, _ := sets(t)
	t0 := time.Now().UTC()
	// A cache Trivy populated itself: db/ is a plain, stale directory.
	if _, err := fixture.BuildDB(w.cfg.CacheDir, base, fixture.DBOptions{UpdatedAt: t0.Add(-100 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	w.publish(t, base, t0.Add(-time.Hour))
	javaSrc := t.TempDir()
	if err := fixture.BuildJavaDB(javaSrc, fixture.DBOptions{UpdatedAt: t0.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := fixture.PushJavaDBArtifact(ctx, w.cfg.JavaDBRepositories[0], fixture.JavaDBDir(javaSrc)); err != nil {
		t.Fatal(err)
	}
	w.cfg.DownloadJavaDB = true
	res, err := Update(ctx, w.cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if !res.DB.Updated || res.JavaDB == nil || !res.JavaDB.Updated {
		t.Fatalf("result = %+v / %+v", res.DB, res.JavaDB)
	}
	if _, err := Check(w.cfg, t0); err != nil {
		t.Fatal(err)
	}
	var legacy bool
	for _, g := range generations(t, w.cfg.CacheDir, "db") {
		legacy = legacy || strings.HasPrefix(g, "db-legacy-")
	}
	if !legacy {
		t.Error("the plain db directory was not kept as a legacy generation")
	}
	for _, f := range []string{"trivy-java.db", "metadata.json"} {
		if _, err := os.Stat(filepath.Join(w.cfg.JavaDBDir(), f)); err != nil {
			t.Errorf("java DB: %v", err)
		}
	}
	if target, _ := os.Readlink(w.cfg.JavaDBDir()); !strings.HasPrefix(target, "java-db-") {
		t.Errorf("java-db -> %q", target)
	}
}

// TestUpdateSwapIsAtomic flips generations repeatedly while readers open
// <cache-dir>/db the way workers do: every open must see a complete DB.
func TestUpdateSwapIsAtomic(t *testing.T) {
	ctx := t.Context()
	log := zaptest.NewLogger(t)
	w := newWorld(t)
	w.cfg.DBRepositories = []string{w.repo}
	base, updated := sets(t)
	t0 := time.Now().UTC()
	w.publish(t, base, t0.Add(-time.Hour))
	if _, err := update(ctx, w.cfg, log, func() time.Time { return t0 }); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var reads, failures atomic.Int64
	var firstFailure atomic.Value
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := readWholeDB(w.cfg.DBDir()); err != nil {
					failures.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
				}
				reads.Add(1)
			}
		})
	}
	const flips = 8
	for i := 1; i <= flips; i++ {
		ti := t0.Add(time.Duration(i) * 7 * time.Hour)
		set := base
		if i%2 == 1 {
			set = updated
		}
		w.publish(t, set, ti.Add(-time.Minute))
		res, err := update(ctx, w.cfg, log, func() time.Time { return ti })
		if err != nil || !res.DB.Updated {
			t.Fatalf("flip %d: %+v, %v", i, res.DB, err)
		}
	}
	close(stop)
	wg.Wait()
	if failures.Load() > 0 {
		t.Fatalf("%d of %d reads saw an incomplete DB; first: %v", failures.Load(), reads.Load(), firstFailure.Load())
	}
	if reads.Load() < flips {
		t.Errorf("only %d reads during %d flips", reads.Load(), flips)
	}
	t.Logf("%d complete reads across %d generation switches", reads.Load(), flips)
}

// readWholeDB opens dir/trivy.db read-only (as a worker does), checks it has
// vulnerability data, and parses dir/metadata.json.
func readWholeDB(dir string) error {
	m, err := metadata.NewClient(dir).Get()
	if err != nil {
		return err
	}
	if m.Version != 2 || m.UpdatedAt.IsZero() {
		return errors.New("incomplete metadata")
	}
	bdb, err := bolt.Open(filepath.Join(dir, "trivy.db"), 0o444, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return err
	}
	defer bdb.Close()
	return bdb.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("vulnerability"))
		if b == nil || b.Stats().KeyN < 30 {
			return errors.New("vulnerability bucket missing or short")
		}
		return nil
	})
}

func TestHandleNoticesAndReopensNewerDB(t *testing.T) {
	ctx := t.Context()
	log := zaptest.NewLogger(t)
	w := newWorld(t)
	base, updated := sets(t)
	t0 := time.Now().UTC()
	w.publish(t, base, t0.Add(-2*time.Hour))
	if _, err := update(ctx, w.cfg, log, func() time.Time { return t0 }); err != nil {
		t.Fatal(err)
	}

	h, err := Open(ctx, w.cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, err := Open(ctx, w.cfg, log); !errors.Is(err, ErrAlreadyOpen) {
		t.Errorf("second Open: err = %v, want ErrAlreadyOpen", err)
	}
	if got := h.Info().UpdatedAt; !got.Equal(t0.Add(-2 * time.Hour)) {
		t.Errorf("Info().UpdatedAt = %v", got)
	}
	if changed, err := h.Changed(); err != nil || changed {
		t.Fatalf("Changed() right after Open = %v, %v", changed, err)
	}
	// The scanners' view (trivy-db's global handle) lacks the update's advisory.
	if v, err := (dbc.Config{}).GetVulnerability("CVE-2024-45590"); err == nil && v.Title != "" {
		t.Fatalf("generation 1 already knows CVE-2024-45590: %+v", v)
	}

	t1 := t0.Add(7 * time.Hour)
	w.publish(t, updated, t1.Add(-time.Hour))
	if _, err := update(ctx, w.cfg, log, func() time.Time { return t1 }); err != nil {
		t.Fatal(err)
	}
	if changed, err := h.Changed(); err != nil || !changed {
		t.Fatalf("Changed() after an update = %v, %v", changed, err)
	}
	info, err := h.Reopen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !info.UpdatedAt.Equal(t1.Add(-time.Hour)) || !h.Info().UpdatedAt.Equal(info.UpdatedAt) {
		t.Errorf("after Reopen: info %+v, Info() %+v", info, h.Info())
	}
	if changed, err := h.Changed(); err != nil || changed {
		t.Errorf("Changed() after Reopen = %v, %v", changed, err)
	}
	v, err := (dbc.Config{}).GetVulnerability("CVE-2024-45590")
	if err != nil || !strings.Contains(v.Title, "body-parser") {
		t.Errorf("after Reopen the global DB does not serve generation 2: %+v, %v", v, err)
	}
	if err := h.CheckAge(t1); err != nil {
		t.Errorf("CheckAge: %v", err)
	}
	if err := h.CheckAge(t1.Add(100 * time.Hour)); !errors.Is(err, ErrStale) {
		t.Errorf("CheckAge 100h later = %v, want ErrStale", err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	// Closed: another handle may open.
	h2, err := Open(ctx, w.cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := h2.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRefusesMissingDB(t *testing.T) {
	cfg := Defaults()
	cfg.CacheDir = t.TempDir()
	_, err := Open(t.Context(), cfg, zaptest.NewLogger(t))
	if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), cfg.CacheDir) {
		t.Fatalf("Open on an empty cache dir: %v", err)
	}
}

func TestConcurrentUpdatersSerialise(t *testing.T) {
	ctx := t.Context()
	log := zaptest.NewLogger(t)
	w := newWorld(t)
	w.cfg.DBRepositories = []string{w.repo}
	base, _ := sets(t)
	w.publish(t, base, time.Now().UTC().Add(-time.Hour))
	var wg sync.WaitGroup
	results := make([]Result, 3)
	errs := make([]error, 3)
	for i := range results {
		wg.Go(func() { results[i], errs[i] = Update(ctx, w.cfg, log) })
	}
	wg.Wait()
	downloads := 0
	for i := range results {
		if errs[i] != nil {
			t.Fatalf("updater %d: %v", i, errs[i])
		}
		if results[i].DB.Updated {
			downloads++
		}
	}
	if downloads != 1 {
		t.Errorf("%d of 3 concurrent updaters switched a generation, want exactly 1", downloads)
	}
}
