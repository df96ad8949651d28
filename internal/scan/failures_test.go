package scan

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/fleetscan/fleetscan/internal/deadport"
	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// TestScanFailureClasses makes the registry misbehave on purpose and checks
// the class each failure gets. Rate limits and server errors are retried
// inside go-containerregistry first (about 4 s), so the cases run in
// parallel on one scanner.
func TestScanFailureClasses(t *testing.T) {
	e := newEnv(t, TrivyConfig{})
	cases := []struct {
		name      string
		sample    string
		fault     fixture.FaultKind
		blobs     bool
		timeout   time.Duration
		class     contract.FailureClass
		retryable bool
	}{
		{name: "manifest 404", sample: "alpine-3.18", fault: fixture.FaultNotFound, class: contract.FailureNotFound},
		{name: "manifest 401", sample: "alpine-curl", fault: fixture.FaultUnauthorized, class: contract.FailureUnauthorized},
		{name: "manifest 403", sample: "debian-12", fault: fixture.FaultForbidden, class: contract.FailureUnauthorized},
		{name: "manifest 429", sample: "python-app", fault: fixture.FaultRateLimited, class: contract.FailureRateLimited, retryable: true},
		{name: "manifest 500", sample: "go-agent", fault: fixture.FaultServerError, class: contract.FailureInternal, retryable: true},
		{name: "blob 500", sample: "static-site", fault: fixture.FaultServerError, blobs: true, class: contract.FailureInternal, retryable: true},
		{name: "manifest hangs", sample: "node-app", fault: fixture.FaultHang, timeout: time.Second, class: contract.FailureTimeout, retryable: true},
	}
	for _, tc := range cases {
		p := e.pushed[tc.sample]
		e.reg.InjectFault(fixture.Fault{Kind: tc.fault, Repository: p.Spec.Repository, Manifests: !tc.blobs, Blobs: tc.blobs})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			timeout := tc.timeout
			if timeout == 0 {
				timeout = time.Minute
			}
			ctx, cancel := context.WithTimeout(t.Context(), timeout)
			defer cancel()
			start := time.Now()
			_, err := e.scanner.Scan(ctx, e.request(t, tc.sample))
			assertClass(t, err, tc.class, tc.retryable)
			if tc.fault == fixture.FaultHang && time.Since(start) > timeout+5*time.Second {
				t.Errorf("a hanging registry held the scan %s past its %s deadline", time.Since(start)-timeout, timeout)
			}
		})
	}
}

func TestScanTriesMirrors(t *testing.T) {
	e := newEnv(t, TrivyConfig{})
	p := e.pushed["alpine-curl"]
	want := e.request(t, "alpine-curl")

	t.Run("primary missing", func(t *testing.T) {
		req := want
		req.References = []string{e.reg.Host + "/nowhere/curl:8.3.0", p.Repository + ":8.3.0"}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		rep, err := e.scanner.Scan(ctx, req)
		if err != nil {
			t.Fatalf("scan: %v", err)
		}
		// The tag is ignored: the repository is pinned to the digest.
		if rep.Reference != p.Repository+"@"+p.Digest {
			t.Errorf("reference = %q, want the mirror pinned to the digest", rep.Reference)
		}
		if len(rep.Findings) == 0 {
			t.Error("no findings from the mirror")
		}
	})
	t.Run("all missing", func(t *testing.T) {
		req := want
		req.References = []string{e.reg.Host + "/nowhere/a", e.reg.Host + "/nowhere/b"}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		_, err := e.scanner.Scan(ctx, req)
		assertClass(t, err, contract.FailureNotFound, false)
		for _, r := range []string{"nowhere/a", "nowhere/b"} {
			if !strings.Contains(err.Error(), r) {
				t.Errorf("error does not name reference %s: %v", r, err)
			}
		}
	})
	t.Run("primary missing, mirror rate limited", func(t *testing.T) {
		e.reg.InjectFault(fixture.Fault{Kind: fixture.FaultRateLimited, Repository: p.Spec.Repository, Manifests: true})
		defer e.reg.ClearFaults()
		req := want
		req.References = []string{e.reg.Host + "/nowhere/curl", p.Repository}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		_, err := e.scanner.Scan(ctx, req)
		// Retrying may succeed on the mirror, so the job is retryable.
		assertClass(t, err, contract.FailureRateLimited, true)
	})
	t.Run("registry refuses connections", func(t *testing.T) {
		req := want
		dead := deadport.Addr(t)
		req.References = []string{dead + "/fixtures/curl"}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := e.scanner.Scan(ctx, req)
		assertClass(t, err, contract.FailureUnreachable, true)
	})
	t.Run("invalid reference", func(t *testing.T) {
		req := want
		req.References = []string{"Not A Reference!!"}
		_, err := e.scanner.Scan(t.Context(), req)
		assertClass(t, err, contract.FailureUnsupported, false)
	})
}

// basicAuth requires user:password on every registry request.
func basicAuth(user, password string) func(http.Handler) http.Handler {
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != want {
				w.Header().Set("WWW-Authenticate", `Basic realm="fixture"`)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func TestScanWithRegistryCredentials(t *testing.T) {
	const user, password = "puller", "pa55-w0rd-that-must-not-leak"
	// The registry accepts the fixture pushes only because auth is off
	// until the images are in: enable it afterwards.
	var authOn atomic.Bool
	auth := basicAuth(user, password)
	gate := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if authOn.Load() {
				auth(next).ServeHTTP(w, r)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	e := newEnv(t, TrivyConfig{}, fixture.WithMiddleware(gate))
	authOn.Store(true)

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, err := e.scanner.Scan(ctx, e.request(t, "alpine-3.18"))
	assertClass(t, err, contract.FailureUnauthorized, false)

	for _, tc := range []struct {
		name     string
		password string
		ok       bool
	}{
		{"right password", password, true},
		{"wrong password", password + "-wrong", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, "http://"+e.reg.Host+"/v1/",
				base64.StdEncoding.EncodeToString([]byte(user+":"+tc.password)))
			kr, err := ParseKeyring([]byte(cfg))
			if err != nil {
				t.Fatal(err)
			}
			e.reopenScanner(t, TrivyConfig{Keyring: kr})
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			rep, err := e.scanner.Scan(ctx, e.request(t, "alpine-3.18"))
			if tc.ok {
				if err != nil {
					t.Fatalf("scan with credentials: %v", err)
				}
				if len(rep.Findings) == 0 {
					t.Error("no findings")
				}
				return
			}
			assertClass(t, err, contract.FailureUnauthorized, false)
			if strings.Contains(err.Error(), tc.password) || strings.Contains(fmt.Sprintf("%+v", err), tc.password) {
				t.Errorf("error leaks the password: %v", err)
			}
		})
	}
}

// TestScanInsecureRegistry scans from a registry with a certificate nobody
// signed: refused by default, accepted for a host in InsecureRegistries.
func TestScanInsecureRegistry(t *testing.T) {
	e := newEnv(t, TrivyConfig{})
	srv := httptest.NewTLSServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "https://")
	spec, err := fixture.SampleImage("alpine-curl")
	if err != nil {
		t.Fatal(err)
	}
	img, err := spec.Image(spec.Platforms[0])
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host + "/lab/curl:8.3.0")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithTransport(srv.Client().Transport)); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	req := Request{Digest: d.String(), Platform: spec.Platforms[0], References: []string{host + "/lab/curl"}}

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, err = e.scanner.Scan(ctx, req)
	// Retrying cannot fix a certificate: recorded at once.
	assertClass(t, err, contract.FailureInternal, false)
	if !strings.Contains(err.Error(), "certificate") || !strings.Contains(err.Error(), "--insecure-registry") {
		t.Fatalf("scan of an unverifiable registry: %v, want a certificate error with advice", err)
	}
	e.reopenScanner(t, TrivyConfig{InsecureRegistries: []string{host}})
	rep, err := e.scanner.Scan(ctx, req)
	if err != nil {
		t.Fatalf("scan with --insecure-registry %s: %v", host, err)
	}
	if len(rep.Findings) != len(spec.Expected) {
		t.Errorf("%d findings, want %d", len(rep.Findings), len(spec.Expected))
	}
}
