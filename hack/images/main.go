// Command images assembles fleetscan's multi-platform container images
// without a base image, buildx or a registry pull: for every command it packs
// the static binaries `make images` cross-compiled (one per platform) into
// FROM scratch images — CA bundle, nonroot user, /tmp, the binary as the
// entrypoint — and an OCI image index over them, written as an OCI layout.
// It then loads the host's image into the local Docker engine (--load) and
// pushes the index (--push registry/prefix).
//
//	images --bin-dir .tools/images/dev/bin --cmds worker,dispatcher \
//	  --platforms linux/amd64,linux/arm64 --tag dev --out .tools/images/dev/oci --load
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/spf13/pflag"
)

// Exit codes, as fleetscan's own commands use them.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 4
)

type options struct {
	BinDir     string
	Commands   []string
	Platforms  string
	CABundle   string
	Repository string
	Tag        string
	Version    string
	Out        string
	Load       bool
	Push       string
	Created    string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o options
	fs := pflag.NewFlagSet("images", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.BinDir, "bin-dir", "", "directory with the binaries: <bin-dir>/<os>_<arch>/<command>")
	fs.StringSliceVar(&o.Commands, "cmds", nil, "commands to pack (comma-separated)")
	fs.StringVar(&o.Platforms, "platforms", "linux/amd64,linux/arm64", "platforms of the index (comma-separated os/arch)")
	fs.StringVar(&o.CABundle, "ca-bundle", "", "PEM bundle of trusted CAs copied into the images")
	fs.StringVar(&o.Repository, "repository", "fleetscan", "image names are <repository>/<command>:<tag> (also in Docker with --load)")
	fs.StringVar(&o.Tag, "tag", "dev", "image tag")
	fs.StringVar(&o.Version, "version", "dev", "version for the org.opencontainers.image.version label")
	fs.StringVar(&o.Out, "out", "", "directory for the OCI layouts: <out>/<command>")
	fs.BoolVar(&o.Load, "load", false, "load the image of the host's platform into the local Docker engine")
	fs.StringVar(&o.Push, "push", "", "push each index to <push>/<command>:<tag> (credentials from the Docker config)")
	fs.StringVar(&o.Created, "created", "", "creation time of the images (RFC 3339; default $SOURCE_DATE_EPOCH, else the Unix epoch) — fixed so that digests are reproducible")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	platforms, created, err := o.validate()
	if err != nil {
		fmt.Fprintf(stderr, "images: %v\n", err)
		return exitUsage
	}
	if err := build(ctx, o, platforms, created, stdout); err != nil {
		fmt.Fprintf(stderr, "images: %v\n", err)
		return exitError
	}
	return exitOK
}

// validate checks every flag before any work is done.
func (o options) validate() ([]v1.Platform, time.Time, error) {
	var created time.Time
	switch {
	case o.BinDir == "":
		return nil, created, errors.New("--bin-dir is required")
	case len(o.Commands) == 0:
		return nil, created, errors.New("--cmds is required")
	case o.CABundle == "":
		return nil, created, errors.New("--ca-bundle is required")
	case o.Out == "":
		return nil, created, errors.New("--out is required")
	}
	platforms, err := parsePlatforms(o.Platforms)
	if err != nil {
		return nil, created, err
	}
	if _, err := name.NewTag(o.Repository + "/x:" + o.Tag); err != nil {
		return nil, created, fmt.Errorf("--repository %q / --tag %q: %w", o.Repository, o.Tag, err)
	}
	if o.Push != "" {
		if _, err := name.NewTag(o.Push + "/x:" + o.Tag); err != nil {
			return nil, created, fmt.Errorf("--push %q: not a registry/prefix: %w", o.Push, err)
		}
	}
	created, err = creationTime(o.Created, os.Getenv("SOURCE_DATE_EPOCH"))
	if err != nil {
		return nil, created, err
	}
	for _, c := range o.Commands {
		for _, p := range platforms {
			if _, err := os.Stat(binaryPath(o.BinDir, p, c)); err != nil {
				return nil, created, fmt.Errorf("--bin-dir: no binary for %s on %s: %w", c, p, err)
			}
		}
	}
	return platforms, created, nil
}

func creationTime(flag, epoch string) (time.Time, error) {
	switch {
	case flag != "":
		t, err := time.Parse(time.RFC3339, flag)
		if err != nil {
			return t, fmt.Errorf("--created %q: %w", flag, err)
		}
		return t.UTC(), nil
	case epoch != "":
		var secs int64
		if _, err := fmt.Sscanf(epoch, "%d", &secs); err != nil {
			return time.Time{}, fmt.Errorf("$SOURCE_DATE_EPOCH %q: not a number of seconds", epoch)
		}
		return time.Unix(secs, 0).UTC(), nil
	}
	return time.Unix(0, 0).UTC(), nil
}

func build(ctx context.Context, o options, platforms []v1.Platform, created time.Time, stdout io.Writer) error {
	for _, c := range o.Commands {
		s := spec{Command: c, CABundle: o.CABundle, Version: o.Version, Created: created}
		for _, p := range platforms {
			s.Binaries = append(s.Binaries, binary{Platform: p, Path: binaryPath(o.BinDir, p, c)})
		}
		idx, err := buildIndex(s)
		if err != nil {
			return err
		}
		ref := o.Repository + "/" + c + ":" + o.Tag
		if err := writeLayout(filepath.Join(o.Out, c), ref, idx); err != nil {
			return fmt.Errorf("%s: OCI layout: %w", c, err)
		}
		digest, err := idx.Digest()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "built %s (%s) %s\n", ref, o.Platforms, digest)
		if o.Load {
			if err := load(ctx, ref, idx); err != nil {
				return fmt.Errorf("%s: docker load: %w", c, err)
			}
			fmt.Fprintf(stdout, "loaded %s (%s/%s) into Docker\n", ref, runtime.GOOS, runtime.GOARCH)
		}
		if o.Push != "" {
			dst, err := pushIndex(ctx, o.Push+"/"+c+":"+o.Tag, idx)
			if err != nil {
				return fmt.Errorf("%s: push: %w", c, err)
			}
			fmt.Fprintf(stdout, "pushed %s@%s\n", dst, digest)
		}
	}
	return nil
}

// writeLayout writes idx as a fresh OCI layout at dir, its index named ref.
func writeLayout(dir, ref string, idx v1.ImageIndex) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref}))
}

// hostImage is the image of idx for the platform this program runs on.
func hostImage(idx v1.ImageIndex) (v1.Image, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range m.Manifests {
		if d.Platform != nil && d.Platform.OS == runtime.GOOS && d.Platform.Architecture == runtime.GOARCH {
			return idx.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("the index has no image for %s/%s", runtime.GOOS, runtime.GOARCH)
}

// load loads the host's image into Docker as ref (docker load of a
// docker-save archive; no registry involved).
func load(ctx context.Context, ref string, idx v1.ImageIndex) error {
	img, err := hostImage(idx)
	if err != nil {
		return err
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(tarball.Write(tag, img, pw)) }()
	cmd := exec.CommandContext(ctx, "docker", "load", "--quiet")
	cmd.Stdin = pr
	out, err := cmd.CombinedOutput()
	pr.CloseWithError(err)
	if err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// pushIndex pushes idx (and its images) to dst.
func pushIndex(ctx context.Context, dst string, idx v1.ImageIndex, opts ...remote.Option) (name.Reference, error) {
	ref, err := name.ParseReference(dst)
	if err != nil {
		return nil, err
	}
	opts = append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}, opts...)
	return ref, remote.WriteIndex(ref, idx, opts...)
}
