package contract

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"time"
)

// ScannerIdentity is what the workers scan with: scanner, options and the
// vulnerability DB they have open. Workers publish it when they start and
// whenever they switch DBs; the dispatcher compares it with the fingerprint
// of each stored result to skip images whose result a scan would only
// reproduce.
type ScannerIdentity struct {
	SchemaVersion string      `json:"schemaVersion"`
	Scanner       ScannerInfo `json:"scanner"`
	DB            DBInfo      `json:"db"`
	// Worker names the process that published it.
	Worker      string    `json:"worker,omitempty"`
	PublishedAt time.Time `json:"publishedAt"`
}

func (i *ScannerIdentity) schemaVersion() string { return i.SchemaVersion }
func (i *ScannerIdentity) kind() string          { return "scanner identity" }

func (i *ScannerIdentity) validate() error {
	const k = "scanner identity"
	if err := required(k, "scanner.name", i.Scanner.Name); err != nil {
		return err
	}
	if err := required(k, "scanner.version", i.Scanner.Version); err != nil {
		return err
	}
	if i.DB.UpdatedAt.IsZero() {
		return &DecodeError{Kind: k, Field: "db.updatedAt", Err: errors.New("required")}
	}
	return requiredTime(k, "publishedAt", i.PublishedAt)
}

// Fingerprint identifies the scanner and DB this identity scans with.
func (i ScannerIdentity) Fingerprint() string { return Fingerprint(i.Scanner, i.DB) }

// Encode renders the identity as JSON.
func (i ScannerIdentity) Encode() ([]byte, error) {
	if i.SchemaVersion == "" {
		i.SchemaVersion = IdentitySchemaVersion
	}
	return encode(i)
}

// DecodeScannerIdentity parses and validates an identity.
func DecodeScannerIdentity(data []byte) (ScannerIdentity, error) {
	var i ScannerIdentity
	err := decode(data, &i)
	return i, err
}

// Fingerprint hashes what makes two scans of one image agree: the scanner's
// name, version and options, and the DB's schema version and build time.
// Results with equal fingerprints are interchangeable.
func Fingerprint(s ScannerInfo, db DBInfo) string {
	h := sha256.New()
	for _, part := range []string{s.Name, s.Version, s.Options, strconv.Itoa(db.Version), db.UpdatedAt.UTC().Format(time.RFC3339Nano)} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Fingerprint is the result's scanner-and-DB fingerprint; empty for a
// failure, which is never reused.
func (r ScanResult) Fingerprint() string {
	if r.Status != StatusScanned {
		return ""
	}
	return Fingerprint(r.Scanner, r.DB)
}
