package dirlock_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/dirlock"
)

// TestMain lets a test run this binary as a lock holder: with
// $DIRLOCK_TEST_HOLD set it locks that directory, says so, and waits to be
// killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv("DIRLOCK_TEST_HOLD"); dir != "" {
		if _, err := dirlock.Acquire(dir, "holder"); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("locked")
		time.Sleep(time.Hour)
		return
	}
	os.Exit(m.Run())
}

func TestSameProcessCannotLockTwice(t *testing.T) {
	dir := t.TempDir()
	l, err := dirlock.Acquire(dir, "first")
	if err != nil {
		t.Fatal(err)
	}
	_, err = dirlock.Acquire(dir, "second")
	var held *dirlock.HeldError
	if !errors.As(err, &held) || held.PID != os.Getpid() || held.Command != "first" || !errors.Is(err, dirlock.ErrHeld) {
		t.Fatalf("second Acquire: %v, want held by this process (%d)", err, os.Getpid())
	}
	if !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), fmt.Sprint(os.Getpid())) {
		t.Fatalf("message %q does not name the directory and the PID", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	l2, err := dirlock.Acquire(dir, "third")
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	if l2.Previous != 0 {
		t.Errorf("a released lock was reported as taken over from %d", l2.Previous)
	}
	_ = l2.Release()
}

// TestOtherProcessHoldsThenDies: a live holder in another process makes
// Acquire fail at once naming its PID; once it is SIGKILLed its lock is taken
// over and the dead holder is reported.
func TestOtherProcessHoldsThenDies(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "DIRLOCK_TEST_HOLD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "locked" {
		t.Fatalf("holder said %q, %v", line, err)
	}

	start := time.Now()
	_, err = dirlock.Acquire(dir, "second")
	var held *dirlock.HeldError
	if !errors.As(err, &held) || held.PID != cmd.Process.Pid {
		t.Fatalf("Acquire while held: %v, want held by pid %d", err, cmd.Process.Pid)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Acquire took %s to fail, want well under 5s", took)
	}

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	l, err := dirlock.Acquire(dir, "survivor")
	if err != nil {
		t.Fatalf("Acquire after the holder died: %v", err)
	}
	defer l.Release()
	if l.Previous != cmd.Process.Pid {
		t.Errorf("took over from %d, want the dead holder %d", l.Previous, cmd.Process.Pid)
	}
}
