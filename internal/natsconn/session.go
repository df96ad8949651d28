package natsconn

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/backoff"
	"github.com/fleetscan/fleetscan/internal/logging"
	"github.com/fleetscan/fleetscan/internal/topology"
)

// Session is what every fleetscan binary works with: a NATS connection,
// its JetStream context and fleetscan's ensured topology.
type Session struct {
	Conn *nats.Conn
	JS   jetstream.JetStream
	Res  *topology.Resources

	wd *watchdog
}

// ErrLost is wrapped by the error Session.Lost reports.
var ErrLost = errors.New("lost the connection to NATS")

// Open connects with c (extra options, such as an embedded server's
// in-process option, are applied last), opens JetStream and ensures the
// topology: the one way every binary (and the all-in-one) starts.
func Open(ctx context.Context, c Config, topo topology.Config, log *zap.Logger, extra ...nats.Option) (*Session, error) {
	if log == nil {
		log = zap.NewNop()
	}
	wd := &watchdog{after: c.GiveUpAfter, lost: make(chan error, 1), server: strings.Join(redactAll(c.ServerList()), ",")}
	nc, err := c.connect(ctx, log, wd, extra...)
	if err != nil {
		return nil, err
	}
	wd.connectedTo(nc)
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream on %s: %w", ServerOf(nc), err)
	}
	res, err := ensure(ctx, log, EnsureWithin, func() (*topology.Resources, error) { return topology.Ensure(ctx, js, topo) })
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("ensure JetStream topology on %s: %w", ServerOf(nc), err)
	}
	return &Session{Conn: nc, JS: js, Res: res, wd: wd}, nil
}

// EnsureWithin bounds how long Open retries laying out the topology while
// JetStream is not ready: a cluster that lost a node (SIGKILL, no
// leadership handed over) answers nothing until it elected new leaders.
const EnsureWithin = time.Minute

// ensure calls do until it succeeds, fails for good, or within has passed
// retrying failures that a cluster electing leaders gives.
func ensure(ctx context.Context, log *zap.Logger, within time.Duration, do func() (*topology.Resources, error)) (*topology.Resources, error) {
	deadline := time.Now().Add(within)
	for attempt := 1; ; attempt++ {
		res, err := do()
		if err == nil || ctx.Err() != nil || !notReady(err) || !time.Now().Before(deadline) {
			return res, err
		}
		wait := min(backoff.Nominal(250*time.Millisecond, 4*time.Second, attempt), time.Until(deadline))
		log.Warn("JetStream not ready (a cluster electing leaders?); retrying", logging.Attempt(attempt), zap.Duration("wait", wait), zap.Error(err))
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(max(wait, 0)):
		}
	}
}

// notReady reports whether err is what JetStream answers while it is not
// ready: a request timing out (its own deadline, not the caller's), no
// responders, or "temporarily unavailable".
func notReady(err error) bool {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout), errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, jetstream.ErrNoStreamResponse):
		return true
	case errors.As(err, &apiErr):
		return apiErr.Code == 503 || apiErr.ErrorCode == 10008 // JSClusterNotAvailErr
	}
	return strings.Contains(err.Error(), "temporarily unavailable")
}

// Lost receives one error, naming the server, when the connection has been
// down for Config.GiveUpAfter or was closed. It never fires with
// GiveUpAfter 0 until the connection is closed.
func (s *Session) Lost() <-chan error { return s.wd.lost }

// WithLost returns a context cancelled, with the Lost error as its cause,
// when the connection is lost; cancel releases it.
func (s *Session) WithLost(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		select {
		case err := <-s.wd.lost:
			s.wd.lost <- err // keep it for other readers
			cancel(err)
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(nil) }
}

// Explain explains err, a failure of an operation on the session: one that
// failed while the connection was down most likely failed because of it (a
// server shutting down answers "no responders" before it closes the
// connection). Then Explain waits for the watchdog to decide and returns
// the Lost error once the connection stayed down for GiveUpAfter; it
// returns err when the connection is up, comes back, or ctx ends first,
// and at once when GiveUpAfter is 0.
func (s *Session) Explain(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	select {
	case lost := <-s.wd.lost:
		s.wd.lost <- lost
		return lost
	default:
	}
	// The disconnect handler runs asynchronously: arm the watchdog here in
	// case it has not run yet (a no-op when it has).
	s.wd.disconnected(s.Conn, nil)
	back := s.wd.down()
	if back == nil && !(s.Conn.IsClosed() && s.wd.after > 0) {
		return err
	}
	// Closed: its handler, which reports the loss, runs asynchronously.
	select {
	case lost := <-s.wd.lost:
		s.wd.lost <- lost
		return lost
	case <-back: // nil when closed: never ready
		return err
	case <-ctx.Done():
		return err
	}
}

// Drain delivers what is outstanding (acks, published results) and closes
// the connection, waiting at most timeout.
func (s *Session) Drain(timeout time.Duration) {
	s.wd.stop()
	if s.Conn.IsConnected() {
		_ = s.Conn.FlushTimeout(timeout)
	}
	s.Conn.Close()
}

// Close closes the connection at once.
func (s *Session) Close() {
	s.wd.stop()
	s.Conn.Close()
}

// watchdog turns a connection that stays down into one error.
type watchdog struct {
	after time.Duration
	lost  chan error

	mu      sync.Mutex
	server  string // the server last connected to, for messages
	timer   *time.Timer
	back    chan struct{} // closed when a connection that went down is back
	stopped bool
	fired   bool
}

func (w *watchdog) disconnected(nc *nats.Conn, err error) {
	if w == nil || w.after <= 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	// Checked under the lock: a reconnection after this check is followed
	// by reconnected, which stops the timer.
	if w.stopped || w.timer != nil || nc.IsClosed() || nc.IsConnected() {
		return
	}
	server := w.server
	if err == nil {
		err = errors.New("disconnected")
	}
	w.back = make(chan struct{})
	w.timer = time.AfterFunc(w.after, func() {
		w.fire(fmt.Errorf("%w: server %s has been unreachable for %s: %w", ErrLost, server, w.after, err))
	})
}

func (w *watchdog) connectedTo(nc *nats.Conn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.server = ServerOf(nc)
}

func (w *watchdog) reconnected(nc *nats.Conn) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.server = ServerOf(nc)
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	if w.back != nil {
		close(w.back)
		w.back = nil
	}
}

// down returns, while the connection is down and the give-up timer runs, a
// channel closed when it is back; nil otherwise.
func (w *watchdog) down() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.timer == nil || w.stopped {
		return nil
	}
	return w.back
}

func (w *watchdog) closed(nc *nats.Conn) {
	if w == nil || w.after <= 0 {
		return
	}
	w.mu.Lock()
	stopped, server := w.stopped, w.server
	w.mu.Unlock()
	if stopped {
		return
	}
	reason := "the connection was closed"
	if err := nc.LastError(); err != nil {
		reason = err.Error()
	}
	w.fire(fmt.Errorf("%w: server %s: %s", ErrLost, server, reason))
}

func (w *watchdog) fire(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped || w.fired {
		return
	}
	w.fired = true
	w.lost <- err
}

// stop disarms the watchdog before a deliberate close.
func (w *watchdog) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	if w.timer != nil {
		w.timer.Stop()
	}
}
