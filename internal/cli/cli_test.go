package cli_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/fleetscan/fleetscan/internal/cli"
	"github.com/fleetscan/fleetscan/internal/cli/clitest"
)

func TestCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{pflag.ErrHelp, 0},
		{cli.ErrDone, 0},
		{errors.New("boom"), 7},
		{cli.Usage(errors.New("--x: bad")), cli.ExitUsage},
		{fmt.Errorf("wrapped: %w", cli.Usage(errors.New("bad"))), cli.ExitUsage},
		{cli.Status(3), 3},
	} {
		if got := cli.Code(tc.err, 7); got != tc.want {
			t.Errorf("Code(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestExitPrintsRedactedAndSkipsQuiet(t *testing.T) {
	cmd := cli.Command{Name: "tool", Failure: 1}
	var buf bytes.Buffer
	if code := cli.Exit(cmd, &buf, errors.New(`connect to nats://u:hunter2@h:4222: refused`)); code != 1 {
		t.Fatalf("code %d", code)
	}
	if out := buf.String(); !strings.HasPrefix(out, "tool: ") || strings.Contains(out, "hunter2") {
		t.Fatalf("printed %q", out)
	}
	buf.Reset()
	if code := cli.Exit(cmd, &buf, cli.Status(2)); code != 2 || buf.Len() != 0 {
		t.Fatalf("quiet status: code %d printed %q", code, buf.String())
	}
}

func TestParseVersionAndSecrets(t *testing.T) {
	fs := pflag.NewFlagSet("tool", pflag.ContinueOnError)
	fs.String("nats-password", "", "")
	var out, errb bytes.Buffer
	env := cli.Env{Args: []string{"--version"}, Stdout: &out, Stderr: &errb}
	if err := cli.Parse(fs, env, "tool", nil); !errors.Is(err, cli.ErrDone) || !strings.HasPrefix(out.String(), "tool ") {
		t.Fatalf("--version: %v, stdout %q", err, out.String())
	}

	// A secret flag's value is redacted from everything Run's streams print.
	out.Reset()
	code := cli.Run(context.Background(), cli.Command{Name: "tool", Failure: 1},
		cli.Env{Args: []string{"--nats-password", "s3cr3t-value"}, Stdout: &out, Stderr: &errb},
		func(ctx context.Context, env cli.Env) error {
			fs := pflag.NewFlagSet("tool", pflag.ContinueOnError)
			pw := fs.String("nats-password", "", "")
			if err := cli.Parse(fs, env, "tool", nil, "nats-password"); err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "using %s\n", *pw)
			return fmt.Errorf("auth failed with %s", *pw)
		})
	if code != 1 || strings.Contains(out.String()+errb.String(), "s3cr3t-value") {
		t.Fatalf("code %d, output leaks the secret:\n%s%s", code, out.String(), errb.String())
	}

	fs = pflag.NewFlagSet("tool", pflag.ContinueOnError)
	err := cli.Parse(fs, cli.Env{Args: []string{"--bogus"}, Stdout: &out, Stderr: &errb}, "tool", nil)
	if cli.Code(err, 1) != cli.ExitUsage {
		t.Fatalf("unknown flag: %v", err)
	}
}

// TestSignals: the first signal cancels the context with a cause naming
// it; the second exits at once with the status set last.
func TestSignals(t *testing.T) {
	sigs := make(chan os.Signal, 2)
	exited := make(chan int, 1)
	var stderr clitest.Buffer
	ctx, in, stop := cli.WithSignals(context.Background(), sigs, "tool", &stderr, 4, func(code int) { exited <- code })
	defer stop()

	sigs <- os.Interrupt
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("first signal did not cancel the context")
	}
	var ie *cli.InterruptedError
	if !errors.As(context.Cause(ctx), &ie) || ie.Signal != os.Interrupt || !in.Interrupted() {
		t.Fatalf("cause %v", context.Cause(ctx))
	}
	if err := cli.Cause(ctx, fmt.Errorf("dispatch: %w", context.Canceled)); !strings.Contains(err.Error(), "interrupted (SIGINT)") {
		t.Fatalf("Cause = %v", err)
	}
	select {
	case code := <-exited:
		t.Fatalf("exited %d after one signal", code)
	default:
	}

	in.ExitWith(1) // a report was written: its status
	sigs <- syscall.SIGTERM
	select {
	case code := <-exited:
		if code != 1 {
			t.Fatalf("second signal exited %d, want 1", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("second signal did not exit")
	}
	if s := stderr.String(); !strings.Contains(s, "press Ctrl-C again") || !strings.Contains(s, "SIGTERM again: exiting at once with status 1") {
		t.Fatalf("stderr %q", s)
	}
}

func TestSecondSignalDefaultsToInterruptedStatus(t *testing.T) {
	sigs := make(chan os.Signal, 2)
	exited := make(chan int, 1)
	_, _, stop := cli.WithSignals(context.Background(), sigs, "tool", &clitest.Buffer{}, 4, func(code int) { exited <- code })
	defer stop()
	sigs <- os.Interrupt
	sigs <- os.Interrupt
	if code := <-exited; code != 4 {
		t.Fatalf("exited %d, want 4 (no report)", code)
	}
}
