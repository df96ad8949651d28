package report

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/report/reporttest"
	"github.com/fleetscan/fleetscan/internal/sla"
)

// spillFleet is a part of reporttest's synthetic fleet (images × 100
// findings) with clocks spread over 200 days, so rows rank on every key.
func spillFleet(t testing.TB, images int) Input {
	t.Helper()
	asOf := ts("2025-03-10T06:00:00Z")
	fleet := benchFleet()
	led := mapLedger{}
	list := fleetImages(fleet, reporttest.Default, images, asOf, &Interner{})
	for _, img := range list {
		for _, v := range img.Vulns {
			id := identity(img.Repositories[0], v)
			if _, ok := led[id]; !ok {
				led.set(id, asOf.Add(-time.Duration(len(led)%200)*24*time.Hour), sla.ChangeStillOpen)
			}
		}
	}
	return Input{GeneratedAt: asOf, AsOf: asOf, Scope: Scope{Mode: "fleet"}, Images: list,
		Policy: sla.DefaultPolicy(), Ledger: led, Enrichment: fixtureEnrichment(t, asOf.Add(-time.Hour))}
}

// TestSpilledRowsAreTheSameRows: rows ranked in runs spilled to a file and
// merged are the rows ranked in memory, in the same order, and every
// output file is byte for byte the same; the files leave nothing in the
// directory.
func TestSpilledRowsAreTheSameRows(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		in   func(testing.TB) Input
		run  int
	}{
		{"fixture, runs of 2", fixture, 2},
		{"fixture, runs of 5", fixture, 5},
		{"30 images, runs of 97", func(t testing.TB) Input { return spillFleet(t, 30) }, 97},
		{"30 images, one run and a rest", func(t testing.TB) Input { return spillFleet(t, 30) }, 2999},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			want := Build(tt.in(t))
			dir := t.TempDir()
			in := tt.in(t)
			in.Spill = Spill{Dir: dir, RunRows: tt.run}
			got := Build(in)
			if !got.Findings.Spilled() {
				t.Fatalf("%d rows in runs of %d were not spilled", got.Findings.Len(), tt.run)
			}
			if got.Findings.Len() != want.Findings.Len() {
				t.Fatalf("%d rows, want %d", got.Findings.Len(), want.Findings.Len())
			}
			if g, w := got.Findings.Slice(), want.Findings.Slice(); !reflect.DeepEqual(g, w) {
				t.Fatal("spilled rows differ from the rows ranked in memory")
			}
			for _, i := range []int{0, got.Findings.Len() / 2, got.Findings.Len() - 1} {
				if g, w := got.Findings.At(i), want.Findings.At(i); !reflect.DeepEqual(g, w) {
					t.Fatalf("row %d: %+v, want %+v", i, g, w)
				}
			}
			if err := got.Findings.Err(); err != nil {
				t.Fatal(err)
			}
			assertSameFiles(t, want, got)
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Errorf("the spill left %d files in its directory", len(left))
			}
		})
	}
}

// assertSameFiles writes both reports in every format and compares them.
func assertSameFiles(t *testing.T, want, got *Report) {
	t.Helper()
	wdir, gdir := t.TempDir(), t.TempDir()
	wfiles, err := WriteFiles(wdir, want, Formats)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WriteFiles(gdir, got, Formats); err != nil {
		t.Fatal(err)
	}
	for _, f := range wfiles {
		w, _ := os.ReadFile(f.Path)
		g, err := os.ReadFile(filepath.Join(gdir, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		if string(g) != string(w) {
			t.Errorf("%s differs when the rows are spilled", f.Name)
		}
	}
}

// TestSpillFailureKeepsTheRowsInMemory: a spill directory that cannot be
// written leaves the rows in memory, complete, and says why.
func TestSpillFailureKeepsTheRowsInMemory(t *testing.T) {
	t.Parallel()
	want := Build(fixture(t))
	in := fixture(t)
	in.Spill = Spill{Dir: filepath.Join(t.TempDir(), "missing"), RunRows: 2}
	got := Build(in)
	if got.Findings.Spilled() {
		t.Fatal("rows spilled into a missing directory")
	}
	if err := got.Findings.SpillFailure(); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("spill failure %v: want one naming the directory", err)
	}
	if err := got.Findings.Err(); err != nil {
		t.Fatalf("rows kept in memory report an error: %v", err)
	}
	if !reflect.DeepEqual(got.Findings.Slice(), want.Findings.Slice()) {
		t.Fatal("rows kept in memory after a failed spill differ")
	}
	assertSameFiles(t, want, got)
}

// TestUnreadableSpillFailsTheReport: spilled rows that cannot be read back
// make Err say so and the report files fail to be written rather than
// come out truncated.
func TestUnreadableSpillFailsTheReport(t *testing.T) {
	t.Parallel()
	in := fixture(t)
	in.Spill = Spill{Dir: t.TempDir(), RunRows: 2}
	r := Build(in)
	if !r.Findings.Spilled() {
		t.Fatal("not spilled")
	}
	if err := r.Findings.sp.f.Close(); err != nil {
		t.Fatal(err)
	}
	n := 0
	for range r.Findings.All() {
		n++
	}
	if n != 0 || r.Findings.Err() == nil {
		t.Fatalf("read %d rows of a closed spill file, error %v", n, r.Findings.Err())
	}
	dir := t.TempDir()
	if _, err := WriteFiles(dir, r, []Format{FormatCSV}); err == nil {
		t.Fatal("a report whose rows could not be read back was written")
	}
	if _, err := os.Stat(filepath.Join(dir, "report.csv")); !os.IsNotExist(err) {
		t.Fatalf("report.csv of unreadable rows exists (%v)", err)
	}
}
