package trivydb

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	tdb "github.com/aquasecurity/trivy-db/pkg/db"
	"github.com/aquasecurity/trivy-db/pkg/metadata"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/logging"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

var (
	// ErrMissing: no usable DB under --cache-dir.
	ErrMissing = errors.New("trivy DB missing")
	// ErrStale: the DB is older than --max-db-age.
	ErrStale = errors.New("trivy DB too old")
	// ErrAlreadyOpen: another Handle holds Trivy's process-global DB.
	ErrAlreadyOpen = errors.New("a trivy DB is already open in this process")
)

// dbState identifies one DB generation as a reader saw it.
type dbState struct {
	meta metadata.Metadata
	file os.FileInfo // trivy.db, for os.SameFile
}

func sameMeta(a, b metadata.Metadata) bool {
	return a.Version == b.Version && a.UpdatedAt.Equal(b.UpdatedAt) && a.NextUpdate.Equal(b.NextUpdate) && a.DownloadedAt.Equal(b.DownloadedAt)
}

func infoOf(m metadata.Metadata) contract.DBInfo {
	return contract.DBInfo{Version: m.Version, UpdatedAt: m.UpdatedAt, NextUpdate: m.NextUpdate, DownloadedAt: m.DownloadedAt}
}

// readState reads metadata.json and stats trivy.db in dir (through the
// symlink). Errors wrap ErrMissing and name the flag and path; the command
// adds how to get a DB (each command has its own way).
func readState(dir string) (dbState, error) {
	st, err := os.Stat(tdb.Path(dir))
	if err != nil {
		return dbState{}, fmt.Errorf("%w: --cache-dir %s has no %s (%v)", ErrMissing, filepath.Dir(dir), tdb.Path(dir), err)
	}
	meta, err := metadata.NewClient(dir).Get()
	if err != nil {
		return dbState{}, fmt.Errorf("%w: --cache-dir %s: unreadable %s: %v", ErrMissing, filepath.Dir(dir), metadata.Path(dir), err)
	}
	if meta.Version != tdb.SchemaVersion {
		return dbState{}, fmt.Errorf("%w: %s has schema version %d, this build reads %d", ErrMissing, metadata.Path(dir), meta.Version, tdb.SchemaVersion)
	}
	if meta.UpdatedAt.IsZero() {
		return dbState{}, fmt.Errorf("%w: %s has no UpdatedAt", ErrMissing, metadata.Path(dir))
	}
	return dbState{meta: meta, file: st}, nil
}

func checkAge(dir string, meta metadata.Metadata, maxAge time.Duration, now time.Time) error {
	if age := now.Sub(meta.UpdatedAt); age > maxAge {
		return fmt.Errorf("%w: %s was built at %s, %s ago, older than --max-db-age=%s",
			ErrStale, dir, meta.UpdatedAt.UTC().Format(time.RFC3339), age.Round(time.Minute), maxAge)
	}
	return nil
}

// Check verifies, without opening it, that a DB exists under cfg.CacheDir
// and is not older than cfg.MaxDBAge, and returns its metadata.
func Check(cfg Config, now time.Time) (contract.DBInfo, error) {
	if err := cfg.Validate(); err != nil {
		return contract.DBInfo{}, err
	}
	st, err := readState(cfg.DBDir())
	if err != nil {
		return contract.DBInfo{}, err
	}
	return infoOf(st.meta), checkAge(cfg.DBDir(), st.meta, cfg.MaxDBAge, now)
}

// Handle is the open, read-only Trivy DB of this process. Trivy keeps the DB
// in a package-global handle that its scanners read, so at most one Handle is
// open at a time, and Reopen/Close must only be called with no scan running
// (the caller owns that gate).
type Handle struct {
	cfg Config
	log *zap.Logger
	now func() time.Time

	mu     sync.Mutex
	cur    dbState
	closed bool
}

var (
	globalMu   sync.Mutex
	globalOpen bool
)

// OpenOption adjusts Open.
type OpenOption func(*Handle)

// WithClock judges the DB's age against now instead of the wall clock (an
// all-in-one run or a demo that lives on its own calendar).
func WithClock(now func() time.Time) OpenOption {
	return func(h *Handle) {
		if now != nil {
			h.now = now
		}
	}
}

// Open checks the DB under cfg.CacheDir (present, not older than
// cfg.MaxDBAge) and opens it read-only as Trivy's global DB, waiting at most
// cfg.OpenTimeout for the file lock.
func Open(ctx context.Context, cfg Config, logger *zap.Logger, opts ...OpenOption) (*Handle, error) {
	h := &Handle{cfg: cfg, log: logger, now: time.Now}
	for _, o := range opts {
		o(h)
	}
	if _, err := Check(cfg, h.now()); err != nil {
		return nil, err
	}
	globalMu.Lock()
	defer globalMu.Unlock()
	if globalOpen {
		return nil, ErrAlreadyOpen
	}
	st, err := h.init(ctx)
	if err != nil {
		return nil, err
	}
	h.cur = st
	globalOpen = true
	logger.Info("vulnerability DB opened", zap.String("dir", cfg.DBDir()), zap.String("generation", generationOf(cfg.DBDir())),
		logging.DBUpdatedAt(st.meta.UpdatedAt), logging.DBNextUpdate(st.meta.NextUpdate))
	return h, nil
}

// generationOf returns the directory a db symlink points to (or dir itself).
func generationOf(dir string) string {
	if p, err := filepath.EvalSymlinks(dir); err == nil {
		return filepath.Base(p)
	}
	return filepath.Base(dir)
}

// init opens the DB the <cache-dir>/db path currently designates. The state
// is read before and after opening: when they differ an update flipped the
// generation meanwhile, and we open again so the recorded state matches the
// open file.
func (h *Handle) init(ctx context.Context) (dbState, error) {
	dir := h.cfg.DBDir()
	for attempt := 0; ; attempt++ {
		before, err := readState(dir)
		if err != nil {
			return dbState{}, err
		}
		if err := ctx.Err(); err != nil {
			return dbState{}, err
		}
		err = tdb.Init(dir, tdb.WithBoltOptions(&bolt.Options{ReadOnly: true, Timeout: h.cfg.OpenTimeout}))
		if err != nil {
			if errors.Is(err, bolt.ErrTimeout) {
				return dbState{}, fmt.Errorf("open trivy DB %s: file locked by a writer for longer than --db-open-timeout=%s: %w", tdb.Path(dir), h.cfg.OpenTimeout, err)
			}
			return dbState{}, fmt.Errorf("open trivy DB %s: %w", tdb.Path(dir), err)
		}
		after, err := readState(dir)
		if err == nil && os.SameFile(before.file, after.file) && sameMeta(before.meta, after.meta) {
			return before, nil
		}
		_ = tdb.Close()
		if attempt >= 3 {
			if err == nil {
				err = errors.New("the DB kept changing while opening")
			}
			return dbState{}, fmt.Errorf("open trivy DB %s: %w", dir, err)
		}
	}
}

// Info returns the metadata of the open DB.
func (h *Handle) Info() contract.DBInfo {
	h.mu.Lock()
	defer h.mu.Unlock()
	return infoOf(h.cur.meta)
}

// CheckAge returns ErrStale (wrapped) when the open DB is older than
// --max-db-age at now; a worker reports not-ready then.
func (h *Handle) CheckAge(now time.Time) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return checkAge(h.cfg.DBDir(), h.cur.meta, h.cfg.MaxDBAge, now)
}

// Changed reports whether <cache-dir>/db now designates a different DB than
// the open one (the updater switched generations, or the files were
// replaced). It reads metadata only; it never blocks scans.
func (h *Handle) Changed() (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false, errors.New("trivy DB handle is closed")
	}
	st, err := readState(h.cfg.DBDir())
	if err != nil {
		return false, err
	}
	return !os.SameFile(st.file, h.cur.file) || !sameMeta(st.meta, h.cur.meta), nil
}

// Reopen closes the open DB and opens what <cache-dir>/db designates now.
// Call it only with no scan running. On error the handle has no open DB and
// a later Reopen may be retried.
func (h *Handle) Reopen(ctx context.Context) (contract.DBInfo, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return contract.DBInfo{}, errors.New("trivy DB handle is closed")
	}
	// Check the new DB before giving up the old one.
	if _, err := readState(h.cfg.DBDir()); err != nil {
		return contract.DBInfo{}, err
	}
	old := h.cur.meta
	if err := tdb.Close(); err != nil {
		return contract.DBInfo{}, fmt.Errorf("close trivy DB: %w", err)
	}
	st, err := h.init(ctx)
	if err != nil {
		h.cur = dbState{}
		return contract.DBInfo{}, err
	}
	h.cur = st
	h.log.Info("vulnerability DB reopened", zap.String("generation", generationOf(h.cfg.DBDir())),
		zap.Time("previous_db_updated_at", old.UpdatedAt), logging.DBUpdatedAt(st.meta.UpdatedAt))
	if err := checkAge(h.cfg.DBDir(), st.meta, h.cfg.MaxDBAge, h.now()); err != nil {
		h.log.Warn("reopened vulnerability DB is stale", zap.Error(err))
	}
	return infoOf(st.meta), nil
}

// Close closes Trivy's global DB; another Handle may be opened afterwards.
func (h *Handle) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	globalMu.Lock()
	globalOpen = false
	globalMu.Unlock()
	return tdb.Close()
}
