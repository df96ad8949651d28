package demo

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/fleetscan/fleetscan/internal/reporter"
	"github.com/fleetscan/fleetscan/internal/sla"
)

// TestDemoShowsHonestBreaches runs the whole demo (two real pipeline passes
// on an embedded NATS) and checks what it claims: every image scanned, some
// findings breached because pass 1 saw them weeks ago, the newly deployed
// workload's findings new and not breached, exit status 1. The demo lives on
// its own calendar, so it must tell the same story whatever the wall clock
// says: on a fixed day, and with "today" a year ahead of and a year behind
// the wall clock (its DB's freshness follows the demo's day, not the wall).
func TestDemoShowsHonestBreaches(t *testing.T) {
	wall := time.Now().UTC().Truncate(time.Second)
	for _, tc := range []struct {
		name  string
		today time.Time
	}{
		{"fixed day", time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)},
		{"a year ahead of the wall clock", wall.AddDate(1, 0, 0)},
		{"a year behind the wall clock", wall.AddDate(-1, 0, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) { testDemoOn(t, tc.today) })
	}
}

func testDemoOn(t *testing.T, today time.Time) {
	out := t.TempDir()
	var narration strings.Builder
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	o, err := Run(ctx, Config{OutDir: out, WorkDir: t.TempDir(), Workers: 2, HistoryDays: 40},
		Deps{Log: zaptest.NewLogger(t), Out: &narration, Clock: func() time.Time { return today }})
	if err != nil {
		t.Fatal(err)
	}
	if code := o.ExitCode(); code != reporter.ExitBreached {
		t.Fatalf("exit status %d (incomplete: %v), want %d", code, o.Incomplete(), reporter.ExitBreached)
	}
	s := o.Report.Summary
	if s.Images != 8 || s.ImagesScanned != 8 || s.Clusters != 3 {
		t.Fatalf("summary = %+v, want 8 images over 3 clusters, all scanned", s)
	}
	if s.BreachedUnaccepted == 0 || s.BreachedUnaccepted == s.Findings {
		t.Fatalf("breached %d of %d findings: want some, not all", s.BreachedUnaccepted, s.Findings)
	}
	past := today.AddDate(0, 0, -40)
	var newRiskAPI, breachedOld int
	for f := range o.Report.Findings.All() {
		riskAPI := false
		for _, w := range f.Workloads() {
			riskAPI = riskAPI || strings.Contains(w, "risk-api")
		}
		switch {
		case riskAPI && strings.Contains(f.Image(), "python-app"):
			// Only in the new workload's image: first seen today, not
			// breached — unless CISA's due date for it is already past
			// (breached at once, as BOD 22-01 means).
			if f.Change == sla.ChangeNew {
				newRiskAPI++
				if f.Breached != (f.DeadlineRule == "kev") || !f.FirstSeen.Equal(today) {
					t.Errorf("new finding %s: breached=%v first seen %s", f.Vuln.ID, f.Breached, f.FirstSeen)
				}
			}
		case f.Breached:
			breachedOld++
			if !f.FirstSeen.Equal(past) {
				t.Errorf("breached %s first seen %s, want %s (pass 1)", f.Vuln.ID, f.FirstSeen, past)
			}
		}
	}
	// The exploit feeds work: KEV-listed findings take CISA's due date
	// (39 days ago: breached, ranked first), and the top EPSS findings get
	// 14 days.
	rules := map[string]int{}
	for f := range o.Report.Findings.All() {
		rules[f.DeadlineRule]++
	}
	if first := o.Report.Findings.At(0); !first.Exploit.InKEV() || !first.Breached || first.DeadlineRule != "kev" {
		t.Errorf("first row %s: kev %v breached %v rule %q, want a breached KEV row", first.Vuln.ID, first.Exploit.InKEV(), first.Breached, first.DeadlineRule)
	}
	if s.KEV == 0 || s.KEVBreached == 0 || rules["kev"] == 0 || rules["epss"] == 0 || rules["severity"] == 0 || s.FeedsDegraded != 0 {
		t.Errorf("KEV %d (breached %d), rules %v, degraded feeds %d: want KEV, EPSS and severity deadlines, fresh feeds",
			s.KEV, s.KEVBreached, rules, s.FeedsDegraded)
	}
	if newRiskAPI == 0 || breachedOld == 0 {
		t.Fatalf("new risk-api findings %d, breached old findings %d: want both", newRiskAPI, breachedOld)
	}
	for _, name := range []string{"report.csv", "report.json", "report.html", "tickets.csv"} {
		if st, err := os.Stat(filepath.Join(out, name)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", name, err)
		}
	}
	if !strings.Contains(narration.String(), "exit status is 1") {
		t.Fatalf("narration does not explain the exit status:\n%s", narration.String())
	}
}
