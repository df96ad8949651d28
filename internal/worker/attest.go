package worker

import (
	"context"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/scan"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// VEXOCIOption is appended to the scanner options of the results (and the
// identity) of a worker running with --vex-oci whose attestation discovery
// completed. Options are part of the reuse fingerprint, so:
//   - a result scanned without --vex-oci, or whose discovery failed, never
//     answers a job of a worker with --vex-oci: the image is scanned again
//     (by detection alone when its analysis is in the shared layer cache)
//     and its attestations looked up;
//   - a result with attestations never answers a job of a worker without
//     --vex-oci either, so turning it off drops them at the next scan.
//
// Attestations are looked up when an image is scanned, not when its result
// is reused: one attached later is found at the image's next scan (every
// DB update, or --rescan).
const VEXOCIOption = "vex-oci=on"

// scannerInfo is the scanner identity this worker stamps and reuses by:
// the scanner's, with VEXOCIOption under --vex-oci.
func (w *Worker) scannerInfo() contract.ScannerInfo {
	return withVEXOCI(w.scanner.Info(), w.cfg.VEXOCI)
}

func withVEXOCI(info contract.ScannerInfo, on bool) contract.ScannerInfo {
	if on {
		info.Options = strings.TrimPrefix(info.Options+";"+VEXOCIOption, ";")
	}
	return info
}

// attestations discovers the VEX attestations of the job's digest in the
// repository ref was pulled from, once per digest and run: the jobs of
// the digest's other platforms share the answer. ok is false when the
// discovery failed (logged, without secrets): the result then records none
// and does not claim the discovery ran.
func (w *Worker) attestations(ctx context.Context, job contract.ScanJob, ref string, log *zap.Logger) ([]contract.VEXAttestation, bool) {
	return w.attest.do(ctx, job.RunID, job.Digest, func() ([]contract.VEXAttestation, bool) {
		actx, cancel := context.WithTimeout(ctx, w.cfg.ScanTimeout)
		defer cancel()
		atts, err := w.finder.VEXAttestations(actx, ref, job.Digest)
		if err != nil {
			log.Warn("VEX attestation lookup failed; the result records none and the image is scanned again next run",
				zap.String("reference", ref), zap.Error(err))
			return nil, false
		}
		if len(atts) > 0 {
			sources := make([]string, 0, len(atts))
			for _, a := range atts {
				sources = append(sources, a.Source)
			}
			log.Info("VEX attestations found", zap.Strings("attestations", sources))
		}
		return atts, true
	})
}

// maxMemo bounds the digests attestMemo remembers.
const maxMemo = 1024

// attestMemo shares one attestation discovery between the jobs of one
// digest in one run (one per platform), including those running at the
// same time. A new run looks again.
type attestMemo struct {
	mu sync.Mutex
	m  map[string]*attestCall
}

type attestCall struct {
	run  string
	done chan struct{}
	atts []contract.VEXAttestation
	ok   bool
}

// do returns the answer of run's discovery of digest, running find if no
// job of the run asked yet.
func (m *attestMemo) do(ctx context.Context, run, digest string, find func() ([]contract.VEXAttestation, bool)) ([]contract.VEXAttestation, bool) {
	m.mu.Lock()
	if c, ok := m.m[digest]; ok && c.run == run {
		m.mu.Unlock()
		select {
		case <-c.done:
			return c.atts, c.ok
		case <-ctx.Done():
			return nil, false
		}
	}
	if m.m == nil {
		m.m = map[string]*attestCall{}
	}
	if len(m.m) >= maxMemo {
		m.evict(run)
	}
	c := &attestCall{run: run, done: make(chan struct{})}
	m.m[digest] = c
	m.mu.Unlock()
	defer close(c.done)
	c.atts, c.ok = find()
	return c.atts, c.ok
}

// evict forgets finished discoveries: those of other runs, and all of them
// if that is not enough.
func (m *attestMemo) evict(run string) {
	for _, all := range []bool{false, true} {
		for d, c := range m.m {
			select {
			case <-c.done:
				if all || c.run != run {
					delete(m.m, d)
				}
			default:
			}
		}
		if len(m.m) < maxMemo {
			return
		}
	}
}

// finderOf is the attestation finder of a worker with --vex-oci: the one
// given, else the scanner's.
func finderOf(deps Deps) (scan.AttestationFinder, bool) {
	if deps.Attestations != nil {
		return deps.Attestations, true
	}
	f, ok := deps.Scanner.(scan.AttestationFinder)
	return f, ok
}
