package contract

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ResultStatus is the outcome of a scan job.
type ResultStatus string

const (
	StatusScanned ResultStatus = "scanned"
	StatusFailed  ResultStatus = "failed"
)

// FailureClass classifies why a scan failed. Retryable classes are retried
// with backoff up to the delivery budget; permanent ones are recorded at once.
type FailureClass string

const (
	FailureNotFound     FailureClass = "not_found"
	FailureUnauthorized FailureClass = "unauthorized"
	FailureRateLimited  FailureClass = "rate_limited"
	FailureTimeout      FailureClass = "timeout"
	FailureUnsupported  FailureClass = "unsupported"
	FailureInternal     FailureClass = "internal"
	// FailureUnreachable: the registry could not be reached at all (the
	// connection was refused, its name does not resolve). Retried on a
	// short time budget, then recorded.
	FailureUnreachable FailureClass = "unreachable"
	// FailureInvalidJob marks a message on the jobs subject that is not a
	// decodable scan job (poison message).
	FailureInvalidJob FailureClass = "invalid_job"
)

// FailureClasses lists every class, in a stable order.
var FailureClasses = []FailureClass{
	FailureNotFound, FailureUnauthorized, FailureRateLimited, FailureTimeout,
	FailureUnsupported, FailureInternal, FailureInvalidJob, FailureUnreachable,
}

// Retryable reports whether a failure of this class may succeed if retried.
func (c FailureClass) Retryable() bool {
	switch c {
	case FailureRateLimited, FailureTimeout, FailureInternal, FailureUnreachable:
		return true
	}
	return false
}

// Valid reports whether c is a known class.
func (c FailureClass) Valid() bool {
	for _, k := range FailureClasses {
		if c == k {
			return true
		}
	}
	return false
}

// Failure describes a scan that did not produce findings.
type Failure struct {
	Class  FailureClass `json:"class"`
	Reason string       `json:"reason"`
	// Attempts is how many deliveries the job got before it was recorded.
	Attempts int `json:"attempts,omitempty"`
}

// ScannerInfo names the scanner that produced a result.
type ScannerInfo struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Options fingerprints the scan options that change findings, so a
	// result is only reused under the same options.
	Options string `json:"options,omitempty"`
}

// DBInfo identifies the vulnerability database a result was computed with.
type DBInfo struct {
	Version      int       `json:"version"`
	UpdatedAt    time.Time `json:"updatedAt"`
	NextUpdate   time.Time `json:"nextUpdate,omitzero"`
	DownloadedAt time.Time `json:"downloadedAt,omitzero"`
}

// OSInfo is the operating system detected in the image.
type OSInfo struct {
	Family string `json:"family"`
	Name   string `json:"name"`
	// EOSL is true when the distribution is past its end of support.
	EOSL bool `json:"eosl,omitempty"`
}

// CVSS is the score used for ranking, from the source Trivy prefers.
type CVSS struct {
	Source string  `json:"source,omitempty"`
	Score  float64 `json:"score"`
	Vector string  `json:"vector,omitempty"`
}

// Finding is one vulnerability in one package of an image.
type Finding struct {
	VulnerabilityID string `json:"vulnerabilityId"`
	PkgName         string `json:"pkgName"`
	PkgVersion      string `json:"pkgVersion"`
	PkgPath         string `json:"pkgPath,omitempty"`
	PkgType         string `json:"pkgType,omitempty"`  // alpine, debian, npm, pip, gobinary, jar, ...
	PkgClass        string `json:"pkgClass,omitempty"` // os-pkgs or lang-pkgs
	// PkgPURL is the package URL Trivy gives the package
	// ("pkg:apk/alpine/openssl@3.1.2-r0?arch=x86_64&distro=3.18.4"), the
	// subcomponent VEX statements name (schema 1.1). Results written before
	// 1.1 lack it: PURL computes it from type, name and version.
	PkgPURL          string     `json:"pkgPurl,omitempty"`
	Target           string     `json:"target,omitempty"`
	FixedVersion     string     `json:"fixedVersion,omitempty"`
	Status           string     `json:"status,omitempty"` // fixed, affected, will_not_fix, ...
	Severity         string     `json:"severity"`
	SeveritySource   string     `json:"severitySource,omitempty"`
	Title            string     `json:"title,omitempty"`
	Description      string     `json:"description,omitempty"`
	CVSS             *CVSS      `json:"cvss,omitempty"`
	PublishedDate    *time.Time `json:"publishedDate,omitempty"`
	LastModifiedDate *time.Time `json:"lastModifiedDate,omitempty"`
	PrimaryURL       string     `json:"primaryUrl,omitempty"`
	References       []string   `json:"references,omitempty"`
	// LayerDigest is the layer that introduced the package, when known.
	LayerDigest string `json:"layerDigest,omitempty"`
}

// ScanResult is the single outcome of a scan job: findings, or a failure.
type ScanResult struct {
	SchemaVersion string `json:"schemaVersion"`
	RunID         string `json:"runId"`
	Cycle         string `json:"cycle"`
	ImageKey
	// Reference is what was actually pulled (may be a mirror).
	Reference   string       `json:"reference,omitempty"`
	Status      ResultStatus `json:"status"`
	Failure     *Failure     `json:"failure,omitempty"`
	StartedAt   time.Time    `json:"startedAt,omitzero"`
	CompletedAt time.Time    `json:"completedAt"`
	Scanner     ScannerInfo  `json:"scanner"`
	DB          DBInfo       `json:"db"`
	OS          *OSInfo      `json:"os,omitempty"`
	Findings    []Finding    `json:"findings"`
	// Worker names the process that produced the result (host/pod name).
	Worker string `json:"worker,omitempty"`
	// Reused is true when the result was carried over from an earlier scan
	// with the same database and scanner.
	Reused bool `json:"reused,omitempty"`
	// VEXAttestations are the OpenVEX documents attached to the image in
	// its registry (OCI referrers or the legacy attestation tag), found
	// when the worker runs with --vex-oci (schema 1.2). A result whose
	// lookup completed, attestations found or not, has "vex-oci=on" among
	// its Scanner.Options, so it is only reused under --vex-oci.
	VEXAttestations []VEXAttestation `json:"vexAttestations,omitempty"`
}

// VEXAttestation is one OpenVEX document attached to an image.
type VEXAttestation struct {
	// Source is where it was found: the attestation's manifest reference,
	// "<registry>/<repository>@sha256:..." for a referrer or
	// "<registry>/<repository>:sha256-<hex>.att" for the cosign tag.
	Source string `json:"source"`
	// Document is the OpenVEX JSON document (the in-toto predicate).
	Document json.RawMessage `json:"document"`
}

// NewFailedResult builds the failure record for a job.
func NewFailedResult(job ScanJob, class FailureClass, reason string, attempts int, now time.Time) ScanResult {
	return ScanResult{
		SchemaVersion: ResultSchemaVersion,
		RunID:         job.RunID,
		Cycle:         job.Cycle,
		ImageKey:      job.ImageKey,
		Reference:     job.Reference,
		Status:        StatusFailed,
		Failure:       &Failure{Class: class, Reason: reason, Attempts: attempts},
		CompletedAt:   now.UTC(),
		Findings:      []Finding{},
	}
}

func (r *ScanResult) schemaVersion() string { return r.SchemaVersion }
func (r *ScanResult) kind() string          { return "scan result" }

func (r *ScanResult) validate() error {
	const k = "scan result"
	if !ValidDigest(r.Digest) {
		return &DecodeError{Kind: k, Field: "digest", Err: errors.New("not an OCI digest")}
	}
	if r.Platform.OS == "" || r.Platform.Architecture == "" {
		return &DecodeError{Kind: k, Field: "platform", Err: errors.New("os and architecture are required")}
	}
	if err := required(k, "cycle", r.Cycle); err != nil {
		return err
	}
	if err := requiredTime(k, "completedAt", r.CompletedAt); err != nil {
		return err
	}
	switch r.Status {
	case StatusScanned:
		if r.Failure != nil {
			return &DecodeError{Kind: k, Field: "failure", Err: errors.New("must be absent when status is scanned")}
		}
	case StatusFailed:
		if r.Failure == nil {
			return &DecodeError{Kind: k, Field: "failure", Err: errors.New("required when status is failed")}
		}
		if !r.Failure.Class.Valid() {
			return &DecodeError{Kind: k, Field: "failure.class", Err: fmt.Errorf("unknown class %q", r.Failure.Class)}
		}
	default:
		return &DecodeError{Kind: k, Field: "status", Err: fmt.Errorf("unknown status %q (want scanned or failed)", r.Status)}
	}
	for i, f := range r.Findings {
		if f.VulnerabilityID == "" {
			return &DecodeError{Kind: k, Field: fmt.Sprintf("findings[%d].vulnerabilityId", i), Err: errors.New("required")}
		}
		if f.PkgName == "" {
			return &DecodeError{Kind: k, Field: fmt.Sprintf("findings[%d].pkgName", i), Err: errors.New("required")}
		}
	}
	return nil
}

// Encode renders the result as JSON.
func (r ScanResult) Encode() ([]byte, error) {
	if r.SchemaVersion == "" {
		r.SchemaVersion = ResultSchemaVersion
	}
	if r.Findings == nil {
		r.Findings = []Finding{}
	}
	return encode(r)
}

// DecodeScanResult parses and validates a result.
func DecodeScanResult(data []byte) (ScanResult, error) {
	return DecodeScanResultWith(data, json.Unmarshal)
}

// DecodeScanResultWith is DecodeScanResult parsing with unmarshal instead
// of json.Unmarshal, validating the result and reporting errors the same
// way. unmarshal must behave as json.Unmarshal (the same errors) except in
// which fields it fills: a reader that needs only part of a result passes
// one that skips the fields it never reads (encoding/json/v2 with the v1
// options and type-specific unmarshalers), so they are never allocated.
// The fields validation reads must be kept.
func DecodeScanResultWith(data []byte, unmarshal func(data []byte, v any) error) (ScanResult, error) {
	var r ScanResult
	err := decodeWith(data, &r, unmarshal)
	return r, err
}
