package vex

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

func tarGz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestRepository: a VEX Hub–style repository served over HTTP is fetched,
// its documents apply, and a later broken archive keeps the last good copy.
func TestRepository(t *testing.T) {
	t.Parallel()
	doc := `{"@context": "https://openvex.dev/ns/v0.2.0", "author": "Hub", "statements": [
	  {"vulnerability": {"name": "CVE-2021-23337"}, "status": "not_affected", "justification": "vulnerable_code_not_present",
	   "products": [{"@id": "pkg:npm/lodash@4.17.20"}]}]}`
	good := tarGz(t, map[string]string{
		"hub-main/index.json":                      `{"updated_at": "2025-01-01T00:00:00Z", "packages": [{"id": "pkg:npm/lodash", "location": "pkg/npm/lodash/vex.openvex.json", "format": "openvex"}]}`,
		"hub-main/pkg/npm/lodash/vex.openvex.json": doc,
	})
	archive := good
	var srvURL string
	mux := http.NewServeMux()
	mux.HandleFunc("/hub/.well-known/vex-repository.json", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"name": "test hub", "versions": [{"spec_version": "0.1", "locations": [{"url": "` + srvURL + `/archive.tar.gz//hub-main"}], "update_interval": "24h"}]}`))
	})
	mux.HandleFunc("/archive.tar.gz", func(w http.ResponseWriter, r *http.Request) { w.Write(archive) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	srvURL = srv.URL
	root := t.TempDir()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	m, err := FetchRepository(t.Context(), srv.Client(), root, srv.URL+"/hub", now)
	if err != nil {
		t.Fatal(err)
	}
	if m.Documents != 1 || m.Name != "test hub" {
		t.Fatalf("meta %+v", m)
	}
	check := func() {
		t.Helper()
		set, missing, err := LoadRepositories(root, srv.URL+"/hub")
		if err != nil || len(missing) > 0 {
			t.Fatalf("load: %v, missing %v", err, missing)
		}
		st := set.Decide(lodashB)
		if st == nil || st.Status != NotAffected || !strings.HasPrefix(st.Source, srv.URL+"/hub/") || st.Author != "Hub" {
			t.Fatalf("decided %+v", st)
		}
	}
	check()

	archive = []byte("not an archive")
	if _, err := FetchRepository(t.Context(), srv.Client(), root, srv.URL+"/hub", now.Add(time.Hour)); err == nil {
		t.Fatal("broken archive accepted")
	}
	check() // the last good copy stays
	archive = tarGz(t, map[string]string{"hub-main/index.json": `{"packages": [{"id": "x", "location": "missing.json"}]}`})
	if _, err := FetchRepository(t.Context(), srv.Client(), root, srv.URL+"/hub", now.Add(time.Hour)); err == nil {
		t.Fatal("archive with a missing document accepted")
	}
	check()

	_, missing, err := LoadRepositories(root, srv.URL+"/never")
	if err != nil || len(missing) != 1 {
		t.Fatalf("never fetched: %v %v", err, missing)
	}
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".fetch-") {
			t.Errorf("staging directory %s left behind", e.Name())
		}
	}
}
