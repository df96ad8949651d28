package harness

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// RepoRoot is the fleetscan repository's root: the first directory above
// the working directory (a package of the integration module while `go
// test` runs) holding go.work.
func RepoRoot() string {
	repoOnce.Do(func() {
		dir, err := os.Getwd()
		if err != nil {
			panic("harness: " + err.Error())
		}
		for d := dir; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
				repoRoot = d
				return
			}
			if filepath.Dir(d) == d {
				panic("harness: no go.work above " + dir + ": run the tests inside the fleetscan repository")
			}
		}
	})
	return repoRoot
}

var (
	repoOnce sync.Once
	repoRoot string
)

// ModuleDir is the integration module's directory.
func ModuleDir() string { return filepath.Join(RepoRoot(), "test", "integration") }

// ToolsDir is where helper binaries are built (`make tools`):
// $FLEETSCAN_TOOLS, else .tools/bin under the repository root.
func ToolsDir() string {
	if d := os.Getenv("FLEETSCAN_TOOLS"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(), ".tools", "bin")
}

// StaticBinary returns the path of a statically linked helper binary in
// ToolsDir, or an error saying how to build it. Images are FROM scratch, so
// a binary that needs a dynamic loader would not start in them.
func StaticBinary(name, makeTarget string) (string, error) {
	path := filepath.Join(ToolsDir(), name)
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("%s: %w (run `make %s`)", path, err, makeTarget)
	}
	if err := checkStatic(path); err != nil {
		return "", fmt.Errorf("%w (delete it and run `make %s`, which builds it with CGO_ENABLED=0)", err, makeTarget)
	}
	return path, nil
}

// MustStaticBinary is StaticBinary that fails the test.
func MustStaticBinary(t testing.TB, name, makeTarget string) string {
	t.Helper()
	p, err := StaticBinary(name, makeTarget)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: not an ELF executable: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked and cannot run in a FROM scratch image", path)
		}
	}
	return nil
}

var (
	buildMu    sync.Mutex
	buildCache = map[string]string{}
)

// BuildModuleBinary builds a main package of the integration module
// (e.g. "./cmd/faultproxy") as a static binary, once per test process, and
// returns its path. The Go build cache makes repeated builds cheap.
func BuildModuleBinary(pkg string) (string, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := buildCache[pkg]; ok {
		return p, nil
	}
	dir := filepath.Join(RepoRoot(), ".tools", "it-build")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = ModuleDir()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	if err := checkStatic(out); err != nil {
		return "", errors.New("build " + pkg + ": " + err.Error())
	}
	buildCache[pkg] = out
	return out, nil
}
