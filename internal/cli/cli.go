// Package cli is what every fleetscan main shares, so each cmd/*/main.go
// stays a few lines: a signal context where the first SIGINT/SIGTERM
// cancels the run and a second exits at once, flag parsing with a uniform
// --version and usage errors, one mapping from a run's error to the exit
// status, and output that never shows a credential.
//
//	func main() {
//		os.Exit(cli.Main("reporter", run))
//	}
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/spf13/pflag"

	"github.com/fleetscan/fleetscan/internal/flagenv"
	"github.com/fleetscan/fleetscan/internal/redact"
	"github.com/fleetscan/fleetscan/internal/version"
)

// Exit statuses shared by every binary. The reporter and the all-in-one
// add the report's bit mask (1 breached, 2 incomplete) through errors that
// carry an ExitCode.
const (
	ExitOK = 0
	// ExitFailed: the dispatcher or worker failed.
	ExitFailed = 1
	// ExitUsage: bad flags, files or configuration, detected before any work
	// (and, for the reporter and the all-in-one, "no report").
	ExitUsage = 4
)

// UsageError is an error in the flags, files or configuration a command
// was given. It exits ExitUsage.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// ExitCode is ExitUsage.
func (e *UsageError) ExitCode() int { return ExitUsage }

// Usage marks err as a usage error (nil stays nil).
func Usage(err error) error {
	if err == nil {
		return nil
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		return err
	}
	return &UsageError{Err: err}
}

// ExitCoder is an error that decides its exit status (a usage error, the
// reporter's bit mask).
type ExitCoder interface {
	error
	ExitCode() int
}

// Quiet is implemented by errors whose message was already shown (a report
// that breached prints its own summary); Exit prints nothing for them.
type Quiet interface{ Quiet() bool }

// ErrDone ends a command successfully without running it (--help,
// --version).
var ErrDone = errors.New("done")

// Status is an exit status that carries no message: the outcome was
// already reported (the reporter's console summary says why it exits 1).
type Status int

func (s Status) Error() string { return fmt.Sprintf("exit status %d", int(s)) }

// ExitCode is the status.
func (s Status) ExitCode() int { return int(s) }

// Quiet is true: the status was explained already.
func (s Status) Quiet() bool { return true }

// Code maps a run's error to the exit status: 0 for nil, --help and
// --version; the status an error carries (ExitCoder); otherwise failure,
// which is ExitFailed for the dispatcher and worker and ExitUsage ("no
// report") for the reporter and the all-in-one.
func Code(err error, failure int) int {
	if err == nil || errors.Is(err, pflag.ErrHelp) || errors.Is(err, ErrDone) {
		return ExitOK
	}
	var ec ExitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return failure
}

// Command describes a binary for Main.
type Command struct {
	// Name prefixes its messages ("reporter: ...").
	Name string
	// Failure is the status of an error that carries none.
	Failure int
	// Interrupted is the status a second signal exits with (until
	// Interrupts.ExitWith changes it).
	Interrupted int
}

// Env is what a run gets from Main: its arguments and redacted output
// streams, and the interrupt handling to tell about written reports.
type Env struct {
	Args           []string
	Stdout, Stderr io.Writer
	// Redactor hides secrets in Stdout and Stderr; add secret flag values
	// to it once parsed (Parse does).
	Redactor *redact.Redactor
	// Interrupts is nil in tests that do not install signal handling.
	Interrupts *Interrupts
}

// RunFunc is a command's body.
type RunFunc func(ctx context.Context, env Env) error

// Main runs run under a signal context (see NotifyContext) with the
// process's arguments and returns the exit status; main passes it to
// os.Exit.
func Main(cmd Command, run RunFunc) int {
	r := redact.New()
	ctx, in, stop := NotifyContext(context.Background(), cmd.Name, r.Writer(os.Stderr), cmd.Interrupted)
	defer stop()
	return Run(ctx, cmd, Env{Args: os.Args[1:], Stdout: os.Stdout, Stderr: os.Stderr, Redactor: r, Interrupts: in}, run)
}

// Run runs run with env's output redacted, prints its error and returns
// the exit status: Main without the signal handling, for tests.
func Run(ctx context.Context, cmd Command, env Env, run RunFunc) int {
	if env.Redactor == nil {
		env.Redactor = redact.New()
	}
	env.Stdout, env.Stderr = env.Redactor.Writer(env.Stdout), env.Redactor.Writer(env.Stderr)
	return Exit(cmd, env.Stderr, run(ctx, env))
}

// Exit prints err (unless it is quiet, --help or --version) as
// "<name>: <error>" and returns its exit status.
func Exit(cmd Command, stderr io.Writer, err error) int {
	code := Code(err, cmd.Failure)
	if err == nil || code == ExitOK {
		return code
	}
	var q Quiet
	if errors.As(err, &q) && q.Quiet() {
		return code
	}
	fmt.Fprintf(stderr, "%s: %s\n", cmd.Name, redact.Text(err.Error()))
	return code
}

// Parse is how every command reads its flags: it registers --version,
// parses args and the environment (flagenv), and adds the values of the
// secret flags to env.Redactor. It returns ErrDone after printing the
// version or the help, and a UsageError for bad flags.
func Parse(fs *pflag.FlagSet, env Env, name string, aliases map[string]string, secretFlags ...string) error {
	fs.SetOutput(env.Stderr)
	showVersion := false
	if fs.Lookup("version") == nil {
		fs.BoolVar(&showVersion, "version", false, "print the version and exit")
	}
	if err := flagenv.Parse(fs, env.Args, aliases); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return ErrDone
		}
		return Usage(err)
	}
	if env.Redactor != nil {
		for _, f := range secretFlags {
			if fl := fs.Lookup(f); fl != nil {
				env.Redactor.Add(fl.Value.String())
			}
		}
	}
	if showVersion {
		PrintVersion(env.Stdout, name)
		return ErrDone
	}
	return nil
}

// PrintVersion prints "<name> <version>".
func PrintVersion(w io.Writer, name string) {
	fmt.Fprintf(w, "%s %s\n", name, version.Version)
}

// IsTerminal reports whether w (seen through redacting wrappers) is a
// terminal.
func IsTerminal(w io.Writer) bool {
	for {
		switch v := w.(type) {
		case *os.File:
			st, err := v.Stat()
			return err == nil && st.Mode()&os.ModeCharDevice != 0
		case interface{ Unwrap() io.Writer }:
			w = v.Unwrap()
		default:
			return false
		}
	}
}

// Cause explains an error caused by the end of ctx: when ctx was cancelled
// with a cause (a signal, a lost NATS connection) and err is that
// cancellation, the cause is returned, wrapped around err's own words.
func Cause(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil {
		return err
	}
	cause := context.Cause(ctx)
	if cause == nil || cause == ctx.Err() || errors.Is(err, cause) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w (%v)", cause, err)
	}
	return err
}

// Serialize returns w behind a mutex, for a stream written from several
// goroutines (the log, a progress line, a shutdown notice): each Write
// stays whole. IsTerminal sees through it.
func Serialize(w io.Writer) io.Writer {
	if _, ok := w.(*serialized); ok {
		return w
	}
	return &serialized{w: w}
}

type serialized struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *serialized) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// Sync flushes the underlying writer when it can (zap calls it).
func (s *serialized) Sync() error {
	if f, ok := s.w.(interface{ Sync() error }); ok {
		s.mu.Lock()
		defer s.mu.Unlock()
		return f.Sync()
	}
	return nil
}

// Unwrap returns the underlying writer.
func (s *serialized) Unwrap() io.Writer { return s.w }
