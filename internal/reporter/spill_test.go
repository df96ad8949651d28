package reporter

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/report"
)

// TestSpilledRunWritesTheSameReport: a run whose rows are ranked in runs
// spilled to temporary files writes the same report files as one that
// ranks them in memory, and leaves no temporary file behind.
func TestSpilledRunWritesTheSameReport(t *testing.T) {
	f := newFleet(t)
	wall := time.Now().UTC()
	var cs []container
	for i := range 6 {
		cs = append(cs, container{ns: "ns" + fmt.Sprint(i%2), kind: "Deployment", name: fmt.Sprint("app", i),
			image: fmt.Sprintf("registry.example/app%d:1", i), key: key(byte('a' + i))})
	}
	f.dispatch("run-1", "c1", wall.Add(-3*time.Minute), map[string][]container{"prod": cs}, nil)
	sevs := []string{"CRITICAL", "HIGH", "MEDIUM", "LOW"}
	for i := range 6 {
		var vs []vuln
		for j := range 25 {
			vs = append(vs, vuln{fmt.Sprintf("CVE-2025-%04d", (i*7+j*3)%40), sevs[(i+j)%4], fmt.Sprint("pkg", j%9), "1.0", []string{"", "1.1"}[j%2]})
		}
		f.scanned(key(byte('a'+i)), "c1", wall.Add(-2*time.Minute), vs...)
	}
	clock := func() time.Time { return wall }
	// The first run records the clocks, so the two compared runs see the
	// same state.
	first := f.config("2025-01-09T06:00:00Z")
	d := f.deps(nil)
	d.Clock = clock
	if _, err := Run(f.ctx, first, d); err != nil {
		t.Fatal(err)
	}
	inMemory := f.config("2025-01-09T06:00:00Z")
	if _, err := Run(f.ctx, inMemory, d); err != nil {
		t.Fatal(err)
	}
	spillDir := t.TempDir()
	spilled := f.config("2025-01-09T06:00:00Z")
	d.Spill = &report.Spill{Dir: spillDir, RunRows: 7}
	o, err := Run(f.ctx, spilled, d)
	if err != nil {
		t.Fatal(err)
	}
	if !o.Report.Findings.Spilled() || o.Report.Findings.Len() != 150 {
		t.Fatalf("%d rows, spilled %v: want 150 rows spilled in runs of 7", o.Report.Findings.Len(), o.Report.Findings.Spilled())
	}
	if len(o.Files) < 3 {
		t.Fatalf("only %d report files written", len(o.Files))
	}
	for _, file := range o.Files {
		want, err := os.ReadFile(filepath.Join(inMemory.OutDir, file.Name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(file.Path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%s differs when the rows are spilled", file.Name)
		}
	}
	if left, _ := os.ReadDir(spillDir); len(left) != 0 {
		t.Errorf("%d temporary files left behind", len(left))
	}
}
