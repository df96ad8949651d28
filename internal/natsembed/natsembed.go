// Package natsembed runs a NATS server with JetStream inside the current
// process. The all-in-one fleetscan command uses it so a laptop needs no
// broker, and tests use it to exercise the real JetStream semantics.
//
// State lives in a file store directory, so KV data such as SLA first-seen
// dates survives restarts of the process. One server at a time owns a store
// directory: Start locks it (see dirlock) and Shutdown releases it.
package natsembed

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/dirlock"
)

// Config configures an embedded server.
type Config struct {
	// StoreDir holds JetStream's file store. Required.
	StoreDir string
	// Host and Port to listen on. Port 0 picks a free port; Port -1 with
	// DontListen serves in-process connections only.
	Host string
	Port int
	// DontListen disables the TCP listener; connect with InProcessOption.
	DontListen bool
	// MonitorPort enables the HTTP monitoring endpoint (/varz, /jsz) when
	// non-zero; -1 picks a free port.
	MonitorPort int
	// MaxPayload overrides the server's max message size (default 1 MiB).
	MaxPayload int32
	// ServerName is the server's name (default "fleetscan-embedded").
	ServerName string
	// ReadyTimeout bounds start-up (default 30s).
	ReadyTimeout time.Duration
}

// Server is a running embedded NATS server.
type Server struct {
	srv  *server.Server
	log  *zap.Logger
	lock *dirlock.Lock
}

// Start launches the server and waits until it accepts connections.
func Start(cfg Config, log *zap.Logger) (*Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("natsembed: StoreDir is required")
	}
	if err := os.MkdirAll(cfg.StoreDir, 0o750); err != nil {
		return nil, fmt.Errorf("natsembed: create store dir %s: %w", cfg.StoreDir, err)
	}
	abs, err := filepath.Abs(cfg.StoreDir)
	if err != nil {
		return nil, fmt.Errorf("natsembed: store dir %s: %w", cfg.StoreDir, err)
	}
	// One server per store: a second one on the same files corrupts both.
	lock, err := dirlock.Acquire(abs, "embedded NATS")
	if err != nil {
		return nil, fmt.Errorf("natsembed: store: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = lock.Release()
		}
	}()
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	port := cfg.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if cfg.ServerName == "" {
		cfg.ServerName = "fleetscan-embedded"
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 30 * time.Second
	}
	opts := &server.Options{
		ServerName: cfg.ServerName,
		Host:       cfg.Host,
		Port:       port,
		DontListen: cfg.DontListen,
		JetStream:  true,
		StoreDir:   abs,
		NoSigs:     true,
		NoLog:      true,
	}
	if cfg.MaxPayload > 0 {
		opts.MaxPayload = cfg.MaxPayload
	}
	if cfg.MonitorPort != 0 {
		opts.HTTPHost = cfg.Host
		opts.HTTPPort = cfg.MonitorPort
		if cfg.MonitorPort < 0 {
			opts.HTTPPort = server.RANDOM_PORT
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsembed: configure server: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(cfg.ReadyTimeout) {
		srv.Shutdown()
		return nil, fmt.Errorf("natsembed: server not ready within %s (store %s)", cfg.ReadyTimeout, abs)
	}
	if log == nil {
		log = zap.NewNop()
	}
	s := &Server{srv: srv, log: log, lock: lock}
	ok = true
	log.Info("embedded NATS started", zap.String("url", s.URL()), zap.String("store", abs))
	return s, nil
}

// URL is the client URL ("nats://127.0.0.1:port"); empty with DontListen.
func (s *Server) URL() string {
	if s.srv.Addr() == nil {
		return ""
	}
	return s.srv.ClientURL()
}

// MonitorURL is the HTTP monitoring base URL, or "" when disabled.
func (s *Server) MonitorURL() string {
	addr := s.srv.MonitorAddr()
	if addr == nil {
		return ""
	}
	return (&url.URL{Scheme: "http", Host: addr.String()}).String()
}

// InProcessOption returns a nats.Option connecting without TCP.
func (s *Server) InProcessOption() nats.Option { return nats.InProcessServer(s.srv) }

// Server exposes the underlying server (monitoring in tests).
func (s *Server) Server() *server.Server { return s.srv }

// Shutdown stops the server and waits for it to finish, flushing the store.
func (s *Server) Shutdown() {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	_ = s.lock.Release()
	s.log.Info("embedded NATS stopped")
}
