package feeds

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// ErrNotStored is returned by a Source that holds no copy of a feed.
var ErrNotStored = errors.New("no stored copy")

// Source is where readers find the last good copy of each feed: a cache
// directory (the all-in-one, the updater itself) or the JetStream object
// store the updater publishes to (the reporter in the fleet).
type Source interface {
	// Open returns the stored copy of a feed and its metadata, or an error
	// wrapping ErrNotStored when there is none.
	Open(ctx context.Context, k Kind) (io.ReadCloser, Meta, error)
	// String names the source in messages.
	String() string
}

const (
	metaFile      = "meta.json"
	lockFile      = ".lock"
	stagingPrefix = ".staging-"
	genTimeLayout = "20060102T150405.000000000Z"
	// keepGenerations: the current one and the previous, so a reader that
	// resolved the link just before a switch still finds its files.
	keepGenerations = 2
)

// Dir is where the feeds live under a cache directory (--cache-dir).
//
//	<cache-dir>/feeds/kev  -> kev-20250826T060000.000000000Z   (symlink, switched by rename(2))
//	<cache-dir>/feeds/kev-20250826T060000.000000000Z/{kev.json,meta.json}
//	<cache-dir>/feeds/epss -> epss-…/{epss.csv.gz,meta.json}
func Dir(cacheDir string) string { return filepath.Join(cacheDir, "feeds") }

// DirSource reads the feeds stored under a cache directory.
func DirSource(cacheDir string) Source { return diskStore{dir: Dir(cacheDir)} }

// diskStore is the feeds directory: one generation directory per stored
// copy and a symlink per feed naming the current one.
type diskStore struct{ dir string }

func (d diskStore) String() string { return d.dir }

// current resolves a feed's link once and reads its metadata, so the data
// file read next belongs to the same generation even if the updater
// switches meanwhile.
func (d diskStore) current(k Kind) (Meta, string, error) {
	target, err := os.Readlink(filepath.Join(d.dir, string(k)))
	if errors.Is(err, fs.ErrNotExist) {
		return Meta{}, "", fmt.Errorf("%s in %s: %w", k.Title(), d.dir, ErrNotStored)
	}
	if err != nil {
		return Meta{}, "", fmt.Errorf("%s in %s: %w", k.Title(), d.dir, err)
	}
	gen := filepath.Join(d.dir, filepath.Base(target))
	data, err := os.ReadFile(filepath.Join(gen, metaFile))
	if err != nil {
		return Meta{}, "", fmt.Errorf("%s in %s: %w", k.Title(), gen, err)
	}
	var m Meta
	if err := json.Unmarshal(data, &m); err != nil {
		return Meta{}, "", fmt.Errorf("%s: %s: %w", k.Title(), filepath.Join(gen, metaFile), err)
	}
	if m.Feed != k || m.File == "" || filepath.Base(m.File) != m.File {
		return Meta{}, "", fmt.Errorf("%s: %s: not the metadata of a stored %s", k.Title(), filepath.Join(gen, metaFile), k)
	}
	return m, gen, nil
}

// Open implements Source.
func (d diskStore) Open(_ context.Context, k Kind) (io.ReadCloser, Meta, error) {
	m, gen, err := d.current(k)
	if err != nil {
		return nil, Meta{}, err
	}
	f, err := os.Open(filepath.Join(gen, m.File))
	if err != nil {
		return nil, Meta{}, fmt.Errorf("%s: %w", k.Title(), err)
	}
	return f, m, nil
}

// verify checks a generation's data file against its metadata (size and
// SHA-256).
func (d diskStore) verify(gen string, m Meta) error {
	f, err := os.Open(filepath.Join(gen, m.File))
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return err
	}
	if n != m.Size || hex.EncodeToString(h.Sum(nil)) != m.SHA256 {
		return fmt.Errorf("%s: %d bytes with SHA-256 %s, the metadata says %d bytes %s", filepath.Join(gen, m.File),
			n, hex.EncodeToString(h.Sum(nil)), m.Size, m.SHA256)
	}
	return nil
}

// stage creates a staging directory for a new copy of k.
func (d diskStore) stage(k Kind) (string, error) {
	return os.MkdirTemp(d.dir, stagingPrefix+string(k)+"-")
}

// commit turns a staging directory holding the data file into a
// generation: it writes meta.json, renames the directory into place,
// switches the feed's link to it and prunes old generations.
func (d diskStore) commit(k Kind, staging string, m Meta, now time.Time, log *zap.Logger) (string, error) {
	if err := writeJSONAtomic(staging, metaFile, m); err != nil {
		return "", err
	}
	if err := os.Chmod(staging, 0o755); err != nil {
		return "", err
	}
	gen := string(k) + "-" + now.UTC().Format(genTimeLayout)
	if err := os.Rename(staging, filepath.Join(d.dir, gen)); err != nil {
		return "", err
	}
	if err := d.flip(k, gen, now); err != nil {
		return "", fmt.Errorf("switch to %s: %w", gen, err)
	}
	if err := d.prune(k, gen, log); err != nil {
		log.Warn("pruning old feed generations failed", zap.String("feed", string(k)), zap.Error(err))
	}
	return gen, nil
}

// rewriteMeta replaces the current generation's meta.json atomically (a
// fetch that found the same content records when it checked).
func (d diskStore) rewriteMeta(k Kind, m Meta) error {
	_, gen, err := d.current(k)
	if err != nil {
		return err
	}
	return writeJSONAtomic(gen, metaFile, m)
}

// flip points the feed's link at gen atomically: a new symlink under a
// temporary name is renamed over the old one.
func (d diskStore) flip(k Kind, gen string, now time.Time) error {
	tmp := filepath.Join(d.dir, stagingPrefix+string(k)+"-link-"+now.UTC().Format(genTimeLayout))
	_ = os.Remove(tmp)
	if err := os.Symlink(gen, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(d.dir, string(k))); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return syncDir(d.dir)
}

// prune removes a feed's generations beyond the newest keepGenerations
// (never current) and leftovers of interrupted updates.
func (d diskStore) prune(k Kind, current string, log *zap.Logger) error {
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		return err
	}
	prefix := string(k) + "-"
	var gens []string
	var errs []error
	for _, e := range entries {
		n := e.Name()
		switch {
		case strings.HasPrefix(n, stagingPrefix+prefix):
			if err := os.RemoveAll(filepath.Join(d.dir, n)); err != nil {
				errs = append(errs, err)
			}
		case e.IsDir() && strings.HasPrefix(n, prefix) && isGeneration(strings.TrimPrefix(n, prefix)):
			gens = append(gens, n)
		}
	}
	slices.Sort(gens)
	slices.Reverse(gens) // newest first: names embed the switch time
	kept := 0
	for _, g := range gens {
		if g == current {
			continue
		}
		if kept < keepGenerations-1 {
			kept++
			continue
		}
		log.Debug("removing old feed generation", zap.String("generation", g))
		if err := os.RemoveAll(filepath.Join(d.dir, g)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func isGeneration(suffix string) bool {
	_, err := time.Parse(genTimeLayout, suffix)
	return err == nil
}

// writeJSONAtomic writes v as dir/name through a temporary file and
// rename, so readers never see a partial file.
func writeJSONAtomic(dir, name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(append(data, '\n'))
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(tmp.Name(), 0o644)
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), filepath.Join(dir, name))
	}
	if werr != nil {
		_ = os.Remove(tmp.Name())
	}
	return werr
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

// lock takes an exclusive flock on the feeds directory's lock file,
// waiting until ctx is done, so concurrent updaters (a CronJob and an
// all-in-one on the same cache) take turns.
func (d diskStore) lock(ctx context.Context, log *zap.Logger) (func(), error) {
	path := filepath.Join(d.dir, lockFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("--cache-dir: feeds lock %s: %w", path, err)
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
			return nil, fmt.Errorf("--cache-dir: feeds lock %s: %w", path, err)
		}
		if !logged {
			log.Info("another feed update is running; waiting", zap.String("lock", path))
			logged = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the feeds lock %s: %w", path, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
