package reporter

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/layercache"
	"github.com/fleetscan/fleetscan/internal/logging"
	"github.com/fleetscan/fleetscan/internal/pkgindex"
	"github.com/fleetscan/fleetscan/internal/report"
	"github.com/fleetscan/fleetscan/internal/s3upload"
	"github.com/fleetscan/fleetscan/internal/sbom"
	"github.com/fleetscan/fleetscan/internal/scan"
	"github.com/fleetscan/fleetscan/internal/topology"
)

// Exporter writes the report's SBOMs and keeps the package index whole for
// its images (*sbom.Exporter).
type Exporter interface {
	Export(ctx context.Context, req sbom.Request) (sbom.Result, error)
}

// newExporter builds the exporter over the layer cache and the package
// index in res; nil when res lacks them.
func newExporter(res *topology.Resources, log *zap.Logger) Exporter {
	if res == nil || res.LayerCache == nil || res.Packages == nil {
		return nil
	}
	idx, err := pkgindex.NewStore(res, log.Named("pkgindex"))
	if err != nil {
		return nil
	}
	// The reporter only reads the layer cache (workers keep its entries
	// alive): TTL and leases are never used.
	cache, err := layercache.New(res, layercache.Config{TTL: topology.Defaults().LayerCacheTTL, LeaseTTL: layercache.DefaultLeaseTTL,
		Owner: "reporter", ReadOnly: true}, log.Named("layercache"))
	if err != nil {
		return nil
	}
	return sbom.NewExporter(scan.NewInventory(cache, log.Named("sbom")), idx, log.Named("sbom"))
}

// export runs the exporter over the report's scanned images: SBOMs when
// --sbom asks for them, package records rebuilt where missing, a fresh
// index snapshot. Images without a cached analysis make the report
// incomplete when SBOMs were asked for; a failure to write files is an
// error, as for the report's own files.
func export(ctx context.Context, cfg Config, d Deps, images []*report.Image, out *Outcome, log *zap.Logger) error {
	formats, _ := sbom.ParseFormats(cfg.SBOM)
	if d.Exporter == nil {
		if len(formats) > 0 {
			return fmt.Errorf("--sbom: no layer cache to build SBOMs from")
		}
		return nil
	}
	req := sbom.Request{OutDir: cfg.OutDir, Formats: formats}
	for _, im := range images {
		req.Images = append(req.Images, sbom.Image{Key: im.Key, Reference: im.Reference, Workloads: im.Workloads})
	}
	start := time.Now()
	res, err := d.Exporter.Export(ctx, req)
	if err != nil {
		if len(formats) > 0 {
			return fmt.Errorf("SBOMs: %w", err)
		}
		log.Warn("could not bring the package index up to date", zap.Error(err))
		return nil
	}
	for _, m := range res.Missing {
		log.Warn("no SBOM for an image", logging.Digest(m.Key.Digest), logging.Platform(m.Key.Platform), zap.String("reason", m.Reason))
	}
	log.Info("package index and SBOMs", zap.Int("sboms", res.SBOMs), zap.Int("missing", len(res.Missing)),
		zap.Int("records_rebuilt", res.Backfilled), zap.Int("images_indexed", res.Indexed), logging.Took(time.Since(start)))
	if len(formats) > 0 {
		out.SBOM = &res
	}
	return nil
}

// sbomUploads are the SBOM files to upload with the report.
func (o Outcome) sbomUploads() []s3upload.File {
	if o.SBOM == nil {
		return nil
	}
	files := make([]s3upload.File, 0, len(o.SBOM.Files))
	for _, f := range o.SBOM.Files {
		files = append(files, s3upload.File{Name: f.Name, Path: f.Path, ContentType: f.ContentType})
	}
	return files
}

// writeSBOMSummary prints where the SBOMs went and which are missing.
func writeSBOMSummary(w io.Writer, cfg Config, o Outcome) {
	if o.SBOM == nil {
		return
	}
	fmt.Fprintf(w, "SBOMs: %d images (%s) in %s", o.SBOM.SBOMs, strings.Join(cfg.SBOM, ", "), filepath.Join(cfg.OutDir, sbom.Dir))
	if n := len(o.SBOM.Missing); n > 0 {
		fmt.Fprintf(w, "; %d without one (no cached analysis):", n)
		for i, m := range o.SBOM.Missing {
			if i == 5 {
				fmt.Fprintf(w, " …")
				break
			}
			fmt.Fprintf(w, " %s", m.Key)
		}
	}
	fmt.Fprintln(w)
}
