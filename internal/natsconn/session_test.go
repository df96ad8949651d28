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
	srv, restart := restartable(t)
	s := openSession(t, srv.URL(), 20*time.Second)
	ctx, stop := s.WithLost(t.Context())
	defer stop()
	srv.Shutdown()
	restart()
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

// TestExplain: a failure that came while the connection was down is
// explained by the lost connection once the give-up time passed (a server
// shutting down answers "no responders" before it closes the connection,
// so the failure can come first); one while it is up, or down for less than
// the give-up time, is itself.
func TestExplain(t *testing.T) {
	failure := errors.New("get inventory: nats: no responders available for request")

	t.Run("up", func(t *testing.T) {
		srv, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir()}, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Shutdown()
		s := openSession(t, srv.URL(), 500*time.Millisecond)
		if got := s.Explain(t.Context(), failure); got != failure {
			t.Fatalf("Explain while connected = %v, want the failure itself", got)
		}
		if got := s.Explain(t.Context(), nil); got != nil {
			t.Fatalf("Explain(nil) = %v", got)
		}
	})

	t.Run("down past the give-up time", func(t *testing.T) {
		srv, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir()}, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		url := srv.URL()
		s := openSession(t, url, time.Second)
		srv.Shutdown()
		waitDisconnected(t, s)
		start := time.Now()
		got := s.Explain(t.Context(), failure)
		if !errors.Is(got, natsconn.ErrLost) || !strings.Contains(got.Error(), url) {
			t.Fatalf("Explain while down = %v, want ErrLost naming %s", got, url)
		}
		t.Logf("explained after %s: %v", time.Since(start).Round(time.Millisecond), got)
		// Once lost, every later failure is explained at once.
		if again := s.Explain(t.Context(), failure); !errors.Is(again, natsconn.ErrLost) {
			t.Fatalf("second Explain = %v", again)
		}
	})

	t.Run("back within the give-up time", func(t *testing.T) {
		srv, restart := restartable(t)
		s := openSession(t, srv.URL(), 30*time.Second)
		srv.Shutdown()
		waitDisconnected(t, s)
		explained := make(chan error, 1)
		go func() { explained <- s.Explain(t.Context(), failure) }()
		restart()
		select {
		case got := <-explained:
			if got != failure {
				t.Fatalf("Explain after a quick restart = %v, want the failure itself", got)
			}
		case <-time.After(25 * time.Second):
			t.Fatal("Explain still waiting after the connection came back")
		}
	})
}

// waitDisconnected waits until s noticed its server went away.
func waitDisconnected(t *testing.T, s *natsconn.Session) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for s.Conn.IsConnected() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s.Conn.IsConnected() {
		t.Fatal("still connected after the server shut down")
	}
}

// restartable starts an embedded server; restart starts it again on the same
// port and store, as a restarted server (shut down with the test).
func restartable(t *testing.T) (srv *natsembed.Server, restart func()) {
	t.Helper()
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
	return srv, func() {
		t.Helper()
		again, err := natsembed.Start(natsembed.Config{StoreDir: store, Port: port}, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(again.Shutdown)
	}
}
