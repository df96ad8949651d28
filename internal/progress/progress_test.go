package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestPlainLinesAreThrottledAndFinal(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p := New(&buf, false, 10*time.Second)
	clock := time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)
	p.start = clock
	p.now = func() time.Time { return clock }

	p.Update(State{Done: 0, Total: 10})
	clock = clock.Add(2 * time.Second)
	p.Update(State{Done: 1, Total: 10}) // within the interval: suppressed
	clock = clock.Add(10 * time.Second)
	p.Update(State{Done: 4, Total: 10, Failed: 1})
	p.Update(State{Done: 4, Total: 10, Failed: 1}) // same state: suppressed
	clock = clock.Add(time.Second)
	p.Update(State{Done: 10, Total: 10, Failed: 1}) // complete: always shown
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines:\n%s", len(lines), buf.String())
	}
	if want := "progress: 4/10 images done, 1 failed, elapsed 12s, eta 18s"; lines[1] != want {
		t.Fatalf("line = %q, want %q", lines[1], want)
	}
}

func TestBarOnTerminal(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p := New(&buf, true, time.Second)
	clock := time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)
	p.start = clock
	p.now = func() time.Time { return clock.Add(5 * time.Second) }
	p.Update(State{Done: 5, Total: 10, Failed: 2})
	p.Finish(State{Done: 10, Total: 10, Failed: 2})
	out := buf.String()
	if !strings.Contains(out, "\r\033[K") || !strings.Contains(out, "5/10 images, 2 failed") || !strings.HasSuffix(out, "\n") {
		t.Fatalf("bar output = %q", out)
	}
	if !strings.Contains(out, strings.Repeat("█", 15)+strings.Repeat("░", 15)) {
		t.Fatalf("bar not half full: %q", out)
	}
}

func TestETA(t *testing.T) {
	t.Parallel()
	if _, ok := ETA(State{Done: 0, Total: 3}, time.Second); ok {
		t.Fatal("no ETA before the first result")
	}
	if d, ok := ETA(State{Done: 1, Total: 3}, time.Second); !ok || d != 2*time.Second {
		t.Fatalf("ETA = %v %v", d, ok)
	}
}

// TestETACountsRetries: a key waiting for retries holds the run until its
// budget ends, so the ETA is never earlier; and with retries pending the
// plain line is repeated each interval (the ETA moves) instead of freezing.
func TestETACountsRetries(t *testing.T) {
	start := time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)
	now := start.Add(10 * time.Second)
	s := State{Done: 7, Total: 8, Retrying: 1, RetryUntil: now.Add(25 * time.Second)}
	if eta, ok := s.ETA(now, start); !ok || eta != 25*time.Second {
		t.Fatalf("ETA = %v %v, want 25s (the retry budget), not the rate's 1.4s", eta, ok)
	}
	if eta, ok := (State{Done: 0, Total: 1, Retrying: 1, RetryUntil: now.Add(5 * time.Second)}).ETA(now, start); !ok || eta != 5*time.Second {
		t.Fatalf("ETA with nothing done = %v %v, want 5s", eta, ok)
	}

	var buf bytes.Buffer
	p := New(&buf, false, 10*time.Second)
	clock := start
	p.start = clock
	p.now = func() time.Time { return clock }
	retrying := State{Done: 7, Total: 8, Retrying: 1, RetryUntil: start.Add(40 * time.Second)}
	p.Update(retrying)
	clock = clock.Add(11 * time.Second)
	p.Update(retrying)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || lines[1] != "progress: 7/8 images done, 0 failed, 1 retrying, elapsed 11s, eta 29s" {
		t.Fatalf("lines:\n%s", buf.String())
	}
}
