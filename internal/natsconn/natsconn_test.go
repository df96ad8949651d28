package natsconn_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/fleetscan/fleetscan/internal/deadport"
	"github.com/fleetscan/fleetscan/internal/natsconn"
	"github.com/fleetscan/fleetscan/internal/natsembed"
)

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(dir, "x.creds")
	if err := os.WriteFile(creds, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		mut     func(*natsconn.Config)
		wantErr string
	}{
		{"defaults", func(*natsconn.Config) {}, ""},
		{"cluster urls", func(c *natsconn.Config) { c.URLs = "nats://a:4222, nats://b:4222,tls://c:4222" }, ""},
		{"empty", func(c *natsconn.Config) { c.URLs = " , " }, "at least one server"},
		{"bad scheme", func(c *natsconn.Config) { c.URLs = "http://a:4222" }, "unsupported scheme"},
		{"not a url", func(c *natsconn.Config) { c.URLs = "a b" }, "not a URL"},
		{"password never echoed", func(c *natsconn.Config) { c.URLs = "http://admin:hunter2@a:4222" }, `"http://REDACTED@a:4222": unsupported scheme`},
		{"unparseable password never echoed", func(c *natsconn.Config) { c.URLs = "nats://admin:hunter2@a b" }, "REDACTED@a b"},
		{"missing creds file", func(c *natsconn.Config) { c.Creds = filepath.Join(dir, "nope.creds") }, "--nats-creds"},
		{"creds and nkey", func(c *natsconn.Config) { c.Creds = creds; c.NKey = creds }, "mutually exclusive"},
		{"cert without key", func(c *natsconn.Config) { c.TLSCert = creds }, "together"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := natsconn.Defaults("test")
			tt.mut(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestConnectNamesServerOnFailure(t *testing.T) {
	addr := deadport.Addr(t) // refuses connections; nobody else can take it
	c := natsconn.Defaults("test")
	c.URLs = "nats://" + addr
	c.Timeout = time.Second
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := natsconn.Connect(ctx, c, zaptest.NewLogger(t))
	if err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "no server reachable") {
		t.Fatalf("error = %v, want it to name %s and say why", err, addr)
	}
}

func TestConnectToEmbeddedServer(t *testing.T) {
	srv, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir()}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	c := natsconn.Defaults("fleetscan-test")
	c.URLs = srv.URL()
	nc, err := natsconn.Connect(t.Context(), c, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if !nc.IsConnected() {
		t.Fatal("not connected")
	}
}
