// Package natsconn connects every fleetscan binary to NATS the same way:
// server URLs, credentials (creds file, nkey seed or user/password), TLS,
// a client name, reconnects with backoff, and errors that name the server.
package natsconn

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/backoff"
	"github.com/fleetscan/fleetscan/internal/redact"
)

// Config holds connection settings. The zero value plus Defaults() connects
// to nats://127.0.0.1:4222 without auth.
type Config struct {
	URLs     string        // comma-separated server URLs
	Creds    string        // path to a .creds file (JWT + nkey seed)
	NKey     string        // path to an nkey seed file
	User     string        // user name (password from Password)
	Password string        // password; prefer a creds file
	TLSCA    string        // CA bundle to verify the server
	TLSCert  string        // client certificate (mutual TLS)
	TLSKey   string        // client key (mutual TLS)
	Name     string        // client name shown in server monitoring
	Timeout  time.Duration // dial timeout per server

	// MaxReconnects bounds reconnect attempts (-1 forever).
	MaxReconnects int
	// GiveUpAfter, when positive, declares the connection lost once it has
	// been down this long without reconnecting (or at once when it is
	// closed): Session.Lost then reports it, naming the server. Batch
	// commands set it so a dead NATS ends the run with a clear message;
	// services (the worker) leave it 0 and reconnect forever.
	GiveUpAfter time.Duration
	// ReconnectWait is the base delay between reconnect attempts; jitter and
	// exponential backoff up to 30s are applied on top.
	ReconnectWait time.Duration
}

// BatchGiveUp is how long a batch command (dispatcher, reporter, the
// all-in-one) waits for a lost NATS connection to come back before it ends
// the run naming the server: longer than a cluster node's failover, far
// shorter than a run's timeouts.
const BatchGiveUp = 15 * time.Second

// SecretFlags are the flags whose values are secrets: output redacts them.
var SecretFlags = []string{"nats-password"}

// DefaultURL is used when no URL is configured.
const DefaultURL = "nats://127.0.0.1:4222"

// Defaults returns the default configuration for a client called name.
func Defaults(name string) Config {
	return Config{
		URLs:          DefaultURL,
		Name:          name,
		Timeout:       5 * time.Second,
		MaxReconnects: -1,
		ReconnectWait: time.Second,
	}
}

// RegisterFlags binds the configuration to flags named --nats-*.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.URLs, "nats-url", c.URLs, "NATS server URL(s), comma-separated")
	fs.StringVar(&c.Creds, "nats-creds", c.Creds, "NATS credentials file (JWT + nkey seed)")
	fs.StringVar(&c.NKey, "nats-nkey", c.NKey, "NATS nkey seed file")
	fs.StringVar(&c.User, "nats-user", c.User, "NATS user name")
	fs.StringVar(&c.Password, "nats-password", c.Password, "NATS password (prefer --nats-creds)")
	fs.StringVar(&c.TLSCA, "nats-tls-ca", c.TLSCA, "CA bundle to verify the NATS server")
	fs.StringVar(&c.TLSCert, "nats-tls-cert", c.TLSCert, "client certificate for NATS mutual TLS")
	fs.StringVar(&c.TLSKey, "nats-tls-key", c.TLSKey, "client key for NATS mutual TLS")
	fs.DurationVar(&c.Timeout, "nats-timeout", c.Timeout, "NATS dial timeout")
}

// Validate checks the configuration without connecting.
func (c Config) Validate() error {
	var errs []error
	urls := c.ServerList()
	if len(urls) == 0 {
		errs = append(errs, errors.New("--nats-url: at least one server URL is required"))
	}
	for _, u := range urls {
		p, err := url.Parse(u)
		if err != nil || p.Host == "" {
			errs = append(errs, fmt.Errorf("--nats-url: %q is not a URL like nats://host:4222", redact.URL(u)))
			continue
		}
		switch p.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			errs = append(errs, fmt.Errorf("--nats-url: %q: unsupported scheme %q", redact.URL(u), p.Scheme))
		}
	}
	if c.Creds != "" && c.NKey != "" {
		errs = append(errs, errors.New("--nats-creds and --nats-nkey are mutually exclusive"))
	}
	for flag, path := range map[string]string{
		"--nats-creds": c.Creds, "--nats-nkey": c.NKey, "--nats-tls-ca": c.TLSCA,
		"--nats-tls-cert": c.TLSCert, "--nats-tls-key": c.TLSKey,
	} {
		if path == "" {
			continue
		}
		if _, err := os.Stat(path); err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", flag, path, err))
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--nats-tls-cert and --nats-tls-key must be given together"))
	}
	if c.Timeout <= 0 {
		errs = append(errs, errors.New("--nats-timeout must be positive"))
	}
	return errors.Join(errs...)
}

// ServerList splits URLs into its servers.
func (c Config) ServerList() []string {
	var out []string
	for _, u := range strings.Split(c.URLs, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// Options translates the configuration into nats.go options.
func (c Config) Options(log *zap.Logger) ([]nats.Option, error) {
	return c.options(log, nil)
}

func (c Config) options(log *zap.Logger, wd *watchdog) ([]nats.Option, error) {
	if log == nil {
		log = zap.NewNop()
	}
	opts := []nats.Option{
		nats.Name(c.Name),
		nats.Timeout(c.Timeout),
		nats.MaxReconnects(c.MaxReconnects),
		nats.RetryOnFailedConnect(false),
		nats.CustomReconnectDelay(func(attempts int) time.Duration {
			return backoff.Exponential(c.ReconnectWait, 30*time.Second, attempts)
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", zap.String("server", redact.URL(nc.ConnectedUrlRedacted())), zap.Error(err))
			}
			wd.disconnected(nc, err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("NATS reconnected", zap.String("server", redact.URL(nc.ConnectedUrlRedacted())))
			wd.reconnected(nc)
		}),
		nats.ClosedHandler(func(nc *nats.Conn) { wd.closed(nc) }),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Error("NATS async error", zap.String("subject", subj), zap.Error(err))
		}),
	}
	switch {
	case c.Creds != "":
		opts = append(opts, nats.UserCredentials(c.Creds))
	case c.NKey != "":
		o, err := nats.NkeyOptionFromSeed(c.NKey)
		if err != nil {
			return nil, fmt.Errorf("--nats-nkey %s: %w", c.NKey, err)
		}
		opts = append(opts, o)
	case c.User != "":
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if c.TLSCA != "" {
		opts = append(opts, nats.RootCAs(c.TLSCA))
	}
	if c.TLSCert != "" {
		opts = append(opts, nats.ClientCert(c.TLSCert, c.TLSKey))
	}
	return opts, nil
}

// Connect dials NATS. extra options (e.g. an in-process connection) are
// applied last. The error names the servers tried and the reason.
func Connect(ctx context.Context, c Config, log *zap.Logger, extra ...nats.Option) (*nats.Conn, error) {
	return c.connect(ctx, log, nil, extra...)
}

func (c Config) connect(ctx context.Context, log *zap.Logger, wd *watchdog, extra ...nats.Option) (*nats.Conn, error) {
	if log == nil {
		log = zap.NewNop()
	}
	opts, err := c.options(log, wd)
	if err != nil {
		return nil, err
	}
	opts = append(opts, extra...)
	servers := strings.Join(redactAll(c.ServerList()), ",")
	type res struct {
		nc  *nats.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		nc, err := nats.Connect(strings.Join(c.ServerList(), ","), opts...)
		ch <- res{nc, err}
	}()
	select {
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, fmt.Errorf("connect to NATS %s: %w", servers, ctx.Err())
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("connect to NATS %s: %w", servers, explain(r.err))
		}
		log.Info("connected to NATS", zap.String("server", ServerOf(r.nc)), zap.String("name", c.Name))
		return r.nc, nil
	}
}

func explain(err error) error {
	switch {
	case errors.Is(err, nats.ErrNoServers):
		return fmt.Errorf("no server reachable (is NATS running and the URL right?): %w", err)
	case errors.Is(err, nats.ErrAuthorization), strings.Contains(strings.ToLower(err.Error()), "authorization"):
		return fmt.Errorf("authorization refused (check --nats-creds/--nats-user): %w", err)
	}
	return err
}

func redactAll(urls []string) []string {
	out := make([]string, len(urls))
	for i, u := range urls {
		out[i] = redact.URL(u)
	}
	return out
}

// ServerOf names the server nc is (or was last) connected to, without
// credentials; "embedded NATS" for an in-process connection.
func ServerOf(nc *nats.Conn) string {
	if u := nc.ConnectedUrlRedacted(); u != "" {
		return redact.URL(u)
	}
	if nc.ConnectedServerName() != "" {
		return "embedded NATS (" + nc.ConnectedServerName() + ")"
	}
	return "NATS"
}
