package trivydb

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"

	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
)

var dockerConfigMu sync.Mutex

// EnsureDockerConfig makes the registry keychain Trivy uses (ggcr's
// authn.DefaultKeychain, which reads $DOCKER_CONFIG/config.json on every
// lookup) use the file named by --registry-config. The keychain resolves
// credentials per registry host, so credentials are only ever sent to the
// registry they belong to. The setting is process-wide and idempotent;
// credentials are never read into fleetscan's memory or logs. No-op when
// DockerConfig is empty.
func (r RegistryOptions) EnsureDockerConfig() error {
	if r.DockerConfig == "" {
		return nil
	}
	abs, err := filepath.Abs(r.DockerConfig)
	if err != nil {
		return fmt.Errorf("--registry-config %q: %w", r.DockerConfig, err)
	}
	want, err := os.Stat(abs)
	if err != nil {
		return fmt.Errorf("--registry-config %q: %w", r.DockerConfig, err)
	}
	if !want.Mode().IsRegular() {
		return fmt.Errorf("--registry-config %q: not a regular file", r.DockerConfig)
	}
	dockerConfigMu.Lock()
	defer dockerConfigMu.Unlock()
	if cur := os.Getenv("DOCKER_CONFIG"); cur != "" {
		if st, err := os.Stat(filepath.Join(cur, "config.json")); err == nil && os.SameFile(st, want) {
			return nil
		}
	}
	dir := filepath.Dir(abs)
	if filepath.Base(abs) != "config.json" {
		// The keychain wants <dir>/config.json; a mounted secret is usually
		// called .dockerconfigjson. Link to it (not copy) so a rotated
		// secret is picked up.
		if dir, err = os.MkdirTemp("", "fleetscan-docker-config-"); err != nil {
			return fmt.Errorf("--registry-config %q: %w", r.DockerConfig, err)
		}
		if err := os.Symlink(abs, filepath.Join(dir, "config.json")); err != nil {
			return fmt.Errorf("--registry-config %q: %w", r.DockerConfig, err)
		}
	}
	return os.Setenv("DOCKER_CONFIG", dir)
}

// trivyOptions returns the Trivy registry options for one repository:
// insecure only when its host is listed in --insecure-registry.
func (r RegistryOptions) trivyOptions(ref name.Reference) ftypes.RegistryOptions {
	return ftypes.RegistryOptions{Insecure: r.Insecure(ref.Context().RegistryStr())}
}
