package reporter

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/fleetscan/fleetscan/internal/s3upload/s3test"
	"github.com/fleetscan/fleetscan/internal/sbom"
)

// fileExporter writes one placeholder SBOM per image, as the real
// exporter names them.
type fileExporter struct{ reqs []sbom.Request }

func (e *fileExporter) Export(_ context.Context, req sbom.Request) (sbom.Result, error) {
	e.reqs = append(e.reqs, req)
	var res sbom.Result
	if len(req.Formats) == 0 {
		return res, nil
	}
	dir := filepath.Join(req.OutDir, sbom.Dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	for _, im := range req.Images {
		name := sbom.FileName(im.Key, false, sbom.CycloneDX)
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(`{"bomFormat":"CycloneDX"}`), 0o644); err != nil {
			return res, err
		}
		res.Files = append(res.Files, sbom.File{Name: sbom.Dir + "/" + name, Path: path, ContentType: sbom.CycloneDX.ContentType()})
		res.SBOMs++
	}
	return res, nil
}

// TestSBOMsUploadedWithReport: the SBOMs are uploaded next to the report,
// under the run's directory and latest/, and the console says where they are.
func TestSBOMsUploadedWithReport(t *testing.T) {
	f := newFleet(t)
	wall := time.Now().UTC()
	f.dispatch("run-7", "c1", wall.Add(-time.Minute), map[string][]container{
		"prod": {{ns: "web", kind: "Deployment", name: "frontend", image: "docker.io/library/nginx:1.25", key: key('a')}},
	}, nil)
	f.scanned(key('a'), "c1", wall)
	srv := s3test.Start(t, "reports")
	s3test.UseCredentials(t, srv.AccessKey, srv.SecretKey)
	cfg := f.config("2025-03-10T06:00:00Z")
	cfg.S3.URL, cfg.S3.Endpoint, cfg.S3.PathStyle = "s3://reports/vuln-reports/", srv.Endpoint, true
	cfg.Formats = []string{"csv"}
	cfg.SBOM = []string{"cyclonedx"}
	var out bytes.Buffer
	d := f.deps(&out)
	exp := &fileExporter{}
	d.Exporter = exp
	o, err := Run(f.ctx, cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	if o.UploadErr != nil || o.ExitCode() != ExitOK {
		t.Fatalf("upload %v, exit %d", o.UploadErr, o.ExitCode())
	}
	if len(exp.reqs) != 1 || len(exp.reqs[0].Images) != 1 || exp.reqs[0].Images[0].Key != key('a') ||
		exp.reqs[0].Images[0].Workloads[0] != "prod/web/Deployment/frontend" || exp.reqs[0].OutDir != cfg.OutDir {
		t.Fatalf("export requests: %+v", exp.reqs)
	}
	name := "sbom/sha256-" + strings.Repeat("a", 64) + ".cdx.json"
	for _, k := range []string{"vuln-reports/2025-03-10/run-7/" + name, "vuln-reports/latest/" + name} {
		if _, _, err := srv.Get(context.Background(), "reports", k); err != nil {
			t.Errorf("get %s: %v", k, err)
		}
	}
	if !strings.Contains(out.String(), "SBOMs: 1 images (cyclonedx) in "+filepath.Join(cfg.OutDir, "sbom")) {
		t.Errorf("console:\n%s", out.String())
	}
	for _, f := range o.Files {
		if strings.HasPrefix(f.Name, "sbom/") {
			t.Errorf("SBOM %s listed among the report files", f.Name)
		}
	}
}

// TestSBOMWithoutAnalysisIsIncomplete: with the real exporter, an image
// whose analysis is not in the layer cache gets no SBOM, and the report
// says so and exits incomplete. Without --sbom the same report is complete.
func TestSBOMWithoutAnalysisIsIncomplete(t *testing.T) {
	f := newFleet(t)
	wall := time.Now().UTC()
	f.dispatch("run-1", "c1", wall.Add(-time.Minute), map[string][]container{
		"prod": {{ns: "web", kind: "Deployment", name: "frontend", image: "docker.io/library/nginx:1.25", key: key('b')}},
	}, nil)
	f.scanned(key('b'), "c1", wall)
	cfg := f.config("")
	cfg.SBOM = []string{"cyclonedx", "spdx"}
	var out bytes.Buffer
	d := NewDeps(f.st, f.env.Res, zaptest.NewLogger(t), &out)
	if d.Exporter == nil {
		t.Fatal("NewDeps wired no exporter")
	}
	o, err := Run(f.ctx, cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	if o.ExitCode() != ExitIncomplete || o.SBOM == nil || len(o.SBOM.Missing) != 1 {
		t.Fatalf("exit %d, SBOM %+v; want incomplete with one image missing", o.ExitCode(), o.SBOM)
	}
	if s := out.String(); !strings.Contains(s, "1 without one (no cached analysis)") || !strings.Contains(s, "1 images have no SBOM") {
		t.Errorf("console:\n%s", s)
	}
	if idx, err := os.ReadFile(filepath.Join(cfg.OutDir, "sbom", "index.json")); err != nil || strings.TrimSpace(string(idx)) != "[]" {
		t.Errorf("sbom/index.json = %q, %v", idx, err)
	}

	cfg.SBOM = nil
	cfg.OutDir = filepath.Join(t.TempDir(), "plain")
	o, err = Run(f.ctx, cfg, NewDeps(f.st, f.env.Res, zaptest.NewLogger(t), nil))
	if err != nil || o.ExitCode() != ExitOK || o.SBOM != nil {
		t.Fatalf("without --sbom: exit %d, SBOM %+v, %v", o.ExitCode(), o.SBOM, err)
	}
}

func TestSBOMFlagValidation(t *testing.T) {
	cfg := Defaults()
	cfg.SBOM = []string{"cyclonedx,swid"}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--sbom") {
		t.Fatalf("Validate = %v, want an error naming --sbom", err)
	}
	f := newFleet(t)
	cfg = f.config("")
	cfg.SBOM = []string{"spdx"}
	if _, err := Run(f.ctx, cfg, f.deps(nil)); err == nil || !strings.Contains(err.Error(), "--sbom") {
		t.Fatalf("--sbom without an exporter: %v", err)
	}
}
