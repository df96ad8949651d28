package natsconn_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/fleetscan/fleetscan/internal/natsconn"
	"github.com/fleetscan/fleetscan/internal/natsembed"
	"github.com/fleetscan/fleetscan/internal/topology"
)

func openSession(t *testing.T, url string, giveUp time.Duration) *natsconn.Session {
	t.Helper()
	c := natsconn.Defaults("test")
	c.URLs, c.GiveUpAfter, c.ReconnectWait = url, giveUp, 50*time.Millisecond
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := natsconn.Open(ctx, c, topology.Defaults(), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if s.Res == nil || s.Res.Jobs == nil || s.JS == nil {
		t.Fatal("session without topology")
	}
	return s
}

// TestSessionLostNamesTheServer: a server that goes away and stays away
// ends a batch command's context with an error naming it.
func TestSessionLostNamesTheServer(t *testing.T) {
	srv, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir()}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	url := srv.URL()
	s := openSession(t, url, 500*time.Millisecond)
	ctx, stop := s.WithLost(t.Context())
	defer stop()
	srv.Shutdown()
	select {
	case <-ctx.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the lost connection was never reported")
	}
	err = context.Cause(ctx)
	if !errors.Is(err, natsconn.ErrLost) || !strings.Contains(err.Error(), url) {
		t.Fatalf("cause %v: want ErrLost naming %s", err, url)
	}
}

// TestSessionSurvivesAQuickRestart: a server back within the give-up time
// (a node restart, a leader election) is not a lost connection.
func TestSessionSurvivesAQuickRestart(t *testing.T) {
	store := t.TempDir()
	srv, err := natsembed.Start(natsembed.Config{StoreDir: store}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	_, portStr, err := net.SplitHostPort(srv.Server().Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(portStr)
	s := openSession(t, srv.URL(), 20*time.Second)
	ctx, stop := s.WithLost(t.Context())
	defer stop()
	srv.Shutdown()
	// The same port and store, as a restarted server.
	srv2, err := natsembed.Start(natsembed.Config{StoreDir: store, Port: port}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Shutdown()
	deadline := time.Now().Add(20 * time.Second)
	for !s.Conn.IsConnected() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !s.Conn.IsConnected() {
		t.Fatal("did not reconnect")
	}
	select {
	case <-ctx.Done():
		t.Fatalf("a quick restart was reported lost: %v", context.Cause(ctx))
	case <-time.After(200 * time.Millisecond):
	}
}
