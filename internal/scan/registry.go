package scan

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	xhttp "github.com/aquasecurity/trivy/pkg/x/http"
	"go.uber.org/zap"
)

// Keyring holds registry credentials read from a Docker config JSON (the
// "kubernetes.io/dockerconfigjson" secret format, or the legacy .dockercfg
// format). Credential helpers and stores are not supported: a mounted secret
// is self-contained. Nothing in a Keyring is ever logged.
type Keyring struct {
	entries []keyEntry
}

type keyEntry struct {
	// host is "registry[:port]", or ".example.com" for a "*.example.com"
	// wildcard.
	host     string
	wildcard bool
	cred     credential
}

type credential struct {
	Username string
	Password string
	// Token is a registry bearer token ("registrytoken").
	Token string
}

// dockerAuth is one entry of a Docker config's "auths".
type dockerAuth struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
	RegistryToken string `json:"registrytoken"`
}

// KeyringSource provides the current credentials.
type KeyringSource interface {
	Keyring() *Keyring
}

// Keyring implements KeyringSource with fixed credentials.
func (k *Keyring) Keyring() *Keyring { return k }

// KeyringFile is a Docker config JSON file that is read again when it
// changes, so a rotated Kubernetes secret (updated in place in its volume)
// is picked up without a restart. A change that does not parse keeps the
// previous credentials.
type KeyringFile struct {
	path  string
	log   *zap.Logger
	every time.Duration

	mu      sync.Mutex
	cur     *Keyring
	stat    os.FileInfo
	checked time.Time
}

// OpenKeyringFile reads path; it must parse now.
func OpenKeyringFile(path string, log *zap.Logger) (*KeyringFile, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("registry config %s: %w", path, err)
	}
	k, err := LoadKeyring(path)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &KeyringFile{path: path, log: log, every: 10 * time.Second, cur: k, stat: st, checked: time.Now()}, nil
}

// Keyring returns the current credentials, re-reading the file when it
// changed (checked at most every 10 s).
func (f *KeyringFile) Keyring() *Keyring {
	f.mu.Lock()
	defer f.mu.Unlock()
	if time.Since(f.checked) < f.every {
		return f.cur
	}
	f.checked = time.Now()
	st, err := os.Stat(f.path)
	if err != nil {
		f.log.Warn("registry config unreadable; keeping the credentials read before", zap.String("path", f.path), zap.Error(err))
		return f.cur
	}
	if os.SameFile(st, f.stat) && st.ModTime().Equal(f.stat.ModTime()) && st.Size() == f.stat.Size() {
		return f.cur
	}
	k, err := LoadKeyring(f.path)
	if err != nil {
		f.log.Warn("changed registry config does not parse; keeping the credentials read before", zap.Error(err))
		return f.cur
	}
	f.cur, f.stat = k, st
	f.log.Info("registry credentials reloaded", zap.String("path", f.path), zap.Int("registries", k.Len()))
	return f.cur
}

// LoadKeyring reads a Docker config JSON file. Errors name the file and the
// registry entry at fault, never a credential.
func LoadKeyring(path string) (*Keyring, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("registry config %s: %w", path, err)
	}
	k, err := ParseKeyring(data)
	if err != nil {
		return nil, fmt.Errorf("registry config %s: %w", path, err)
	}
	return k, nil
}

// ParseKeyring parses a Docker config JSON document.
func ParseKeyring(data []byte) (*Keyring, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, errors.New("not a JSON object (want a Docker config: {\"auths\": {...}})")
	}
	auths := map[string]dockerAuth{}
	if raw, ok := top["auths"]; ok {
		if err := json.Unmarshal(raw, &auths); err != nil {
			return nil, errors.New(`"auths": want an object of registry entries`)
		}
	} else {
		// Legacy .dockercfg: the registry entries at the top level.
		for host, raw := range top {
			if host == "credsStore" || host == "credHelpers" {
				continue
			}
			var a dockerAuth
			if err := json.Unmarshal(raw, &a); err != nil {
				return nil, fmt.Errorf("entry %q: want an object with \"auth\"", host)
			}
			auths[host] = a
		}
	}
	k := &Keyring{}
	hosts := make([]string, 0, len(auths))
	for h := range auths {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, raw := range hosts {
		a := auths[raw]
		c := credential{Username: a.Username, Password: a.Password, Token: a.RegistryToken}
		if a.Auth != "" {
			dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(a.Auth))
			if err != nil {
				return nil, fmt.Errorf("entry %q: \"auth\" is not base64", raw)
			}
			user, pass, ok := strings.Cut(string(dec), ":")
			if !ok {
				return nil, fmt.Errorf("entry %q: \"auth\" does not decode to user:password", raw)
			}
			c.Username, c.Password = user, pass
		}
		if a.IdentityToken != "" && c.Password == "" && c.Token == "" {
			return nil, fmt.Errorf("entry %q: identity tokens (OAuth refresh tokens) are not supported; use a username and password or token", raw)
		}
		if c.Username == "" && c.Password == "" && c.Token == "" {
			continue
		}
		host := normalizeRegistry(raw)
		if host == "" {
			return nil, fmt.Errorf("entry %q: not a registry host", raw)
		}
		e := keyEntry{host: host, cred: c}
		if strings.HasPrefix(host, "*.") {
			e.host, e.wildcard = host[1:], true
		}
		k.entries = append(k.entries, e)
	}
	return k, nil
}

// lookup returns the credential for a registry ("host[:port]"): an exact
// entry wins over a wildcard one.
func (k *Keyring) lookup(registry string) (credential, bool) {
	if k == nil {
		return credential{}, false
	}
	registry = normalizeRegistry(registry)
	for _, e := range k.entries {
		if !e.wildcard && e.host == registry {
			return e.cred, true
		}
	}
	hostOnly, _, _ := strings.Cut(registry, ":")
	for _, e := range k.entries {
		if e.wildcard && strings.HasSuffix(hostOnly, e.host) {
			return e.cred, true
		}
	}
	return credential{}, false
}

// Len reports how many registries have credentials.
func (k *Keyring) Len() int {
	if k == nil {
		return 0
	}
	return len(k.entries)
}

// secrets lists every password and token, so error messages can be
// scrubbed of them.
func (k *Keyring) secrets() []string {
	if k == nil {
		return nil
	}
	var out []string
	for _, e := range k.entries {
		for _, s := range []string{e.cred.Password, e.cred.Token} {
			if len(s) >= 4 {
				out = append(out, s)
			}
		}
	}
	return out
}

// dockerHubAliases all mean Docker Hub; go-containerregistry calls it
// index.docker.io.
var dockerHubAliases = []string{"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}

// normalizeRegistry turns a config key ("https://index.docker.io/v1/",
// "Registry.Example.com:5000") into "host[:port]".
func normalizeRegistry(s string) string {
	s = strings.TrimSpace(strings.ToLower(s))
	s = strings.TrimPrefix(s, "https://")
	s = strings.TrimPrefix(s, "http://")
	s, _, _ = strings.Cut(s, "/")
	if slices.Contains(dockerHubAliases, s) {
		return "index.docker.io"
	}
	return s
}

// hostSet matches registries against --insecure-registry values: an entry
// with a port matches that port only, an entry without one matches any port.
type hostSet []string

func (h hostSet) match(registry string) bool {
	registry = normalizeRegistry(registry)
	hostOnly, _, _ := strings.Cut(registry, ":")
	for _, e := range h {
		e = normalizeRegistry(e)
		if e == registry || (!strings.Contains(e, ":") && e == hostOnly) {
			return true
		}
	}
	return false
}

// redactor removes known secrets from text that may end up in a log, a
// result or a message.
type redactor []string

func (r redactor) redact(s string) string {
	for _, secret := range r {
		s = strings.ReplaceAll(s, secret, "[redacted]")
	}
	return s
}

// fetchStats counts what one scan fetched from registries.
type fetchStats struct {
	requests atomic.Int64
	bytes    atomic.Int64
}

// scanTransport is the HTTP transport Trivy uses for one scan (handed over
// through the context, as Trivy's own tests do). It binds every registry
// request to the scan's context — Trivy calls go-containerregistry without
// one, so a hanging registry would otherwise outlive --scan-timeout — stamps
// our user agent and counts requests and bytes.
type scanTransport struct {
	base      *http.Transport
	ctx       context.Context
	userAgent string
	stats     *fetchStats
}

var _ xhttp.Transport = (*scanTransport)(nil)

// Build implements Trivy's xhttp.Transport.
func (t *scanTransport) Build(opts ...xhttp.TransportOption) http.RoundTripper {
	base := t.base
	if len(opts) > 0 {
		base = base.Clone()
		for _, o := range opts {
			o(base)
		}
	}
	return &boundRoundTripper{next: base, scan: t}
}

type boundRoundTripper struct {
	next http.RoundTripper
	scan *scanTransport
}

func (b *boundRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	scanCtx := b.scan.ctx
	if err := scanCtx.Err(); err != nil {
		return nil, fmt.Errorf("%s %s%s: %w", req.Method, req.URL.Host, req.URL.Path, err)
	}
	ctx, cancel := context.WithCancel(req.Context())
	stop := context.AfterFunc(scanCtx, cancel)
	out := req.Clone(ctx)
	ua := b.scan.userAgent
	if prev := req.Header.Get("User-Agent"); prev != "" {
		ua += " " + prev
	}
	out.Header.Set("User-Agent", ua)
	b.scan.stats.requests.Add(1)
	resp, err := b.next.RoundTrip(out)
	if err != nil {
		stop()
		cancel()
		if serr := scanCtx.Err(); serr != nil {
			// Report the scan's own deadline, not the transport's wording.
			return nil, fmt.Errorf("%s %s%s: %w", req.Method, req.URL.Host, req.URL.Path, serr)
		}
		return nil, err
	}
	resp.Body = &boundBody{ReadCloser: resp.Body, stats: b.scan.stats, scanCtx: scanCtx, done: func() { stop(); cancel() }}
	return resp, nil
}

// boundBody releases the request's context when the body is closed and
// counts the bytes read.
type boundBody struct {
	io.ReadCloser
	stats   *fetchStats
	scanCtx context.Context
	done    func()
}

func (b *boundBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.stats.bytes.Add(int64(n))
	if err != nil && !errors.Is(err, io.EOF) {
		if serr := b.scanCtx.Err(); serr != nil {
			return n, fmt.Errorf("reading registry response: %w", serr)
		}
	}
	return n, err
}

func (b *boundBody) Close() error {
	err := b.ReadCloser.Close()
	b.done()
	return err
}
