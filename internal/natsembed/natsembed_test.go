package natsembed_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/fleetscan/fleetscan/internal/dirlock"
	"github.com/fleetscan/fleetscan/internal/natsembed"
)

// TestOneServerPerStore: a second server on a store in use fails at once,
// naming the store and the holder; after Shutdown the store is free again.
func TestOneServerPerStore(t *testing.T) {
	store := t.TempDir()
	srv, err := natsembed.Start(natsembed.Config{StoreDir: store, DontListen: true}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	_, err = natsembed.Start(natsembed.Config{StoreDir: store, DontListen: true}, zaptest.NewLogger(t))
	if !errors.Is(err, dirlock.ErrHeld) || !strings.Contains(err.Error(), store) || !strings.Contains(err.Error(), fmt.Sprint(os.Getpid())) {
		t.Fatalf("second server on the store: %v", err)
	}
	srv.Shutdown()
	srv2, err := natsembed.Start(natsembed.Config{StoreDir: store, DontListen: true}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("after shutdown: %v", err)
	}
	srv2.Shutdown()
}
