package scan

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	dbtypes "github.com/aquasecurity/trivy-db/pkg/types"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/hashicorp/go-multierror"
	"go.uber.org/zap/zaptest"
	"golang.org/x/xerrors"

	"github.com/fleetscan/fleetscan/pkg/contract"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestParseKeyring(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		config  string
		lookups map[string]credential // registry -> want (zero = none)
		wantErr string
	}{
		{
			name:   "dockerconfigjson auth",
			config: `{"auths":{"registry.example.com":{"auth":"` + b64("u:p:with:colons") + `"}}}`,
			lookups: map[string]credential{
				"registry.example.com":      {Username: "u", Password: "p:with:colons"},
				"registry.example.com:5000": {},
				"other.example.com":         {},
			},
		},
		{
			name:   "URL keys and Docker Hub aliases",
			config: `{"auths":{"https://index.docker.io/v1/":{"username":"hub","password":"pw"},"http://Reg.Example.com:5000/v2/":{"auth":"` + b64("a:b") + `"}}}`,
			lookups: map[string]credential{
				"index.docker.io":           {Username: "hub", Password: "pw"},
				"docker.io":                 {Username: "hub", Password: "pw"},
				"reg.example.com:5000":      {Username: "a", Password: "b"},
				"reg.example.com":           {},
				"registry-1.docker.io":      {Username: "hub", Password: "pw"},
				"quay.io":                   {},
				"reg.example.com:5000/repo": {Username: "a", Password: "b"},
			},
		},
		{
			name:   "legacy dockercfg",
			config: `{"registry.example.com":{"auth":"` + b64("old:style") + `","email":"x@example.com"}}`,
			lookups: map[string]credential{
				"registry.example.com": {Username: "old", Password: "style"},
			},
		},
		{
			name:   "wildcard loses to exact",
			config: `{"auths":{"*.example.com":{"auth":"` + b64("wild:1") + `"},"a.example.com":{"auth":"` + b64("exact:2") + `"}}}`,
			lookups: map[string]credential{
				"a.example.com":      {Username: "exact", Password: "2"},
				"b.example.com:8443": {Username: "wild", Password: "1"},
				"example.com":        {},
			},
		},
		{
			name:    "registry token",
			config:  `{"auths":{"ghcr.io":{"registrytoken":"tok"}}}`,
			lookups: map[string]credential{"ghcr.io": {Token: "tok"}},
		},
		{name: "identity token only", config: `{"auths":{"r.example.com":{"identitytoken":"refresh-secret"}}}`, wantErr: `entry "r.example.com": identity tokens`},
		{name: "bad base64", config: `{"auths":{"r.example.com":{"auth":"%%%secret%%%"}}}`, wantErr: `entry "r.example.com": "auth" is not base64`},
		{name: "auth without colon", config: `{"auths":{"r.example.com":{"auth":"` + b64("nocolon") + `"}}}`, wantErr: "does not decode to user:password"},
		{name: "not JSON", config: `auths: yes`, wantErr: "not a JSON object"},
		{name: "auths not an object", config: `{"auths":[1]}`, wantErr: `"auths": want an object`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseKeyring([]byte(tc.config))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				for _, secret := range []string{"refresh-secret", "secret%%%", "nocolon"} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("error leaks credential material: %v", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for reg, want := range tc.lookups {
				got, ok := k.lookup(reg)
				if ok != (want != credential{}) || got != want {
					t.Errorf("lookup(%q) = %+v, %v; want %+v", reg, got, ok, want)
				}
			}
		})
	}
}

func TestHostSetMatch(t *testing.T) {
	t.Parallel()
	set := hostSet{"registry:5000", "lab.example.com", "HTTP://Mixed.Example.com:80/"}
	cases := map[string]bool{
		"registry:5000":        true,
		"registry:5001":        false,
		"registry":             false,
		"lab.example.com":      true,
		"lab.example.com:8443": true,
		"mixed.example.com:80": true,
		"mixed.example.com:81": false,
		"example.com":          false,
		"sub.lab.example.com":  false,
	}
	for reg, want := range cases {
		if got := set.match(reg); got != want {
			t.Errorf("match(%q) = %v, want %v", reg, got, want)
		}
	}
}

func TestPin(t *testing.T) {
	t.Parallel()
	const d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	const other = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	cases := []struct {
		ref, want, reg string
	}{
		{"registry.example.com/team/app", "registry.example.com/team/app@" + d, "registry.example.com"},
		{"registry.example.com/team/app:1.2", "registry.example.com/team/app@" + d, "registry.example.com"},
		{"registry.example.com/team/app@" + other, "registry.example.com/team/app@" + d, "registry.example.com"},
		{"nginx:1.25", "index.docker.io/library/nginx@" + d, "index.docker.io"},
		{"docker.io/library/nginx@" + d, "index.docker.io/library/nginx@" + d, "index.docker.io"},
		{"127.0.0.1:5000/x/y:latest", "127.0.0.1:5000/x/y@" + d, "127.0.0.1:5000"},
	}
	for _, tc := range cases {
		got, reg, err := pin(tc.ref, d, nil)
		if err != nil {
			t.Errorf("pin(%q): %v", tc.ref, err)
			continue
		}
		if got != tc.want || reg != tc.reg {
			t.Errorf("pin(%q) = %q, %q; want %q, %q", tc.ref, got, reg, tc.want, tc.reg)
		}
	}
	if _, _, err := pin("UPPER/case:tag", d, nil); err == nil {
		t.Error("pin accepted an invalid reference")
	}
}

func TestClassOf(t *testing.T) {
	t.Parallel()
	terr := func(status int, codes ...transport.ErrorCode) error {
		e := &transport.Error{StatusCode: status}
		for _, c := range codes {
			e.Errors = append(e.Errors, transport.Diagnostic{Code: c})
		}
		// Wrapped the way Trivy returns it: xerrors + multierror.
		return xerrors.Errorf("unable to find the specified image: %w", multierror.Append(nil, fmt.Errorf("remote error: %w", e)))
	}
	cases := []struct {
		name string
		err  error
		want contract.FailureClass
	}{
		{"manifest unknown", terr(404, transport.ManifestUnknownErrorCode), contract.FailureNotFound},
		{"name unknown on 401", terr(401, transport.NameUnknownErrorCode), contract.FailureNotFound},
		{"plain 404", terr(404), contract.FailureNotFound},
		{"401", terr(401), contract.FailureUnauthorized},
		{"denied", terr(403, transport.DeniedErrorCode), contract.FailureUnauthorized},
		{"toomanyrequests", terr(429, transport.TooManyRequestsErrorCode), contract.FailureRateLimited},
		{"503 with rate limit code", terr(503, transport.TooManyRequestsErrorCode), contract.FailureRateLimited},
		{"500", terr(500, transport.UnknownErrorCode), contract.FailureInternal},
		{"502", terr(502), contract.FailureInternal},
		{"504", terr(504), contract.FailureTimeout},
		{"400", terr(400), contract.FailureUnsupported},
		{"manifest invalid", terr(400, transport.ManifestInvalidErrorCode), contract.FailureUnsupported},
		{"deadline", fmt.Errorf("GET x: %w", context.DeadlineExceeded), contract.FailureTimeout},
		{"schema 1", fmt.Errorf("unsupported MediaType: %q, %w", "v1+prettyjws", remote.ErrSchema1), contract.FailureUnsupported},
		{"artifact type", errors.New(`unsupported artifact type "application/vnd.cncf.helm.config.v1+json" for image`), contract.FailureUnsupported},
		{"platform missing", errors.New("no child with platform {s390x linux} in index x"), contract.FailureNotFound},
		{"anything else", errors.New("disk full"), contract.FailureInternal},
		// A registry that cannot be reached at all is its own class (it
		// was internal, retried for ~150 s).
		{"connection refused", fmt.Errorf("GET https://r/v2/: %w", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), contract.FailureUnreachable},
		{"no such host", fmt.Errorf("GET https://r/v2/: %w", &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "r", IsNotFound: true}}), contract.FailureUnreachable},
		{"DNS timeout is a timeout", &net.DNSError{Err: "i/o timeout", Name: "r", IsTimeout: true}, contract.FailureInternal},
		{"no route", fmt.Errorf("dial: %w", syscall.EHOSTUNREACH), contract.FailureUnreachable},
		{"flattened text", errors.New(`Get "https://r/v2/": dial tcp 10.0.0.1:443: connect: connection refused`), contract.FailureUnreachable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := classOf(tc.err); got != tc.want {
				t.Fatalf("classOf = %s, want %s", got, tc.want)
			}
			c, retry := contract.Classify(classify(tc.err))
			if c != tc.want || retry != tc.want.Retryable() {
				t.Fatalf("classify = %s/%v, want %s/%v", c, retry, tc.want, tc.want.Retryable())
			}
		})
	}
}

func TestPickCVSS(t *testing.T) {
	t.Parallel()
	all := dbtypes.VendorCVSS{
		"nvd":    {V3Score: 9.8, V3Vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", V2Score: 7.5, V2Vector: "AV:N/AC:L/Au:N/C:P/I:P/A:P"},
		"redhat": {V3Score: 7.5, V3Vector: "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H"},
		"ghsa":   {V40Score: 8.7, V40Vector: "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:N/VA:N/SC:N/SI:N/SA:N"},
		"zzz":    {V2Score: 5.0, V2Vector: "AV:N/AC:L/Au:N/C:N/I:N/A:P"},
	}
	cases := []struct {
		name   string
		all    dbtypes.VendorCVSS
		source dbtypes.SourceID
		want   *contract.CVSS
	}{
		{"severity source wins", all, "redhat", &contract.CVSS{Source: "redhat", Score: 7.5, Vector: all["redhat"].V3Vector}},
		{"else NVD", all, "alpine", &contract.CVSS{Source: "nvd", Score: 9.8, Vector: all["nvd"].V3Vector}},
		{"v4 when no v3", dbtypes.VendorCVSS{"ghsa": all["ghsa"]}, "ghsa", &contract.CVSS{Source: "ghsa", Score: 8.7, Vector: all["ghsa"].V40Vector}},
		{"any source as last resort", dbtypes.VendorCVSS{"zzz": all["zzz"]}, "", &contract.CVSS{Source: "zzz", Score: 5.0, Vector: all["zzz"].V2Vector}},
		{"none", nil, "nvd", nil},
	}
	for _, tc := range cases {
		got := pickCVSS(tc.all, tc.source)
		if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
			t.Errorf("%s: pickCVSS = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// A registry that accepts the connection and never answers must not hold a
// scan past its context: Trivy calls go-containerregistry without one.
func TestScanTransportBindsRequestsToScan(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)

	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	stats := &fetchStats{}
	tr := (&scanTransport{base: http.DefaultTransport.(*http.Transport).Clone(), ctx: ctx, userAgent: "fleetscan/test", stats: stats}).Build()
	// The request itself carries no deadline, as go-containerregistry's.
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/v2/", nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = tr.RoundTrip(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v, want the scan's deadline", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("request outlived the scan by %s", el)
	}
	if stats.requests.Load() != 1 {
		t.Errorf("requests = %d, want 1", stats.requests.Load())
	}
}

func TestScanTransportCountsAndStampsUserAgent(t *testing.T) {
	t.Parallel()
	var ua string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ua = r.Header.Get("User-Agent")
		_, _ = w.Write([]byte("0123456789"))
	}))
	defer srv.Close()
	stats := &fetchStats{}
	tr := (&scanTransport{base: http.DefaultTransport.(*http.Transport).Clone(), ctx: t.Context(), userAgent: "fleetscan/test", stats: stats}).Build()
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("User-Agent", "go-containerregistry/v0.22.1")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n := 0
	for {
		m, err := resp.Body.Read(buf[n:])
		n += m
		if err != nil {
			break
		}
	}
	_ = resp.Body.Close()
	if ua != "fleetscan/test go-containerregistry/v0.22.1" {
		t.Errorf("user agent = %q", ua)
	}
	if req.Header.Get("User-Agent") != "go-containerregistry/v0.22.1" {
		t.Error("the caller's request was modified")
	}
	if stats.bytes.Load() != 10 || n != 10 {
		t.Errorf("bytes counted %d, read %d; want 10", stats.bytes.Load(), n)
	}
}

func TestRequestFor(t *testing.T) {
	t.Parallel()
	job := contract.ScanJob{
		ImageKey:      contract.ImageKey{Digest: "sha256:" + strings.Repeat("a", 64), Platform: contract.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}},
		Reference:     "r.example.com/a@sha256:" + strings.Repeat("a", 64),
		AltReferences: []string{"mirror.example.com/a", "r2.example.com/a:1"},
	}
	req := RequestFor(job)
	if err := req.Validate(); err != nil {
		t.Fatal(err)
	}
	want := []string{job.Reference, "mirror.example.com/a", "r2.example.com/a:1"}
	if strings.Join(req.References, ",") != strings.Join(want, ",") || req.Platform != job.Platform || req.Digest != job.Digest {
		t.Errorf("request = %+v", req)
	}
	for _, bad := range []Request{
		{Digest: "latest", Platform: job.Platform, References: want},
		{Digest: job.Digest, References: want},
		{Digest: job.Digest, Platform: job.Platform},
	} {
		if bad.Validate() == nil {
			t.Errorf("Validate(%+v) = nil, want an error", bad)
		}
	}
}

func TestKeyringFileReloadsRotatedSecret(t *testing.T) {
	t.Parallel()
	path := t.TempDir() + "/.dockerconfigjson"
	write := func(user, pass string) {
		t.Helper()
		cfg := `{"auths":{"r.example.com":{"auth":"` + b64(user+":"+pass) + `"}}}`
		if err := os.WriteFile(path+".tmp", []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		// Kubernetes swaps secret volume contents by rename.
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	write("u1", "first")
	f, err := OpenKeyringFile(path, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	f.every = 0
	if c, _ := f.Keyring().lookup("r.example.com"); c.Password != "first" {
		t.Fatalf("password = %q, want first", c.Password)
	}
	write("u2", "second")
	if c, _ := f.Keyring().lookup("r.example.com"); c.Username != "u2" || c.Password != "second" {
		t.Fatalf("after rotation: %+v, want u2/second", c)
	}
	if err := os.WriteFile(path, []byte("{broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, _ := f.Keyring().lookup("r.example.com"); c.Password != "second" {
		t.Fatalf("a broken update replaced the credentials: %+v", c)
	}
	if _, err := OpenKeyringFile(t.TempDir()+"/missing", nil); err == nil {
		t.Error("OpenKeyringFile accepted a missing file")
	}
}
