package harness

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestRequireDockerHelper is run by TestNoDockerUnderCIFails in a child
// process without a Docker engine.
func TestRequireDockerHelper(t *testing.T) {
	if os.Getenv("HARNESS_REQUIRE_DOCKER_CHILD") != "1" {
		return
	}
	requireDocker(t, nil, errors.New("Cannot connect to the Docker daemon"))
}

// TestNoDockerUnderCIFails: without a Docker engine an integration test
// skips loudly on a laptop, but with CI=true it fails (no Docker in CI must
// be red, not green).
func TestNoDockerUnderCIFails(t *testing.T) {
	run := func(ci string) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRequireDockerHelper$", "-test.v")
		cmd.Env = append(os.Environ(), "HARNESS_REQUIRE_DOCKER_CHILD=1", "CI="+ci)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("")
	if err != nil || !strings.Contains(out, "--- SKIP") || !strings.Contains(out, "SKIPPED:") {
		t.Fatalf("without CI: %v, want a loud skip:\n%s", err, out)
	}
	out, err = run("true")
	if err == nil || !strings.Contains(out, "--- FAIL") || !strings.Contains(out, "CI=true") {
		t.Fatalf("with CI=true: %v, want a failure:\n%s", err, out)
	}
}
