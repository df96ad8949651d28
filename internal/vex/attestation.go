package vex

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Media and artifact types of the attestations an image may carry, as
// Trivy's OCI VEX discovery (pkg/vex/oci) knows them.
const (
	// SigstoreBundleArtifactType is a cosign v3 attestation: a Sigstore
	// bundle holding a DSSE envelope.
	SigstoreBundleArtifactType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// DSSEEnvelopeArtifactType is a bare DSSE envelope (cosign v2 `.att`
	// layers, some referrers).
	DSSEEnvelopeArtifactType = "application/vnd.dsse.envelope.v1+json"
	// InTotoArtifactType is the generic in-toto type (Docker Scout, ...):
	// a DSSE envelope or a bare in-toto statement.
	InTotoArtifactType = "application/vnd.in-toto+json"
	// OpenVEXArtifactType is an OpenVEX document attached as is.
	OpenVEXArtifactType = "application/vnd.openvex+json"
	// PredicateTypeAnnotation announces an attestation's in-toto predicate
	// type on its referrer descriptor (optional).
	PredicateTypeAnnotation = "in-toto.io/predicate-type"
	// inTotoPayloadType is the DSSE payload type of an in-toto statement.
	inTotoPayloadType = "application/vnd.in-toto+json"
)

// AttestationArtifactTypes are the referrer artifact types that may carry
// an OpenVEX document.
var AttestationArtifactTypes = []string{SigstoreBundleArtifactType, DSSEEnvelopeArtifactType, InTotoArtifactType, OpenVEXArtifactType}

// IsOpenVEXPredicateType reports whether an in-toto predicate type names
// OpenVEX: "https://openvex.dev/ns" or a versioned "https://openvex.dev/ns/v0.2.0"
// (not a look-alike such as "https://openvex.dev/nsx").
func IsOpenVEXPredicateType(t string) bool {
	return t == OpenVEXPredicateType || strings.HasPrefix(t, OpenVEXPredicateType+"/")
}

// ErrNotOpenVEX is returned for a well-formed attestation whose predicate
// is not OpenVEX (an SBOM, SLSA provenance, ...).
var ErrNotOpenVEX = errors.New("not an OpenVEX attestation")

// DecodeAttestation returns the OpenVEX document an attestation carries:
// the predicate of an in-toto statement, bare, in a DSSE envelope or in a
// Sigstore bundle's envelope, or an OpenVEX document attached as is. The
// layout is detected from the content, as Trivy does: a "dsseEnvelope"
// marks a bundle, a "payloadType" an envelope, an "_type" a statement. It
// returns ErrNotOpenVEX (wrapped) for another kind of attestation and a
// descriptive error for one that does not decode; the document returned
// parses as OpenVEX.
func DecodeAttestation(data []byte) ([]byte, error) {
	var probe struct {
		Bundle      json.RawMessage `json:"dsseEnvelope"`
		PayloadType string          `json:"payloadType"`
		Type        string          `json:"_type"`
		Context     string          `json:"@context"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("attestation is not a JSON object: %w", err)
	}
	var doc []byte
	var err error
	switch {
	case len(probe.Bundle) > 0:
		doc, err = envelopePredicate(probe.Bundle)
	case probe.PayloadType != "":
		doc, err = envelopePredicate(data)
	case probe.Type != "":
		doc, err = statementPredicate(data)
	case strings.HasPrefix(probe.Context, OpenVEXPredicateType):
		doc = bytes.TrimSpace(data)
	default:
		return nil, errors.New("unknown attestation format: neither a Sigstore bundle, a DSSE envelope, an in-toto statement nor an OpenVEX document")
	}
	if err != nil {
		return nil, err
	}
	if _, err := parseOpenVEX(doc, "attestation"); err != nil {
		return nil, err
	}
	return doc, nil
}

// envelopePredicate decodes a DSSE envelope whose payload is an in-toto
// statement and returns its OpenVEX predicate.
func envelopePredicate(data []byte) ([]byte, error) {
	var env struct {
		PayloadType string `json:"payloadType"`
		Payload     string `json:"payload"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, fmt.Errorf("DSSE envelope: %w", err)
	}
	if env.PayloadType != inTotoPayloadType {
		return nil, fmt.Errorf("DSSE envelope: payload type %q is not %s: %w", env.PayloadType, inTotoPayloadType, ErrNotOpenVEX)
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, fmt.Errorf("DSSE envelope: payload is not base64: %w", err)
	}
	return statementPredicate(payload)
}

// statementPredicate returns the OpenVEX predicate of an in-toto statement.
func statementPredicate(data []byte) ([]byte, error) {
	var st struct {
		PredicateType string          `json:"predicateType"`
		Predicate     json.RawMessage `json:"predicate"`
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("in-toto statement: %w", err)
	}
	if !IsOpenVEXPredicateType(st.PredicateType) {
		return nil, fmt.Errorf("in-toto predicate type %q: %w", st.PredicateType, ErrNotOpenVEX)
	}
	p := bytes.TrimSpace(st.Predicate)
	if len(p) == 0 || bytes.Equal(p, []byte("null")) {
		return nil, errors.New("in-toto statement: OpenVEX predicate is empty")
	}
	return p, nil
}
