package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Where the files go in every image; the root Dockerfile's targets lay them
// out the same way.
const (
	binDir       = "usr/local/bin"
	caBundlePath = "etc/ssl/certs/ca-certificates.crt"
	// nonroot is the user every fleetscan image runs as.
	nonroot = "65532:65532"
)

// spec is what an image is assembled from.
type spec struct {
	// Command is the binary's name (cmd/<Command>).
	Command string
	// Binaries are the binaries built for each platform, in index order.
	Binaries []binary
	// CABundle is the PEM bundle of trusted CAs.
	CABundle string
	// Version is stamped into the image labels.
	Version string
	// Created is the images' creation time (fixed for reproducible digests).
	Created time.Time
}

// binary is a command's binary for one platform.
type binary struct {
	Platform v1.Platform
	Path     string
}

// buildIndex assembles one FROM scratch image per platform — a base layer
// (CA bundle, passwd/group with the nonroot user, a world-writable /tmp)
// and the binary — and an OCI image index over them.
func buildIndex(s spec) (v1.ImageIndex, error) {
	if len(s.Binaries) == 0 {
		return nil, fmt.Errorf("%s: no platforms", s.Command)
	}
	ca, err := os.ReadFile(s.CABundle)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: %w", err)
	}
	base, err := layer(baseFiles(ca), s.Created)
	if err != nil {
		return nil, err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, b := range s.Binaries {
		img, err := buildImage(s, b, base)
		if err != nil {
			return nil, err
		}
		p := b.Platform
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	return idx, nil
}

func buildImage(s spec, b binary, base v1.Layer) (v1.Image, error) {
	p := b.Platform
	bin, err := os.ReadFile(b.Path)
	if err != nil {
		return nil, fmt.Errorf("%s for %s: %w", s.Command, p, err)
	}
	if err := checkELF(bin, p); err != nil {
		return nil, fmt.Errorf("%s (%s): %w", b.Path, p, err)
	}
	binLayer, err := layer([]file{{Name: binDir + "/" + s.Command, Mode: 0o755, Data: bin}}, s.Created)
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.AppendLayers(img, base, binLayer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Created = v1.Time{Time: s.Created}
	cf.Config = v1.Config{
		Entrypoint: []string{"/" + binDir + "/" + s.Command},
		User:       nonroot,
		Env: []string{
			"PATH=/usr/local/bin",
			"SSL_CERT_FILE=/" + caBundlePath,
		},
		Labels: map[string]string{
			"org.opencontainers.image.title":   "fleetscan " + s.Command,
			"org.opencontainers.image.version": s.Version,
			"org.opencontainers.image.source":  "https://github.com/fleetscan/fleetscan",
		},
	}
	return mutate.ConfigFile(img, cf)
}

// file is one entry of a layer.
type file struct {
	Name string
	Mode int64
	Dir  bool
	Data []byte
}

// baseFiles is the shared base layer: CA bundle, user database, /tmp.
func baseFiles(ca []byte) []file {
	return []file{
		{Name: "etc", Mode: 0o755, Dir: true},
		{Name: "etc/ssl", Mode: 0o755, Dir: true},
		{Name: "etc/ssl/certs", Mode: 0o755, Dir: true},
		{Name: caBundlePath, Mode: 0o644, Data: ca},
		{Name: "etc/passwd", Mode: 0o644, Data: []byte("nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n")},
		{Name: "etc/group", Mode: 0o644, Data: []byte("nonroot:x:65532:\n")},
		{Name: "tmp", Mode: 0o1777, Dir: true},
		{Name: "usr", Mode: 0o755, Dir: true},
		{Name: "usr/local", Mode: 0o755, Dir: true},
		{Name: binDir, Mode: 0o755, Dir: true},
	}
}

// layer packs files into a gzip-compressed OCI layer with fixed owners and
// times, so the same files always give the same digest.
func layer(files []file, mtime time.Time) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.Name, Mode: f.Mode, ModTime: mtime, Format: tar.FormatPAX}
		if f.Dir {
			h.Typeflag, h.Name = tar.TypeDir, f.Name+"/"
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// parsePlatforms parses "linux/amd64,linux/arm64".
func parsePlatforms(s string) ([]v1.Platform, error) {
	var out []v1.Platform
	for _, f := range strings.Split(s, ",") {
		p, err := v1.ParsePlatform(strings.TrimSpace(f))
		if err != nil || p.OS == "" || p.Architecture == "" {
			return nil, fmt.Errorf("--platforms: %q is not os/arch", f)
		}
		out = append(out, *p)
	}
	return out, nil
}

// binaryPath is where the Makefile builds a command for a platform:
// <dir>/<os>_<arch>/<command>.
func binaryPath(dir string, p v1.Platform, command string) string {
	return filepath.Join(dir, p.OS+"_"+p.Architecture, command)
}
