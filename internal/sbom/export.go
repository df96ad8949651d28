package sbom

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/aquasecurity/trivy/pkg/clock"

	"github.com/fleetscan/fleetscan/internal/pkgindex"
	"github.com/fleetscan/fleetscan/internal/scan"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// Lister lists an image's packages from its recorded analysis
// (*scan.Inventory).
type Lister interface {
	List(ctx context.Context, key contract.ImageKey) (scan.Listing, error)
}

// Index is the package index the exporter keeps whole (*pkgindex.Store).
type Index interface {
	Load(ctx context.Context) (*pkgindex.Index, pkgindex.LoadStats, error)
	Save(ctx context.Context, ix *pkgindex.Index) error
	PutPackages(ctx context.Context, rec contract.ImagePackages) error
}

// Exporter writes SBOMs and rebuilds missing package records.
type Exporter struct {
	lister Lister
	index  Index
	log    *zap.Logger
	// Parallel bounds the images listed at once (default: CPUs).
	Parallel int
	// Clock stamps the SBOMs (nil: time.Now).
	Clock func() time.Time
	// TrivyVersion names the tool in the SBOMs (default: the linked
	// Trivy's version).
	TrivyVersion string
}

// NewExporter returns an exporter over a lister and the package index.
func NewExporter(lister Lister, index Index, log *zap.Logger) *Exporter {
	if log == nil {
		log = zap.NewNop()
	}
	return &Exporter{lister: lister, index: index, log: log, TrivyVersion: scan.TrivyVersion()}
}

// Image is an image the report covers.
type Image struct {
	Key       contract.ImageKey
	Reference string
	Workloads []string
}

// Request says what to export.
type Request struct {
	// OutDir is the report's output directory; SBOMs go to OutDir/sbom.
	OutDir string
	// Formats are the SBOM formats (none: only the package index is
	// brought up to date).
	Formats []Format
	Images  []Image
}

// File is one written file, named relative to the output directory.
type File struct {
	Name        string
	Path        string
	ContentType string
	Size        int64
}

// Missing is an image whose SBOM could not be written.
type Missing struct {
	Key    contract.ImageKey
	Reason string
}

// Result is what an export did.
type Result struct {
	// Files are the SBOMs and the index file, sorted by name.
	Files []File
	// SBOMs counts images with SBOMs written.
	SBOMs int
	// Missing lists the images without one (SBOMs requested).
	Missing []Missing
	// Backfilled counts package records rebuilt from the layer cache.
	Backfilled int
	// Indexed is the number of images in the package index afterwards.
	Indexed int
}

// indexEntry is one line of sbom/index.json.
type indexEntry struct {
	Digest         string   `json:"digest"`
	Platform       string   `json:"platform"`
	ManifestDigest string   `json:"manifestDigest,omitempty"`
	Reference      string   `json:"reference,omitempty"`
	Workloads      []string `json:"workloads"`
	Packages       int      `json:"packages"`
	Files          []string `json:"files"`
}

// Export writes the SBOMs of req.Images, rebuilds the package records the
// index lacks for them, and writes a fresh index snapshot. An image whose
// analysis is not in the layer cache is listed in Result.Missing when
// SBOMs were asked for. The error is reserved for what stops the export
// (the output directory, the index store).
func (e *Exporter) Export(ctx context.Context, req Request) (Result, error) {
	var res Result
	ix, _, err := e.index.Load(ctx)
	if err != nil {
		return res, fmt.Errorf("package index: %w", err)
	}
	dir := filepath.Join(req.OutDir, Dir)
	if len(req.Formats) > 0 {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return res, fmt.Errorf("create SBOM directory %s: %w", dir, err)
		}
	}
	images := slices.Clone(req.Images)
	slices.SortFunc(images, func(a, b Image) int {
		return cmp.Or(cmp.Compare(a.Key.Digest, b.Key.Digest), cmp.Compare(a.Key.Platform.String(), b.Key.Platform.String()))
	})
	platforms := map[string]int{}
	for _, im := range images {
		platforms[im.Key.Digest]++
	}

	type outcome struct {
		entry      *indexEntry
		files      []File
		missing    string
		backfilled bool
		err        error
	}
	outs := make([]outcome, len(images))
	now := time.Now
	if e.Clock != nil {
		now = e.Clock
	}
	sctx := clock.With(ctx, now().UTC())
	par := e.Parallel
	if par <= 0 {
		par = runtime.GOMAXPROCS(0)
	}
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for i, im := range images {
		_, indexed := ix.Image(im.Key)
		if indexed && len(req.Formats) == 0 {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			o := &outs[i]
			l, err := e.lister.List(ctx, im.Key)
			if err != nil {
				o.missing = err.Error()
				if !errors.Is(err, scan.ErrNoAnalysis) {
					e.log.Warn("could not list the image's packages from the layer cache", zap.String("image", im.Key.String()), zap.Error(err))
				}
				return
			}
			if !indexed {
				if err := e.index.PutPackages(ctx, l.Packages); err != nil {
					e.log.Warn("could not store a rebuilt package record", zap.String("image", im.Key.String()), zap.Error(err))
				} else {
					o.backfilled = true
				}
			}
			if len(req.Formats) == 0 {
				return
			}
			perPlatform := platforms[im.Key.Digest] > 1 || l.Packages.ManifestDigest != ""
			o.entry = &indexEntry{Digest: im.Key.Digest, Platform: im.Key.Platform.String(), ManifestDigest: l.Packages.ManifestDigest,
				Reference: im.Reference, Workloads: nonNil(im.Workloads), Packages: len(l.Packages.Packages)}
			for _, f := range req.Formats {
				name := FileName(im.Key, perPlatform, f)
				path := filepath.Join(dir, name)
				size, err := writeAtomic(path, func(w io.Writer) error { return Write(sctx, w, f, l.Report, e.TrivyVersion) })
				if err != nil {
					o.err = fmt.Errorf("write SBOM %s: %w", path, err)
					return
				}
				o.files = append(o.files, File{Name: Dir + "/" + name, Path: path, ContentType: f.ContentType(), Size: size})
				o.entry.Files = append(o.entry.Files, Dir+"/"+name)
			}
		}()
	}
	wg.Wait()

	var errs []error
	var entries []indexEntry
	for i, o := range outs {
		switch {
		case o.err != nil:
			errs = append(errs, o.err)
		case o.missing != "" && len(req.Formats) > 0:
			res.Missing = append(res.Missing, Missing{Key: images[i].Key, Reason: o.missing})
		}
		if o.backfilled {
			res.Backfilled++
		}
		if o.entry != nil && o.err == nil {
			entries = append(entries, *o.entry)
			res.Files = append(res.Files, o.files...)
			res.SBOMs++
		}
	}
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	if len(req.Formats) > 0 {
		f, err := writeIndex(dir, entries)
		if err != nil {
			return res, err
		}
		res.Files = append(res.Files, f)
		if err := removeStale(dir, res.Files); err != nil {
			e.log.Warn("could not remove SBOMs of an earlier run from the output directory", zap.Error(err))
		}
	}
	slices.SortFunc(res.Files, func(a, b File) int { return cmp.Compare(a.Name, b.Name) })
	res.Indexed = e.compact(ctx, ix.Len())
	return res, nil
}

// compact reloads the index (with the records just rebuilt) and stores it
// as the snapshot, so a query reads one object. It returns the number of
// images indexed (prev when the reload failed).
func (e *Exporter) compact(ctx context.Context, prev int) int {
	ix, _, err := e.index.Load(ctx)
	if err != nil {
		e.log.Warn("could not reload the package index to compact it", zap.Error(err))
		return prev
	}
	if err := e.index.Save(ctx, ix); err != nil {
		e.log.Warn("could not store the package index snapshot; queries read the records instead", zap.Error(err))
	}
	return ix.Len()
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func writeIndex(dir string, entries []indexEntry) (File, error) {
	if entries == nil {
		entries = []indexEntry{}
	}
	path := filepath.Join(dir, IndexFile)
	size, err := writeAtomic(path, func(w io.Writer) error {
		enc := newJSONEncoder(w)
		return enc.Encode(entries)
	})
	if err != nil {
		return File{}, fmt.Errorf("write %s: %w", path, err)
	}
	return File{Name: Dir + "/" + IndexFile, Path: path, ContentType: "application/json", Size: size}, nil
}

// removeStale deletes SBOM files of earlier runs (the naming scheme's
// files only) that this run did not write.
func removeStale(dir string, keep []File) error {
	kept := map[string]bool{}
	for _, f := range keep {
		kept[filepath.Base(f.Path)] = true
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() || kept[n] || !strings.HasPrefix(n, "sha") || !(strings.HasSuffix(n, CycloneDX.Ext()) || strings.HasSuffix(n, SPDX.Ext())) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
