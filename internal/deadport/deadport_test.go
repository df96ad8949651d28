package deadport_test

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/deadport"
)

func TestAddrRefusesAndStaysTaken(t *testing.T) {
	addr := deadport.Addr(t)
	_, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s: %v, want connection refused", addr, err)
	}
	if l, err := net.Listen("tcp", addr); err == nil {
		l.Close()
		t.Fatalf("another listener could take %s", addr)
	}
}
