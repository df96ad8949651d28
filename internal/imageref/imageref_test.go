package imageref

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/fleetscan/fleetscan/pkg/contract"
)

const (
	d1  = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

func TestNormalizeReference(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    Reference
		wantErr string // substring of the error; "" means success
	}{
		{in: "nginx", want: Reference{Name: "docker.io/library/nginx", Tag: "latest"}},
		{in: "nginx:1.25", want: Reference{Name: "docker.io/library/nginx", Tag: "1.25"}},
		{in: "library/nginx:1.25", want: Reference{Name: "docker.io/library/nginx", Tag: "1.25"}},
		{in: "docker.io/nginx", want: Reference{Name: "docker.io/library/nginx", Tag: "latest"}},
		{in: "index.docker.io/library/nginx:1", want: Reference{Name: "docker.io/library/nginx", Tag: "1"}},
		{in: "bitnami/redis:7.2", want: Reference{Name: "docker.io/bitnami/redis", Tag: "7.2"}},
		{in: "ghcr.io/org/app:v1", want: Reference{Name: "ghcr.io/org/app", Tag: "v1"}},
		{in: "registry.k8s.io/pause:3.9", want: Reference{Name: "registry.k8s.io/pause", Tag: "3.9"}},
		{in: "localhost:5000/app", want: Reference{Name: "localhost:5000/app", Tag: "latest"}},
		{in: "127.0.0.1:5000/team/app:v2", want: Reference{Name: "127.0.0.1:5000/team/app", Tag: "v2"}},
		{in: "[::1]:5000/app:v2", want: Reference{Name: "[::1]:5000/app", Tag: "v2"}},
		{in: "nginx@" + d1, want: Reference{Name: "docker.io/library/nginx", Digest: d1}},
		{in: "nginx:1.25@" + d1, want: Reference{Name: "docker.io/library/nginx", Tag: "1.25", Digest: d1}},
		{in: "quay.io/a/b/c/d:x", want: Reference{Name: "quay.io/a/b/c/d", Tag: "x"}},
		// malformed
		{in: "", wantErr: "empty"},
		{in: " nginx", wantErr: "white space"},
		{in: "nginx\n", wantErr: "white space"},
		{in: "NGINX", wantErr: "lowercase"},
		{in: "nginx:", wantErr: "invalid reference format"},
		{in: "nginx:bad tag", wantErr: "invalid reference format"},
		{in: "nginx@sha256:abc", wantErr: "invalid"},
		{in: "nginx@md5:0123456789abcdef0123456789abcdef", wantErr: "unsupported digest algorithm"},
		{in: "nginx@sha256:" + strings.ToUpper(hex), wantErr: "invalid checksum digest format"},
		{in: hex, wantErr: "local image ID"},
		{in: "sha256:" + hex, wantErr: "local image ID"},
		{in: "http://nginx", wantErr: "invalid reference format"},
		{in: "a//b", wantErr: "invalid reference format"},
		{in: strings.Repeat("a", maxInput+1), wantErr: "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := NormalizeReference(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("NormalizeReference(%q) = %+v, want error containing %q", tt.in, got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %q does not contain %q", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), "image reference") {
					t.Fatalf("error %q does not say what was being parsed", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("NormalizeReference(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("NormalizeReference(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			again, err := NormalizeReference(got.String())
			if err != nil || again != got {
				t.Fatalf("not idempotent: %q → %+v, %v", got.String(), again, err)
			}
		})
	}
}

func TestReferenceHelpers(t *testing.T) {
	t.Parallel()
	r, err := NormalizeReference("127.0.0.1:5000/team/app:v2")
	if err != nil {
		t.Fatal(err)
	}
	if r.Domain() != "127.0.0.1:5000" || r.Pinned() {
		t.Fatalf("domain %q pinned %v", r.Domain(), r.Pinned())
	}
	if got := r.WithDigest(d1); got != "127.0.0.1:5000/team/app@"+d1 {
		t.Fatalf("WithDigest = %q", got)
	}
	if got := (Reference{Name: "docker.io/library/nginx"}).Domain(); got != "docker.io" {
		t.Fatalf("domain %q", got)
	}
}

func TestParseImageID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    ImageID
		wantErr string
	}{
		{name: "empty (waiting)", in: "", want: ImageID{Kind: IDNone}},
		{name: "dockershim pullable", in: "docker-pullable://nginx@" + d1,
			want: ImageID{Kind: IDRepoDigest, Repository: "docker.io/library/nginx", Digest: d1}},
		{name: "dockershim pullable qualified", in: "docker-pullable://registry.example.com:5000/team/app@" + d1,
			want: ImageID{Kind: IDRepoDigest, Repository: "registry.example.com:5000/team/app", Digest: d1}},
		{name: "containerd", in: "docker.io/library/nginx@" + d1,
			want: ImageID{Kind: IDRepoDigest, Repository: "docker.io/library/nginx", Digest: d1}},
		{name: "cri-o repo digest", in: "quay.io/org/app@" + d1,
			want: ImageID{Kind: IDRepoDigest, Repository: "quay.io/org/app", Digest: d1}},
		{name: "repo with tag and digest", in: "docker.io/library/nginx:1.25@" + d1,
			want: ImageID{Kind: IDRepoDigest, Repository: "docker.io/library/nginx", Digest: d1}},
		{name: "docker scheme with repo digest", in: "docker://nginx@" + d1,
			want: ImageID{Kind: IDRepoDigest, Repository: "docker.io/library/nginx", Digest: d1}},
		{name: "dockershim local id", in: "docker://sha256:" + hex, want: ImageID{Kind: IDLocal, Digest: "sha256:" + hex}},
		{name: "containerd local id", in: "sha256:" + hex, want: ImageID{Kind: IDLocal, Digest: "sha256:" + hex}},
		{name: "cri-o internal id", in: hex, want: ImageID{Kind: IDLocal, Digest: "sha256:" + hex}},
		{name: "sha512 repo digest", in: "nginx@sha512:" + hex + hex,
			want: ImageID{Kind: IDRepoDigest, Repository: "docker.io/library/nginx", Digest: "sha512:" + hex + hex}},
		// malformed
		{name: "unknown scheme", in: "cri-o://" + hex, wantErr: "unknown scheme"},
		{name: "scheme only", in: "docker-pullable://", wantErr: "nothing after the scheme"},
		{name: "pullable local id", in: "docker-pullable://sha256:" + hex, wantErr: "repository@digest"},
		{name: "short digest", in: "nginx@sha256:abc", wantErr: "want sha256"},
		{name: "uppercase digest", in: "nginx@sha256:" + strings.ToUpper(hex), wantErr: "want sha256"},
		{name: "md5", in: "nginx@md5:0123456789abcdef0123456789abcdef", wantErr: "want sha256"},
		{name: "empty repository", in: "@" + d1, wantErr: "empty repository"},
		{name: "bad repository", in: "NGINX@" + d1, wantErr: "repository"},
		{name: "two digests", in: "nginx@" + d1 + "@" + d1, wantErr: "two digests"},
		{name: "tag only", in: "nginx:1.25", wantErr: "neither repository@digest nor a local image ID"},
		{name: "short hex", in: hex[:63], wantErr: "neither"},
		{name: "uppercase hex id", in: strings.ToUpper(hex), wantErr: "neither"},
		{name: "white space", in: " sha256:" + hex, wantErr: "white space"},
		{name: "huge", in: strings.Repeat("x", 10000), wantErr: "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseImageID(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseImageID(%q) = %+v, want error containing %q", tt.in, got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "imageID") {
					t.Fatalf("error %q: want it to contain %q and name the imageID", err, tt.wantErr)
				}
				if len(err.Error()) > 600 {
					t.Fatalf("error message is %d bytes long", len(err.Error()))
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseImageID(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseImageID(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestImageIDReference(t *testing.T) {
	t.Parallel()
	id, err := ParseImageID("docker-pullable://nginx@" + d1)
	if err != nil {
		t.Fatal(err)
	}
	if got := id.Reference(); got != "docker.io/library/nginx@"+d1 {
		t.Fatalf("Reference() = %q", got)
	}
	if got := (ImageID{Kind: IDLocal, Digest: d1}).Reference(); got != "" {
		t.Fatalf("local id reference = %q, want empty", got)
	}
	for k, want := range map[IDKind]string{IDNone: "none", IDRepoDigest: "repo-digest", IDLocal: "local-id", 9: "IDKind(9)"} {
		if k.String() != want {
			t.Errorf("%d.String() = %q, want %q", k, k.String(), want)
		}
	}
}

func FuzzParseImageID(f *testing.F) {
	for _, s := range []string{
		"", "docker-pullable://nginx@" + d1, "docker.io/library/nginx@" + d1, "docker://sha256:" + hex,
		"sha256:" + hex, hex, "cri-o://x", "nginx:1@" + d1, "@" + d1, "a@b@c", "docker-pullable://",
		"localhost:5000/a@" + d1, "[::1]:5000/a@" + d1,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseImageID(s)
		if err != nil {
			if !strings.Contains(err.Error(), "imageID") {
				t.Fatalf("error %q does not name the imageID", err)
			}
			return
		}
		switch id.Kind {
		case IDNone:
			if s != "" {
				t.Fatalf("%q parsed as none", s)
			}
		case IDLocal:
			if !contract.ValidDigest(id.Digest) || id.Repository != "" {
				t.Fatalf("%q: bad local id %+v", s, id)
			}
		case IDRepoDigest:
			if !contract.ValidDigest(id.Digest) {
				t.Fatalf("%q: invalid digest %q", s, id.Digest)
			}
			// A repo digest must be a pullable reference that normalises
			// to itself.
			ref, err := NormalizeReference(id.Reference())
			if err != nil {
				t.Fatalf("%q: reference %q does not parse: %v", s, id.Reference(), err)
			}
			if ref.Name != id.Repository || ref.Digest != id.Digest || ref.Tag != "" {
				t.Fatalf("%q: round trip %+v vs %+v", s, ref, id)
			}
		default:
			t.Fatalf("%q: unknown kind %v", s, id.Kind)
		}
	})
}

func FuzzNormalizeReference(f *testing.F) {
	for _, s := range []string{
		"nginx", "nginx:1.25", "docker.io/library/nginx", "ghcr.io/a/b:c", "localhost:5000/x",
		"nginx@" + d1, "nginx:1@" + d1, "NGINX", hex, "a//b", "[::1]:5000/a:b", "x:", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := NormalizeReference(s)
		if err != nil {
			if !strings.Contains(err.Error(), "image reference") {
				t.Fatalf("error %q does not say what was parsed", err)
			}
			return
		}
		if ref.Name == "" || !strings.Contains(ref.Name, "/") {
			t.Fatalf("%q: name %q is not fully qualified", s, ref.Name)
		}
		if ref.Tag == "" && ref.Digest == "" {
			t.Fatalf("%q: neither tag nor digest after normalisation", s)
		}
		if ref.Digest != "" && !contract.ValidDigest(ref.Digest) {
			t.Fatalf("%q: invalid digest %q", s, ref.Digest)
		}
		if !utf8.ValidString(ref.String()) {
			t.Fatalf("%q: invalid UTF-8 in %q", s, ref.String())
		}
		again, err := NormalizeReference(ref.String())
		if err != nil {
			t.Fatalf("%q: normalised form %q does not parse: %v", s, ref.String(), err)
		}
		if again != ref {
			t.Fatalf("%q: not idempotent: %+v then %+v", s, ref, again)
		}
	})
}
