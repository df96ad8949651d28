package conventions

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// testOnlyImport reports whether importing path marks a package as test
// code.
func testOnlyImport(path string) bool {
	return path == "testing" || strings.HasPrefix(path, "testing/") || path == "net/http/httptest"
}

// TestBinariesLinkNoTestCode checks that no package of this module linked
// into a binary under cmd/ imports package testing or httptest: test
// helpers belong in …test packages. (Some third-party dependencies of Trivy
// import testing; they are not ours to change.)
func TestBinariesLinkNoTestCode(t *testing.T) {
	t.Parallel()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list the binaries' dependencies: %v", err)
	}
	cmd := exec.CommandContext(t.Context(), gobin, "list", "-deps",
		"-f", `{{if .Module}}{{.Module.Path}}{{end}} {{.ImportPath}} {{join .Imports " "}}`, "./cmd/...")
	cmd.Dir = moduleRoot(t)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go list -deps ./cmd/...: %v\n%s", err, stderr)
	}
	var ours []string
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) < 2 || fields[0] != modulePath {
			continue
		}
		pkg := fields[1]
		ours = append(ours, pkg)
		for _, imp := range fields[2:] {
			if testOnlyImport(imp) {
				t.Errorf("%s imports %s and is linked into a binary under cmd/: move the test-only code to a …test package", pkg, imp)
			}
		}
	}
	// The listing must have covered the binaries and what they link.
	for _, want := range []string{modulePath + "/cmd/fleetscan", modulePath + "/internal/demo", modulePath + "/internal/fixture", modulePath + "/internal/worker"} {
		if !slices.Contains(ours, want) {
			t.Errorf("go list -deps ./cmd/... did not list %s; listed %d packages of this module", want, len(ours))
		}
	}
}
