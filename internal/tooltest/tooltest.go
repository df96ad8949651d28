// Package tooltest is what a test that needs a tool from outside the Go
// module graph calls first: a binary `make tools` or `make kube-tools`
// builds into .tools/bin (the Trivy CLI, versitygw, kube-apiserver and etcd)
// or a system program (Chromium). Under -short — `make test-fast`, the inner
// loop that needs nothing but Go — such a test is skipped with a line naming
// the tool. Otherwise the test goes on to locate the tool and fails loudly
// when it is missing: `make test` never skips it.
package tooltest

import "testing"

// Require skips tb under -short, naming tool and how `make test` gets it.
func Require(tb testing.TB, tool string) {
	tb.Helper()
	if testing.Short() {
		tb.Skipf("SKIPPED under -short (make test-fast): needs %s; make test runs it", tool)
	}
}
