package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
)

// InterruptedError is the cause of a context cancelled by a signal.
type InterruptedError struct{ Signal os.Signal }

func (e *InterruptedError) Error() string {
	return fmt.Sprintf("interrupted (%s)", signalName(e.Signal))
}

func signalName(s os.Signal) string {
	switch s {
	case os.Interrupt:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return s.String()
}

// Interrupts is a command's signal handling: the first SIGINT or SIGTERM
// cancels the run's context (the command stops taking work and says what it
// waits for); the second exits the process at once.
type Interrupts struct {
	name   string
	stderr io.Writer
	exit   func(int)
	code   atomic.Int32
	count  atomic.Int32
}

// ExitWith sets the status a second signal exits with: the reporter and the
// all-in-one set their report's status once the report is written.
func (in *Interrupts) ExitWith(code int) {
	if in != nil {
		in.code.Store(int32(code))
	}
}

// ExitCode is the status a second signal would exit with now.
func (in *Interrupts) ExitCode() int { return int(in.code.Load()) }

// Interrupted reports whether a first signal arrived.
func (in *Interrupts) Interrupted() bool { return in != nil && in.count.Load() > 0 }

// NotifyContext installs the handling of SIGINT and SIGTERM. stop restores
// the default behaviour.
func NotifyContext(parent context.Context, name string, stderr io.Writer, interrupted int) (context.Context, *Interrupts, func()) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	ctx, in, stop := WithSignals(parent, sigs, name, stderr, interrupted, os.Exit)
	return ctx, in, func() {
		signal.Stop(sigs)
		stop()
	}
}

// WithSignals is NotifyContext over a given signal channel and exit
// function (tests drive it).
func WithSignals(parent context.Context, sigs <-chan os.Signal, name string, stderr io.Writer, interrupted int, exit func(int)) (context.Context, *Interrupts, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	in := &Interrupts{name: name, stderr: stderr, exit: exit}
	in.code.Store(int32(interrupted))
	done := make(chan struct{})
	var once sync.Once
	go func() {
		for {
			select {
			case <-done:
				return
			case s := <-sigs:
				switch in.count.Add(1) {
				case 1:
					fmt.Fprintf(stderr, "\n%s: %s: stopping; press Ctrl-C again (or send another SIGTERM) to exit at once\n", name, signalName(s))
					cancel(&InterruptedError{Signal: s})
				default:
					code := int(in.code.Load())
					fmt.Fprintf(stderr, "\n%s: %s again: exiting at once with status %d\n", name, signalName(s), code)
					exit(code)
					return
				}
			}
		}
	}()
	return ctx, in, func() {
		once.Do(func() { close(done) })
		cancel(nil)
	}
}
