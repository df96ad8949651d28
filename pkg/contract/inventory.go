package contract

import (
	"errors"
	"fmt"
	"time"
)

// ContainerKind distinguishes regular, init and ephemeral containers.
type ContainerKind string

const (
	ContainerRegular   ContainerKind = "container"
	ContainerInit      ContainerKind = "init"
	ContainerEphemeral ContainerKind = "ephemeral"
)

// Resolution says how an entry's digest was obtained.
type Resolution string

const (
	// ResolvedStatus: the manifest digest from the container status imageID.
	ResolvedStatus Resolution = "status"
	// ResolvedSpec: the spec image was already pinned by digest.
	ResolvedSpec Resolution = "spec"
	// ResolvedFromTag: the spec tag was resolved against its registry at
	// dispatch time (may differ from what the kubelet pulled).
	ResolvedFromTag Resolution = "resolved-from-tag"
	// Unresolved: no digest could be determined; Reason says why.
	Unresolved Resolution = "unresolved"
)

// Workload is the controller that owns a pod (Deployment, StatefulSet,
// DaemonSet, Job, CronJob) or the pod itself when bare.
type Workload struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Inferred is true when the owner could not be looked up (an inventory
	// file without ReplicaSets or Jobs) and Kind/Name were derived from
	// naming conventions: a ReplicaSet name minus its pod-template-hash for a
	// Deployment, a Job name minus its schedule suffix for a CronJob.
	Inferred bool `json:"inferred,omitempty"`
}

// InventoryEntry is one container of one pod and the image it runs.
type InventoryEntry struct {
	Namespace     string        `json:"namespace"`
	Pod           string        `json:"pod"`
	Node          string        `json:"node,omitempty"`
	Workload      Workload      `json:"workload"`
	Container     string        `json:"container"`
	ContainerKind ContainerKind `json:"containerKind"`
	// Image is the normalised spec reference (docker.io/library/nginx:1.25).
	Image string `json:"image"`
	// ImageID is the raw status imageID as the runtime reported it.
	ImageID    string     `json:"imageId,omitempty"`
	Digest     string     `json:"digest,omitempty"`
	Platform   Platform   `json:"platform"`
	Resolution Resolution `json:"resolution"`
	// Reason explains an unresolved entry.
	Reason string `json:"reason,omitempty"`
}

// Key returns the entry's dedup key; ok is false for unresolved entries.
func (e InventoryEntry) Key() (ImageKey, bool) {
	if e.Digest == "" {
		return ImageKey{}, false
	}
	return ImageKey{Digest: e.Digest, Platform: e.Platform}, true
}

// Inventory is the snapshot of what one cluster runs, taken by one
// dispatcher run. Encode writes it as one document; the dispatcher stores
// it chunked (InventoryEncoder), which InventoryDecoder reads, as it reads
// single documents.
type Inventory struct {
	SchemaVersion string           `json:"schemaVersion"`
	RunID         string           `json:"runId"`
	Cycle         string           `json:"cycle"`
	Cluster       string           `json:"cluster"`
	CollectedAt   time.Time        `json:"collectedAt"`
	Pods          int              `json:"pods"`
	Entries       []InventoryEntry `json:"entries"`
}

func (v *Inventory) schemaVersion() string { return v.SchemaVersion }
func (v *Inventory) kind() string          { return "inventory" }

func (v *Inventory) validate() error {
	const k = "inventory"
	if err := required(k, "runId", v.RunID); err != nil {
		return err
	}
	if err := required(k, "cluster", v.Cluster); err != nil {
		return err
	}
	if err := requiredTime(k, "collectedAt", v.CollectedAt); err != nil {
		return err
	}
	for i := range v.Entries {
		if err := validateEntry(&v.Entries[i]); err != nil {
			return &DecodeError{Kind: k, Field: fmt.Sprintf("entries[%d].%s", i, err.field), Err: err.err}
		}
	}
	return nil
}

// Encode renders the inventory as JSON.
func (v Inventory) Encode() ([]byte, error) {
	if v.SchemaVersion == "" {
		v.SchemaVersion = InventorySchemaVersion
	}
	if v.Entries == nil {
		v.Entries = []InventoryEntry{}
	}
	return encode(v)
}

// DecodeInventory parses and validates an inventory.
func DecodeInventory(data []byte) (Inventory, error) {
	var v Inventory
	err := decode(data, &v)
	return v, err
}

// ClusterStatus records whether a cluster could be enumerated in a run.
type ClusterStatus struct {
	Name       string `json:"name"`
	OK         bool   `json:"ok"`
	Error      string `json:"error,omitempty"`
	Pods       int    `json:"pods"`
	Containers int    `json:"containers"`
	Unresolved int    `json:"unresolved"`
}

// RunManifest describes one dispatcher run: which clusters it covered and
// which image keys it expects results for.
type RunManifest struct {
	SchemaVersion string          `json:"schemaVersion"`
	RunID         string          `json:"runId"`
	Cycle         string          `json:"cycle"`
	CreatedAt     time.Time       `json:"createdAt"`
	Clusters      []ClusterStatus `json:"clusters"`
	Expected      []ImageKey      `json:"expected"`
	// Published counts jobs stored by this run; Duplicates counts jobs the
	// stream already held for this cycle (published by another dispatcher).
	Published  int `json:"published"`
	Duplicates int `json:"duplicates"`
	// Reused counts expected keys the dispatcher found already answered by
	// a stored result the workers would produce again (same scanner,
	// options and DB): no job was published for them. ReusedKeys lists
	// them; the reporter accepts their stored result whatever run made it.
	Reused     int        `json:"reused"`
	ReusedKeys []ImageKey `json:"reusedKeys,omitempty"`
}

func (m *RunManifest) schemaVersion() string { return m.SchemaVersion }
func (m *RunManifest) kind() string          { return "run manifest" }

func (m *RunManifest) validate() error {
	const k = "run manifest"
	if err := required(k, "runId", m.RunID); err != nil {
		return err
	}
	if err := required(k, "cycle", m.Cycle); err != nil {
		return err
	}
	if err := requiredTime(k, "createdAt", m.CreatedAt); err != nil {
		return err
	}
	for i, c := range m.Clusters {
		if c.Name == "" {
			return &DecodeError{Kind: k, Field: fmt.Sprintf("clusters[%d].name", i), Err: errors.New("required")}
		}
	}
	for i, e := range m.Expected {
		if err := e.Validate(); err != nil {
			return &DecodeError{Kind: k, Field: fmt.Sprintf("expected[%d]", i), Err: err}
		}
	}
	for i, e := range m.ReusedKeys {
		if err := e.Validate(); err != nil {
			return &DecodeError{Kind: k, Field: fmt.Sprintf("reusedKeys[%d]", i), Err: err}
		}
	}
	if m.Reused != len(m.ReusedKeys) && len(m.ReusedKeys) > 0 {
		return &DecodeError{Kind: k, Field: "reused", Err: fmt.Errorf("%d, but reusedKeys lists %d", m.Reused, len(m.ReusedKeys))}
	}
	return nil
}

// Encode renders the manifest as JSON.
func (m RunManifest) Encode() ([]byte, error) {
	if m.SchemaVersion == "" {
		m.SchemaVersion = ManifestSchemaVersion
	}
	if m.Expected == nil {
		m.Expected = []ImageKey{}
	}
	if m.Clusters == nil {
		m.Clusters = []ClusterStatus{}
	}
	return encode(m)
}

// DecodeRunManifest parses and validates a manifest.
func DecodeRunManifest(data []byte) (RunManifest, error) {
	var m RunManifest
	err := decode(data, &m)
	return m, err
}
