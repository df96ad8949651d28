package kubeapitest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAssetsDir(t *testing.T) {
	t.Run("missing binaries say how to build them", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "etcd"), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		t.Setenv(AssetsEnv, dir)
		_, err := AssetsDir()
		if err == nil || !strings.Contains(err.Error(), "make kube-tools") || !strings.Contains(err.Error(), "kube-apiserver not found in "+dir) {
			t.Fatalf("AssetsDir() error = %v", err)
		}
	})
	t.Run("not executable", func(t *testing.T) {
		dir := t.TempDir()
		for _, b := range []string{"etcd", "kube-apiserver"} {
			if err := os.WriteFile(filepath.Join(dir, b), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Setenv(AssetsEnv, dir)
		if _, err := AssetsDir(); err == nil || !strings.Contains(err.Error(), "kube-apiserver and etcd not found") {
			t.Fatalf("AssetsDir() error = %v", err)
		}
	})
	t.Run("env wins", func(t *testing.T) {
		dir := t.TempDir()
		for _, b := range []string{"etcd", "kube-apiserver"} {
			if err := os.WriteFile(filepath.Join(dir, b), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		t.Setenv(AssetsEnv, dir)
		if got, err := AssetsDir(); err != nil || got != dir {
			t.Fatalf("AssetsDir() = %q, %v", got, err)
		}
	})
	t.Run("repository .tools/bin", func(t *testing.T) {
		t.Setenv(AssetsEnv, "")
		root, err := repoRoot()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(root, "go.work")); err != nil {
			t.Fatalf("repoRoot() = %s without go.work", root)
		}
		got, err := AssetsDir()
		if want := filepath.Join(root, ".tools", "bin"); err == nil && got != want {
			t.Fatalf("AssetsDir() = %q, want %q", got, want)
		}
		if err != nil && !strings.Contains(err.Error(), filepath.Join(root, ".tools", "bin")) {
			t.Fatalf("error %v does not name %s/.tools/bin", err, root)
		}
	})
}

func TestParseAudit(t *testing.T) {
	log := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","stage":"RequestReceived","requestURI":"/api/v1/nodes?limit=500","verb":"list","user":{"username":"system:serviceaccount:ops:d","groups":["system:serviceaccounts"]},"objectRef":{"resource":"nodes","apiVersion":"v1"}}
{"kind":"Event","stage":"ResponseComplete","requestURI":"/apis/batch/v1/namespaces/x/jobs/j","verb":"get","user":{"username":"u"},"objectRef":{"resource":"jobs","namespace":"x","name":"j","apiGroup":"batch"},"responseStatus":{"code":404}}
{"kind":"Event","stage":"RequestReceived","verb":"get","requestURI":"/healthz","user":{"username":"u"}}
{"kind":"Event","stage":"Requ`
	events, err := parseAudit([]byte(log))
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 3 {
		t.Fatalf("%d events, want 3 (the partial last line left out)", len(events))
	}
	if e := events[0]; e.Stage != StageRequestReceived || e.Verb != "list" || e.User.Username != "system:serviceaccount:ops:d" || e.ObjectRef.Resource != "nodes" || e.ObjectRef.APIGroup != "" {
		t.Errorf("event 0 = %+v", e)
	}
	if e := events[1]; e.ObjectRef.APIGroup != "batch" || e.ObjectRef.Name != "j" || e.ResponseStatus.Code != 404 {
		t.Errorf("event 1 = %+v", e)
	}
	if events[2].ObjectRef != nil {
		t.Errorf("non-resource request has objectRef %+v", events[2].ObjectRef)
	}
	if _, err := parseAudit([]byte("{\"stage\":1}\n")); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("bad line: err = %v", err)
	}
}
