// Package makefile tests the Makefile's set-up targets: `make test` must
// work on a fresh Debian machine with only Go and Docker.
package makefile

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// shimPath builds a PATH of the given fake commands (shell scripts) plus
// the shell tools the recipes use.
func shimPath(t *testing.T, shims map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, script := range shims {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, tool := range []string{"sh", "bash", "cat", "echo"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
		if _, ok := shims[tool]; !ok {
			_ = os.Symlink(p, filepath.Join(dir, tool))
		}
	}
	return dir
}

func runMake(t *testing.T, path string, vars ...string) (string, error) {
	t.Helper()
	mk, err := exec.LookPath("make")
	if err != nil {
		t.Fatalf("make: %v", err)
	}
	cmd := exec.Command(mk, append([]string{"-s", "-C", "../..", "test-deps"}, vars...)...)
	cmd.Env = []string{"PATH=" + path, "HOME=" + t.TempDir()}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestTestDepsInstallsChromium: as root on Debian, `make test` installs
// Chromium through apt; otherwise it stops with the command to run; with
// Chromium present it does nothing.
func TestTestDepsInstallsChromium(t *testing.T) {
	debian := filepath.Join(t.TempDir(), "debian_version")
	if err := os.WriteFile(debian, []byte("12.8\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(t.TempDir(), "apt.log")

	t.Run("root on Debian: apt-get installs it", func(t *testing.T) {
		path := shimPath(t, map[string]string{"id": "echo 0", "apt-get": `echo "$@" >> ` + log})
		out, err := runMake(t, path, "DEBIAN_VERSION_FILE="+debian)
		if err != nil {
			t.Fatalf("make test-deps: %v\n%s", err, out)
		}
		got, _ := os.ReadFile(log)
		if !strings.Contains(string(got), "update -qq") || !strings.Contains(string(got), "install -y -qq chromium") {
			t.Fatalf("apt-get calls:\n%s", got)
		}
	})
	t.Run("not root: stops with the exact command", func(t *testing.T) {
		path := shimPath(t, map[string]string{"id": "echo 1000", "apt-get": "exit 99"})
		out, err := runMake(t, path, "DEBIAN_VERSION_FILE="+debian)
		if err == nil || !strings.Contains(out, "sudo apt-get update && sudo apt-get install -y chromium") {
			t.Fatalf("make test-deps: %v, want a failure naming the command:\n%s", err, out)
		}
	})
	t.Run("not Debian: says how", func(t *testing.T) {
		path := shimPath(t, map[string]string{"id": "echo 0"})
		out, err := runMake(t, path, "DEBIAN_VERSION_FILE="+filepath.Join(t.TempDir(), "none"))
		if err == nil || !strings.Contains(out, "install it") {
			t.Fatalf("make test-deps: %v:\n%s", err, out)
		}
	})
	t.Run("already there: nothing to do", func(t *testing.T) {
		path := shimPath(t, map[string]string{"id": "echo 1000", "chromium": "exit 0", "apt-get": "exit 99"})
		if out, err := runMake(t, path, "DEBIAN_VERSION_FILE="+debian); err != nil {
			t.Fatalf("make test-deps with chromium present: %v\n%s", err, out)
		}
	})
}
