package contract

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Platform is an OCI platform: operating system, CPU architecture and
// optional variant ("linux/arm64/v8").
type Platform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant,omitempty"`
}

// DefaultPlatform is used when a node does not label its platform.
var DefaultPlatform = Platform{OS: "linux", Architecture: "amd64"}

// String renders "os/arch[/variant]".
func (p Platform) String() string {
	if p.Variant != "" {
		return p.OS + "/" + p.Architecture + "/" + p.Variant
	}
	return p.OS + "/" + p.Architecture
}

// IsZero reports whether no field is set.
func (p Platform) IsZero() bool { return p == Platform{} }

// ParsePlatform parses "os/arch[/variant]".
func ParsePlatform(s string) (Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return Platform{}, fmt.Errorf("platform %q: want os/arch[/variant]", s)
	}
	p := Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		if parts[2] == "" {
			return Platform{}, fmt.Errorf("platform %q: empty variant", s)
		}
		p.Variant = parts[2]
	}
	return p, nil
}

var digestRE = regexp.MustCompile(`^sha(256:[a-f0-9]{64}|384:[a-f0-9]{96}|512:[a-f0-9]{128})$`)

// ValidDigest reports whether d is an OCI content digest ("sha256:<64 hex>").
func ValidDigest(d string) bool { return digestRE.MatchString(d) }

// ImageKey identifies one unit of scanning work: an image manifest digest on
// a platform. It is the deduplication key across pods, tags and clusters.
type ImageKey struct {
	Digest   string   `json:"digest"`
	Platform Platform `json:"platform"`
}

// String renders "digest@os/arch[/variant]".
func (k ImageKey) String() string { return k.Digest + "@" + k.Platform.String() }

// Validate checks the digest and platform.
func (k ImageKey) Validate() error {
	if !ValidDigest(k.Digest) {
		return fmt.Errorf("digest %q: not an OCI digest (want sha256:<64 hex>)", k.Digest)
	}
	if k.Platform.OS == "" || k.Platform.Architecture == "" {
		return errors.New("platform: os and architecture are required")
	}
	return nil
}

// Token renders the key as a NATS subject fragment of two tokens:
// "<algo>-<hex>.<os>-<arch>[-<variant>]". Characters NATS reserves are
// replaced, so any platform string yields a valid subject.
func (k ImageKey) Token() string {
	d := strings.Replace(k.Digest, ":", "-", 1)
	p := k.Platform.OS + "-" + k.Platform.Architecture
	if k.Platform.Variant != "" {
		p += "-" + k.Platform.Variant
	}
	return subjectSafe(d) + "." + subjectSafe(p)
}

// MsgID is the JetStream Nats-Msg-Id of the scan job for this key in the
// given scan cycle: every dispatcher publishing the same key in the same cycle
// produces the same id, so the jobs stream stores it once.
func (k ImageKey) MsgID(cycle string) string {
	h := sha256.Sum256([]byte(k.Digest + "|" + k.Platform.String() + "|" + cycle))
	return "job-" + hex.EncodeToString(h[:16])
}

func subjectSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '.' || r == '*' || r == '>' || r == '/' || r <= ' ' || r == 0x7f:
			return '_'
		}
		return r
	}, s)
}
