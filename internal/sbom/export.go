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

	"github.com/fleetscan/fleetscan/internal/logging"
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
	ix, _, err := e.index.Load(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("package index: %w", err)
	}
	job := e.newJob(ctx, req, ix)
	if len(req.Formats) > 0 {
		if err := os.MkdirAll(job.dir, 0o755); err != nil {
			return Result{}, fmt.Errorf("create SBOM directory %s: %w", job.dir, err)
		}
	}
	outs := job.run()
	res, entries, err := gather(job.images, outs, len(req.Formats) > 0)
	if err != nil {
		return res, err
	}
	if len(req.Formats) > 0 {
		f, err := writeIndex(job.dir, entries)
		if err != nil {
			return res, err
		}
		res.Files = append(res.Files, f)
		if err := removeStale(job.dir, res.Files); err != nil {
			e.log.Warn("could not remove SBOMs of an earlier run from the output directory", zap.Error(err))
		}
	}
	slices.SortFunc(res.Files, func(a, b File) int { return cmp.Compare(a.Name, b.Name) })
	res.Indexed = e.compact(ctx, ix.Len())
	return res, nil
}

// exportJob is one export: the images in key order and what they need.
type exportJob struct {
	e       *Exporter
	ctx     context.Context
	sctx    context.Context // ctx with the SBOMs' clock
	req     Request
	ix      *pkgindex.Index
	dir     string
	images  []Image
	indexed []bool
	// platforms counts the platforms the fleet runs each digest on.
	platforms map[string]int
}

// outcome is what the export did for one image.
type outcome struct {
	entry      *indexEntry
	files      []File
	missing    string
	backfilled bool
	err        error
}

func (e *Exporter) newJob(ctx context.Context, req Request, ix *pkgindex.Index) *exportJob {
	now := time.Now
	if e.Clock != nil {
		now = e.Clock
	}
	j := &exportJob{e: e, ctx: ctx, sctx: clock.With(ctx, now().UTC()), req: req, ix: ix,
		dir: filepath.Join(req.OutDir, Dir), images: slices.Clone(req.Images), platforms: map[string]int{}}
	slices.SortFunc(j.images, func(a, b Image) int {
		return cmp.Or(cmp.Compare(a.Key.Digest, b.Key.Digest), cmp.Compare(a.Key.Platform.String(), b.Key.Platform.String()))
	})
	j.indexed = make([]bool, len(j.images))
	for i, im := range j.images {
		j.platforms[im.Key.Digest]++
		_, j.indexed[i] = ix.Image(im.Key)
	}
	return j
}

// run exports the images in parallel: each one with SBOMs to write, or
// without a package record.
func (j *exportJob) run() []outcome {
	outs := make([]outcome, len(j.images))
	par := j.e.Parallel
	if par <= 0 {
		par = runtime.GOMAXPROCS(0)
	}
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for i := range j.images {
		if j.indexed[i] && len(j.req.Formats) == 0 {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			outs[i] = j.one(j.images[i], j.indexed[i])
		}()
	}
	wg.Wait()
	return outs
}

// one lists an image's packages from its analysis, stores its package
// record when the index lacks one, and writes its SBOMs.
func (j *exportJob) one(im Image, indexed bool) outcome {
	var o outcome
	log := j.e.log.With(logging.Digest(im.Key.Digest), logging.Platform(im.Key.Platform))
	l, err := j.e.lister.List(j.ctx, im.Key)
	if err != nil {
		if !errors.Is(err, scan.ErrNoAnalysis) {
			log.Warn("could not list the image's packages from the layer cache", zap.Error(err))
		}
		o.missing = err.Error()
		return o
	}
	if !indexed {
		if err := j.e.index.PutPackages(j.ctx, l.Packages); err != nil {
			log.Warn("could not store a rebuilt package record", zap.Error(err))
		} else {
			o.backfilled = true
		}
	}
	if len(j.req.Formats) == 0 {
		return o
	}
	perPlatform := j.platforms[im.Key.Digest] > 1 || l.Packages.ManifestDigest != ""
	o.entry = &indexEntry{Digest: im.Key.Digest, Platform: im.Key.Platform.String(), ManifestDigest: l.Packages.ManifestDigest,
		Reference: im.Reference, Workloads: nonNil(im.Workloads), Packages: len(l.Packages.Packages)}
	for _, f := range j.req.Formats {
		name := FileName(im.Key, perPlatform, f)
		path := filepath.Join(j.dir, name)
		size, err := writeAtomic(path, func(w io.Writer) error { return Write(j.sctx, w, f, l.Report, j.e.TrivyVersion) })
		if err != nil {
			o.err = fmt.Errorf("write SBOM %s: %w", path, err)
			return o
		}
		o.files = append(o.files, File{Name: Dir + "/" + name, Path: path, ContentType: f.ContentType(), Size: size})
		o.entry.Files = append(o.entry.Files, Dir+"/"+name)
	}
	return o
}

// gather sums the images' outcomes in key order.
func gather(images []Image, outs []outcome, sboms bool) (Result, []indexEntry, error) {
	var (
		res     Result
		errs    []error
		entries []indexEntry
	)
	for i, o := range outs {
		switch {
		case o.err != nil:
			errs = append(errs, o.err)
		case o.missing != "" && sboms:
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
	return res, entries, errors.Join(errs...)
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
