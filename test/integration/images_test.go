package integration_test

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// TestImageIndexes inspects the OCI indexes `make images` wrote (the
// layouts under .tools/images/<tag>/oci, or $FLEETSCAN_IT_IMAGES_OCI): one
// per command, named fleetscan/<command>:<tag>, with a linux/amd64 and a
// linux/arm64 image whose binary's ELF machine type is that platform's,
// FROM scratch (only the base layer and the binary), running as nonroot —
// and the image Docker runs for this suite is the index's image for the
// host's platform.
func TestImageIndexes(t *testing.T) {
	tag := os.Getenv("FLEETSCAN_IT_IMAGE_TAG")
	if tag == "" {
		tag = "dev"
	}
	dir := os.Getenv("FLEETSCAN_IT_IMAGES_OCI")
	if dir == "" {
		dir = filepath.Join("..", "..", ".tools", "images", tag, "oci")
	}
	mains, err := filepath.Glob(filepath.Join("..", "..", "cmd", "*", "main.go"))
	if err != nil || len(mains) == 0 {
		t.Fatalf("no commands under cmd/: %v", err)
	}
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	for _, m := range mains {
		command := filepath.Base(filepath.Dir(m))
		t.Run(command, func(t *testing.T) {
			p, err := layout.FromPath(filepath.Join(dir, command))
			if err != nil {
				t.Fatalf("no OCI layout for %s (%v): run `make images IMAGE_TAG=%s` at the repository root", command, err, tag)
			}
			outer, err := p.ImageIndex()
			if err != nil {
				t.Fatal(err)
			}
			om, err := outer.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			want := "fleetscan/" + command + ":" + tag
			if len(om.Manifests) != 1 || om.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != want {
				t.Fatalf("layout holds %+v, want one index named %s", om.Manifests, want)
			}
			idx, err := outer.ImageIndex(om.Manifests[0].Digest)
			if err != nil {
				t.Fatal(err)
			}
			im, err := idx.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			var platforms []string
			var host v1.Descriptor
			for _, d := range im.Manifests {
				if d.Platform == nil {
					t.Fatalf("image %s has no platform in the index", d.Digest)
				}
				platforms = append(platforms, d.Platform.OS+"/"+d.Platform.Architecture)
				if d.Platform.OS == runtime.GOOS && d.Platform.Architecture == runtime.GOARCH {
					host = d
				}
				img, err := idx.Image(d.Digest)
				if err != nil {
					t.Fatal(err)
				}
				checkImage(t, img, command, d.Platform, machines[d.Platform.Architecture])
			}
			slices.Sort(platforms)
			if !slices.Equal(platforms, []string{"linux/amd64", "linux/arm64"}) {
				t.Errorf("platforms %v, want linux/amd64 and linux/arm64", platforms)
			}
			checkLoaded(t, idx, host, want)
		})
	}
}

// checkImage: the platform in the config, nonroot, FROM scratch (two
// layers: base files, binary), and the binary's ELF machine.
func checkImage(t *testing.T, img v1.Image, command string, p *v1.Platform, machine elf.Machine) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != p.OS || cf.Architecture != p.Architecture || cf.Config.User != "65532:65532" {
		t.Errorf("%s: config %s/%s user %q", p, cf.OS, cf.Architecture, cf.Config.User)
	}
	if layers, _ := img.Layers(); len(layers) != 2 {
		t.Errorf("%s: %d layers, want 2 (FROM scratch: base files and the binary)", p, len(layers))
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	path := "usr/local/bin/" + command
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("%s: no /%s in the image", p, path)
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimPrefix(h.Name, "/") != path {
			continue
		}
		bin, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		f, err := elf.NewFile(bytes.NewReader(bin))
		if err != nil {
			t.Fatalf("%s: /%s is not an ELF binary: %v", p, path, err)
		}
		if f.Machine != machine {
			t.Errorf("%s: /%s is %s, want %s", p, path, f.Machine, machine)
		}
		return
	}
}

// checkLoaded: Docker's fleetscan/<command>:<tag> is the index's image for
// this host (the suite runs what the index ships).
func checkLoaded(t *testing.T, idx v1.ImageIndex, host v1.Descriptor, ref string) {
	t.Helper()
	if host.Digest.Hex == "" {
		t.Fatalf("the index has no image for this host (%s/%s)", runtime.GOOS, runtime.GOARCH)
	}
	if err := exec.Command("docker", "info").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no Docker engine (CI=true: a skip is a failure): %v", err)
		}
		t.Logf("SKIPPED: no Docker engine: the loaded image of %s is not compared", ref)
		return
	}
	img, err := idx.Image(host.Digest)
	if err != nil {
		t.Fatal(err)
	}
	config, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("docker", "image", "inspect", "--format", "{{.Id}}", ref).Output()
	if err != nil {
		t.Fatalf("docker image inspect %s: %v: run `make images`", ref, err)
	}
	// The classic image store names an image by its config, the containerd
	// store by its manifest.
	if id := strings.TrimSpace(string(out)); id != config.String() && id != host.Digest.String() {
		t.Errorf("Docker's %s is %s, not the index's %s/%s image (config %s, manifest %s)", ref, id, runtime.GOOS, runtime.GOARCH, config, host.Digest)
	}
}
