package rss

import "testing"

func TestPeak(t *testing.T) {
	b, err := Peak()
	if err != nil {
		t.Skipf("SKIPPED: no /proc on this system: %v", err)
	}
	if b < 1<<20 {
		t.Fatalf("peak RSS %d bytes: implausibly small for a Go test binary", b)
	}
}
