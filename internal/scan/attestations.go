package scan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"go.uber.org/zap"

	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	tremote "github.com/aquasecurity/trivy/pkg/remote"
	xhttp "github.com/aquasecurity/trivy/pkg/x/http"

	"github.com/fleetscan/fleetscan/internal/logging"
	"github.com/fleetscan/fleetscan/internal/vex"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// Bounds on what a registry can make attestation discovery fetch, as
// Trivy's (cosign caps an image at 100 attestations; OpenVEX documents are
// a few MB at most).
const (
	maxAttestations    = 100
	maxAttestationSize = 20 << 20
)

// AttestationFinder discovers the VEX attestations attached to an image.
// *Trivy implements it.
type AttestationFinder interface {
	// VEXAttestations returns the OpenVEX documents attached to digest in
	// the repository of ref. An error means the discovery did not complete
	// (registry unreachable, denied, failing): nothing is returned then.
	VEXAttestations(ctx context.Context, ref, digest string) ([]contract.VEXAttestation, error)
}

var _ AttestationFinder = (*Trivy)(nil)

// VEXAttestations discovers the OpenVEX attestations attached to digest in
// the repository of ref (a reference the image was pulled from), the way
// Trivy's `--vex oci` does: the OCI 1.1 referrers of the digest first (the
// registry's Referrers API, or the referrers tag schema where the registry
// lacks it), keeping those whose artifact type may hold an attestation —
// OpenVEX, in-toto, DSSE envelope, Sigstore bundle — and whose announced
// predicate type, if any, is OpenVEX; then, when no referrer held one, the
// legacy cosign tag "sha256-<hex>.att" and its DSSE envelope layers. Unlike
// Trivy, which stops at the first document, every OpenVEX document found
// is returned (the reporter lets the newest statement win).
//
// It reads the registry with the credentials, TLS settings and transport
// the scans use. An attestation that cannot be fetched or does not decode
// is skipped with a warning naming its digest; a failure of the discovery
// itself (the referrers or the tag cannot be read) is returned, scrubbed of
// known secrets.
func (t *Trivy) VEXAttestations(ctx context.Context, ref, digest string) ([]contract.VEXAttestation, error) {
	insecure := hostSet(t.cfg.InsecureRegistries)
	pinned, registry, err := pin(ref, digest, insecure)
	if err != nil {
		return nil, err
	}
	opts := []name.Option{name.WeakValidation}
	if insecure.match(registry) {
		opts = append(opts, name.Insecure)
	}
	d, err := name.NewDigest(pinned, opts...)
	if err != nil {
		return nil, fmt.Errorf("reference %q: %w", pinned, err)
	}
	regOpts := t.registryOptions(registry, contract.Platform{})
	regOpts.Platform = ftypes.Platform{} // attestations are single manifests
	base := t.secure
	if regOpts.Insecure {
		base = t.insecure
	}
	ctx = xhttp.WithTransport(ctx, &scanTransport{base: base, ctx: ctx, userAgent: t.ua, stats: &fetchStats{}})
	log := t.log.With(logging.Digest(digest))

	atts, err := t.referrerVEX(ctx, d, regOpts, log)
	if err == nil && len(atts) == 0 {
		atts, err = t.legacyVEX(ctx, d, regOpts, log)
	}
	if err != nil {
		return nil, t.scrub(err)
	}
	return atts, nil
}

// referrerVEX reads the OpenVEX documents of digest's referrers. A registry
// that answers the Referrers API with "unsupported" and has no referrers tag
// yields none.
func (t *Trivy) referrerVEX(ctx context.Context, d name.Digest, opts ftypes.RegistryOptions, log *zap.Logger) ([]contract.VEXAttestation, error) {
	idx, err := tremote.Referrers(ctx, d, opts)
	if err != nil {
		if referrersUnsupported(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("referrers of %s: %w", d, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("referrers of %s: %w", d, err)
	}
	var out []contract.VEXAttestation
	for _, desc := range vexCandidates(m.Manifests) {
		ref := d.Context().Digest(desc.Digest.String())
		doc, err := fetchReferrer(ctx, ref, opts)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			if errors.Is(err, vex.ErrNotOpenVEX) {
				log.Debug("referrer is not an OpenVEX attestation", zap.String("attestation", ref.String()), zap.Error(err))
			} else {
				log.Warn("VEX attestation skipped", zap.String("attestation", ref.String()), zap.Error(t.scrub(err)))
			}
			continue
		}
		out = append(out, contract.VEXAttestation{Source: ref.String(), Document: doc})
	}
	return out, nil
}

// vexCandidates narrows referrers to those that may hold an OpenVEX
// document, in registry order, as Trivy does: an attestation type only, and
// since one type covers every kind of attestation, the optional in-toto
// predicate-type annotation decides: announced as OpenVEX, kept (and then
// the unannotated ones are dropped); announced as anything else, dropped
// unread; unannotated, kept only when none is announced as OpenVEX. An
// OpenVEX artifact type counts as announced. At most maxAttestations.
func vexCandidates(descs []v1.Descriptor) []v1.Descriptor {
	var announced, unannotated []v1.Descriptor
	for _, desc := range descs {
		if !slices.Contains(vex.AttestationArtifactTypes, desc.ArtifactType) {
			continue
		}
		pt, ok := desc.Annotations[vex.PredicateTypeAnnotation]
		switch {
		case desc.ArtifactType == vex.OpenVEXArtifactType || ok && vex.IsOpenVEXPredicateType(pt):
			announced = append(announced, desc)
		case !ok:
			unannotated = append(unannotated, desc)
		}
	}
	out := unannotated
	if len(announced) > 0 {
		out = announced
	}
	return out[:min(len(out), maxAttestations)]
}

// fetchReferrer reads a referrer artifact's single layer and returns the
// OpenVEX document it holds.
func fetchReferrer(ctx context.Context, ref name.Digest, opts ftypes.RegistryOptions) ([]byte, error) {
	layers, err := attestationLayers(ctx, ref, opts)
	if err != nil {
		return nil, err
	}
	if len(layers) != 1 {
		return nil, fmt.Errorf("attestation %s: %d layers, want 1", ref, len(layers))
	}
	doc, err := decodeLayer(layers[0])
	if err != nil {
		return nil, fmt.Errorf("attestation %s: %w", ref, err)
	}
	return doc, nil
}

// legacyVEX reads the OpenVEX documents of the cosign attestation tag
// "sha256-<hex>.att": one DSSE envelope per layer (one per `cosign attest`).
// No such tag means no attestation.
func (t *Trivy) legacyVEX(ctx context.Context, d name.Digest, opts ftypes.RegistryOptions, log *zap.Logger) ([]contract.VEXAttestation, error) {
	tag := d.Context().Tag(strings.Replace(d.DigestStr(), ":", "-", 1) + ".att")
	layers, err := attestationLayers(ctx, tag, opts)
	if err != nil {
		if notFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("attestation tag %s: %w", tag, err)
	}
	if len(layers) > maxAttestations {
		return nil, fmt.Errorf("attestation tag %s: %d layers (at most %d)", tag, len(layers), maxAttestations)
	}
	var out []contract.VEXAttestation
	for _, l := range layers {
		doc, err := decodeLayer(l)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			ld, _ := l.Digest()
			if errors.Is(err, vex.ErrNotOpenVEX) {
				log.Debug("attestation layer is not OpenVEX", zap.String("attestation", tag.String()), zap.Stringer("layer", ld), zap.Error(err))
			} else {
				log.Warn("VEX attestation skipped", zap.String("attestation", tag.String()), zap.Stringer("layer", ld), zap.Error(t.scrub(err)))
			}
			continue
		}
		out = append(out, contract.VEXAttestation{Source: tag.String(), Document: doc})
	}
	return out, nil
}

// attestationLayers reads the manifest at ref and lists its layers.
func attestationLayers(ctx context.Context, ref name.Reference, opts ftypes.RegistryOptions) ([]v1.Layer, error) {
	desc, err := tremote.Get(ctx, ref, opts)
	if err != nil {
		return nil, err
	}
	img, err := desc.Image()
	if err != nil {
		return nil, err
	}
	return img.Layers()
}

// decodeLayer reads one attestation layer (at most maxAttestationSize
// bytes) and returns its OpenVEX document.
func decodeLayer(l v1.Layer) ([]byte, error) {
	rc, err := l.Uncompressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxAttestationSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxAttestationSize {
		return nil, fmt.Errorf("larger than %d MiB", maxAttestationSize>>20)
	}
	return vex.DecodeAttestation(data)
}

// scrub removes known secrets from an error.
func (t *Trivy) scrub(err error) error {
	return &scanError{msg: redactor(t.keyring().secrets()).redact(err.Error()), cause: err}
}

// referrersUnsupported reports an answer of a registry without the
// Referrers API that go-containerregistry does not already take as one
// (it reads the referrers tag on 400, 404 and 406).
func referrersUnsupported(err error) bool {
	return statusIn(err, http.StatusNotFound, http.StatusBadRequest, http.StatusMethodNotAllowed,
		http.StatusNotAcceptable, http.StatusNotImplemented)
}

// notFound reports a missing manifest or repository.
func notFound(err error) bool {
	if statusIn(err, http.StatusNotFound) {
		return true
	}
	var te *transport.Error
	return errors.As(err, &te) && slices.ContainsFunc(te.Errors, func(d transport.Diagnostic) bool {
		return d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode
	})
}

func statusIn(err error, codes ...int) bool {
	var te *transport.Error
	return errors.As(err, &te) && slices.Contains(codes, te.StatusCode)
}
