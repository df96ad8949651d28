//go:build unix

// Package deadport gives tests a TCP address on 127.0.0.1 that refuses
// every connection for the whole test. Listening on port 0 and closing the
// listener ("listen-then-close") frees the port for anyone, so on a busy
// machine another process can take it before the test dials; here the port
// stays bound to a socket that never listens, so it cannot be taken and a
// connection is refused at once.
package deadport

import (
	"fmt"
	"net"
	"syscall"
	"testing"
)

// Addr returns "127.0.0.1:port" of a bound, never listening socket, closed
// when t ends.
func Addr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("deadport: socket: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("deadport: bind: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("deadport: getsockname: %v", err)
	}
	in, ok := sa.(*syscall.SockaddrInet4)
	if !ok {
		t.Fatalf("deadport: unexpected address %T", sa)
	}
	return net.JoinHostPort("127.0.0.1", fmt.Sprint(in.Port))
}
