package s3upload_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/zap/zaptest"

	"github.com/fleetscan/fleetscan/internal/s3upload"
	"github.com/fleetscan/fleetscan/internal/s3upload/s3test"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		in, bucket, prefix, err string
	}{
		{in: "s3://reports", bucket: "reports"},
		{in: "s3://your-bucket/vuln-reports/", bucket: "your-bucket", prefix: "vuln-reports"},
		{in: "s3://b/a/b/c", bucket: "b", prefix: "a/b/c"},
		{in: "https://b/x", err: "want s3://bucket"},
		{in: "s3:///x", err: "bucket name is empty"},
		{in: "s3://bad bucket/x", err: "invalid character"},
	}
	for _, tt := range tests {
		b, p, err := s3upload.ParseURL(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseURL(%q) err = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || b != tt.bucket || p != tt.prefix {
			t.Errorf("ParseURL(%q) = %q, %q, %v", tt.in, b, p, err)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := s3upload.Defaults()
	ok.URL = "s3://b/p"
	tests := []struct {
		name string
		mod  func(*s3upload.Config)
		err  string
	}{
		{"disabled is valid", func(c *s3upload.Config) { c.URL = "" }, ""},
		{"valid", func(c *s3upload.Config) {}, ""},
		{"kms", func(c *s3upload.Config) { c.SSE, c.KMSKeyID = "aws:kms", "alias/reports" }, ""},
		{"bad sse", func(c *s3upload.Config) { c.SSE = "DES" }, `--s3-sse "DES"`},
		{"kms key without kms", func(c *s3upload.Config) { c.KMSKeyID = "k" }, "needs --s3-sse aws:kms"},
		{"bad endpoint", func(c *s3upload.Config) { c.Endpoint = "localhost:9000" }, "--s3-endpoint"},
		{"bad url", func(c *s3upload.Config) { c.URL = "bucket" }, "--s3-url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mod(&c)
			err := c.Validate()
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("err = %v, want %q", err, tt.err)
			}
		})
	}
}

func files(t *testing.T, content map[string]string) []s3upload.File {
	t.Helper()
	dir := t.TempDir()
	var out []s3upload.File
	for _, name := range []string{"report.csv", "report.json"} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content[name]), 0o644); err != nil {
			t.Fatal(err)
		}
		ct := "text/csv; charset=utf-8"
		if strings.HasSuffix(name, ".json") {
			ct = "application/json"
		}
		out = append(out, s3upload.File{Name: name, Path: p, ContentType: ct})
	}
	return out
}

func newUploader(t *testing.T, srv *s3test.Server, url string) *s3upload.Uploader {
	t.Helper()
	c := s3upload.Defaults()
	c.URL, c.Endpoint, c.PathStyle = url, srv.Endpoint, true
	c.Timeout = 30 * time.Second
	u, err := s3upload.New(t.Context(), c, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestUploadRoundTrip uploads two reports to a real S3-compatible server
// through the standard credential chain and reads them back: the dated
// keys keep each report, latest/ holds the newest.
func TestUploadRoundTrip(t *testing.T) {
	srv := s3test.Start(t, "reports")
	s3test.UseCredentials(t, srv.AccessKey, srv.SecretKey)
	u := newUploader(t, srv, "s3://reports/vuln-reports/")
	ctx := t.Context()
	day1 := time.Date(2025, 3, 10, 6, 0, 0, 0, time.UTC)

	keys, err := u.Upload(ctx, day1, "run-1", files(t, map[string]string{"report.csv": "a,b\n1,2\n", "report.json": `{"v":1}`}))
	if err != nil {
		t.Fatalf("%v\n%s", err, srv.Logs())
	}
	want := []string{
		"s3://reports/vuln-reports/2025-03-10/run-1/report.csv", "s3://reports/vuln-reports/2025-03-10/run-1/report.json",
		"s3://reports/vuln-reports/latest/report.csv", "s3://reports/vuln-reports/latest/report.json",
	}
	if strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Fatalf("keys %v\nwant %v", keys, want)
	}
	// The second report asks for server-side encryption.
	c := s3upload.Defaults()
	c.URL, c.Endpoint, c.PathStyle, c.SSE = "s3://reports/vuln-reports", srv.Endpoint, true, "AES256"
	sse, err := s3upload.New(ctx, c, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sse.Upload(ctx, day1.AddDate(0, 0, 1), "run-2", files(t, map[string]string{"report.csv": "a,b\n3,4\n", "report.json": `{"v":2}`})); err != nil {
		t.Fatal(err)
	}
	for key, body := range map[string]string{
		"vuln-reports/2025-03-10/run-1/report.csv":  "a,b\n1,2\n",
		"vuln-reports/2025-03-10/run-1/report.json": `{"v":1}`,
		"vuln-reports/2025-03-11/run-2/report.json": `{"v":2}`,
		"vuln-reports/latest/report.csv":            "a,b\n3,4\n",
		"vuln-reports/latest/report.json":           `{"v":2}`,
	} {
		got, out, err := srv.Get(ctx, "reports", key)
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		if string(got) != body {
			t.Errorf("%s = %q, want %q", key, got, body)
		}
		if strings.HasSuffix(key, ".json") && aws.ToString(out.ContentType) != "application/json" {
			t.Errorf("%s content type %q", key, aws.ToString(out.ContentType))
		}
	}
	list, err := srv.Client().ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("reports")})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.Contents); n != 6 {
		t.Fatalf("%d objects, want 6", n)
	}
}

// TestWrongSecretIsRefused proves requests are really signed and checked.
func TestWrongSecretIsRefused(t *testing.T) {
	srv := s3test.Start(t, "reports")
	s3test.UseCredentials(t, srv.AccessKey, "not-the-secret")
	u := newUploader(t, srv, "s3://reports/p")
	_, err := u.Upload(t.Context(), time.Now(), "run-1", files(t, map[string]string{"report.csv": "x"}))
	if err == nil {
		t.Fatal("upload with a wrong secret succeeded")
	}
	for _, want := range []string{"s3://reports/p/", srv.Endpoint, "credentials refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestUnreachableEndpointNamesBucketAndEndpoint(t *testing.T) {
	srv := s3test.Start(t, "reports")
	s3test.UseCredentials(t, srv.AccessKey, srv.SecretKey)
	u := newUploader(t, srv, "s3://reports/p")
	srv.Stop()
	_, err := u.Upload(t.Context(), time.Now(), "run-1", files(t, map[string]string{"report.csv": "x"}))
	if err == nil {
		t.Fatal("upload to a stopped server succeeded")
	}
	for _, want := range []string{"s3://reports/", srv.Endpoint, "unreachable"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestRunIDMustBeOneDirectory(t *testing.T) {
	srv := s3test.Start(t, "reports")
	s3test.UseCredentials(t, srv.AccessKey, srv.SecretKey)
	u := newUploader(t, srv, "s3://reports")
	for _, id := range []string{"", "a/b", ".."} {
		if _, err := u.Upload(t.Context(), time.Now(), id, nil); err == nil {
			t.Errorf("run id %q accepted", id)
		}
	}
}
