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
