// Package natstest starts a real embedded NATS JetStream server for tests
// and lays fleetscan's topology on it.
package natstest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/fleetscan/fleetscan/internal/natsembed"
	"github.com/fleetscan/fleetscan/internal/topology"
)

// Env is a running server with a connection and the ensured topology.
type Env struct {
	Server *natsembed.Server
	Conn   *nats.Conn
	JS     jetstream.JetStream
	Res    *topology.Resources
	Topo   topology.Config
}

// Option adjusts the topology before it is ensured.
type Option func(*topology.Config)

// Start runs a server (file store in t.TempDir(), monitoring enabled) and
// ensures the topology; everything is torn down with the test.
func Start(t testing.TB, opts ...Option) *Env {
	t.Helper()
	srv, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir(), MonitorPort: -1}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("start embedded NATS: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	cfg := topology.Defaults()
	for _, o := range opts {
		o(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := topology.Ensure(ctx, js, cfg)
	if err != nil {
		t.Fatalf("ensure topology: %v", err)
	}
	return &Env{Server: srv, Conn: nc, JS: js, Res: res, Topo: cfg}
}

// WaitForValues polls kv's status until its stream holds want messages
// (live values and markers) and returns how long that took; it fails the
// test after timeout. It waits on the server, e.g. for message TTLs to
// expire.
func WaitForValues(t testing.TB, kv jetstream.KeyValue, want uint64, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var got uint64
	for {
		st, err := kv.Status(context.Background())
		if err != nil {
			t.Fatalf("KV status: %v", err)
		}
		if got = st.Values(); got == want {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("KV %s holds %d messages after %s, want %d", st.Bucket(), got, timeout, want)
		}
		<-tick.C
	}
}
