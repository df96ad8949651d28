package kubeapitest

import "syscall"

// dieWithParent makes the kernel kill a child when the test binary dies
// (a crashed or killed test must not leave etcd and kube-apiserver behind).
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
