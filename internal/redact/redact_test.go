package redact_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/fleetscan/fleetscan/internal/redact"
)

func TestText(t *testing.T) {
	for _, tc := range []struct{ in, secret string }{
		{`--nats-url: "nats://admin:s3cr3t@nats:4222" is not a URL`, "s3cr3t"},
		{`connect to nats://T0KENVALUE@nats:4222: refused`, "T0KENVALUE"},
		{`--nats-url: "http://user:pa ss%zz@host" unsupported`, "pa ss%zz"},
		{`tls://u:p%40ss@h1:4222,nats://v:w0rd@h2`, "w0rd"},
		{`--s3-endpoint "https://AKIAXX:wJalrXUtnFEMI@minio:9000"`, "wJalrXUtnFEMI"},
		{`GET https://registry/v2/token?scope=x&access_token=abcdef123456&service=y`, "abcdef123456"},
		{`https://bucket.s3/x?X-Amz-Signature=deadbeefcafe&X-Amz-Credential=AKIA/123`, "deadbeefcafe"},
		{`request failed: Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.payload.sig`, "eyJhbGciOiJSUzI1NiJ9"},
		{`password=hunter22 user=bob`, "hunter22"},
	} {
		out := redact.Text(tc.in)
		if strings.Contains(out, tc.secret) {
			t.Errorf("Text(%q) = %q: leaks %q", tc.in, out, tc.secret)
		}
		if !strings.Contains(out, redact.Mask) {
			t.Errorf("Text(%q) = %q: nothing redacted", tc.in, out)
		}
	}
	for _, keep := range []string{
		"docker.io/library/nginx@sha256:0123456789abcdef",
		"oci://registry:5000/app@sha256:abc",
		"--state-dir /var/lib/fleetscan is in use by pid 42",
		"nats://nats:4222",
	} {
		if out := redact.Text(keep); out != keep {
			t.Errorf("Text(%q) = %q, want it unchanged", keep, out)
		}
	}
}

func TestURL(t *testing.T) {
	if got := redact.URL("nats://a:b@h:4222"); got != "nats://REDACTED@h:4222" {
		t.Errorf("URL = %q", got)
	}
	if got := redact.URL("nats://h:4222"); got != "nats://h:4222" {
		t.Errorf("URL = %q", got)
	}
}

func TestRedactorHidesKnownSecretsInWrites(t *testing.T) {
	r := redact.New("correct horse battery", "abc") // "abc" too short to hide
	var buf bytes.Buffer
	w := r.Writer(&buf)
	fmt.Fprintf(w, "auth refused for password correct horse battery (and correct+horse+battery escaped) abc\n")
	out := buf.String()
	if strings.Contains(out, "correct horse") || strings.Contains(out, "correct+horse") || !strings.Contains(out, " abc") {
		t.Fatalf("writer output %q", out)
	}
	if r.Writer(w) != w {
		t.Error("wrapping twice")
	}
}
