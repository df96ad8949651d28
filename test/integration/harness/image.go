package harness

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/moby/moby/client"
)

// ImageSpec describes a FROM scratch image around one static binary.
type ImageSpec struct {
	// Name is the image's repository under fleetscan-it/.
	Name string
	// Binary is the host path of a static binary, installed as /<base name>.
	Binary string
	// Files are extra files by absolute path in the image.
	Files map[string][]byte
	// Dirs are empty world-writable directories (/tmp, /data, ...).
	Dirs []string
	// Entrypoint defaults to the binary.
	Entrypoint []string
	// User the process runs as ("65532:65532"); empty means root.
	User string
	// Expose lists ports ("4222/tcp").
	Expose []string
}

var imageMu sync.Mutex

// EnsureImage builds the image unless one with the same content already
// exists, and returns its reference. The tag is a hash of the binary and the
// spec, so an unchanged binary reuses the image and a rebuilt one gets a new
// image.
func EnsureImage(ctx context.Context, cli *client.Client, spec ImageSpec) (string, error) {
	bin, err := os.ReadFile(spec.Binary)
	if err != nil {
		return "", fmt.Errorf("image %s: %w", spec.Name, err)
	}
	binName := path.Base(spec.Binary)
	if len(spec.Entrypoint) == 0 {
		spec.Entrypoint = []string{"/" + binName}
	}
	dockerfile := renderDockerfile(spec)

	h := sha256.New()
	h.Write(bin)
	h.Write([]byte(dockerfile))
	for _, name := range sortedKeys(spec.Files) {
		fmt.Fprintf(h, "%s\x00%d\x00", name, len(spec.Files[name]))
		h.Write(spec.Files[name])
	}
	ref := "fleetscan-it/" + spec.Name + ":" + hex.EncodeToString(h.Sum(nil))[:16]

	imageMu.Lock()
	defer imageMu.Unlock()
	if _, err := cli.ImageInspect(ctx, ref); err == nil {
		return ref, nil
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	errs := []error{add("Dockerfile", 0o644, []byte(dockerfile)), add("rootfs/"+binName, 0o755, bin)}
	for _, d := range append([]string{"/tmp"}, spec.Dirs...) {
		errs = append(errs, tw.WriteHeader(&tar.Header{Name: "rootfs" + path.Clean(d) + "/", Mode: 0o1777, Typeflag: tar.TypeDir}))
	}
	for _, name := range sortedKeys(spec.Files) {
		dir := path.Dir(name)
		if dir != "/" {
			errs = append(errs, tw.WriteHeader(&tar.Header{Name: "rootfs" + dir + "/", Mode: 0o755, Typeflag: tar.TypeDir}))
		}
		errs = append(errs, add("rootfs"+name, 0o644, spec.Files[name]))
	}
	errs = append(errs, tw.Close())
	if err := errors.Join(errs...); err != nil {
		return "", fmt.Errorf("image %s: build context: %w", spec.Name, err)
	}

	res, err := cli.ImageBuild(ctx, &buf, client.ImageBuildOptions{
		Tags:        []string{ref},
		Remove:      true,
		ForceRemove: true,
		Labels:      map[string]string{Label: "image"},
	})
	if err != nil {
		return "", fmt.Errorf("image %s: build: %w", spec.Name, err)
	}
	defer res.Body.Close()
	if err := readBuildStream(res.Body); err != nil {
		return "", fmt.Errorf("image %s: build: %w", spec.Name, err)
	}
	if _, err := cli.ImageInspect(ctx, ref); err != nil {
		return "", fmt.Errorf("image %s: built but not found: %w", ref, err)
	}
	pruneOldTags(ctx, cli, "fleetscan-it/"+spec.Name, ref)
	return ref, nil
}

// pruneOldTags removes the images of repo other than keep (built from an
// older binary), so rebuilt tools do not pile up. Images still used by a
// container stay; errors are ignored.
func pruneOldTags(ctx context.Context, cli *client.Client, repo, keep string) {
	list, err := cli.ImageList(ctx, client.ImageListOptions{Filters: client.Filters{}.Add("reference", repo)})
	if err != nil {
		return
	}
	for _, img := range list.Items {
		for _, tag := range img.RepoTags {
			if tag != keep && strings.HasPrefix(tag, repo+":") {
				_, _ = cli.ImageRemove(ctx, tag, client.ImageRemoveOptions{})
			}
		}
	}
}

func renderDockerfile(spec ImageSpec) string {
	var b strings.Builder
	b.WriteString("FROM scratch\nCOPY rootfs/ /\n")
	for _, p := range spec.Expose {
		fmt.Fprintf(&b, "EXPOSE %s\n", p)
	}
	if spec.User != "" {
		fmt.Fprintf(&b, "USER %s\n", spec.User)
	}
	ep, _ := json.Marshal(spec.Entrypoint)
	fmt.Fprintf(&b, "ENTRYPOINT %s\n", ep)
	return b.String()
}

// readBuildStream drains the daemon's JSON progress stream and returns the
// first error it reports, with the output that led to it.
func readBuildStream(r io.Reader) error {
	dec := json.NewDecoder(r)
	var out strings.Builder
	for {
		var msg struct {
			Stream string `json:"stream"`
			Error  string `json:"error"`
		}
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read build output: %w", err)
		}
		out.WriteString(msg.Stream)
		if msg.Error != "" {
			return fmt.Errorf("%s\n%s", msg.Error, tail(out.String(), 20))
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
