package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

var testPlatforms = []string{"linux/amd64", "linux/arm64"}

// crossCompile builds a small static program for every test platform into
// <dir>/<os>_<arch>/hello, as `make images` lays the binaries out.
func crossCompile(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	must(t, os.WriteFile(filepath.Join(src, "go.mod"), []byte("module hello\n\ngo 1.26\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(src, "main.go"), []byte("package main\n\nfunc main() { println(\"hello\") }\n"), 0o644))
	bins := t.TempDir()
	for _, p := range testPlatforms {
		os_, arch, _ := strings.Cut(p, "/")
		cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(bins, os_+"_"+arch, "hello"), ".")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "GOOS="+os_, "GOARCH="+arch, "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=mod")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build for %s: %v\n%s", p, err, out)
		}
	}
	return bins
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func caBundle(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "ca.crt")
	must(t, os.WriteFile(f, []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), 0o644))
	return f
}

// inspectIndex checks an index the way a node's runtime would pick from
// it: one image per platform, each with the platform in its descriptor and
// config, the binary as a nonroot entrypoint, and a binary whose ELF
// machine type is the platform's.
func inspectIndex(t *testing.T, idx v1.ImageIndex, command string) {
	t.Helper()
	m, err := idx.IndexManifest()
	must(t, err)
	if m.MediaType != types.OCIImageIndex {
		t.Errorf("index media type %s, want %s", m.MediaType, types.OCIImageIndex)
	}
	var got []string
	for _, d := range m.Manifests {
		if d.Platform == nil {
			t.Errorf("manifest %s has no platform", d.Digest)
			continue
		}
		p := d.Platform.OS + "/" + d.Platform.Architecture
		got = append(got, p)
		img, err := idx.Image(d.Digest)
		must(t, err)
		cf, err := img.ConfigFile()
		must(t, err)
		if cf.OS+"/"+cf.Architecture != p {
			t.Errorf("%s: config says %s/%s", p, cf.OS, cf.Architecture)
		}
		if cf.Config.User != "65532:65532" || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/usr/local/bin/"+command {
			t.Errorf("%s: user %q entrypoint %q", p, cf.Config.User, cf.Config.Entrypoint)
		}
		files := imageFiles(t, img)
		bin, ok := files["usr/local/bin/"+command]
		if !ok {
			t.Fatalf("%s: no /usr/local/bin/%s", p, command)
		}
		machine, err := elfMachine(bin)
		must(t, err)
		if want := elfMachines[d.Platform.Architecture]; machine != want {
			t.Errorf("%s: the binary is %s, want %s", p, machine, want)
		}
		if _, ok := files["etc/ssl/certs/ca-certificates.crt"]; !ok {
			t.Errorf("%s: no CA bundle", p)
		}
		if !bytes.Contains(files["etc/passwd"], []byte("65532")) {
			t.Errorf("%s: no nonroot user", p)
		}
	}
	if strings.Join(got, ",") != strings.Join(testPlatforms, ",") {
		t.Errorf("platforms %v, want %v", got, testPlatforms)
	}
}

// imageFiles reads an image's flattened file system (regular files).
func imageFiles(t *testing.T, img v1.Image) map[string][]byte {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		must(t, err)
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			must(t, err)
			files[strings.TrimPrefix(h.Name, "/")] = b
		}
	}
}

// TestImages runs the command as `make images PUSH=…` does: it writes an
// OCI layout whose index has an image per platform with the matching
// binary, and pushes the same index to a registry.
func TestImages(t *testing.T) {
	bins := crossCompile(t)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{
		"--bin-dir", bins, "--cmds", "hello", "--platforms", strings.Join(testPlatforms, ","),
		"--ca-bundle", caBundle(t), "--tag", "t1", "--out", out, "--push", host + "/fleetscan",
	}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}

	p, err := layout.FromPath(filepath.Join(out, "hello"))
	must(t, err)
	outer, err := p.ImageIndex()
	must(t, err)
	om, err := outer.IndexManifest()
	must(t, err)
	if len(om.Manifests) != 1 || om.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "fleetscan/hello:t1" {
		t.Fatalf("layout index %+v: want one index named fleetscan/hello:t1", om.Manifests)
	}
	idx, err := outer.ImageIndex(om.Manifests[0].Digest)
	must(t, err)
	inspectIndex(t, idx, "hello")

	ref, err := name.ParseReference(host + "/fleetscan/hello:t1")
	must(t, err)
	pushed, err := remote.Index(ref)
	must(t, err)
	inspectIndex(t, pushed, "hello")
	local, _ := idx.Digest()
	remoteDigest, _ := pushed.Digest()
	if local != remoteDigest {
		t.Errorf("pushed index %s, built %s", remoteDigest, local)
	}
	if !strings.Contains(stdout.String(), "pushed "+host+"/fleetscan/hello:t1@"+local.String()) {
		t.Errorf("output %q does not report the push", stdout.String())
	}

	t.Run("reproducible", func(t *testing.T) {
		again, err := buildIndex(spec{Command: "hello", CABundle: caBundle(t), Version: "dev", Created: time.Unix(0, 0).UTC(), Binaries: binaries(bins, "hello")})
		must(t, err)
		d, _ := again.Digest()
		if d != local {
			t.Errorf("rebuilt index %s, first %s: digests must not depend on when the images are built", d, local)
		}
	})
}

func binaries(dir, command string) []binary {
	var out []binary
	for _, p := range testPlatforms {
		pp, _ := v1.ParsePlatform(p)
		out = append(out, binary{Platform: *pp, Path: binaryPath(dir, *pp, command)})
	}
	return out
}

// TestImagesRefuseWrongBinary: a binary built for another architecture is
// refused, naming it, rather than shipped under the wrong platform.
func TestImagesRefuseWrongBinary(t *testing.T) {
	bins := crossCompile(t)
	amd := filepath.Join(bins, "linux_amd64", "hello")
	arm := filepath.Join(bins, "linux_arm64", "hello")
	data, err := os.ReadFile(amd)
	must(t, err)
	must(t, os.WriteFile(arm, data, 0o755))
	_, err = buildIndex(spec{Command: "hello", CABundle: caBundle(t), Binaries: binaries(bins, "hello")})
	if err == nil || !strings.Contains(err.Error(), arm) || !strings.Contains(err.Error(), elf.EM_X86_64.String()) {
		t.Fatalf("error %v, want the amd64 binary in the arm64 slot refused", err)
	}
}

// TestImagesValidate: bad flags exit 4 before any work, naming the flag.
func TestImagesValidate(t *testing.T) {
	bins := crossCompile(t)
	ca := caBundle(t)
	base := []string{"--bin-dir", bins, "--cmds", "hello", "--ca-bundle", ca, "--out", t.TempDir()}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--cmds", "hello", "--ca-bundle", ca, "--out", "x"}, "--bin-dir"},
		{append(base, "--platforms", "linux"), "--platforms"},
		{append(base, "--cmds", "nothere"), "no binary for nothere"},
		{append(base, "--push", "Bad Registry"), "--push"},
		{append(base, "--created", "yesterday"), "--created"},
		{append(base, "--platforms", "linux/amd64,linux/s390x"), "no binary for hello on linux/s390x"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(t.Context(), tt.args, &stdout, &stderr); code != exitUsage || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("%v: exit %d, %q; want 4 and %q", tt.args, code, stderr.String(), tt.want)
		}
	}
}

// TestImagesLoad loads the host's image into the local Docker engine as
// `make images` does for the integration suite. Without Docker it says so
// loudly (and fails under CI=true).
func TestImagesLoad(t *testing.T) {
	if err := exec.Command("docker", "info").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no Docker engine (CI=true: a skip is a failure): %v", err)
		}
		t.Skipf("SKIPPED: no Docker engine: %v", err)
	}
	bins := crossCompile(t)
	tag := "images-test-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{
		"--bin-dir", bins, "--cmds", "hello", "--platforms", strings.Join(testPlatforms, ","),
		"--ca-bundle", caBundle(t), "--tag", tag, "--repository", "fleetscan-test", "--out", t.TempDir(), "--load",
	}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	ref := "fleetscan-test/hello:" + tag
	t.Cleanup(func() { _ = exec.Command("docker", "image", "rm", ref).Run() })
	out, err := exec.Command("docker", "image", "inspect", "--format", "{{.Os}}/{{.Architecture}} {{.Config.User}}", ref).CombinedOutput()
	if err != nil {
		t.Fatalf("docker image inspect %s: %v\n%s", ref, err, out)
	}
	if got, want := strings.TrimSpace(string(out)), runtime.GOOS+"/"+runtime.GOARCH+" 65532:65532"; got != want {
		t.Errorf("loaded image %q, want %q", got, want)
	}
}
