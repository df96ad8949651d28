package trivydb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/aquasecurity/trivy-db/pkg/metadata"
	"github.com/aquasecurity/trivy/pkg/clock"
	"github.com/aquasecurity/trivy/pkg/db"
	"github.com/aquasecurity/trivy/pkg/oci"
	"github.com/google/go-containerregistry/pkg/name"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/logging"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

const (
	javaDBMediaType = "application/vnd.aquasec.trivy.javadb.layer.v1.tar+gzip"
	javaDBSchema    = 1
	lockFile        = ".db-update.lock"
	stagingPrefix   = ".staging-"
	genTimeLayout   = "20060102T150405.000000000Z"
)

// ArtifactResult is the outcome of updating one DB (Trivy DB or Java DB).
type ArtifactResult struct {
	// Updated is true when a new generation was switched in.
	Updated bool
	// Reason says why it was updated or skipped.
	Reason string
	// Repository the DB was downloaded from (empty when skipped).
	Repository string
	// Generation is the directory <cache-dir>/db (or java-db) points to.
	Generation string
	Info       contract.DBInfo
}

// Result is the outcome of Update.
type Result struct {
	DB ArtifactResult
	// JavaDB is nil unless the Java DB was requested.
	JavaDB *ArtifactResult
}

// artifact describes one kind of DB the updater manages.
type artifact struct {
	link   string // "db" or "java-db"
	what   string // for messages
	schema int
	file   string // the DB file inside the generation
	repos  []string
	// redownloadAfter: even past NextUpdate, skip when downloaded this
	// recently (Trivy's rule: 1h for the DB, 24h for the Java DB).
	redownloadAfter time.Duration
	download        func(ctx context.Context, ref name.Reference, dst string) error
	validate        func(dir string) error
}

// Update brings the DB under cfg.CacheDir up to date: when it is missing,
// past its NextUpdate (and not downloaded within the last hour) or older than
// cfg.MaxDBAge, it downloads the DB with Trivy's client from the first of
// cfg.DBRepositories that works into a staging directory, validates it, and
// switches <cache-dir>/db to it atomically. Concurrent updaters serialise on
// a lock file. With cfg.DownloadJavaDB the Java DB gets the same treatment.
func Update(ctx context.Context, cfg Config, logger *zap.Logger) (Result, error) {
	return update(ctx, cfg, logger, time.Now)
}

func update(ctx context.Context, cfg Config, logger *zap.Logger, now func() time.Time) (Result, error) {
	if err := cfg.ValidateUpdate(); err != nil {
		return Result{}, err
	}
	if err := cfg.Registry.EnsureDockerConfig(); err != nil {
		return Result{}, err
	}
	if err := os.MkdirAll(cfg.CacheDir, 0o755); err != nil {
		return Result{}, fmt.Errorf("--cache-dir %s: %w", cfg.CacheDir, err)
	}
	unlock, err := lock(ctx, filepath.Join(cfg.CacheDir, lockFile), logger)
	if err != nil {
		return Result{}, err
	}
	defer unlock()

	u := updater{cfg: cfg, log: logger, now: now}
	var res Result
	res.DB, err = u.update(ctx, artifact{
		link: "db", what: "trivy DB", schema: db.SchemaVersion, file: "trivy.db",
		repos: cfg.DBRepositories, redownloadAfter: time.Hour,
		download: func(ctx context.Context, ref name.Reference, dst string) error {
			c := db.NewClient(dst, true, db.WithDBRepository([]name.Reference{ref}))
			// Trivy stamps DownloadedAt from the context's clock.
			return c.Download(clock.With(ctx, now()), dst, cfg.Registry.trivyOptions(ref))
		},
		validate: validateTrivyDB,
	})
	if err != nil {
		return res, err
	}
	if cfg.DownloadJavaDB {
		jr, err := u.update(ctx, artifact{
			link: "java-db", what: "trivy Java DB", schema: javaDBSchema, file: "trivy-java.db",
			repos: cfg.JavaDBRepositories, redownloadAfter: 24 * time.Hour,
			download: func(ctx context.Context, ref name.Reference, dst string) error {
				art := oci.NewArtifact(ref.String(), cfg.Registry.trivyOptions(ref))
				if err := art.Download(ctx, dst, oci.DownloadOption{MediaType: javaDBMediaType, Quiet: true}); err != nil {
					return err
				}
				return setDownloadedAt(dst, u.now())
			},
			validate: func(dir string) error { return validateFile(filepath.Join(dir, "trivy-java.db")) },
		})
		res.JavaDB = &jr
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

type updater struct {
	cfg Config
	log *zap.Logger
	now func() time.Time
}

func readMeta(dir string) (metadata.Metadata, error) {
	// Both DBs use the same metadata.json shape.
	return metadata.NewClient(dir).Get()
}

func setDownloadedAt(dir string, t time.Time) error {
	m, err := readMeta(dir)
	if err != nil {
		return err
	}
	m.DownloadedAt = t.UTC()
	return writeMetaAtomic(dir, m)
}

// writeMetaAtomic replaces dir/metadata.json via a temp file and rename, so
// readers never see a partial file.
func writeMetaAtomic(dir string, m metadata.Metadata) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".metadata-*.json")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), metadata.Path(dir))
}

// needsUpdate decides from the current generation's metadata.
func (u updater) needsUpdate(a artifact, dir string) (bool, string, metadata.Metadata) {
	if _, err := os.Stat(filepath.Join(dir, a.file)); err != nil {
		return true, "no " + a.what + " yet", metadata.Metadata{}
	}
	m, err := readMeta(dir)
	if err != nil {
		return true, "unreadable metadata: " + err.Error(), metadata.Metadata{}
	}
	now := u.now()
	switch {
	case m.Version != a.schema:
		return true, fmt.Sprintf("schema version %d, want %d", m.Version, a.schema), m
	case now.Sub(m.UpdatedAt) > u.cfg.MaxDBAge:
		return true, fmt.Sprintf("built %s ago, older than --max-db-age=%s", now.Sub(m.UpdatedAt).Round(time.Minute), u.cfg.MaxDBAge), m
	case u.cfg.Force:
		return true, "the newest DB was asked for", m
	case now.Before(m.NextUpdate):
		return false, "fresh: next update due at " + m.NextUpdate.UTC().Format(time.RFC3339), m
	case now.Before(m.DownloadedAt.Add(a.redownloadAfter)):
		return false, fmt.Sprintf("downloaded within the last %s", a.redownloadAfter), m
	}
	return true, "next update was due at " + m.NextUpdate.UTC().Format(time.RFC3339), m
}

func (u updater) update(ctx context.Context, a artifact) (ArtifactResult, error) {
	linkPath := filepath.Join(u.cfg.CacheDir, a.link)
	need, reason, cur := u.needsUpdate(a, linkPath)
	res := ArtifactResult{Reason: reason, Generation: generationOf(linkPath), Info: infoOf(cur)}
	if !need {
		u.log.Info(a.what+" is up to date", zap.String("reason", reason), zap.String("generation", res.Generation))
		return res, nil
	}
	u.log.Info("updating "+a.what, zap.String("reason", reason))

	staging, err := os.MkdirTemp(u.cfg.CacheDir, stagingPrefix+a.link+"-")
	if err != nil {
		return res, fmt.Errorf("update %s: --cache-dir %s: %w", a.what, u.cfg.CacheDir, err)
	}
	defer os.RemoveAll(staging) // a no-op once renamed into a generation

	if res.Repository, err = u.download(ctx, a, staging); err != nil {
		return res, err
	}
	meta, err := readMeta(staging)
	if err != nil {
		return res, fmt.Errorf("update %s: downloaded metadata: %w", a.what, err)
	}
	if meta.Version != a.schema {
		return res, fmt.Errorf("update %s from %s: schema version %d, this build reads %d", a.what, res.Repository, meta.Version, a.schema)
	}
	res.Info = infoOf(meta)

	if !cur.UpdatedAt.IsZero() && meta.UpdatedAt.Equal(cur.UpdatedAt) {
		// The repository still serves the DB we have: record the download
		// time in place (atomically) so the one-hour rule applies, and do
		// not make every reader reopen an identical DB.
		cur.DownloadedAt = meta.DownloadedAt
		cur.NextUpdate = meta.NextUpdate
		if err := writeMetaAtomic(linkPath, cur); err != nil {
			return res, fmt.Errorf("update %s: refresh metadata: %w", a.what, err)
		}
		res.Reason = "repository serves the DB already in use (built " + meta.UpdatedAt.UTC().Format(time.RFC3339) + ")"
		u.log.Info(a.what+" unchanged upstream", zap.String("generation", res.Generation))
		return res, nil
	}

	gen, err := u.switchTo(a, staging)
	if err != nil {
		return res, err
	}
	res.Updated, res.Generation = true, gen
	u.log.Info(a.what+" switched", zap.String("generation", gen), logging.DBUpdatedAt(meta.UpdatedAt),
		logging.DBNextUpdate(meta.NextUpdate))
	if err := prune(u.cfg.CacheDir, a.link, gen, u.cfg.KeepGenerations, u.log); err != nil {
		u.log.Warn("pruning old "+a.what+" generations failed", zap.Error(err))
	}
	return res, nil
}

// download fetches the artifact into staging from the first of its
// repositories that serves a valid one, and returns that repository.
func (u updater) download(ctx context.Context, a artifact, staging string) (string, error) {
	var errs []error
	for _, r := range a.repos {
		ref, err := name.ParseReference(r)
		if err != nil {
			return "", fmt.Errorf("update %s: repository %q: %w", a.what, r, err)
		}
		start := time.Now()
		err = a.download(ctx, ref, staging)
		if err == nil {
			err = a.validate(staging)
		}
		if err == nil {
			u.log.Info("downloaded "+a.what, zap.String("repository", r), zap.Duration("duration", time.Since(start)))
			return r, nil
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("update %s from %s: %w", a.what, r, ctx.Err())
		}
		u.log.Warn("download of "+a.what+" failed", zap.String("repository", r), zap.Error(err))
		errs = append(errs, fmt.Errorf("%s: %w", r, err))
	}
	return "", fmt.Errorf("update %s: no repository worked: %w", a.what, errors.Join(errs...))
}

// switchTo makes staging a new generation and points the link at it.
func (u updater) switchTo(a artifact, staging string) (string, error) {
	gen := a.link + "-" + u.now().UTC().Format(genTimeLayout)
	genPath := filepath.Join(u.cfg.CacheDir, gen)
	if err := os.Chmod(staging, 0o755); err != nil {
		return "", fmt.Errorf("update %s: %w", a.what, err)
	}
	if err := os.Rename(staging, genPath); err != nil {
		return "", fmt.Errorf("update %s: %w", a.what, err)
	}
	if err := flip(u.cfg.CacheDir, a.link, gen, u.now()); err != nil {
		return "", fmt.Errorf("update %s: switch to %s: %w", a.what, gen, err)
	}
	return gen, nil
}

// flip points <dir>/<link> at gen (a sibling directory) atomically: a new
// symlink under a temporary name is renamed over the old one. A plain
// directory at <link> (a cache Trivy populated itself) is first moved aside
// as a generation of its own.
func flip(dir, link, gen string, now time.Time) error {
	linkPath := filepath.Join(dir, link)
	if fi, err := os.Lstat(linkPath); err == nil && fi.IsDir() {
		legacy := filepath.Join(dir, link+"-legacy-"+now.UTC().Format(genTimeLayout))
		if err := os.Rename(linkPath, legacy); err != nil {
			return fmt.Errorf("move aside the plain directory %s: %w", linkPath, err)
		}
	}
	tmp := filepath.Join(dir, stagingPrefix+link+"-link-"+now.UTC().Format(genTimeLayout))
	_ = os.Remove(tmp)
	if err := os.Symlink(gen, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, linkPath); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

// prune removes generations beyond the newest keep (never current) and
// leftovers of interrupted updates (staging directories).
func prune(dir, link, current string, keep int, log *zap.Logger) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var gens []string
	var errs []error
	for _, e := range entries {
		n := e.Name()
		switch {
		case strings.HasPrefix(n, stagingPrefix+link+"-"):
			if err := os.RemoveAll(filepath.Join(dir, n)); err != nil {
				errs = append(errs, err)
			}
		case e.IsDir() && strings.HasPrefix(n, link+"-") && isGeneration(strings.TrimPrefix(n, link+"-")):
			gens = append(gens, n)
		}
	}
	// Newest first: names embed the switch time; legacy ones sort by it too.
	slices.SortFunc(gens, func(a, b string) int { return strings.Compare(genTime(b, link), genTime(a, link)) })
	kept := 0
	for _, g := range gens {
		if g == current || kept < keep-1 {
			if g != current {
				kept++
			}
			continue
		}
		log.Info("removing old DB generation", zap.String("generation", g))
		if err := os.RemoveAll(filepath.Join(dir, g)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// isGeneration reports whether suffix (after "<link>-") is a generation
// timestamp, optionally prefixed with "legacy-".
func isGeneration(suffix string) bool {
	_, err := time.Parse(genTimeLayout, strings.TrimPrefix(suffix, "legacy-"))
	return err == nil
}

func genTime(n, link string) string {
	return strings.TrimPrefix(strings.TrimPrefix(n, link+"-"), "legacy-")
}

// validateTrivyDB opens a downloaded DB read-only with its own bolt handle
// (not Trivy's global one) and checks it holds vulnerability data.
func validateTrivyDB(dir string) error {
	p := filepath.Join(dir, "trivy.db")
	if err := validateFile(p); err != nil {
		return err
	}
	bdb, err := bolt.Open(p, 0o444, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("downloaded DB %s does not open: %w", p, err)
	}
	defer bdb.Close()
	return bdb.View(func(tx *bolt.Tx) error {
		if tx.Bucket([]byte("vulnerability")) == nil {
			return fmt.Errorf("downloaded DB %s has no vulnerability bucket", p)
		}
		return nil
	})
}

func validateFile(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("downloaded artifact lacks %s: %w", filepath.Base(p), err)
	}
	if st.Size() == 0 {
		return fmt.Errorf("downloaded %s is empty", p)
	}
	return nil
}

// lock takes an exclusive flock on path, waiting until ctx is done.
func lock(ctx context.Context, path string, log *zap.Logger) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("--cache-dir: update lock %s: %w", path, err)
	}
	logged := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("--cache-dir: update lock %s: %w", path, err)
		}
		if !logged {
			log.Info("another DB update is running; waiting", zap.String("lock", path))
			logged = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the DB update lock %s: %w", path, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
