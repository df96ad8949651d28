// Package scan turns one image digest into vulnerability findings. It is the
// only package that imports Trivy's scanning packages: Trivy's pkg/ API has
// no compatibility promise, so the wiring lives here and nowhere else.
//
// The Trivy implementation scans an image by digest straight from its
// registry (no container runtime), for one platform, trying mirrors in
// order; it runs the vulnerability scanner only, on OS packages and language
// packages (lock files disabled, as `trivy image` does), reads a shared
// read-only vulnerability database, and keeps layer analyses in a cache
// shared by the fleet (TrivyConfig.SharedCache: images analysed before are
// rescanned by detection alone) or in a private scratch directory. Failures
// come back classified with contract.Permanent / contract.Retryable so the job
// queue knows whether to retry.
package scan

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fleetscan/fleetscan/pkg/contract"
)

// Scanner scans one image.
type Scanner interface {
	// Scan scans req and returns its findings, or an error classified with
	// contract.Permanent / contract.Retryable.
	Scan(ctx context.Context, req Request) (Report, error)
}

// Request names the image to scan.
type Request struct {
	// Digest is the manifest (or index) digest to scan.
	Digest string
	// Platform selects the manifest of a multi-arch index.
	Platform contract.Platform
	// References are the repositories to pull from, in order of preference
	// ("registry/repo", "registry/repo:tag" or "registry/repo@digest"). The
	// repository part is used and pinned to Digest, so a tag can never make
	// the scanner read another image.
	References []string
	// Pull reads the image from its registry even when a recorded analysis
	// in the shared layer cache would do (--rescan). Layer analyses are
	// still taken from the cache: their keys include the layer content
	// and every analyzer version.
	Pull bool
}

// RequestFor builds the request of a scan job: its reference first, then
// its alternative references (mirrors).
func RequestFor(job contract.ScanJob) Request {
	refs := make([]string, 0, 1+len(job.AltReferences))
	refs = append(refs, job.Reference)
	refs = append(refs, job.AltReferences...)
	return Request{Digest: job.Digest, Platform: job.Platform, References: refs}
}

// Validate checks the request.
func (r Request) Validate() error {
	if !contract.ValidDigest(r.Digest) {
		return fmt.Errorf("digest %q: not an OCI digest", r.Digest)
	}
	if r.Platform.OS == "" || r.Platform.Architecture == "" {
		return fmt.Errorf("platform %q: os and architecture are required", r.Platform)
	}
	if len(r.References) == 0 {
		return errors.New("no reference to pull from")
	}
	return nil
}

// Report is the outcome of a successful scan.
type Report struct {
	// Reference is what was pulled, pinned by digest (may be a mirror).
	Reference string
	OS        *contract.OSInfo
	Findings  []contract.Finding
	// Packages lists every package found (the caller sets its image
	// key): the package index's record of the image.
	Packages  *contract.ImagePackages
	Scanner   contract.ScannerInfo
	DB        contract.DBInfo
	StartedAt time.Time
	Duration  time.Duration
	// LayersCached counts layers whose analysis came from the layer cache;
	// LayersAnalyzed those that were downloaded and analysed.
	LayersCached   int
	LayersAnalyzed int
	// BytesFetched counts bytes read from the registry for the reference
	// that worked.
	BytesFetched int64
	// DetectionOnly is true when the image was not pulled: its recorded
	// analysis in the shared layer cache went through detection alone
	// (a rescan after a DB update).
	DetectionOnly bool
}
