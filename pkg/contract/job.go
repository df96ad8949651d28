package contract

import (
	"errors"
	"time"
)

// ScanJob asks a worker to scan one unique image digest on one platform.
type ScanJob struct {
	SchemaVersion string `json:"schemaVersion"`
	// RunID is the dispatcher run that published the job first.
	RunID string `json:"runId"`
	// Cycle groups the runs of one scan period (by default the UTC date). A
	// key is stored once per cycle however many dispatchers publish it.
	Cycle string `json:"cycle"`
	ImageKey
	// Reference is a pullable reference pinned by digest
	// ("registry/repo@sha256:..."), the preferred place to pull from.
	Reference string `json:"reference"`
	// AltReferences carry the same digest in other repositories (mirrors,
	// retags); a worker tries them in order when Reference fails.
	AltReferences []string `json:"altReferences,omitempty"`
	// Rescan asks the worker to scan in full (from the registry) even if
	// a reusable result exists (dispatcher --rescan).
	Rescan     bool      `json:"rescan,omitempty"`
	EnqueuedAt time.Time `json:"enqueuedAt"`
}

// NewScanJob returns a job with the current schema version.
func NewScanJob(runID, cycle string, key ImageKey, ref string, alts []string, now time.Time) ScanJob {
	return ScanJob{
		SchemaVersion: JobSchemaVersion,
		RunID:         runID,
		Cycle:         cycle,
		ImageKey:      key,
		Reference:     ref,
		AltReferences: alts,
		EnqueuedAt:    now.UTC(),
	}
}

func (j *ScanJob) schemaVersion() string { return j.SchemaVersion }
func (j *ScanJob) kind() string          { return "scan job" }

func (j *ScanJob) validate() error {
	const k = "scan job"
	if err := required(k, "runId", j.RunID); err != nil {
		return err
	}
	if err := required(k, "cycle", j.Cycle); err != nil {
		return err
	}
	if !ValidDigest(j.Digest) {
		return &DecodeError{Kind: k, Field: "digest", Err: errors.New("not an OCI digest (want sha256:<64 hex>)")}
	}
	if j.Platform.OS == "" {
		return &DecodeError{Kind: k, Field: "platform.os", Err: errors.New("required")}
	}
	if j.Platform.Architecture == "" {
		return &DecodeError{Kind: k, Field: "platform.architecture", Err: errors.New("required")}
	}
	return required(k, "reference", j.Reference)
}

// ID is the job's Nats-Msg-Id: the key's id in its cycle, so the jobs of
// one cycle deduplicate; a rescan job is its run's own, so that asking for
// a rescan is never dropped as a duplicate of the cycle's earlier job.
func (j ScanJob) ID() string {
	if j.Rescan {
		return j.MsgID(j.Cycle + "|rescan|" + j.RunID)
	}
	return j.MsgID(j.Cycle)
}

// Encode renders the job as JSON.
func (j ScanJob) Encode() ([]byte, error) {
	if j.SchemaVersion == "" {
		j.SchemaVersion = JobSchemaVersion
	}
	return encode(j)
}

// DecodeScanJob parses and validates a job.
func DecodeScanJob(data []byte) (ScanJob, error) {
	var j ScanJob
	err := decode(data, &j)
	return j, err
}
