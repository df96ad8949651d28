package inventory

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/fleetscan/fleetscan/internal/imageref"
	"github.com/fleetscan/fleetscan/internal/version"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// RegistryResolver resolves tags with a HEAD request for the manifest, the
// way a kubelet's pull would start. The digest it returns is the one the tag
// points at (an index for multi-platform images, like the repo digests
// runtimes report). Results are cached for the resolver's lifetime, so a tag
// used in many pods and clusters is looked up once.
type RegistryResolver struct {
	keychain authn.Keychain
	insecure map[string]bool
	timeout  time.Duration
	rt       http.RoundTripper

	mu    sync.Mutex
	cache map[resolveKey]*resolveCall
}

type resolveKey struct {
	ref      string
	platform contract.Platform
}

type resolveCall struct {
	done   chan struct{}
	digest string
	err    error
}

// RegistryOptions configure a RegistryResolver.
type RegistryOptions struct {
	// ConfigFile is a Docker config JSON ("auths", credential helpers). When
	// empty the default keychain is used ($DOCKER_CONFIG, ~/.docker).
	ConfigFile string
	// Insecure lists registry hosts (host[:port]) reached over plain HTTP.
	Insecure []string
	// Timeout bounds each lookup (default 30s).
	Timeout time.Duration
	// Transport overrides the HTTP transport (tests).
	Transport http.RoundTripper
}

// NewRegistryResolver returns a resolver; it fails when ConfigFile cannot be
// read or parsed.
func NewRegistryResolver(o RegistryOptions) (*RegistryResolver, error) {
	r := &RegistryResolver{keychain: authn.DefaultKeychain, insecure: map[string]bool{}, timeout: o.Timeout,
		rt: o.Transport, cache: map[resolveKey]*resolveCall{}}
	if r.timeout <= 0 {
		r.timeout = 30 * time.Second
	}
	if r.rt == nil {
		r.rt = remote.DefaultTransport
	}
	for _, h := range o.Insecure {
		r.insecure[h] = true
	}
	if o.ConfigFile != "" {
		kc, err := fileKeychain(o.ConfigFile)
		if err != nil {
			return nil, fmt.Errorf("--registry-config %s: %w", o.ConfigFile, err)
		}
		r.keychain = kc
	}
	return r, nil
}

// Resolve implements TagResolver.
func (r *RegistryResolver) Resolve(ctx context.Context, ref imageref.Reference, p contract.Platform) (string, error) {
	k := resolveKey{ref.String(), p}
	r.mu.Lock()
	c, ok := r.cache[k]
	if !ok {
		c = &resolveCall{done: make(chan struct{})}
		r.cache[k] = c
	}
	r.mu.Unlock()
	if ok {
		select {
		case <-c.done:
			return c.digest, c.err
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	c.digest, c.err = r.head(ctx, ref, p)
	close(c.done)
	return c.digest, c.err
}

func (r *RegistryResolver) head(ctx context.Context, ref imageref.Reference, p contract.Platform) (string, error) {
	var opts []name.Option
	if r.insecure[ref.Domain()] {
		opts = append(opts, name.Insecure)
	}
	tag, err := name.NewTag(ref.Name+":"+ref.Tag, opts...)
	if err != nil {
		return "", fmt.Errorf("%s: %w", ref, err)
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	desc, err := remote.Head(tag,
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(r.keychain),
		remote.WithTransport(r.rt),
		remote.WithPlatform(v1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}),
		remote.WithUserAgent("fleetscan/"+version.Version),
	)
	if err != nil {
		return "", fmt.Errorf("HEAD %s: %w", ref, err)
	}
	return desc.Digest.String(), nil
}

// fileKeychain resolves credentials from one Docker config file.
type configKeychain struct{ cf *configfile.ConfigFile }

func fileKeychain(path string) (authn.Keychain, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cf, err := config.LoadFromReader(f)
	if err != nil {
		return nil, err
	}
	cf.Filename = path
	return configKeychain{cf}, nil
}

// Resolve implements authn.Keychain with the lookup order of the default
// keychain: the full repository first, then the registry host.
func (k configKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	for _, key := range []string{target.String(), target.RegistryStr()} {
		if key == name.DefaultRegistry {
			key = authn.DefaultAuthKey
		}
		cfg, err := k.cf.GetAuthConfig(key)
		if err != nil {
			return nil, fmt.Errorf("credentials for %s: %w", key, err)
		}
		cfg.ServerAddress = ""
		if cfg != (types.AuthConfig{}) {
			return authn.FromConfig(authn.AuthConfig{
				Username: cfg.Username, Password: cfg.Password, Auth: cfg.Auth,
				IdentityToken: cfg.IdentityToken, RegistryToken: cfg.RegistryToken,
			}), nil
		}
	}
	return authn.Anonymous, nil
}
