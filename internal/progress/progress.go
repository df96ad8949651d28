// Package progress renders scan progress for people: a redrawn bar on a
// terminal (images scanned/total, failures, elapsed, ETA) and plain periodic
// lines otherwise (CI logs, CronJob logs).
package progress

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// State is a snapshot of progress.
type State struct {
	Done   int // keys with a result (scanned or failed)
	Total  int // keys expected
	Failed int // keys whose result is a failure
	// Retrying counts keys waiting for a retry after a failure;
	// RetryUntil is the latest time one of them may still be retrying
	// (its delivery or time budget). The ETA is never earlier.
	Retrying   int
	RetryUntil time.Time
}

// Printer writes progress to w.
type Printer struct {
	mu        sync.Mutex
	w         io.Writer
	tty       bool
	start     time.Time
	interval  time.Duration
	last      time.Time
	lastState State
	printed   bool
	now       func() time.Time
	drawn     bool // a bar is on screen without its line ended
}

// New returns a printer. tty selects the redrawn bar; interval is how often a
// plain line is written when not on a terminal (and the state changed).
func New(w io.Writer, tty bool, interval time.Duration) *Printer {
	return &Printer{w: w, tty: tty, interval: interval, now: time.Now, start: time.Now()}
}

// Update renders s when due.
func (p *Printer) Update(s State) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", p.bar(s, now))
		p.drawn = true
		return
	}
	// Plain mode: a line per interval, plus one when the state changes to
	// complete, never the same state twice in a row — unless retries are
	// pending: then time passing is news (the ETA moves).
	if s == p.lastState && p.printed && (s.Retrying == 0 || now.Sub(p.last) < p.interval) {
		return
	}
	if p.printed && now.Sub(p.last) < p.interval && s.Done != s.Total {
		return
	}
	p.last, p.lastState, p.printed = now, s, true
	fmt.Fprintln(p.w, p.line(s, now))
}

// Finish writes the final state and ends the bar's line.
func (p *Printer) Finish(s State) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s\n", p.bar(s, now))
		p.drawn = false
		return
	}
	if s == p.lastState && p.printed {
		return
	}
	p.lastState, p.printed = s, true
	fmt.Fprintln(p.w, p.line(s, now))
}

// Break ends the bar's line, if one is drawn, so other output starts on a
// line of its own. Wrap writers that share the terminal with BreakWriter.
func (p *Printer) Break() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}

// BreakWriter returns w wrapped so that every write first ends the bar's line.
func (p *Printer) BreakWriter(w io.Writer) io.Writer { return breakWriter{p, w} }

type breakWriter struct {
	p *Printer
	w io.Writer
}

func (b breakWriter) Write(data []byte) (int, error) {
	b.p.Break()
	return b.w.Write(data)
}

func (p *Printer) line(s State, now time.Time) string {
	elapsed := now.Sub(p.start).Round(time.Second)
	out := fmt.Sprintf("progress: %d/%d images done, %d failed", s.Done, s.Total, s.Failed)
	if s.Retrying > 0 {
		out += fmt.Sprintf(", %d retrying", s.Retrying)
	}
	out += fmt.Sprintf(", elapsed %s", elapsed)
	if eta, ok := s.ETA(now, p.start); ok {
		out += fmt.Sprintf(", eta %s", eta.Round(time.Second))
	}
	return out
}

func (p *Printer) bar(s State, now time.Time) string {
	const width = 30
	filled := 0
	if s.Total > 0 {
		filled = s.Done * width / s.Total
	}
	b := strings.Repeat("█", filled) + strings.Repeat("░", width-filled)
	out := fmt.Sprintf("scanning [%s] %d/%d images", b, s.Done, s.Total)
	if s.Failed > 0 {
		out += fmt.Sprintf(", %d failed", s.Failed)
	}
	if s.Retrying > 0 {
		out += fmt.Sprintf(", %d retrying", s.Retrying)
	}
	out += fmt.Sprintf(", %s", now.Sub(p.start).Round(time.Second))
	if eta, ok := s.ETA(now, p.start); ok {
		out += fmt.Sprintf(", eta %s", eta.Round(time.Second))
	}
	return out
}

// ETA estimates the time left at now for a run started at start: the rate
// so far extrapolated, and never before the pending retries may end.
func (s State) ETA(now, start time.Time) (time.Duration, bool) {
	eta, ok := ETA(s, now.Sub(start))
	if s.Retrying > 0 && s.Done < s.Total {
		if left := s.RetryUntil.Sub(now); left > eta {
			eta, ok = left, true
		}
	}
	return eta, ok
}

// ETA extrapolates the remaining time from the rate so far.
func ETA(s State, elapsed time.Duration) (time.Duration, bool) {
	if s.Done <= 0 || s.Done >= s.Total || elapsed <= 0 {
		return 0, false
	}
	per := elapsed / time.Duration(s.Done)
	return per * time.Duration(s.Total-s.Done), true
}
