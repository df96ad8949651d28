// Package contract defines the versioned JSON messages that cross the wire
// between fleetscan's dispatcher, workers and reporter: scan jobs, scan
// results, cluster inventories, run manifests and the workers' scanner
// identity.
//
// Every message carries a schemaVersion field of the form "MAJOR.MINOR".
// Decoders accept any minor version of a major they know (new optional fields
// are ignored) and reject unknown majors with an error naming the field, so a
// fleet can be upgraded one component at a time within a major version.
//
// Scanners report why a scan failed with a FailureClass carried by a
// *FailureError (Permanent, Retryable, Classify): the queue retries what is
// retryable and records the rest.
//
// # Stability
//
// This is a public package: programs outside fleetscan import it to read or
// write fleetscan's messages on NATS (a custom dispatcher or scanner, a
// consumer of scan results). Within major version 1 of the messages
// (SupportedMajor) and of this module:
//
//   - the JSON of every message only grows: fields are added as optional
//     ones with a minor schema version bump, never renamed, retyped or
//     removed, and a decoder of this package accepts every minor version;
//   - exported identifiers are not removed or changed incompatibly; new
//     fields, methods, failure classes and functions may be added;
//   - FailureClass values are part of the wire format and are never renamed.
//
// A change an existing reader would misread raises the message's major
// schema version, which older decoders reject with ErrUnsupportedVersion.
package contract

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Schema versions written by this build. Bump the minor for additive changes,
// the major for anything an older reader would misinterpret.
const (
	JobSchemaVersion       = "1.0"
	ResultSchemaVersion    = "1.2" // 1.1: findings[].pkgPurl; 1.2: vexAttestations
	InventorySchemaVersion = "1.2" // 1.1: the chunked form (InventoryEncoder); 1.2: namespaces
	ManifestSchemaVersion  = "1.1" // 1.1: reusedKeys
	IdentitySchemaVersion  = "1.0"

	// SupportedMajor is the only major version this build decodes.
	SupportedMajor = 1
)

// DecodeError reports a message that could not be decoded. Field names the
// offending JSON field (empty when the document itself is malformed).
type DecodeError struct {
	Kind  string // message kind: "scan job", "scan result", ...
	Field string
	Err   error
}

func (e *DecodeError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("decode %s: %v", e.Kind, e.Err)
	}
	return fmt.Sprintf("decode %s: field %q: %v", e.Kind, e.Field, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// ErrUnsupportedVersion is wrapped by DecodeError when the schemaVersion major
// is not one this build understands.
var ErrUnsupportedVersion = errors.New("unsupported schema version")

// versioned is implemented by every message type.
type versioned interface {
	schemaVersion() string
	validate() error
	kind() string
}

// checkVersion validates a "MAJOR.MINOR" schema version string.
func checkVersion(kind, v string) error {
	if v == "" {
		return &DecodeError{Kind: kind, Field: "schemaVersion", Err: errors.New("missing")}
	}
	majorStr, _, _ := strings.Cut(v, ".")
	major, err := strconv.Atoi(majorStr)
	if err != nil {
		return &DecodeError{Kind: kind, Field: "schemaVersion", Err: fmt.Errorf("malformed %q: want MAJOR.MINOR", v)}
	}
	if major != SupportedMajor {
		return &DecodeError{Kind: kind, Field: "schemaVersion", Err: fmt.Errorf("%w %q (this build reads %d.x)", ErrUnsupportedVersion, v, SupportedMajor)}
	}
	return nil
}

// decode unmarshals data into v, checks the schema version and validates the
// required fields. The document is parsed once on the happy path; only when
// it does not fit v is the version peeked at, so a future major with a
// different shape is reported as a version problem, not as a type error.
func decode[T versioned](data []byte, v T) error { return decodeWith(data, v, json.Unmarshal) }

// decodeWith is decode with unmarshal in place of json.Unmarshal.
func decodeWith[T versioned](data []byte, v T, unmarshal func([]byte, any) error) error {
	kind := v.kind()
	if err := unmarshal(data, v); err != nil {
		var head struct {
			SchemaVersion json.RawMessage `json:"schemaVersion"`
		}
		if herr := json.Unmarshal(data, &head); herr != nil {
			return &DecodeError{Kind: kind, Err: fmt.Errorf("not a JSON object: %w", herr)}
		}
		var sv string
		if len(head.SchemaVersion) > 0 && json.Unmarshal(head.SchemaVersion, &sv) != nil {
			return &DecodeError{Kind: kind, Field: "schemaVersion", Err: errors.New("must be a string")}
		}
		if verr := checkVersion(kind, sv); verr != nil {
			return verr
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return &DecodeError{Kind: kind, Field: te.Field, Err: fmt.Errorf("want %s", te.Type)}
		}
		return &DecodeError{Kind: kind, Err: err}
	}
	if err := checkVersion(kind, v.schemaVersion()); err != nil {
		return err
	}
	return v.validate()
}

func encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

func required(kind, field, value string) error {
	if strings.TrimSpace(value) == "" {
		return &DecodeError{Kind: kind, Field: field, Err: errors.New("required")}
	}
	return nil
}

func requiredTime(kind, field string, t time.Time) error {
	if t.IsZero() {
		return &DecodeError{Kind: kind, Field: field, Err: errors.New("required")}
	}
	return nil
}
