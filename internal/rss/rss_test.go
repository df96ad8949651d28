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

func TestCPU(t *testing.T) {
	before, err := CPU()
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for i := range 50_000_000 {
		x += i % 7
	}
	after, err := CPU()
	if err != nil {
		t.Fatal(err)
	}
	if after <= before || x == 0 {
		t.Fatalf("CPU time did not grow over a busy loop: %v → %v", before, after)
	}
}
