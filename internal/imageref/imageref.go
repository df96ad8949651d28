// Package imageref parses the two image strings a pod carries — the spec
// image reference a user wrote and the imageID the container runtime reports
// in the container status — and normalises references the way container
// runtimes do (nginx → docker.io/library/nginx:latest), so that the same image
// written differently in two manifests compares equal.
//
// The imageID forms handled are the ones seen in the wild:
//
//	docker-pullable://nginx@sha256:…        dockershim / cri-dockerd, pulled from a registry
//	docker.io/library/nginx@sha256:…        containerd, CRI-O (repo digest)
//	docker://sha256:…                       dockershim, image without a repo digest (local ID)
//	sha256:…                                containerd, locally imported image (config digest)
//	<64 hex>                                CRI-O internal image ID
//	(empty)                                 container still waiting, image not pulled yet
//
// Only the repo-digest forms name a registry manifest that can be pulled; the
// others identify an image inside one node's runtime.
package imageref

import (
	"errors"
	"fmt"
	"strings"

	"github.com/distribution/reference"

	"github.com/fleetscan/fleetscan/pkg/contract"
)

// DefaultTag is what runtimes pull when a reference names neither a tag nor a
// digest.
const DefaultTag = "latest"

// maxInput bounds what is parsed; Kubernetes limits neither field, but no
// real reference comes near it and error messages quote the input.
const maxInput = 4096

// Reference is a normalised image reference.
type Reference struct {
	// Name is the fully qualified repository: docker.io/library/nginx.
	Name string
	// Tag is the tag ("latest" when the reference named neither a tag nor a
	// digest); empty for a reference pinned by digest only.
	Tag string
	// Digest is set when the reference is pinned (name@sha256:…).
	Digest string
}

// String renders name[:tag][@digest].
func (r Reference) String() string {
	s := r.Name
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest
	}
	return s
}

// Domain is the registry host of the reference (docker.io, ghcr.io,
// 127.0.0.1:5000).
func (r Reference) Domain() string {
	domain, _, _ := strings.Cut(r.Name, "/")
	return domain
}

// Pinned reports whether the reference carries a digest.
func (r Reference) Pinned() bool { return r.Digest != "" }

// WithDigest renders the repository pinned to digest: name@digest.
func (r Reference) WithDigest(digest string) string { return r.Name + "@" + digest }

// NormalizeReference parses a spec image reference and normalises it as a
// container runtime does: the default registry docker.io, the library/
// namespace for official images, and the tag latest when neither a tag nor a
// digest is given. A reference carrying both keeps both (the runtime pulls by
// the digest). Digests must be sha256, sha384 or sha512 in lowercase hex.
func NormalizeReference(s string) (Reference, error) {
	if err := checkInput(s); err != nil {
		return Reference{}, fmt.Errorf("image reference %q: %w", truncate(s), err)
	}
	if _, ok := localID(s); ok {
		return Reference{}, fmt.Errorf("image reference %q: is a local image ID, not a registry reference", truncate(s))
	}
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return Reference{}, fmt.Errorf("image reference %q: %w", truncate(s), err)
	}
	ref := Reference{Name: named.Name()}
	if t, ok := named.(reference.Tagged); ok {
		ref.Tag = t.Tag()
	}
	if d, ok := named.(reference.Digested); ok {
		ref.Digest = d.Digest().String()
		if !contract.ValidDigest(ref.Digest) {
			return Reference{}, fmt.Errorf("image reference %q: digest %q: want sha256:<64 lowercase hex> (or sha384/sha512)", truncate(s), ref.Digest)
		}
	}
	if ref.Tag == "" && ref.Digest == "" {
		ref.Tag = DefaultTag
	}
	return ref, nil
}

func checkInput(s string) error {
	switch {
	case s == "":
		return errors.New("empty")
	case len(s) > maxInput:
		return fmt.Errorf("longer than %d bytes", maxInput)
	case strings.TrimSpace(s) != s:
		return errors.New("leading or trailing white space")
	}
	return nil
}

// IDKind classifies a container status imageID.
type IDKind uint8

const (
	// IDNone: the status has no imageID yet (container waiting, image not
	// pulled).
	IDNone IDKind = iota
	// IDRepoDigest: a registry manifest digest with its repository — what
	// the kubelet pulled, and pullable again.
	IDRepoDigest
	// IDLocal: an identifier local to the node's runtime (an image config
	// digest or CRI-O's internal ID). It is not a manifest digest and cannot
	// be pulled from a registry.
	IDLocal
)

// String names the kind.
func (k IDKind) String() string {
	switch k {
	case IDNone:
		return "none"
	case IDRepoDigest:
		return "repo-digest"
	case IDLocal:
		return "local-id"
	}
	return fmt.Sprintf("IDKind(%d)", uint8(k))
}

// ImageID is a parsed container status imageID.
type ImageID struct {
	Kind IDKind
	// Repository is the normalised repository of a repo digest
	// (docker.io/library/nginx); empty for other kinds.
	Repository string
	// Digest is the manifest digest of a repo digest, or the local ID
	// (always "sha256:<hex>") of a local image.
	Digest string
}

// Reference renders a repo digest as a pullable reference (repo@digest); it
// is empty for other kinds.
func (id ImageID) Reference() string {
	if id.Kind != IDRepoDigest {
		return ""
	}
	return id.Repository + "@" + id.Digest
}

// Schemes dockershim and cri-dockerd prefix imageIDs with.
const (
	schemePullable = "docker-pullable://"
	schemeDocker   = "docker://"
)

// ParseImageID parses a container status imageID in any of the forms listed
// in the package documentation. The empty string is IDNone, not an error.
// Anything else that is not recognisable is an error quoting the input.
func ParseImageID(s string) (ImageID, error) {
	if s == "" {
		return ImageID{Kind: IDNone}, nil
	}
	fail := func(format string, args ...any) (ImageID, error) {
		return ImageID{}, fmt.Errorf("imageID %q: %s", truncate(s), fmt.Sprintf(format, args...))
	}
	if err := checkInput(s); err != nil {
		return fail("%v", err)
	}
	rest := s
	pullable := false
	switch {
	case strings.HasPrefix(rest, schemePullable):
		rest, pullable = rest[len(schemePullable):], true
	case strings.HasPrefix(rest, schemeDocker):
		rest = rest[len(schemeDocker):]
	case strings.Contains(rest, "://"):
		scheme, _, _ := strings.Cut(rest, "://")
		return fail("unknown scheme %q (want docker-pullable://, docker:// or none)", scheme+"://")
	}
	if rest == "" {
		return fail("nothing after the scheme")
	}

	if !pullable {
		if local, ok := localID(rest); ok {
			return ImageID{Kind: IDLocal, Digest: local}, nil
		}
	}
	at := strings.LastIndexByte(rest, '@')
	if at < 0 {
		if pullable {
			return fail("docker-pullable:// must be followed by repository@digest")
		}
		return fail("neither repository@digest nor a local image ID")
	}
	repo, digest := rest[:at], rest[at+1:]
	if !contract.ValidDigest(digest) {
		return fail("digest %q: want sha256:<64 lowercase hex> (or sha384/sha512)", truncate(digest))
	}
	if repo == "" {
		return fail("empty repository before @")
	}
	named, err := reference.ParseNormalizedNamed(repo)
	if err != nil {
		return fail("repository: %v", err)
	}
	if d, ok := named.(reference.Digested); ok {
		return fail("two digests (%s and %s)", d.Digest(), digest)
	}
	return ImageID{Kind: IDRepoDigest, Repository: named.Name(), Digest: digest}, nil
}

// localID recognises "sha256:<64 hex>" and CRI-O's bare 64-hex IDs.
func localID(s string) (string, bool) {
	if strings.HasPrefix(s, "sha256:") && contract.ValidDigest(s) {
		return s, true
	}
	if len(s) == 64 && isLowerHex(s) {
		return "sha256:" + s, true
	}
	return "", false
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// truncate keeps error messages readable for absurd inputs.
func truncate(s string) string {
	const max = 200
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
