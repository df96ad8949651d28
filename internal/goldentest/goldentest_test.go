package goldentest

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFirstDiff(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ want, got, diff string }{
		{"a\nb\n", "a\nb\n", "(no line differs)"},
		{"a\nb\n", "a\nc\n", "line 2:\n  want: b\n  got:  c"},
		{"a\n", "a\nextra\n", "line 2:\n  want: \n  got:  extra"},
	} {
		if got := FirstDiff(tt.want, tt.got); got != tt.diff {
			t.Errorf("FirstDiff(%q, %q) = %q, want %q", tt.want, tt.got, got, tt.diff)
		}
	}
}

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Errorf(string, ...any) { r.failed = true }
func (r *recorder) Fatalf(string, ...any) { r.failed = true; panic(r) }
func (r *recorder) Fatal(...any)          { r.failed = true; panic(r) }
func (r *recorder) Name() string          { return r.TB.Name() }

func TestAssert(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.MkdirAll("testdata", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("testdata", "out.txt"), []byte("same\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	check := func(name string, got []byte) (failed bool) {
		r := &recorder{TB: t}
		defer func() {
			if p := recover(); p != nil && p != r {
				panic(p)
			}
			failed = r.failed
		}()
		Assert(r, name, got)
		return r.failed
	}
	if check("out.txt", []byte("same\n")) {
		t.Error("equal output failed")
	}
	if !check("out.txt", []byte("other\n")) {
		t.Error("different output passed")
	}
	if !check("missing.txt", []byte("x")) {
		t.Error("a missing golden file passed")
	}
}
