package tooltest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestRequireSkipsOnlyUnderShort runs a test that requires a tool in a
// child process, with and without -short.
func TestRequireSkipsOnlyUnderShort(t *testing.T) {
	if os.Getenv("TOOLTEST_CHILD") == "1" {
		Require(t, "a tool")
		t.Log("RAN")
		return
	}
	t.Parallel()
	for _, tt := range []struct {
		short bool
		want  string
	}{
		{true, "SKIPPED under -short (make test-fast): needs a tool"},
		{false, "RAN"},
	} {
		args := []string{"-test.run=^TestRequireSkipsOnlyUnderShort$", "-test.v"}
		if tt.short {
			args = append(args, "-test.short")
		}
		cmd := exec.CommandContext(t.Context(), os.Args[0], args...)
		cmd.Env = append(os.Environ(), "TOOLTEST_CHILD=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), tt.want) {
			t.Errorf("short=%v: %v\n%s", tt.short, err, out)
		}
	}
}
