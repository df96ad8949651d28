package deploy

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// testRegistry runs an in-process OCI registry over HTTPS and returns its
// host:port and a CA file that trusts it. Tools get the CA through
// SSL_CERT_FILE (Go's system roots), so the commands need no insecure flag:
// they run exactly as documented.
func testRegistry(t *testing.T) (host, caFile string) {
	t.Helper()
	srv := httptest.NewTLSServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	caFile = filepath.Join(t.TempDir(), "registry-ca.crt")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(srv.URL, "https://"), caFile
}

// repoRootDir is the repository root (the directory holding go.work).
func repoRootDir(t *testing.T) string {
	t.Helper()
	helm := tool(t, "helm") // <root>/.tools/bin/helm
	return filepath.Dir(filepath.Dir(filepath.Dir(helm)))
}

// pushChart runs `make chart-push REGISTRY=<host>/charts` as documented and
// returns the packaged archive.
func pushChart(t *testing.T, host, caFile, version string) string {
	t.Helper()
	out := t.TempDir()
	env, err := helmEnv()
	if err != nil {
		t.Fatal(err)
	}
	// IMAGE_TAG=dev: the chart deploys the images of the chart directory's
	// appVersion, so that the archive renders like the directory.
	cmd := exec.Command("make", "--no-print-directory", "-C", repoRootDir(t), "chart-push",
		"REGISTRY="+host+"/charts", "CHART_VERSION="+version, "CHART_OUT="+out, "IMAGE_TAG=dev")
	cmd.Env = append(withoutMakeVars(env), "SSL_CERT_FILE="+caFile)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make chart-push: %v\n%s", err, b)
	}
	return filepath.Join(out, "fleetscan-"+version+".tgz")
}

// TestChartPushPull: `make chart-push` publishes the packaged chart as an
// OCI artifact (Helm's media types) and `helm pull oci://…` brings back the
// same archive, which renders the same objects as the chart's directory —
// so the kustomize sources behind files/ were packed, not left behind as
// links.
func TestChartPushPull(t *testing.T) {
	host, caFile := testRegistry(t)
	const version = "0.1.0-test.1"
	tgz := pushChart(t, host, caFile, version)

	ref, err := name.ParseReference(host + "/charts/fleetscan:" + version)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(ref, remote.WithTransport(trusting(t, caFile)))
	if err != nil {
		t.Fatalf("the chart is not in the registry: %v", err)
	}
	man, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		t.Fatal(err)
	}
	if man.Config.MediaType != "application/vnd.cncf.helm.config.v1+json" || len(man.Layers) != 1 || man.Layers[0].MediaType != "application/vnd.cncf.helm.chart.content.v1.tar+gzip" {
		t.Errorf("manifest %+v: not a Helm chart artifact", man)
	}

	pulled := t.TempDir()
	if _, err := runHelmWith([]string{"SSL_CERT_FILE=" + caFile}, "pull", "oci://"+host+"/charts/fleetscan", "--version", version, "--destination", pulled); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(tgz)
	got, err := os.ReadFile(filepath.Join(pulled, "fleetscan-"+version+".tgz"))
	if err != nil || sha256.Sum256(want) != sha256.Sum256(got) || len(want) == 0 {
		t.Fatalf("pulled archive differs from the pushed one (%v)", err)
	}

	fromArchive, err := runHelm("template", "fleetscan", filepath.Join(pulled, "fleetscan-"+version+".tgz"), "-f", valuesFile(helmFleet))
	if err != nil {
		t.Fatal(err)
	}
	fromDir, err := runHelm("template", "fleetscan", chartDir, "-f", valuesFile(helmFleet))
	if err != nil {
		t.Fatal(err)
	}
	fromArchive = bytes.ReplaceAll(fromArchive, []byte("fleetscan-"+version), []byte("fleetscan-0.1.0"))
	if !bytes.Equal(fromArchive, fromDir) {
		t.Errorf("the pulled chart renders differently from %s", chartDir)
	}

	t.Run("REGISTRY is required", func(t *testing.T) {
		cmd := exec.Command("make", "--no-print-directory", "-C", repoRootDir(t), "chart-push", "CHART_OUT="+t.TempDir())
		cmd.Env = withoutMakeVars(os.Environ())
		b, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(b), "set REGISTRY=") {
			t.Errorf("make chart-push without REGISTRY: %v\n%s", err, b)
		}
	})
}

// trusting is an HTTP transport that trusts the CA in caFile.
func trusting(t *testing.T, caFile string) http.RoundTripper {
	t.Helper()
	pemData, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		t.Fatalf("%s: no certificate", caFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return tr
}

// withoutMakeVars drops the variables a calling make passes to its children
// (the tests run under `make test`, whose command-line variables such as
// IMAGE_TAG would otherwise reach the make the test runs) and REGISTRY.
func withoutMakeVars(env []string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "REGISTRY", "CHART_VERSION", "CHART_APP_VERSION", "CHART_OUT", "IMAGE_TAG":
			continue
		}
		out = append(out, kv)
	}
	return out
}
