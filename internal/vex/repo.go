package vex

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// A VEX repository (the format of Trivy's VEX Hub) is served as
// <url>/.well-known/vex-repository.json (<url>/vex-repository.json on
// github.com), a manifest whose version 0.1 lists archive locations; the
// archive (tar.gz) holds index.json — {"updated_at", "packages": [{"id",
// "location", "format"}]} — and the documents it names, relative to it.
const (
	repoManifest    = "vex-repository.json"
	repoSpecVersion = "0.1"
	repoIndex       = "index.json"
	repoMeta        = "fleetscan-repository.json"
	maxArchive      = 512 << 20
)

type repoManifestDoc struct {
	Name     string `json:"name"`
	Versions []struct {
		SpecVersion string `json:"spec_version"`
		Locations   []struct {
			URL string `json:"url"`
		} `json:"locations"`
	} `json:"versions"`
}

type repoIndexDoc struct {
	UpdatedAt time.Time `json:"updated_at"`
	Packages  []struct {
		ID       string `json:"id"`
		Location string `json:"location"`
		Format   string `json:"format"`
	} `json:"packages"`
}

// RepoMeta records where a fetched repository came from.
type RepoMeta struct {
	URL       string    `json:"url"`
	Name      string    `json:"name"`
	Archive   string    `json:"archive"`
	FetchedAt time.Time `json:"fetchedAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	Documents int       `json:"documents"`
}

// RepoDir is the directory under root a repository URL is kept in.
func RepoDir(root, repoURL string) string {
	sum := sha256.Sum256([]byte(strings.TrimSuffix(repoURL, "/")))
	return filepath.Join(root, hex.EncodeToString(sum[:8]))
}

// FetchRepository downloads the repository at repoURL into
// RepoDir(root, repoURL): manifest, archive, then every document is parsed
// before the new copy replaces the old one, so a failed or corrupt fetch
// keeps the last good copy. now stamps the copy.
func FetchRepository(ctx context.Context, client *http.Client, root, repoURL string, now time.Time) (RepoMeta, error) {
	man, err := fetchManifest(ctx, client, repoURL)
	if err != nil {
		return RepoMeta{}, err
	}
	var locs []string
	for _, v := range man.Versions {
		if v.SpecVersion == repoSpecVersion {
			for _, l := range v.Locations {
				locs = append(locs, l.URL)
			}
		}
	}
	if len(locs) == 0 {
		return RepoMeta{}, fmt.Errorf("VEX repository %s: no location for spec version %s", repoURL, repoSpecVersion)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return RepoMeta{}, err
	}
	var errs []error
	for _, loc := range locs {
		meta, err := fetchArchive(ctx, client, root, repoURL, loc, man.Name, now)
		if err == nil {
			return meta, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", loc, err))
	}
	return RepoMeta{}, fmt.Errorf("VEX repository %s: %w", repoURL, errors.Join(errs...))
}

func fetchManifest(ctx context.Context, client *http.Client, repoURL string) (repoManifestDoc, error) {
	u, err := url.Parse(repoURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return repoManifestDoc{}, fmt.Errorf("VEX repository %q: want an http(s) URL", repoURL)
	}
	if u.Host == "github.com" {
		u.Path = path.Join(u.Path, repoManifest)
	} else {
		u.Path = path.Join(u.Path, ".well-known", repoManifest)
	}
	body, err := get(ctx, client, u.String(), 1<<20)
	if err != nil {
		return repoManifestDoc{}, fmt.Errorf("VEX repository %s: manifest: %w", repoURL, err)
	}
	var man repoManifestDoc
	if err := json.Unmarshal(body, &man); err != nil {
		return repoManifestDoc{}, fmt.Errorf("VEX repository %s: manifest: %w", repoURL, err)
	}
	return man, nil
}

func get(ctx context.Context, client *http.Client, u string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err == nil && int64(len(body)) > limit {
		err = fmt.Errorf("larger than %d bytes", limit)
	}
	return body, err
}

// fetchArchive downloads and unpacks one location into a staging
// directory, loads it, and swaps it in.
func fetchArchive(ctx context.Context, client *http.Client, root, repoURL, loc, name string, now time.Time) (RepoMeta, error) {
	loc, sub, _ := strings.Cut(strings.Replace(loc, "://", "\x00", 1), "//")
	loc = strings.Replace(loc, "\x00", "://", 1)
	body, err := get(ctx, client, loc, maxArchive)
	if err != nil {
		return RepoMeta{}, err
	}
	stage, err := os.MkdirTemp(root, ".fetch-")
	if err != nil {
		return RepoMeta{}, err
	}
	defer os.RemoveAll(stage)
	if err := untar(body, stage); err != nil {
		return RepoMeta{}, err
	}
	top := filepath.Join(stage, filepath.FromSlash(sub))
	if _, err := os.Stat(filepath.Join(top, repoIndex)); err != nil {
		return RepoMeta{}, fmt.Errorf("archive has no %s", path.Join(sub, repoIndex))
	}
	set, idx, err := loadRepo(top, repoURL)
	if err != nil {
		return RepoMeta{}, err
	}
	meta := RepoMeta{URL: repoURL, Name: name, Archive: loc, FetchedAt: now.UTC(), UpdatedAt: idx.UpdatedAt, Documents: len(set.Sources)}
	if err := writeMeta(top, meta); err != nil {
		return RepoMeta{}, err
	}
	dst := RepoDir(root, repoURL)
	old := dst + ".old"
	_ = os.RemoveAll(old)
	if err := os.Rename(dst, old); err != nil && !errors.Is(err, os.ErrNotExist) {
		return RepoMeta{}, err
	}
	if err := os.Rename(top, dst); err != nil {
		_ = os.Rename(old, dst)
		return RepoMeta{}, err
	}
	_ = os.RemoveAll(old)
	return meta, nil
}

// untar unpacks a gzip-compressed tar archive into dir (regular files and
// directories only; paths may not leave dir).
func untar(data []byte, dir string) error {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("archive: want tar.gz: %w", err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("archive: %w", err)
		}
		name := filepath.Clean(filepath.FromSlash(h.Name))
		if !filepath.IsLocal(name) {
			return fmt.Errorf("archive: entry %q leaves the archive", h.Name)
		}
		p := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case tar.TypeReg:
			err = writeFile(p, tr)
		}
		if err != nil {
			return err
		}
	}
}

func writeFile(p string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, io.LimitReader(r, maxArchive)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func writeMeta(dir string, m RepoMeta) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, repoMeta), b, 0o644)
}

// loadRepo parses every document the index names; sources read
// "<repository URL>/<location>".
func loadRepo(dir, repoURL string) (*Set, repoIndexDoc, error) {
	var idx repoIndexDoc
	b, err := os.ReadFile(filepath.Join(dir, repoIndex))
	if err != nil {
		return nil, idx, err
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, idx, fmt.Errorf("%s: %w", repoIndex, err)
	}
	set := NewSet()
	seen := map[string]bool{}
	for _, p := range idx.Packages {
		loc := filepath.Clean(filepath.FromSlash(p.Location))
		if !filepath.IsLocal(loc) {
			return nil, idx, fmt.Errorf("%s: package %s: location %q leaves the repository", repoIndex, p.ID, p.Location)
		}
		if seen[loc] {
			continue
		}
		seen[loc] = true
		data, err := os.ReadFile(filepath.Join(dir, loc))
		if err != nil {
			return nil, idx, fmt.Errorf("%s: package %s: %w", repoIndex, p.ID, err)
		}
		src := strings.TrimSuffix(repoURL, "/") + "/" + filepath.ToSlash(loc)
		stmts, err := Parse(data, src)
		if err != nil {
			return nil, idx, err
		}
		set.Add(stmts...)
		set.Sources = append(set.Sources, src)
	}
	return set, idx, nil
}

// LoadRepositories reads the repositories fetched under root: those of
// urls, or every one when urls is empty. Named repositories never fetched
// are listed in missing (the updater could not reach them yet).
func LoadRepositories(root string, urls ...string) (set *Set, missing []string, err error) {
	set = NewSet()
	if len(urls) == 0 {
		entries, err := os.ReadDir(root)
		if err != nil {
			return nil, nil, err
		}
		for _, e := range entries {
			if !e.IsDir() || strings.HasPrefix(e.Name(), ".") || strings.HasSuffix(e.Name(), ".old") {
				continue
			}
			m, err := readMeta(filepath.Join(root, e.Name()))
			if err != nil {
				return nil, nil, fmt.Errorf("%s: not a fetched VEX repository: %w", filepath.Join(root, e.Name()), err)
			}
			urls = append(urls, m.URL)
		}
	}
	for _, u := range urls {
		dir := RepoDir(root, u)
		if _, err := readMeta(dir); err != nil {
			missing = append(missing, u)
			continue
		}
		s, _, err := loadRepo(dir, u)
		if err != nil {
			return nil, nil, fmt.Errorf("VEX repository %s: %w", u, err)
		}
		set.Merge(s)
	}
	return set, missing, nil
}

// RepoResult is the outcome of updating one repository.
type RepoResult struct {
	URL string
	// Meta describes the copy in use (zero when there is none).
	Meta RepoMeta
	// Err is why the fetch failed (the last good copy, if any, stays).
	Err error
}

// UpdateRepositories fetches every repository into root, keeping the last
// good copy of one that fails.
func UpdateRepositories(ctx context.Context, client *http.Client, root string, urls []string, now time.Time) []RepoResult {
	out := make([]RepoResult, 0, len(urls))
	for _, u := range urls {
		m, err := FetchRepository(ctx, client, root, u, now)
		if err != nil {
			m, _ = readMeta(RepoDir(root, u))
		}
		out = append(out, RepoResult{URL: u, Meta: m, Err: err})
	}
	return out
}

func readMeta(dir string) (RepoMeta, error) {
	var m RepoMeta
	b, err := os.ReadFile(filepath.Join(dir, repoMeta))
	if err != nil {
		return m, err
	}
	return m, json.Unmarshal(b, &m)
}

// CheckRepositoryURL validates a --vex-repo URL.
func CheckRepositoryURL(u string) error {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return fmt.Errorf("%q: want an http(s) URL", u)
	}
	return nil
}
