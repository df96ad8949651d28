//go:build !linux

package kubeapitest

import "syscall"

// dieWithParent has no portable equivalent outside Linux; the test's
// cleanup stops the processes.
func dieWithParent() *syscall.SysProcAttr { return nil }
